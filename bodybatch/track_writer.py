"""Writing track files: :func:`write_track` and :class:`TrackWriter` (rows in any
order of calls, memory bounded by one chunk), reporting a :class:`TrackInfo`.

The writer validates and buffers rows (:mod:`bodybatch._rows`); the file format that
frames the codec's output (:mod:`bodybatch.formats`) encodes and writes them. With
the default ``bodybatch`` codec a file is a container of independently decodable
chunks; with ``codec="bodycompress"`` it is a file ``bodycompress`` 0.3.0 reads.
"""

import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from bodybatch._grid import GridValues
from bodybatch._rows import RowBlock, Schema, normalize_block, row_signature
from bodybatch.codec import Codec, get_codec
from bodybatch.errors import TrackError
from bodybatch.formats import track_file_writer

__all__ = ["write_track", "TrackWriter", "TrackInfo"]


@dataclass
class TrackInfo:
    """What a writer reports after committing a file.

    ``raw_bytes`` is the float32 size of all stored arrays (4 bytes per value);
    ``max_abs_error_mm`` the largest quantization error over coordinates (mm) and
    uncertainties (converted to mm); ``sha256`` the file's hex digest, hashed while
    writing (None when the writer cannot tell).
    """

    path: str
    n_frames: int
    first_frame: int
    last_frame: int
    bytes: int
    raw_bytes: int
    max_abs_error_mm: float
    encode_seconds: float
    codec: dict = field(default_factory=dict)
    sha256: Optional[str] = None
    ratio: float = field(init=False)  # raw_bytes / bytes

    def __post_init__(self):
        self.ratio = self.raw_bytes / self.bytes if self.bytes else 0.0


