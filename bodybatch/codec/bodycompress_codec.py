"""The ``bodycompress`` compatibility codec: per-track files that
``bodycompress.BodyDecompressor`` 0.3.0 reads.

Layout (bodycompress 0.3.0): a compressed header map (``__bodycompress_version__``
(0, 3, 0), ``compression``, ``length``, ``metadata_start``, ``data_start``,
``vertex_order`` None), zero padding, the compressed metadata map, then one compressed
stream of msgpack-numpy frame maps. Coordinates are stored as
``qd_<name>: [int32 differences along the point axis, factor]`` with
``factor = 1/step`` per mm (``1000/step`` for uncertainties in m), rounded exactly as
bodycompress rounds. Pure transformations: the file handling is in
:mod:`bodybatch._compat_file`.
"""

import lzma

import numpy as np

from bodybatch import _msgpack
from bodybatch.codec import _codec_from_config, quantize
from bodybatch.errors import TrackError

__all__ = ["BodycompressCodec", "HEADER_PADDING"]

#: Bytes reserved after the first header so that the final header fits (as bodycompress).
HEADER_PADDING = 128
_QUANTIZED = (("vertices", 1.0), ("joints", 1.0), ("vertex_uncertainties", 1000.0), ("joint_uncertainties", 1000.0))
_LEVELS = {"xz": (0, 9, 5), "zstd": (1, 22, 3)}


class BodycompressCodec:
    """Options of the compatibility codec.

    Parameters
    ----------
    quantization_mm : float
        Grid step in mm (0.5 as bodycompress).
    compression : {"xz", "zstd"}
    compression_level : int, optional
        xz 0..9 (default 5), zstd 1..22 (default 3).
    """

    codec_id = "bodycompress"

    def __init__(self, quantization_mm=0.5, compression="xz", compression_level=None):
        self.quantization_mm = quantize.check_step(quantization_mm)
        if compression not in _LEVELS:
            raise TrackError(f"compression must be one of xz, zstd; got {compression!r}")
        self.compression = compression
        lo, hi, default = _LEVELS[compression]
        level = default if compression_level is None else compression_level
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or not lo <= level <= hi:
            raise TrackError(f"compression_level for {compression} must be an integer in [{lo}, {hi}], got {level!r}")
        self.compression_level = int(level)

    def get_config(self):
        return {
            "id": self.codec_id,
            "quantization_mm": self.quantization_mm,
            "compression": self.compression,
            "compression_level": self.compression_level,
        }

    @classmethod
    def from_config(cls, config):
        return _codec_from_config(cls, config)

    def compress(self, data):
        """One standalone compressed stream (header, metadata)."""
        if self.compression == "xz":
            return lzma.compress(data, format=lzma.FORMAT_XZ, preset=self.compression_level)
        import zstandard

        return zstandard.ZstdCompressor(level=self.compression_level).compress(data)

    def stream_compressor(self):
        """An object with ``compress(bytes) -> bytes`` and ``flush() -> bytes``."""
        if self.compression == "xz":
            return lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=self.compression_level)
        import zstandard

        return zstandard.ZstdCompressor(level=self.compression_level).compressobj()

    def header(self, length, metadata_start, data_start):
        """Compressed header map."""
        return self.compress(_msgpack.packb({
            "__bodycompress_version__": (0, 3, 0),
            "compression": self.compression,
            "length": length,
            "metadata_start": metadata_start,
            "data_start": data_start,
            "vertex_order": None,
        }))

    def encode_row(self, row):
        """One track row (frame dict of per-row arrays) -> (msgpack bytes, max error mm)."""
        out, max_error = {}, 0.0
        for key, value in row.items():
            out[key] = value
        for name, scale in _QUANTIZED:
            if name not in row:
                continue
            factor = scale / self.quantization_mm
            q, err = quantize.quantize(row[name], factor, name, with_error=True)
            diffs = np.diff(q, prepend=0, axis=-2 if name in ("vertices", "joints") else -1)
            if diffs.size and np.max(np.abs(diffs)) >= 2**31:
                raise TrackError(f"'{name}' differences overflow int32 in the bodycompress layout")
            del out[name]
            out[f"qd_{name}"] = (diffs.astype(np.int32), factor)
            max_error = max(max_error, err * scale)
        return _msgpack.packb(out), max_error
