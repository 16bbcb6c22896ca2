"""Track files in the bodycompress 0.3.0 layout (``codec="bodycompress"``): one row per
stored frame, readable by ``bodycompress.BodyDecompressor``; the writer and the reader.

The writer writes a temporary file next to the target and renames it at commit, so
a final path never holds a partial file. The codec config is kept in the metadata
under ``bodybatch``.
"""

import os
from pathlib import Path

import numpy as np

from bodybatch import _msgpack
from bodybatch._files import publish
from bodybatch._rows import slice_block
from bodybatch._version import __version__
from bodybatch.errors import FormatError, OutputError, TrackError
from bodybatch.formats._reader import TrackReader
from bodybatch.formats.bodycompress._contents import vertex_order_name
from bodybatch.formats.bodycompress._frames import encode_row
from bodybatch.formats.bodycompress._header import HEADER_PADDING, pack_header

__all__ = ["TrackFileWriter", "CompatTrackReader"]


class TrackFileWriter:
    """Writes one bodycompress-layout track file for :class:`bodybatch.TrackWriter`
    (its header is rewritten at the end, so no sha256 is hashed while writing).

    Parameters
    ----------
    path : path-like
    codec : BodycompressCodec
    metadata : dict or None
    structures : ignored (the layout has no shared structure)
    """

    def __init__(self, path, codec, metadata, structures=None):
        self.path = Path(path)
        self.codec = codec
        self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.max_error = 0.0
        self.length = 0
        self.sha256 = None
        meta = dict(metadata or {})
        meta["bodybatch"] = {"codec": codec.get_config(), "version": __version__}
        try:
            self._f = open(self.tmp_path, "wb")
            self._f.write(self._header(0, None, None) + b"\0" * HEADER_PADDING)
            self.metadata_start = self._f.tell()
            self._f.write(codec.compress(_msgpack.packb(meta)))
            self.data_start = self._f.tell()
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from exc
        except TypeError as exc:
            self.abort()
            raise TrackError(f"{self.path}: metadata cannot be stored: {exc}") from None
        self._stream = codec.stream_compressor()

    def _header(self, length, metadata_start, data_start):
        return self.codec.compress(pack_header(self.codec.compression, length, metadata_start, data_start))

    def _write(self, data):
        if data:
            try:
                self._f.write(data)
            except OSError as exc:
                self.abort()
                raise OutputError(f"{self.path}: write failed ({exc.strerror})") from exc

    def write(self, block, n_rows, frame_index, owned=False):
        """Append ``n_rows`` rows given as stacked arrays (camera: dict of arrays),
        written at once (``owned`` does not matter here)."""
        for i in range(n_rows):
            row = {k: (v[i] if k != "camera" else {ck: cv[i] for ck, cv in v.items()}) for k, v in block.items()}
            row["frame_index"] = int(frame_index[i])
            packed, err = encode_row(row, self.codec.quantization_mm, self.codec.uncertainty_step_mm)
            self.max_error = max(self.max_error, err)
            self._write(self._stream.compress(packed))
            self.length += 1

    def commit(self, frame_index, schema):
        """Finish the stream, rewrite the header, fsync and rename. Returns the size."""
        self._write(self._stream.flush())
        header = self._header(self.length, self.metadata_start, self.data_start)
        if len(header) > self.metadata_start:
            self.abort()
            raise OutputError(f"{self.path}: final header does not fit its reserved space")
        try:
            size = self._f.tell()
            self._f.seek(0)
            self._f.write(header + b"\0" * (self.metadata_start - len(header)))
            publish(self._f, self.tmp_path, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot finish output ({exc.strerror})") from exc
        return size

    def abort(self):
        f = getattr(self, "_f", None)
        if f is not None and not f.closed:
            f.close()
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass


class CompatTrackReader(TrackReader):
    """Reader of per-track bodycompress files (from this package or bodycompress itself).

    A bodycompress file is one compressed stream, so random access decodes the whole
    file once and keeps the rows: one chunk of ``len(reader)`` rows.
    """

    format_name = "bodycompress"

    def __init__(self, path, decode_camera=False, fields=None):
        from bodybatch.formats.bodycompress.predictions import read_predictions

        super().__init__(path, decode_camera, fields)
        self._reader = read_predictions(path)
        if self._reader.kind != "track":
            raise FormatError(
                f"{path}: a per-video prediction file (all detections of each frame), not a "
                "track file; read it with bodybatch.read_predictions, or `bodybatch inspect`"
            )
        meta = self._reader.metadata
        meta = dict(meta) if isinstance(meta, dict) else meta
        info = meta.pop("bodybatch", None) if isinstance(meta, dict) else None
        self.metadata = meta
        known = isinstance(info, dict) and isinstance(info.get("codec"), dict)
        self._codec = dict(info["codec"]) if known else {"id": "bodycompress"}
        self._starts = np.array([0, len(self._reader)], np.int64)
        self._arrays = None

    @property
    def codec(self):
        return self._codec

    @property
    def header(self):
        return self._reader.header

    def _load(self):
        if self._arrays is None:
            rows = list(self._reader)
            fields = [k for k in rows[0] if k not in ("camera", "frame_index")] if rows else []
            arrays = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in fields}
            if rows and isinstance(rows[0].get("camera"), dict):
                arrays["camera"] = {k: np.stack([np.asarray(r["camera"][k]) for r in rows]) for k in rows[0]["camera"]}
            if rows and "frame_index" in rows[0]:
                arrays["frame_index"] = np.array([int(r["frame_index"]) for r in rows], np.int64)
            else:
                arrays["frame_index"] = np.arange(len(rows), dtype=np.int64)
            self._arrays = arrays
        return self._arrays

    def _frame_index(self):
        return self._load()["frame_index"]

    _fresh_chunks = False  # views of the arrays decoded once

    def _decode_chunk(self, i, fields=None, rows=None, into=None):
        # one compressed stream: every field is decoded (once), ``fields`` only selects
        # (rows: the whole file is one chunk, decoded whole anyway, then sliced)
        arrays = {k: v for k, v in self._load().items() if k != "frame_index" and (fields is None or k in fields)}
        return arrays if rows is None else slice_block(arrays, rows.start, rows.stop)

    def _stored_fields(self):
        return set(self._load()) - {"frame_index"}

    def _summary(self):
        h = self._reader.header
        return {"version": ".".join(map(str, h.version)), "compression": h.compression,
                "vertex_order": vertex_order_name(h)}  # fmt: skip

    def _close(self):
        self._reader.close()
        self._arrays = None