class TrackWriter:
    """Write one person track row by row (memory bounded by one chunk).

    Parameters
    ----------
    path : path-like
        Output file (conventionally ``.xz``). It appears only when :meth:`close`
        succeeds; until then data goes to a temporary file next to it.
    metadata : dict, optional
        Stored in the file header (JSON/msgpack-safe values and numeric arrays).
    codec : str, dict or codec object
        A registered codec id (``"bodybatch"``, the default, or ``"bodycompress"``),
        its config dict, or a codec object.
    structures : dict, optional
        Cache shared by the writers of one video (the bodybatch codec keeps the
        video's vertex structure there; other codecs ignore it); each output stays
        self-contained.
    recoverable : bool
        Write to a visible ``<path>.partial`` with a chunk journal, so that a killed
        process leaves a file ``bodybatch recover`` publishes up to its last complete
        chunk (bodybatch codec only; the finished file is the same bytes).
    **codec_options
        e.g. ``quantization_mm=0.5``, ``chunk_size=64``.

    Examples
    --------
    >>> with TrackWriter("p0.xz", {"video": "a.mp4"}) as w:   # doctest: +SKIP
    ...     for t, frame in enumerate(frames):
    ...         w.append(frame_index=t, vertices=frame["vertices"][0])
    """

    def __init__(self, path, metadata=None, *, codec="bodybatch", structures=None, recoverable=False, **codec_options):
        self.codec = codec if isinstance(codec, Codec) and not codec_options else get_codec(codec, **codec_options)
        self.path = Path(path)
        if metadata is not None and not isinstance(metadata, dict):
            raise TrackError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.metadata = metadata
        self._schema = None
        self._frames = []
        self._n_rows = 0
        self._rows = None  # a RowBlock of appended rows not yet handed to the backend
        self._row_signature = None  # fields and shapes of a row known to be valid
        self._block_rows = self.codec.block_rows
        self._seconds = 0.0
        self._closed = False
        self.info = None
        self._file = track_file_writer(self.path, self.codec, metadata, structures, recoverable)

    def append(self, frame=None, **fields):
        """Append one row: a frame dict and/or keyword fields with per-row shapes
        (``vertices (V,3)``, ``frame_index`` int, ``camera`` dict or object, ...).

        Rows go to the encoder a block at a time (``chunk_size`` rows, about 0.1 ms a
        row less than one by one). A row whose fields or shapes differ from the rows
        before it is checked at once, so such errors name the row; values (NaN, range,
        frame order) are checked when the block is written, at the latest by
        :meth:`close`.
        """
        if self._closed:
            raise TrackError(f"{self.path}: writer is closed")
        row = {}
        for k, v in dict(frame or {}, **fields).items():
            if v is not None:
                row[k] = v if k == "camera" or isinstance(v, GridValues) else np.asarray(v)
        signature = row_signature(row)
        if signature != self._row_signature:
            self._flush_rows()
            self._extend(RowBlock(row, 1).add(row).block(), owned=True)  # a new kind of row: checked now
            self._row_signature = signature
            return
        if self._rows is None:  # blocks end where chunks end: no rows carried over
            self._rows = RowBlock(row, self._block_rows - self._n_rows % self._block_rows)
        if self._rows.add(row).full:
            self._flush_rows()

    def _flush_rows(self):
        rows, self._rows = self._rows, None
        if rows is not None:
            self._extend(rows.block(), owned=True)

    def extend(self, track):
        """Append many rows given as a dict of stacked ``(T, ...)`` arrays."""
        if self._closed:
            raise TrackError(f"{self.path}: writer is closed")
        self._flush_rows()
        self._extend(track)

    def _extend(self, track, owned=False):
        start = time.perf_counter()
        try:
            block, n_rows = normalize_block(track, f"{self.path}: ")
            if n_rows == 0:
                return
            if self._schema is None:
                self._schema = Schema(block)
            else:
                self._schema.check(block, self._n_rows, f"{self.path}: ")
            fi = block.pop("frame_index", None)
            if fi is None:
                nxt = self._frames[-1][-1] + 1 if self._frames else 0
                fi = np.arange(nxt, nxt + n_rows, dtype=np.int64)
            prev = self._frames[-1][-1] if self._frames else -1
            if fi[0] <= prev or np.any(np.diff(fi) <= 0) or fi[0] < 0:
                raise TrackError(
                    f"{self.path}: frame_index must be non-negative and strictly increasing "
                    f"(row {self._n_rows} has {int(fi[0])} after {int(prev)})"
                )
            self._file.write(block, n_rows, fi, owned)
        except BaseException:
            self.abort()
            raise
        self._frames.append(fi)
        self._n_rows += n_rows
        self._seconds += time.perf_counter() - start

    def __len__(self):
        return self._n_rows + (self._rows.n if self._rows is not None else 0)

    def close(self):
        """Finish the file and rename it into place; returns :class:`TrackInfo`."""
        if self._closed:
            return self.info
        self._flush_rows()  # aborts and raises if the last rows are bad
        start = time.perf_counter()
        frame_index = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)
        try:
            size = self._file.commit(frame_index, self._schema)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._seconds += time.perf_counter() - start
        raw = self._schema.raw_bytes_per_row() * self._n_rows if self._schema else 0
        self.info = TrackInfo(
            path=str(self.path),
            n_frames=self._n_rows,
            first_frame=int(frame_index[0]) if len(frame_index) else -1,
            last_frame=int(frame_index[-1]) if len(frame_index) else -1,
            bytes=int(size),
            raw_bytes=int(raw),
            max_abs_error_mm=float(self._file.max_error),
            encode_seconds=round(self._seconds, 6),
            codec=self.codec.get_config(),
            sha256=self._file.sha256,
        )
        return self.info

    def abort(self):
        """Discard everything written so far (no file appears at ``path``)."""
        self._rows = None
        if not self._closed:
            self._closed = True
            self._file.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_track(path, track, metadata=None, **codec_options):
    """Encode one person track into one file.

    Parameters
    ----------
    path : path-like
    track : dict
        ``vertices (T,V,3)`` mm, ``joints (T,J,3)`` mm, ``vertex_uncertainties (T,V)`` m,
        ``joint_uncertainties (T,J)`` m, ``boxes (T,5)``, ``camera``, ``frame_index (T,)``.
    metadata : dict, optional
    **codec_options
        ``codec="bodybatch"|"bodycompress"``, ``quantization_mm``, ``chunk_size``, ...

    Returns
    -------
    TrackInfo
    """
    with TrackWriter(path, metadata, **codec_options) as writer:
        writer.extend(track)
    return writer.info
