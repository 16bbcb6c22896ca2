"""Per-track files in the bodycompress 0.3.0 layout: writer and reader.

The writer mirrors the container writer: a temporary file next to the target,
fsync, rename at commit, so a final path never holds a partial file.
"""

import os
from pathlib import Path

import numpy as np

from bodybatch._trackdata import concat_blocks, slice_block
from bodybatch._version import __version__
from bodybatch.codec.bodycompress_codec import HEADER_PADDING
from bodybatch.container import publish
from bodybatch.errors import OutputError

__all__ = ["CompatTrackWriter", "CompatTrackReader"]


class CompatTrackWriter:
    """Backend of :class:`bodybatch.TrackWriter` for ``codec="bodycompress"``."""

    def __init__(self, path, codec, metadata):
        self.path = Path(path)
        self.codec = codec
        self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.max_error = 0.0
        self.length = 0
        meta = dict(metadata or {})
        meta["bodybatch"] = {"codec": codec.get_config(), "version": __version__}
        try:
            self._f = open(self.tmp_path, "wb")
            first = codec.header(0, None, None)
            self._f.write(first + b"\0" * HEADER_PADDING)
            self.metadata_start = self._f.tell()
            from bodybatch import _msgpack

            self._f.write(codec.compress(_msgpack.packb(meta)))
            self.data_start = self._f.tell()
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot write ({exc.strerror})") from exc
        except TypeError as exc:
            self.abort()
            from bodybatch.errors import TrackError

            raise TrackError(f"{self.path}: metadata cannot be stored: {exc}") from None
        self._stream = codec.stream_compressor()

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
            packed, err = self.codec.encode_row(row)
            self.max_error = max(self.max_error, err)
            self._write(self._stream.compress(packed))
            self.length += 1

    def commit(self, frame_index, schema):
        """Finish the stream, rewrite the header, fsync and rename. Returns the size."""
        self._write(self._stream.flush())
        header = self.codec.header(self.length, self.metadata_start, self.data_start)
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


class CompatTrackReader:
    """Reader of per-track bodycompress files (from this codec or bodycompress itself).

    A bodycompress file is one compressed stream, so random access decodes the whole
    file once and keeps the rows (compatibility mode; the bodybatch codec decodes one
    chunk instead). Same interface as :class:`bodybatch.trackfile.TrackReader`.
    """

    def __init__(self, path, decode_camera=False):
        from bodybatch.predictions import read_predictions

        self.path = Path(path)
        self.decode_camera = decode_camera
        self._reader = read_predictions(path)
        meta = self._reader.metadata
        meta = dict(meta) if isinstance(meta, dict) else meta
        info = meta.pop("bodybatch", None) if isinstance(meta, dict) else None
        self.metadata = meta
        self.codec = dict(info["codec"]) if isinstance(info, dict) and isinstance(info.get("codec"), dict) else {"id": "bodycompress"}
        self._arrays = None

    @property
    def header(self):
        return self._reader.header

    def __len__(self):
        return len(self._reader)

    def _load(self):
        if self._arrays is None:
            rows = list(self._reader)
            fields = [k for k in rows[0] if k not in ("camera", "frame_index")] if rows else []
            arrays = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in fields}
            if rows and isinstance(rows[0].get("camera"), dict):
                arrays["camera"] = {k: np.stack([np.asarray(r["camera"][k]) for r in rows]) for k in rows[0]["camera"]}
            if rows and "frame_index" in rows[0]:
                fi = np.array([int(r["frame_index"]) for r in rows], np.int64)
            else:
                fi = np.arange(len(rows), dtype=np.int64)
            fi.setflags(write=False)
            arrays["frame_index"] = fi
            self._arrays = arrays
        return self._arrays

    @property
    def frame_index(self):
        return self._load()["frame_index"]

    def _row(self, k):
        arrays = self._load()
        out = {}
        for key, v in arrays.items():
            out[key] = {ck: cv[k] for ck, cv in v.items()} if key == "camera" else v[k]
        out["frame_index"] = int(out["frame_index"])
        if self.decode_camera and "camera" in out:
            from bodybatch.cameras import dict_to_camera

            out["camera"] = dict_to_camera(out["camera"])
        return out

    def __getitem__(self, key):
        n = len(self._load()["frame_index"])
        if isinstance(key, slice):
            return slice_block(self._load(), np.arange(n)[key])
        k = int(key)
        if k < 0:
            k += n
        if not 0 <= k < n:
            raise IndexError(f"row {key} out of range for a track of {n} rows")
        return self._row(k)

    def __iter__(self):
        for k in range(len(self._load()["frame_index"])):
            yield self._row(k)

    def to_arrays(self):
        return concat_blocks([slice_block(self._load(), np.arange(len(self._load()["frame_index"])))])

    def close(self):
        self._reader.close()
        self._arrays = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
