"""The bodybatch track file (``.xz`` name, own layout; docs/format.md): magic bytes,
header, chunks, index, and its reader and writer.

Layout, all integers little-endian::

    preamble  magic "\\x89BBTRK\\r\\n" (8) | major u16 | minor u16 | header_len u32 | header_crc32 u32
    header    msgpack map (format, created_by, codec config, point layout, metadata)
    chunk*    "CHK1" | payload_len u32 | payload (msgpack map) | payload_crc32 u32
    index     msgpack map (n_frames, frame_index, fields, chunk offsets and row counts)
    trailer   index_offset u64 | index_len u32 | index_crc32 u32 | "BBTRKEND"

Chunks are independently decodable (random access by chunk). The writer writes
under a temporary name next to the target and renames at commit, so a final path
never holds a partial file; every read is bounded by the file size and by fixed
limits, and checked by CRC32.
"""

import functools
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from bodybatch import _msgpack
from bodybatch._files import publish
from bodybatch._rows import concat_blocks, copy_block, slice_block
from bodybatch._version import __version__
from bodybatch.errors import FormatError, OutputError, TrackError
from bodybatch.formats import TRACK_FORMAT_VERSION
from bodybatch.formats._journal import PARTIAL_SUFFIX, journal_head, journal_path, journal_record
from bodybatch.formats._reader import TrackReader

__all__ = ["MAGICS", "VERSION", "TrackFileWriter", "BodybatchTrackReader", "open_track"]

MAGIC = b"\x89BBTRK\r\n"
MAGICS = (MAGIC,)
#: (major, minor) written by default (the v2 predictors write 2.0 and 3.0); readers take every
#: minor of the majors in READ_MAJORS.
VERSION = TRACK_FORMAT_VERSION
READ_MAJORS = (1, 2, 3)
_END_MAGIC = b"BBTRKEND"
_CHUNK_TAG = b"CHK1"
_PREAMBLE = struct.Struct("<8sHHII")
_CHUNK_HEAD = struct.Struct("<4sI")
_TRAILER = struct.Struct("<QII8s")
MAX_HEADER_BYTES = 64 << 20
MAX_INDEX_BYTES = 256 << 20
MAX_FRAMES = 10**8
#: Decoded point-group layouts by their packed header entry, most recent last: a
#: reader's structures are rebuilt only for a structure not seen lately (tracks of
#: one video share one).
_LAYOUTS = {}
_MAX_LAYOUTS = 8


