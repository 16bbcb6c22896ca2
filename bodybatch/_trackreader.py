"""Random access reader of bodybatch track files (see :func:`bodybatch.open_track`)."""

from pathlib import Path

import numpy as np

from bodybatch._trackdata import concat_blocks, slice_block
from bodybatch.errors import FormatError, TrackError

__all__ = ["TrackReader"]


class TrackReader:
    """Random access to the rows of a bodybatch track file.

    ``len(reader)`` rows; ``reader[k]`` a frame dict; ``reader[a:b]`` a dict of stacked
    arrays; iteration yields frame dicts; :meth:`to_arrays` returns all rows stacked.
    Frame dicts hold ``vertices (V,3)`` float32 mm, ``joints (J,3)`` mm,
    ``vertex_uncertainties (V,)`` m, ``joint_uncertainties (J,)`` m, ``boxes``,
    ``camera`` (dict, or camera object with ``decode_camera=True``) and ``frame_index``.
    """

    def __init__(self, path, decode_camera=False):
        from bodybatch.codec.bodybatch_codec import BodybatchCodec
        from bodybatch.codec.entropy import decode_numbers
        from bodybatch.container import ContainerReader

        self.path = Path(path)
        self.decode_camera = decode_camera
        self._reader = ContainerReader(path)
        try:
            header = self._reader.header
            where = f"{self.path}: "
            config = header.get("codec")
            if not isinstance(config, dict) or config.get("id") != "bodybatch":
                raise FormatError(f"{where}unknown codec {config!r}")
            try:
                self._codec = BodybatchCodec.from_config(config)
            except TrackError as exc:
                raise FormatError(f"{where}{exc}") from None
            self._layout = self._codec.layout_from_header(header.get("layout") or {}, where)
            self.metadata = header.get("metadata")
            index = self._reader.index
            self.frame_index = decode_numbers(
                index.get("frame_index", b""), np.int64, index["n_frames"], f"{where}frame index"
            )
            self.frame_index.setflags(write=False)
            rows = [n for _, n in index["chunks"]]
            self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        except BaseException:
            self._reader.close()
            raise
        self._cache = (None, None)

    @property
    def codec(self):
        """The codec config the file was written with."""
        return self._codec.get_config()

    @property
    def header(self):
        return self._reader.header

    def __len__(self):
        return len(self.frame_index)

    def _chunk(self, i):
        if self._cache[0] != i:
            n_rows = int(self._starts[i + 1] - self._starts[i])
            payload = self._reader.read_chunk(i)
            arrays = self._codec.decode_chunk(payload, self._layout, n_rows, f"{self.path}: chunk {i}: ")
            arrays["frame_index"] = self.frame_index[self._starts[i] : self._starts[i + 1]]
            self._cache = (i, arrays)
        return self._cache[1]

    def _row(self, arrays, j):
        out = {}
        for k, v in arrays.items():
            out[k] = {ck: cv[j] for ck, cv in v.items()} if k == "camera" else v[j]
        out["frame_index"] = int(out["frame_index"])
        if self.decode_camera and "camera" in out:
            from bodybatch.cameras import dict_to_camera

            out["camera"] = dict_to_camera(out["camera"])
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._rows(range(*key.indices(len(self))))
        try:
            k = int(np.asarray(key).item()) if not isinstance(key, int) else key
        except (TypeError, ValueError):
            raise TypeError(f"track rows are indexed by int or slice, not {type(key).__name__}") from None
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"row {key} out of range for a track of {len(self)} rows")
        i = int(np.searchsorted(self._starts, k, side="right") - 1)
        return self._row(self._chunk(i), k - int(self._starts[i]))

    def _rows(self, rows):
        rows = np.asarray(rows, np.int64)
        parts = []
        if len(rows):
            chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
            for i in np.unique(chunk_of):
                sel = rows[chunk_of == i] - self._starts[i]
                parts.append(slice_block(self._chunk(int(i)), sel))
        if not parts:
            if len(self._starts) < 2:
                return {"frame_index": np.zeros(0, np.int64)}
            return slice_block(self._chunk(0), np.zeros(0, np.int64))
        return concat_blocks(parts)

    def __iter__(self):
        for i in range(len(self._starts) - 1):
            arrays = self._chunk(i)
            for j in range(int(self._starts[i + 1] - self._starts[i])):
                yield self._row(arrays, j)

    def to_arrays(self):
        """All rows as a dict of stacked arrays (camera: dict of stacked arrays)."""
        return self._rows(range(len(self)))

    def close(self):
        self._reader.close()
        self._cache = (None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
