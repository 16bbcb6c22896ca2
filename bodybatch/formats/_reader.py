"""The track-reader protocol, implemented once for every track file format.

A format's reader derives from :class:`TrackReader` and supplies how to decode one
chunk of rows (:meth:`TrackReader._decode_chunk`) and where the chunks start; the
base class gives ``len``, indexing, slicing, iteration, ``frame_index``,
``to_arrays``, :meth:`TrackReader.export_arrays` and a JSON-ready
:meth:`TrackReader.summary`. :func:`flat_arrays` lays out arrays for ``numpy.savez``
(shared with the prediction reader).
"""

import json
import os
from pathlib import Path

import numpy as np

from bodybatch._files import human_bytes
from bodybatch._rows import concat_blocks, slice_block
from bodybatch.errors import FormatError

__all__ = ["TrackReader", "flat_arrays"]


def flat_arrays(arrays, metadata, path):
    """Arrays ready for ``numpy.savez``: each dict of arrays (``camera``, ``frame``)
    becomes ``<name>_<key>`` entries (``camera_intr``), and ``metadata`` a JSON string
    (a 0-d unicode array, loaded without pickle: ``json.loads(str(npz["metadata"]))``).

    Raises
    ------
    FormatError
        Naming ``path``: a stored field clashes with a name this layout adds.
    """
    from bodybatch._json import to_jsonable

    out = {k: np.asarray(v) for k, v in arrays.items() if not isinstance(v, dict)}
    added = {f"{name}_{k}": np.asarray(v) for name, group in arrays.items() if isinstance(group, dict)
             for k, v in group.items()}  # fmt: skip
    added["metadata"] = np.array(json.dumps(to_jsonable(metadata), sort_keys=True))
    clash = sorted(set(out) & set(added))
    if clash:
        raise FormatError(f"{path}: field(s) {clash} clash with the names the export adds")
    out.update(added)
    return out


class TrackReader:
    """Random access to the rows of one track file (see :func:`bodybatch.open_track`).

    ``len(reader)`` rows; ``reader[k]`` a frame dict; ``reader[a:b]`` a dict of stacked
    arrays; iteration yields frame dicts; :meth:`to_arrays` returns all rows stacked.
    Frame dicts hold ``vertices (V,3)`` float32 mm, ``joints (J,3)`` mm,
    ``vertex_uncertainties (V,)`` m, ``joint_uncertainties (J,)`` m, ``boxes``,
    ``camera`` (dict, or camera object with ``decode_camera=True``) and ``frame_index``
    (the video frame of the row).

    Attributes
    ----------
    path : pathlib.Path
    metadata : dict or None
        What the writer was given (e.g. ``video``, ``track``, ``source``).
    """

    #: Name of the file format (``bodybatch.formats``).
    format_name = None

    def __init__(self, path, decode_camera=False):
        self.path = Path(path)
        self.decode_camera = decode_camera
        self.metadata = None
        self._starts = np.zeros(1, np.int64)  # first row of each chunk, then the row count
        self._cache = (None, None)

    # -- what a format supplies ------------------------------------------------------------
    def _decode_chunk(self, i):
        """Chunk ``i`` as a dict of stacked arrays (camera: dict of arrays), no frame_index."""
        raise NotImplementedError

    def _frame_index(self):
        """(n,) int64 video frame of every row."""
        raise NotImplementedError

    @property
    def codec(self):
        """The codec config the file was written with (dict with ``id``)."""
        raise NotImplementedError

    def _summary(self):
        """Format-specific entries of :meth:`summary`."""
        return {}

    def _close(self):
        pass

    # -- the protocol ------------------------------------------------------------------
    @property
    def frame_index(self):
        """(n,) read-only int64 array: the video frame of every row."""
        if not hasattr(self, "_frame_index_cache"):
            fi = np.asarray(self._frame_index(), np.int64)
            fi.setflags(write=False)
            self._frame_index_cache = fi
        return self._frame_index_cache

    def __len__(self):
        return int(self._starts[-1])

    def _chunk(self, i):
        if self._cache[0] != i:
            arrays = self._decode_chunk(i)
            arrays["frame_index"] = self.frame_index[self._starts[i] : self._starts[i + 1]]
            self._cache = (i, arrays)
        return self._cache[1]

    def _row(self, arrays, j):
        out = {k: ({ck: cv[j] for ck, cv in v.items()} if k == "camera" else v[j]) for k, v in arrays.items()}
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

    def export_arrays(self):
        """All rows flattened for ``numpy.savez`` (see :func:`flat_arrays`): the
        :meth:`to_arrays` fields, ``frame_index (n,)``, ``camera_<key> (n, ...)`` and
        ``metadata`` (JSON string)."""
        arrays = self.to_arrays()
        arrays["frame_index"] = np.asarray(self.frame_index)
        return flat_arrays(arrays, self.metadata, self.path)

    def summary(self):
        """JSON-ready description: file, kind (``"track"``), format, size in bytes,
        rows, frame range (``"first..last"`` video frames), codec and what the format
        adds (version, point layout, compression...)."""
        fi = self.frame_index
        out = {
            "file": str(self.path),
            "kind": "track",
            "format": self.format_name,
            "bytes": os.path.getsize(self.path),
            "size": human_bytes(os.path.getsize(self.path)),
            "rows": len(self),
            "frames": f"{int(fi[0])}..{int(fi[-1])}" if len(fi) else "none",
            "codec": dict(self.codec),
        }
        out.update(self._summary())
        return out

    def close(self):
        self._cache = (None, None)
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({str(self.path)!r}, rows={len(self)})"