class TrackFileWriter:
    """Writes one bodybatch track file for :class:`bodybatch.TrackWriter`: rows arrive
    in blocks, every full chunk is encoded and appended to a temporary file.

    Parameters
    ----------
    path : path-like
        Final path; its folder must exist.
    codec : BodybatchCodec
    metadata : dict or None
    structures : dict, optional
        Structure cache shared by the writers of one video (see
        :meth:`BodybatchCodec.make_layout`).
    recoverable : bool
        Write to ``<path>.partial`` (visible) and keep a journal
        ``<path>.partial.journal`` of every complete chunk, flushed to the OS chunk by
        chunk, so that a killed process leaves a file that
        :func:`bodybatch.formats._recover.recover_track` publishes up to its last
        complete chunk. The published file is byte-identical either way.
    """

    def __init__(self, path, codec, metadata, structures=None, recoverable=False):
        self.path = Path(path)
        self.codec, self.metadata, self.structures = codec, metadata, structures
        if recoverable:
            self.tmp_path = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        else:
            self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._journal = None
        try:
            self._f = open(self.tmp_path, "wb")
            if recoverable:
                self._journal = open(journal_path(self.tmp_path), "wb")
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot create output ({exc.strerror})") from exc
        self._sha256 = hashlib.sha256()
        self.bytes_written = 0
        self.layout = None
        self.pending, self.pending_rows = [], 0
        self.chunks = []
        self.frames = np.zeros(0, np.int64) if recoverable else None  # frame indices of pending rows
        self.max_error = 0.0

    @property
    def sha256(self):
        """Hex SHA-256 of the bytes written so far (of the whole file after commit)."""
        return self._sha256.hexdigest()

    def _write(self, data):
        try:
            self._f.write(data)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed ({exc.strerror})") from exc
        self._sha256.update(data)
        self.bytes_written += len(data)

    def _write_header(self):
        body = _msgpack.packb({
            "format": "bodybatch-track",
            "created_by": f"bodybatch {__version__}",
            "codec": self.codec.get_config(),
            "layout": self.codec.layout_to_header(self.layout),
            "metadata": self.metadata,
        })  # fmt: skip
        if len(body) > MAX_HEADER_BYTES:
            raise OutputError(f"{self.path}: header of {len(body)} bytes is too large")
        major, minor = self.codec.format_version(self.layout)  # 1, or 2 / 3 for the v2 predictors
        version = VERSION if major == VERSION[0] else (major, minor)
        self._write(_PREAMBLE.pack(MAGIC, *version, len(body), zlib.crc32(body)) + body)

    def write(self, block, n_rows, frame_index, owned=False):
        """Queue rows; encode every full chunk. Rows of a block the writer does not
        own (``extend``'s arrays) that stay queued are copied: the caller may reuse them."""
        self.pending.append(block)
        self.pending_rows += n_rows
        if self._journal is not None:
            self.frames = np.concatenate([self.frames, np.asarray(frame_index, np.int64)])
        while self.pending_rows >= self.codec.chunk_size:
            self._flush(self.codec.chunk_size)
        if self.pending and not owned:
            self.pending[-1] = copy_block(self.pending[-1])

    def _flush(self, n_rows):
        merged = concat_blocks(self.pending)
        chunk = slice_block(merged, 0, n_rows)
        self.pending = [slice_block(merged, n_rows, None)] if self.pending_rows > n_rows else []
        self.pending_rows -= n_rows
        if self.layout is None:
            self.layout = self.codec.make_layout(chunk, self.structures)
            self._write_header()
        encoded, err = self.codec.encode_chunk(chunk, self.layout)
        self.max_error = max(self.max_error, err)
        payload = _msgpack.packb(encoded)
        offset = self.bytes_written
        self._write(_CHUNK_HEAD.pack(_CHUNK_TAG, len(payload)))
        self._write(payload)
        crc = zlib.crc32(payload)
        self._write(struct.pack("<I", crc))
        self.chunks.append([offset, int(n_rows)])
        if self._journal is not None:
            self._journal_chunk(chunk, offset, n_rows, crc, self.frames[:n_rows])
            self.frames = self.frames[n_rows:]

    def _journal_chunk(self, chunk, offset, n_rows, crc, frames):
        """The chunk reaches the OS first, then its journal record (its frame indices)."""
        try:
            self._f.flush()
            if not self.chunks[:-1]:
                self._journal.write(journal_head(sorted(chunk)))
            self._journal.write(journal_record(offset, n_rows, crc, frames))
            self._journal.flush()
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed ({exc.strerror})") from exc

    def commit(self, frame_index, schema):
        """Encode the last rows, write index and trailer, fsync, rename into place.
        Returns the file size."""
        if self.pending_rows:
            self._flush(self.pending_rows)
        if self.layout is None:
            self.layout = {}
            self._write_header()
        body = _msgpack.packb({
            "n_frames": len(frame_index),
            "frame_index": self.codec.encode_frame_index(frame_index),
            "fields": schema.fields if schema else [],
            "chunks": self.chunks,
        })  # fmt: skip
        offset = self.bytes_written
        self._write(body)
        self._write(_TRAILER.pack(offset, len(body), zlib.crc32(body), _END_MAGIC))
        try:
            publish(self._f, self.tmp_path, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot finish output ({exc.strerror})") from exc
        self._drop_journal()
        return self.bytes_written

    def _drop_journal(self):
        if self._journal is not None:
            self._journal.close()
            try:
                os.unlink(journal_path(self.tmp_path))
            except FileNotFoundError:
                pass

    def abort(self):
        """Close and delete the temporary file and journal (idempotent)."""
        try:
            f = getattr(self, "_f", None)
            if f is not None and not f.closed:
                f.close()
            self._drop_journal()
        finally:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass


class BodybatchTrackReader(TrackReader):
    """Reader of bodybatch track files: reading row ``k`` decodes one chunk."""

    format_name = "bodybatch"

    def __init__(self, path, decode_camera=False, fields=None):
        super().__init__(path, decode_camera, fields)
        self._f = open(self.path, "rb")
        try:
            self._open()
        except BaseException:
            self._f.close()
            raise

    def _fail(self, what):
        raise FormatError(f"{self.path}: {what}")

    def _read_exact(self, offset, size, what):
        self._f.seek(offset)
        data = self._f.read(size)
        if len(data) != size:
            self._fail(f"truncated {what}")
        return data

    def _read_map(self, offset, size, crc, what):
        body = self._read_exact(offset, size, what)
        if zlib.crc32(body) != crc:
            self._fail(f"{what} checksum mismatch (corrupt file)")
        value = _msgpack.unpackb(body, where=f"{self.path}: {what}")
        if not isinstance(value, dict):
            self._fail(f"{what} is not a map")
        return value

    def _open(self):
        size = self.file_size = os.fstat(self._f.fileno()).st_size
        if size == 0:
            self._fail("empty file")
        if size < _PREAMBLE.size + _TRAILER.size:
            self._fail(f"too short for a bodybatch track ({size} bytes)")
        magic, major, minor, header_len, header_crc = _PREAMBLE.unpack(self._read_exact(0, _PREAMBLE.size, "preamble"))
        if magic != MAGIC:
            self._fail("not a bodybatch track (wrong magic)")
        if major not in READ_MAJORS:
            self._fail(f"format version {major}.{minor} is not supported; this bodybatch reads "
                       f"{', '.join(f'{v}.x' for v in READ_MAJORS)} (upgrade bodybatch)")  # fmt: skip
        self.version = (major, minor)
        if header_len > min(MAX_HEADER_BYTES, size - _PREAMBLE.size - _TRAILER.size):
            self._fail(f"header length {header_len} exceeds the file")
        self.header = self._read_map(_PREAMBLE.size, header_len, header_crc, "header")
        data_start = _PREAMBLE.size + header_len
        index_offset, index_len, index_crc, end = _TRAILER.unpack(
            self._read_exact(size - _TRAILER.size, _TRAILER.size, "trailer")
        )
        if end != _END_MAGIC:
            self._fail("missing end marker (truncated or unfinished file)")
        if index_len > MAX_INDEX_BYTES or index_offset + index_len + _TRAILER.size != size:
            self._fail("index position does not match the file size")
        if index_offset < data_start:
            self._fail("index overlaps the header")
        index = self._read_map(index_offset, index_len, index_crc, "index")
        self._read_index(index, data_start, index_offset)
        self._read_codec()

    def _read_index(self, index, data_start, index_offset):
        try:
            n_frames = int(index["n_frames"])
            chunks = [(int(o), int(n)) for o, n in index["chunks"]]
        except (KeyError, TypeError, ValueError):
            self._fail("malformed index")
        if not 0 <= n_frames <= MAX_FRAMES:
            self._fail(f"implausible frame count {n_frames}")
        bounds = [o for o, _ in chunks] + [index_offset]
        if chunks and chunks[0][0] != data_start:
            self._fail("first chunk does not follow the header")
        for (o, n), nxt in zip(chunks, bounds[1:]):
            if not (n > 0 and nxt - o > _CHUNK_HEAD.size + 4):
                self._fail("chunk table is inconsistent")
        if sum(n for _, n in chunks) != n_frames:
            self._fail("chunk row counts do not add up to the frame count")
        self._offsets, self._ends = [o for o, _ in chunks], bounds[1:]
        self._starts = np.concatenate([[0], np.cumsum([n for _, n in chunks])]).astype(np.int64)
        self._index = index

    def _read_codec(self):
        from bodybatch.codec.bodybatch_codec import BodybatchCodec

        where = f"{self.path}: "
        config = self.header.get("codec")
        if not isinstance(config, dict) or config.get("id") != "bodybatch":
            self._fail(f"unknown codec {config!r}")
        try:
            self._codec = BodybatchCodec.from_config(config)
        except TrackError as exc:
            raise FormatError(f"{where}{exc}") from None
        if self._codec.format_major != self.version[0]:  # the major decides the predictor
            self._fail(f"format {self.version[0]}.{self.version[1]} does not match its codec config {config!r}")
        from bodybatch.codec.bodybatch_codec import POINT_GROUPS

        layout = self.header.get("layout") or {}
        if not isinstance(layout, dict) or not set(layout) <= set(POINT_GROUPS):
            self._fail(f"malformed point layout (groups {sorted(map(str, layout)) if isinstance(layout, dict) else '?'})")
        if self.header.get("created_by") == "bodybatch 0.1.0":
            from bodybatch.codec.streams import points_lost_by_0_1

            for group, entry in layout.items():
                n = entry.get("n_points") if isinstance(entry, dict) else None
                lost = points_lost_by_0_1(n) if isinstance(n, int) else 0
                if lost:
                    self._fail(f"written by bodybatch 0.1.0, which did not store the last {lost} "
                               f"of the {n} {group}; reconvert it with bodybatch >= 0.2")  # fmt: skip
        self._layout_header, self._layout = layout, {}  # point groups decoded on first use (see _group_layout)
        self.metadata = self.header.get("metadata")
        self.frame_index  # noqa: B018  (decoded and checked now)

    def _frame_index(self):
        return self._codec.decode_frame_index(self._index.get("frame_index", b""), len(self), f"{self.path}: ")

    @property
    def codec(self):
        return self._codec.get_config()

    def _read_chunk(self, i):
        """The unpacked payload map of chunk ``i`` (CRC-checked)."""
        offset, end = self._offsets[i], self._ends[i]
        tag, length = _CHUNK_HEAD.unpack(self._read_exact(offset, _CHUNK_HEAD.size, f"chunk {i}"))
        if tag != _CHUNK_TAG or length != end - offset - _CHUNK_HEAD.size - 4:
            self._fail(f"chunk {i} header is corrupt")
        data = self._read_exact(offset + _CHUNK_HEAD.size, length + 4, f"chunk {i}")
        payload, crc = memoryview(data)[:-4], struct.unpack("<I", data[-4:])[0]  # (a view: no copy of the chunk)
        if zlib.crc32(payload) != crc:
            self._fail(f"chunk {i} checksum mismatch (corrupt file)")
        return _msgpack.unpackb(payload, where=f"{self.path}: chunk {i}")

    def _group_layout(self, fields):
        """The layout of the point groups ``fields`` needs (None: all), each decoded
        once per reader, and shared through :data:`_LAYOUTS` by the readers of files
        with the same structure (a video's tracks share theirs)."""
        from bodybatch.codec.bodybatch_codec import POINT_GROUPS

        out = {}
        for group, entry in self._layout_header.items():
            if fields is not None and not set(POINT_GROUPS[group]) & fields:
                continue
            if group not in self._layout:
                try:
                    key = _msgpack.packb(entry)
                except Exception:  # noqa: BLE001  (layout_from_header names what is wrong)
                    key = None
                layout = _LAYOUTS.pop(key, None) if key is not None else None
                if layout is not None:
                    _LAYOUTS[key] = layout  # most recent last
                else:
                    layout = self._codec.layout_from_header({group: entry}, f"{self.path}: ")[group]
                    if key is not None:
                        _LAYOUTS[key] = layout
                        while len(_LAYOUTS) > _MAX_LAYOUTS:
                            _LAYOUTS.pop(next(iter(_LAYOUTS)))
                self._layout[group] = layout
            out[group] = self._layout[group]
        return out

    def _point_shapes(self, fields):
        from bodybatch.codec.bodybatch_codec import POINT_GROUPS

        shapes = {}
        for group, g in self._group_layout(fields).items():
            coord, unc = POINT_GROUPS[group]
            n = int(g["n_points"])
            for field, shape in [(coord, (n, 3))] + ([(unc, (n,))] if g["n_dims"] == 4 else []):
                if fields is None or field in fields:
                    shapes[field] = shape
        return shapes

    def _decode_chunk(self, i, fields=None, rows=None, into=None):
        return self._chunk_job(i, fields, rows, into, self.threads)()  # one chunk: its decode takes the threads

    def _chunk_job(self, i, fields=None, rows=None, into=None, threads=1):
        n_rows = int(self._starts[i + 1] - self._starts[i])
        return functools.partial(self._codec.decode_chunk, self._read_chunk(i), self._group_layout(fields), n_rows,
                                 f"{self.path}: chunk {i}: ", fields=fields, rows=rows, threads=threads,
                                 into=into)  # fmt: skip

    def _stored_fields(self):
        fields = self._index.get("fields")
        if not isinstance(fields, (list, tuple)):
            self._fail("malformed index (fields)")
        return {str(f) for f in fields} - {"frame_index"}

    def _summary(self):
        points = {g: {k: v[k] for k in ("n_points", "n_dims", "n_parents")} for g, v in self._layout_header.items()}
        return {"version": f"{self.version[0]}.{self.version[1]}", "created_by": self.header.get("created_by"),
                "points": points}  # fmt: skip

    def _close(self):
        self._f.close()

open_track = BodybatchTrackReader
