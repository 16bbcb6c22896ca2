"""The ``bodycompress`` compatibility codec: track files that
``bodycompress.BodyDecompressor`` 0.3.0 reads.

Rows are stored as bodycompress stores frames (``qd_<name>`` integer differences on
the grid, see :mod:`bodybatch.formats.bodycompress`) in one xz or zstd stream; this
module holds the codec's options and its stream compression (bytes to bytes).
"""

import lzma

from bodybatch.codec._base import UNCERTAINTY_OPTION, Codec, CodecOption, register_codec

__all__ = ["BodycompressCodec"]

_LEVELS = {"xz": (0, 9, 5), "zstd": (1, 22, 3)}


@register_codec
class BodycompressCodec(Codec):
    """Options of the compatibility codec.

    Parameters
    ----------
    quantization_mm : float
        Grid step in mm (0.5 as bodycompress) of vertices and joints.
    uncertainty_quantization_mm : float or None
        Grid step in mm of the uncertainties (stored in m); None: ``quantization_mm``.
        Each stored field carries its own factor (``qd_<name>: [diffs, factor]``), so
        bodycompress reads either.
    compression : {"xz", "zstd"}
    compression_level : int, optional
        xz 0..9 (default 5), zstd 1..22 (default 3).
    """

    codec_id = "bodycompress"
    file_format = "bodycompress"
    options = (
        CodecOption("quantization_mm", float, 0.5, "grid step (mm) of vertices and joints", 1e-6, 1e3),
        CodecOption("compression", tuple(_LEVELS), "xz", "stream compression"),
        CodecOption("compression_level", int, None, "compression level (xz 5, zstd 3 when unset)"),
        UNCERTAINTY_OPTION,
    )

    def __init__(self, quantization_mm=0.5, compression="xz", compression_level=None, uncertainty_quantization_mm=None):
        quantization, kind, level, unc = self.options
        self.quantization_mm = quantization.check(quantization_mm)
        self.uncertainty_quantization_mm = unc.check(uncertainty_quantization_mm)
        self.compression = kind.check(compression)
        lo, hi, default = _LEVELS[self.compression]
        level = CodecOption(level.name, int, None, f"{self.compression} level", lo, hi)
        self.compression_level = level.check(default if compression_level is None else compression_level)

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
