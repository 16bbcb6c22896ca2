"""The track-reader protocol, implemented once for every track file format.

A format's reader derives from :class:`TrackReader` and supplies how to decode one
chunk of rows (:meth:`TrackReader._decode_chunk`) and where the chunks start; the
base class gives ``len``, indexing, slicing, iteration, ``frame_index``,
``to_arrays`` (all with ``fields=``), ``find_frames``, ``read_frames``, :meth:`TrackReader.export_arrays` and a JSON-ready
:meth:`TrackReader.summary`.
"""

import os
from pathlib import Path

import numpy as np

from bodybatch._files import human_bytes
from bodybatch._rows import check_fields, concat_blocks, copy_block, flat_arrays, slice_block, stack_blocks
from bodybatch.errors import FormatError

__all__ = ["TrackReader"]


class TrackReader:
    """Random access to the rows of one track file (see :func:`bodybatch.open_track`).

    ``len(reader)`` rows; ``reader[k]`` a frame dict; ``reader[a:b]`` a dict of stacked
    arrays; iteration yields frame dicts; :meth:`to_arrays` returns all rows stacked.
    Frame dicts hold ``vertices (V,3)`` float32 mm, ``joints (J,3)`` mm,
    ``vertex_uncertainties (V,)`` m, ``joint_uncertainties (J,)`` m, ``boxes``,
    ``camera`` (dict, or camera object with ``decode_camera=True``) and ``frame_index``
    (the video frame of the row).

    Every read takes ``fields=`` (names from :data:`FIELDS`): only those fields are
    returned (plus ``frame_index``) and only the streams they need are decoded (with
    the bodybatch codec, ``fields="joints"`` never touches the vertex streams).
    ``reader[...]`` and iteration use the reader's default :attr:`fields`
    (``open_track(path, fields=...)``); :meth:`read` and :meth:`iter_rows` take it
    per call. A row range decodes only the chunks it overlaps.

    Attributes
    ----------
    path : pathlib.Path
    metadata : dict or None
        What the writer was given (e.g. ``video``, ``track``, ``source``).
    fields : frozenset or None
        Default field selection of indexing and iteration (None: all fields).
    """

    #: Name of the file format (``bodybatch.formats``).
    format_name = None
    #: Whether :meth:`_decode_chunk` returns new arrays on every call (False: views of
    #: something the reader keeps, so iteration copies each row).
    _fresh_chunks = True

    def __init__(self, path, decode_camera=False, fields=None):
        self.path = Path(path)
        self.decode_camera = decode_camera
        self.fields = check_fields(fields)
        self.metadata = None
        self._starts = np.zeros(1, np.int64)  # first row of each chunk, then the row count
        self._cache = (None, None, 0, 0, None)  # chunk, fields decoded (None: all), rows start:stop, arrays
        self._threads = 1

    @property
    def threads(self):
        """Threads of a read: a multi-chunk read (``to_arrays``, slices, windows)
        decodes its chunks in parallel, a one-chunk read (a row, a window, a short
        track) splits its chunk's decode (the compiled decoders of formats 1.x and
        3.x), for formats whose decoder allows it (the compiled bodybatch decoder and
        pcodec release the GIL). Default 1: a reader in a ``DataLoader`` worker or a
        process pool should not start threads of its own."""
        return self._threads

    @threads.setter
    def threads(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            from bodybatch.errors import ConfigError

            raise ConfigError(f"threads must be a positive int, not {value!r}")
        self._threads = int(value)

    # -- what a format supplies ------------------------------------------------------------
    def _decode_chunk(self, i, fields=None, rows=None, into=None):
        """Chunk ``i`` as a dict of stacked arrays (camera: dict of arrays), no
        frame_index; ``fields``: None (all) or a frozenset of the fields to decode;
        ``rows``: None (all) or a ``slice(start, stop)`` of the chunk's rows: return
        exactly those (a format whose decoder cannot stop early decodes all and slices).
        ``into``: arrays of the rows' shapes (slices of a whole read's output) that a
        format may decode straight into, returning them; others may ignore it."""
        raise NotImplementedError

    def _chunk_job(self, i, fields=None, rows=None, into=None):
        """:meth:`_decode_chunk` in two halves, for :attr:`threads`: read chunk ``i``
        now (file access stays in the calling thread) and return a callable that
        decodes it in any thread. A format that can overrides it; the others decode
        one chunk at a time whatever :attr:`threads` says."""
        raise NotImplementedError

    def _frame_index(self):
        """(n,) int64 video frame of every row."""
        raise NotImplementedError

    def _stored_fields(self):
        """The fields the file holds (names from :data:`FIELDS`)."""
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

    @property
    def stored_fields(self):
        """Sorted list of the fields the file holds (``frame_index`` aside)."""
        return sorted(self._stored_fields())

    def __len__(self):
        return int(self._starts[-1])

    def _select(self, fields):
        """Resolve a ``fields=`` argument: None -> the reader's default; checked
        against the names and against what the file holds (FormatError naming it)."""
        fields = self.fields if fields is None else check_fields(fields)
        if fields is not None:
            missing = sorted(fields - set(self._stored_fields()))
            if missing:
                raise FormatError(f"{self.path}: no field(s) {missing} in this track; it holds {self.stored_fields}")
        return fields

    def _chunk(self, i, fields=None, start=0, stop=None):
        """Rows ``start:stop`` (None: to the end) of chunk ``i`` at least, as
        ``(arrays, first)``: ``arrays`` hold the chunk's rows from row ``first`` on.
        The last chunk decoded is cached; a decoder that can stop early is asked for
        the rows wanted only (reading row k of a chunk decodes its rows 0..k)."""
        ci, cf, c_start, c_stop, arrays = self._cache
        size = int(self._starts[i + 1] - self._starts[i])
        stop = size if stop is None else min(int(stop), size)
        start = min(int(start), stop - 1)
        if not self._cache_holds(i, fields, start, stop):
            whole = start == 0 and stop == size
            arrays = self._decode_chunk(i, fields, None if whole else slice(start, stop))
            arrays["frame_index"] = self.frame_index[self._starts[i] + start : self._starts[i] + stop]
            self._cache = (i, fields, start, stop, arrays)
            c_start, cf = start, fields
        if fields is not None and cf != fields:
            arrays = {k: v for k, v in arrays.items() if k in fields or k == "frame_index"}
        return arrays, c_start

    def _cache_holds(self, i, fields, start, stop):
        """Whether the cached chunk holds rows ``start:stop`` of chunk ``i`` with ``fields``."""
        ci, cf, c_start, c_stop, _ = self._cache
        return ci == i and (cf is None or (fields is not None and fields <= cf)) and c_start <= start < stop <= c_stop

    def _row(self, arrays, j):
        out = {k: ({ck: cv[j] for ck, cv in v.items()} if k == "camera" else v[j]) for k, v in arrays.items()}
        out["frame_index"] = int(out["frame_index"])
        if self.decode_camera and "camera" in out:
            from bodybatch.cameras import dict_to_camera

            out["camera"] = dict_to_camera(out["camera"])
        return out

    def _own_row(self, arrays, j):
        """Row ``j`` of ``arrays`` as a frame dict of its own arrays (copied)."""
        return self._row(copy_block(slice_block(arrays, j, j + 1)), 0)

    def __getitem__(self, key):
        return self.read(key)

    def read(self, key, fields=None):
        """Rows by position.

        Parameters
        ----------
        key : int, slice or array of int
            An int gives one frame dict; a slice or an index array a dict of stacked
            ``(n, ...)`` arrays (camera: dict of arrays).
        fields : str or collection of str, optional
            Fields to decode and return (``frame_index`` always comes along); None:
            the reader's default :attr:`fields`.
        """
        fields = self._select(fields)
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return self._range(start, max(start, stop), fields)
            return self._rows(range(start, stop, step), fields)
        if not isinstance(key, (int, np.integer)) and np.ndim(key) == 1:
            rows = np.asarray(key, np.int64)
            if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
                raise IndexError(f"row out of range for a track of {len(self)} rows")
            return self._rows(rows, fields)
        try:
            k = int(np.asarray(key).item()) if not isinstance(key, int) else key
        except (TypeError, ValueError):
            raise TypeError(f"track rows are indexed by int, slice or index array, not {type(key).__name__}") from None
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(f"row {key} out of range for a track of {len(self)} rows")
        i = int(np.searchsorted(self._starts, k, side="right") - 1)
        j = k - int(self._starts[i])
        arrays, first = self._chunk(i, fields, j, j + 1)
        return self._own_row(arrays, j - first)  # never a view of the cache

    def _empty(self, fields):
        if len(self._starts) < 2:
            return {"frame_index": np.zeros(0, np.int64)}
        return slice_block(self._chunk(0, fields, 0, 1)[0], 0, 0)

    def _point_shapes(self, fields):
        """``{field: row shape}`` of the float32 point arrays a decode of ``fields``
        writes into arrays it is given (``into``); {} where the format does not."""
        return {}

    def _range(self, start, stop, fields):
        """Rows ``start:stop`` (step 1), decoding only the chunks they overlap."""
        if stop <= start:
            return self._empty(fields)
        first_chunk = int(np.searchsorted(self._starts, start, side="right") - 1)
        last_chunk = int(np.searchsorted(self._starts, stop - 1, side="right") - 1)
        # A read over several chunks: its output's point arrays allocated now where the
        # format says their shapes, so that every whole chunk, the first too, decodes
        # straight into its rows; stack_blocks completes it from the first part.
        shapes = self._point_shapes(fields) if last_chunk > first_chunk else {}
        target = {"out": {k: np.empty((stop - start,) + s, np.float32) for k, s in shapes.items()}} if shapes else {}

        def parts():
            for i in range(first_chunk, last_chunk + 1):
                lo, hi = int(self._starts[i]), int(self._starts[i + 1])
                a, b = max(start, lo) - lo, min(stop, hi) - lo
                if "out" in target and a == 0 and b == hi - lo:  # a whole chunk (partial ones go through the cache)
                    into = slice_block(target["out"], lo - start, hi - start)
                    arrays = self._decode_chunk(i, fields, None, into=into)
                    arrays["frame_index"] = self.frame_index[lo:hi]
                    yield arrays
                    continue
                arrays, first = self._chunk(i, fields, a, b)
                yield slice_block(arrays, a - first, b - first)

        if first_chunk == last_chunk:
            lo, hi = int(self._starts[first_chunk]), int(self._starts[first_chunk + 1])
            cached = self._cache_holds(first_chunk, fields, 0, hi - lo)
            if (start, stop) == (lo, hi) and self._fresh_chunks and not cached:
                arrays = self._decode_chunk(first_chunk, fields)  # a whole chunk, not cached: the caller's own
                arrays["frame_index"] = self.frame_index[lo:hi].copy()
                return arrays
            return copy_block(next(parts()))  # never views of the cache
        if self._threads > 1 and type(self)._chunk_job is not TrackReader._chunk_job:
            from bodybatch.formats._parallel import parallel_blocks

            blocks = parallel_blocks(self, first_chunk, last_chunk, start, stop, fields, target)
            return stack_blocks(blocks, stop - start, target)
        return stack_blocks(parts(), stop - start, target)  # a chunk at a time: peak memory ~ the result

    def _rows(self, rows, fields=None):
        """Rows at the given positions (any order, repeats allowed), stacked in that
        order; each chunk involved is decoded once, up to its last row asked."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return self._empty(fields)
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        chunk_of = np.searchsorted(self._starts, rows, side="right") - 1
        parts = []
        for i in np.unique(chunk_of):
            sel = rows[chunk_of == i] - self._starts[i]
            arrays, first = self._chunk(int(i), fields, int(sel[0]), int(sel[-1]) + 1)
            parts.append(slice_block(arrays, sel - first))
        block = concat_blocks(parts)
        if (np.diff(order) < 0).any():
            block = slice_block(block, np.argsort(order, kind="stable"))
        return block

    def __iter__(self):
        return self.iter_rows()

    def iter_rows(self, fields=None):
        """Frame dicts, one per row, decoding a chunk at a time.

        Parameters
        ----------
        fields : str or collection of str, optional
            As in :meth:`read`.
        """
        fields = self._select(fields)
        for i in range(len(self._starts) - 1):
            lo, hi = int(self._starts[i]), int(self._starts[i + 1])
            arrays = self._decode_chunk(i, fields)  # this loop's own (rows are views of it, not of the cache)
            arrays["frame_index"] = self.frame_index[lo:hi]
            for j in range(hi - lo):
                yield self._row(arrays, j) if self._fresh_chunks else self._own_row(arrays, j)

    def to_arrays(self, fields=None):
        """All rows as a dict of stacked ``(n, ...)`` arrays (camera: dict of stacked
        arrays), ``frame_index (n,)`` included; ``fields`` as in :meth:`read`."""
        return self.read(slice(None), fields)

    def find_frames(self, video_frames):
        """Rows holding the given video frames.

        Parameters
        ----------
        video_frames : int or array_like of int, shape (k,)
            Video frame numbers (any order, repeats allowed).

        Returns
        -------
        numpy.ndarray of int64, shape (k,) (or a 0-d array for an int)
            The row of each frame, -1 where the person was not tracked in that frame.
        """
        frames = np.asarray(video_frames, np.int64)
        fi = self.frame_index
        pos = np.searchsorted(fi, frames)
        found = pos < len(fi)
        found[found] = fi[pos[found]] == frames[found]
        return np.where(found, pos, -1).astype(np.int64)

    def read_frames(self, video_frames, fields=None):
        """The rows of the given video frames, stacked in the order asked.

        Parameters
        ----------
        video_frames : array_like of int, shape (k,)
        fields : str or collection of str, optional
            As in :meth:`read`.

        Returns
        -------
        dict
            ``(k, ...)`` arrays, ``frame_index (k,)`` equal to ``video_frames``.

        Raises
        ------
        KeyError
            Some frames are not in the track (the message names up to 5); use
            :meth:`find_frames` to tell which ones are.
        """
        rows = np.atleast_1d(self.find_frames(video_frames))
        if (rows < 0).any():
            missing = np.atleast_1d(np.asarray(video_frames))[rows < 0]
            raise KeyError(f"{self.path}: {len(missing)} frame(s) not in the track, e.g. {missing[:5].tolist()}")
        fields = self._select(fields)
        if len(rows) and (np.diff(rows) == 1).all():  # the common case: a window
            return self._range(int(rows[0]), int(rows[-1]) + 1, fields)
        return self._rows(rows, fields)

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
        self._cache = (None, None, 0, 0, None)
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({str(self.path)!r}, rows={len(self)})"
