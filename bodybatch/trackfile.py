"""Track files: :func:`write_track`, :class:`TrackWriter`, :func:`open_track`.

A track file holds one person over time. With the default ``bodybatch`` codec it is
a container (docs/format.md) of independently decodable chunks, so reading row ``k``
decodes at most one chunk. With ``codec="bodycompress"`` it is a file that
``bodycompress.BodyDecompressor`` 0.3.0 reads (one frame dict per row).
"""

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from bodybatch._trackdata import Schema, concat_blocks, copy_block, normalize_block, slice_block
from bodybatch._trackreader import TrackReader
from bodybatch._version import __version__
from bodybatch.codec import get_codec
from bodybatch.codec.quantize import GridValues
from bodybatch.errors import FormatError, TrackError

__all__ = ["write_track", "open_track", "TrackWriter", "TrackReader", "TrackInfo"]


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

    @property
    def ratio(self):
        return self.raw_bytes / self.bytes if self.bytes else 0.0

    def to_dict(self):
        d = asdict(self)
        d["ratio"] = round(self.ratio, 4)
        return d


class _ContainerBackend:
    """Chunked bodybatch-codec writer behind :class:`TrackWriter`."""

    def __init__(self, path, codec, metadata, structures=None):
        from bodybatch.container import ContainerWriter

        self.codec = codec
        self.metadata = metadata
        self.structures = structures
        self.writer = ContainerWriter(path)
        self.layout = None
        self.pending = []
        self.pending_rows = 0
        self.max_error = 0.0

    def _header(self):
        return {
            "format": "bodybatch-track",
            "created_by": f"bodybatch {__version__}",
            "codec": self.codec.get_config(),
            "layout": self.codec.layout_to_header(self.layout),
            "metadata": self.metadata,
        }

    def write(self, block, n_rows, frame_index, owned=False):
        """Queue rows; encode every full chunk. Rows of a block the writer does not
        own (``extend``'s arrays) that stay queued are copied: the caller may reuse them."""
        self.pending.append(block)
        self.pending_rows += n_rows
        while self.pending_rows >= self.codec.chunk_size:
            self._flush(self.codec.chunk_size)
        if self.pending and not owned:
            self.pending[-1] = copy_block(self.pending[-1])

    def _flush(self, n_rows):
        merged = concat_blocks(self.pending)
        chunk = slice_block(merged, 0, n_rows)
        rest = slice_block(merged, n_rows, None)
        self.pending = [rest] if self.pending_rows > n_rows else []
        self.pending_rows -= n_rows
        if self.layout is None:
            self.layout = self.codec.make_layout(chunk, self.structures)
            self.writer.write_header(self._header())
        encoded, err = self.codec.encode_chunk(chunk, self.layout)
        self.max_error = max(self.max_error, err)
        self.writer.write_chunk(encoded, n_rows)

    def commit(self, frame_index, schema):
        from bodybatch.codec.entropy import encode_numbers

        if self.pending_rows:
            self._flush(self.pending_rows)
        if self.layout is None:
            self.layout = {}
            self.writer.write_header(self._header())
        index = {
            "n_frames": len(frame_index),
            "frame_index": encode_numbers(frame_index, delta=True),
            "fields": schema.fields if schema else [],
        }
        return self.writer.commit(index)

    @property
    def sha256(self):
        return self.writer.sha256

    def abort(self):
        self.writer.abort()


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
        ``"bodybatch"`` (default) or ``"bodycompress"``.
    structures : dict, optional
        Structure cache shared by the writers of one video (see
        :meth:`BodybatchCodec.make_layout`); the output stays self-contained.
    **codec_options
        e.g. ``quantization_mm=0.5``, ``chunk_size=64``.

    Examples
    --------
    >>> with TrackWriter("p0.xz", {"video": "a.mp4"}) as w:   # doctest: +SKIP
    ...     for t, frame in enumerate(frames):
    ...         w.append(frame_index=t, vertices=frame["vertices"][0])
    """

    def __init__(self, path, metadata=None, *, codec="bodybatch", structures=None, **codec_options):
        self.codec = get_codec(codec, **codec_options)
        self.path = Path(path)
        if metadata is not None and not isinstance(metadata, dict):
            raise TrackError(f"metadata must be a dict, got {type(metadata).__name__}")
        self.metadata = metadata
        self._schema = None
        self._frames = []
        self._n_rows = 0
        self._rows = None  # a _RowBlock of appended rows not yet handed to the backend
        self._row_signature = None  # fields and shapes of a row known to be valid
        self._block_rows = getattr(self.codec, "chunk_size", 64)
        self._seconds = 0.0
        self._closed = False
        self.info = None
        if self.codec.codec_id == "bodybatch":
            self._backend = _ContainerBackend(self.path, self.codec, metadata, structures)
        else:
            from bodybatch._compat_file import CompatTrackWriter

            self._backend = CompatTrackWriter(self.path, self.codec, metadata)

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
        signature = _row_signature(row)
        if signature != self._row_signature:
            self._flush_rows()
            self._extend(_RowBlock(row, 1).add(row).block(), owned=True)  # a new kind of row: checked now
            self._row_signature = signature
            return
        if self._rows is None:  # blocks end where chunks end: no rows carried over
            self._rows = _RowBlock(row, self._block_rows - self._n_rows % self._block_rows)
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
            self._backend.write(block, n_rows, fi, owned)
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
            size = self._backend.commit(frame_index, self._schema)
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
            max_abs_error_mm=float(getattr(self._backend, "max_error", 0.0)),
            encode_seconds=round(self._seconds, 6),
            codec=self.codec.get_config(),
            sha256=getattr(self._backend, "sha256", None),
        )
        return self.info

    def abort(self):
        """Discard everything written so far (no file appears at ``path``)."""
        self._rows = None
        if not self._closed:
            self._closed = True
            self._backend.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _row_signature(row):
    """What must match for rows to be stacked: field names, shapes, dtypes, grids."""
    sig = []
    for k, v in sorted(row.items()):
        if k == "camera":
            sig.append((k,))
        elif isinstance(v, GridValues):
            sig.append((k, v.indices.shape, v.indices.dtype.str, v.factor))
        else:
            sig.append((k, v.shape, v.dtype.str))
    return tuple(sig)


class _RowBlock:
    """Rows of one signature copied into preallocated ``(size, ...)`` arrays as they
    arrive (cameras copied too): one copy per row, and later changes to the caller's
    arrays do not leak in."""

    def __init__(self, row, size):
        self.n, self.size, self.grids, self.arrays = 0, size, {}, {}
        self.cameras = [] if "camera" in row else None
        for k, v in row.items():
            if isinstance(v, GridValues):
                self.grids[k], v = v.factor, v.indices
            if k != "camera":
                self.arrays[k] = np.empty((size,) + v.shape, v.dtype)

    full = property(lambda self: self.n >= self.size)

    def add(self, row):
        for k, buffer in self.arrays.items():
            v = row[k]
            buffer[self.n] = v.indices if k in self.grids else v
        if self.cameras is not None:
            camera = row["camera"]
            self.cameras.append({k: np.array(v) for k, v in camera.items()} if isinstance(camera, dict)
                                else copy.deepcopy(camera))  # fmt: skip
        self.n += 1
        return self

    def block(self):
        block = {k: b[: self.n] if k not in self.grids else GridValues(b[: self.n], self.grids[k])
                 for k, b in self.arrays.items()}  # fmt: skip
        if self.cameras is not None:
            block["camera"] = self.cameras
        return block


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


def open_track(path, *, decode_camera=False):
    """Open a track file written by :func:`write_track` (either codec).

    Returns
    -------
    TrackReader
    """
    from bodybatch.container import MAGIC

    with open(path, "rb") as f:
        start = f.read(8)
    if start.startswith(MAGIC):
        return TrackReader(path, decode_camera=decode_camera)
    if start.startswith((b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")):
        from bodybatch._compat_file import CompatTrackReader

        return CompatTrackReader(path, decode_camera=decode_camera)
    if not start:
        raise FormatError(f"{path}: empty file")
    raise FormatError(f"{path}: not a track file (unknown magic {start[:8]!r})")
