"""The bodybatch track container (``.xz`` name, own layout; see docs/format.md).

Layout, all integers little-endian::

    preamble  magic "\\x89BBTRK\\r\\n" (8) | major u16 | minor u16 | header_len u32 | header_crc32 u32
    header    msgpack map (codec config, point layout, metadata)
    chunk*    "CHK1" | payload_len u32 | payload (msgpack map) | payload_crc32 u32
    index     msgpack map (n_frames, chunk offsets and row counts, frame_index)
    trailer   index_offset u64 | index_len u32 | index_crc32 u32 | "BBTRKEND"

Files are written under a temporary name next to the target and renamed into place
by :meth:`ContainerWriter.commit`, so a final path never holds a partial file.
Every read is bounded by the file size and by fixed limits, and checked by CRC32.
"""

import hashlib
import os
import struct
import zlib
from pathlib import Path

from bodybatch.errors import FormatError, OutputError

__all__ = [
    "MAGIC",
    "END_MAGIC",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "ContainerWriter",
    "ContainerReader",
    "is_container",
    "publish",
]

MAGIC = b"\x89BBTRK\r\n"
END_MAGIC = b"BBTRKEND"
CHUNK_TAG = b"CHK1"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
_PREAMBLE = struct.Struct("<8sHHII")
_CHUNK_HEAD = struct.Struct("<4sI")
_TRAILER = struct.Struct("<QII8s")
MAX_HEADER_BYTES = 64 << 20
MAX_INDEX_BYTES = 256 << 20
MAX_CHUNK_BYTES = 1 << 31
MAX_FRAMES = 10**8


def publish(f, tmp_path, path):
    """Flush, fsync and close ``f`` (open on ``tmp_path``), then rename it to ``path``
    (same folder, so the rename is atomic): the file appears complete or not at all."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp_path, path)


def is_container(path):
    """True when the file starts with the bodybatch magic."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _pack(obj):
    from bodybatch import _msgpack

    return _msgpack.packb(obj)


def _unpack(data, where):
    from bodybatch import _msgpack

    return _msgpack.unpackb(data, where=where)


class ContainerWriter:
    """Write one container file atomically (temp file, fsync, rename).

    Parameters
    ----------
    path : path-like
        Final path; the directory must exist.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self._f = open(self.tmp_path, "wb")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create output ({exc.strerror})") from exc
        self._chunks = []
        self._header_written = False
        self.bytes_written = 0
        self._sha256 = hashlib.sha256()

    def _write(self, data):
        try:
            self._f.write(data)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: write failed ({exc.strerror})") from exc
        self._sha256.update(data)
        self.bytes_written += len(data)

    @property
    def sha256(self):
        """Hex SHA-256 of the bytes written so far (of the whole file after commit)."""
        return self._sha256.hexdigest()

    def write_header(self, header):
        """Write the preamble and header map (once, before any chunk)."""
        if self._header_written:
            raise RuntimeError("header already written")
        body = _pack(header)
        if len(body) > MAX_HEADER_BYTES:
            raise OutputError(f"{self.path}: header of {len(body)} bytes is too large")
        pre = _PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(body), zlib.crc32(body))
        self._write(pre + body)
        self._header_written = True

    def write_chunk(self, payload_map, n_rows):
        """Append one chunk (a msgpack-ready map) holding ``n_rows`` rows."""
        payload = _pack(payload_map)
        offset = self.bytes_written
        self._write(_CHUNK_HEAD.pack(CHUNK_TAG, len(payload)))
        self._write(payload)
        self._write(struct.pack("<I", zlib.crc32(payload)))
        self._chunks.append([offset, int(n_rows)])

    def commit(self, index):
        """Write index and trailer, fsync and rename into place. Returns the file size."""
        index = dict(index, chunks=self._chunks)
        body = _pack(index)
        offset = self.bytes_written
        self._write(body)
        self._write(_TRAILER.pack(offset, len(body), zlib.crc32(body), END_MAGIC))
        try:
            publish(self._f, self.tmp_path, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot finish output ({exc.strerror})") from exc
        return self.bytes_written

    def abort(self):
        """Close and delete the temporary file (idempotent)."""
        try:
            if not self._f.closed:
                self._f.close()
        finally:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass


class ContainerReader:
    """Random access to the chunks of a container file.

    Attributes
    ----------
    header : dict
    index : dict  (``n_frames``, ``chunks`` as [[offset, n_rows], ...], ...)
    version : tuple (major, minor)
    """

    def __init__(self, path):
        self.path = Path(path)
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

    def _open(self):
        size = os.fstat(self._f.fileno()).st_size
        self.file_size = size
        if size == 0:
            self._fail("empty file")
        if size < _PREAMBLE.size + _TRAILER.size:
            self._fail(f"too short for a bodybatch track ({size} bytes)")
        magic, major, minor, header_len, header_crc = _PREAMBLE.unpack(
            self._read_exact(0, _PREAMBLE.size, "preamble")
        )
        if magic != MAGIC:
            self._fail("not a bodybatch track (wrong magic)")
        if major != FORMAT_MAJOR:
            self._fail(
                f"format version {major}.{minor} is not supported; this bodybatch reads "
                f"{FORMAT_MAJOR}.x (upgrade bodybatch)"
            )
        self.version = (major, minor)
        if header_len > min(MAX_HEADER_BYTES, size - _PREAMBLE.size - _TRAILER.size):
            self._fail(f"header length {header_len} exceeds the file")
        body = self._read_exact(_PREAMBLE.size, header_len, "header")
        if zlib.crc32(body) != header_crc:
            self._fail("header checksum mismatch (corrupt file)")
        self.header = _unpack(body, f"{self.path}: header")
        if not isinstance(self.header, dict):
            self._fail("header is not a map")
        data_start = _PREAMBLE.size + header_len

        index_offset, index_len, index_crc, end = _TRAILER.unpack(
            self._read_exact(size - _TRAILER.size, _TRAILER.size, "trailer")
        )
        if end != END_MAGIC:
            self._fail("missing end marker (truncated or unfinished file)")
        if index_len > MAX_INDEX_BYTES or index_offset + index_len + _TRAILER.size != size:
            self._fail("index position does not match the file size")
        if index_offset < data_start:
            self._fail("index overlaps the header")
        body = self._read_exact(index_offset, index_len, "index")
        if zlib.crc32(body) != index_crc:
            self._fail("index checksum mismatch (corrupt file)")
        index = _unpack(body, f"{self.path}: index")
        self.index = self._check_index(index, data_start, index_offset)

    def _check_index(self, index, data_start, index_offset):
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
        index["n_frames"], index["chunks"] = n_frames, chunks
        self._ends = bounds[1:]
        return index

    def read_chunk(self, i):
        """Return the unpacked payload map of chunk ``i`` (CRC-checked)."""
        offset, _ = self.index["chunks"][i]
        end = self._ends[i]
        tag, length = _CHUNK_HEAD.unpack(self._read_exact(offset, _CHUNK_HEAD.size, f"chunk {i}"))
        if tag != CHUNK_TAG or length != end - offset - _CHUNK_HEAD.size - 4:
            self._fail(f"chunk {i} header is corrupt")
        data = self._read_exact(offset + _CHUNK_HEAD.size, length + 4, f"chunk {i}")
        payload, crc = data[:-4], struct.unpack("<I", data[-4:])[0]
        if zlib.crc32(payload) != crc:
            self._fail(f"chunk {i} checksum mismatch (corrupt file)")
        return _unpack(payload, f"{self.path}: chunk {i}")

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
