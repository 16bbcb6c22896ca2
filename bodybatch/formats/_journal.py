"""Crash recovery of bodybatch track files written live (docs/format.md, "Live files
and recovery").

A recoverable writer (``TrackFileWriter(..., recoverable=True)``) writes the track to
``<path>.partial`` and, after every complete chunk has reached the OS, appends a
record to ``<path>.partial.journal``::

    journal   "BBJRNL1\\n" (8) | head_len u32 | head (msgpack map: fields) | head_crc32 u32
              record*
    record    "JCH1" | chunk offset u64 | n_rows u32 | chunk payload_crc32 u32
              | frame_index int64 x n_rows | record_crc32 u32 (of everything before it)

:func:`recover_track` keeps the journaled chunks that are complete and whose CRC
matches (a prefix: it stops at the first that is not), truncates the partial file
after the last of them, appends the index and trailer a normal commit writes and
renames it to ``<path>``. The result is byte-identical to a file whose writer was
closed after those rows. A SIGKILL loses at most the rows not yet in a complete
chunk; a power loss may lose more (nothing is fsynced until commit).
"""

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from bodybatch import _msgpack
from bodybatch.errors import FormatError, OutputError

__all__ = ["PARTIAL_SUFFIX", "journal_path", "journal_head", "journal_record", "recover_track", "find_partials"]

#: Suffix of a track file being written live.
PARTIAL_SUFFIX = ".partial"
_JOURNAL_SUFFIX = ".journal"
_JOURNAL_MAGIC = b"BBJRNL1\n"
_RECORD = struct.Struct("<4sQII")
_RECORD_TAG = b"JCH1"
_MAX_HEAD = 1 << 20
_MAX_ROWS = 8192


def journal_path(partial):
    """The journal of the partial file ``partial``."""
    partial = Path(partial)
    return partial.with_name(partial.name + _JOURNAL_SUFFIX)


def journal_head(fields):
    """Bytes that start a journal: magic and the track's field names."""
    body = _msgpack.packb({"fields": list(fields)})
    return _JOURNAL_MAGIC + struct.pack("<I", len(body)) + body + struct.pack("<I", zlib.crc32(body))


def journal_record(offset, n_rows, crc, frame_index):
    """Bytes of the record of one chunk (``frame_index``: its rows' video frames)."""
    body = _RECORD.pack(_RECORD_TAG, offset, n_rows, crc) + np.asarray(frame_index, "<i8").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def _read_journal(path, where):
    """(fields, [(offset, n_rows, crc, frame_index)]) of the complete records."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{where}: no journal {Path(path).name} (nothing complete to recover)") from None
    pos = len(_JOURNAL_MAGIC) + 4
    if len(data) < pos or not data.startswith(_JOURNAL_MAGIC):
        raise FormatError(f"{where}: journal has no complete head (nothing complete to recover)")
    (head_len,) = struct.unpack_from("<I", data, len(_JOURNAL_MAGIC))
    if head_len > _MAX_HEAD or pos + head_len + 4 > len(data):
        raise FormatError(f"{where}: journal has no complete head (nothing complete to recover)")
    body = data[pos : pos + head_len]
    if zlib.crc32(body) != struct.unpack_from("<I", data, pos + head_len)[0]:
        raise FormatError(f"{where}: journal head checksum mismatch")
    head = _msgpack.unpackb(body, where=f"{where}: journal head")
    pos += head_len + 4
    records = []
    while pos + _RECORD.size <= len(data):
        tag, offset, n_rows, crc = _RECORD.unpack_from(data, pos)
        end = pos + _RECORD.size + 8 * n_rows
        if tag != _RECORD_TAG or not 0 < n_rows <= _MAX_ROWS or end + 4 > len(data):
            break
        if zlib.crc32(data[pos:end]) != struct.unpack_from("<I", data, end)[0]:
            break
        records.append((offset, n_rows, crc, np.frombuffer(data, "<i8", n_rows, pos + _RECORD.size).astype(np.int64)))
        pos = end + 4
    return head.get("fields") if isinstance(head, dict) else None, records


def find_partials(path):
    """The partial files under ``path`` (a folder), or ``[path]`` for a file."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*" + PARTIAL_SUFFIX) if p.is_file())
    return [path]


def recover_track(path):
    """Publish the complete chunks of a track file that was being written live.

    Parameters
    ----------
    path : path-like
        The partial file (``track_0001.xz.partial``) or its final path
        (``track_0001.xz``).

    Returns
    -------
    dict
        ``path`` (the published file), ``n_frames`` (rows recovered), ``chunks``,
        ``bytes`` (file size) and ``dropped_bytes`` (incomplete data cut off).

    Raises
    ------
    FormatError
        No partial file, a damaged header or no complete chunk (naming the file);
        nothing is changed then.
    OutputError
        The recovered file cannot be written.
    """
    from bodybatch.codec.bodybatch_codec import BodybatchCodec
    from bodybatch.formats import bodybatch as fmt

    path = Path(path)
    partial = path if path.name.endswith(PARTIAL_SUFFIX) else path.with_name(path.name + PARTIAL_SUFFIX)
    target = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
    where = str(partial)
    try:
        f = open(partial, "r+b")
    except FileNotFoundError:
        raise FormatError(f"{where}: no such partial track file") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        pre = f.read(fmt._PREAMBLE.size)
        if len(pre) < fmt._PREAMBLE.size:
            raise FormatError(f"{where}: truncated before the end of the header (nothing to recover)")
        magic, major, _minor, header_len, header_crc = fmt._PREAMBLE.unpack(pre)
        if magic != fmt.MAGIC or major != fmt.VERSION[0]:
            raise FormatError(f"{where}: not a bodybatch track {fmt.VERSION[0]}.x")
        header = f.read(min(header_len, fmt.MAX_HEADER_BYTES))
        if len(header) != header_len:
            raise FormatError(f"{where}: truncated before the end of the header (nothing to recover)")
        if zlib.crc32(header) != header_crc:
            raise FormatError(f"{where}: header checksum mismatch (corrupt file)")
        header = _msgpack.unpackb(header, where=f"{where}: header")
        fields, records = _read_journal(journal_path(partial), where)
        chunks, frames, end = [], [], fmt._PREAMBLE.size + header_len
        for offset, n_rows, crc, frame_index in records:
            if offset != end or (frames and frame_index[0] <= frames[-1][-1]) or np.any(np.diff(frame_index) <= 0):
                break
            f.seek(offset)
            head = f.read(fmt._CHUNK_HEAD.size)
            if len(head) < fmt._CHUNK_HEAD.size:
                break
            tag, length = fmt._CHUNK_HEAD.unpack(head)
            if tag != fmt._CHUNK_TAG or offset + fmt._CHUNK_HEAD.size + length + 4 > size:
                break
            data = f.read(length + 4)
            if zlib.crc32(data[:-4]) != crc or struct.unpack("<I", data[-4:])[0] != crc:
                break
            chunks.append([offset, int(n_rows)])
            frames.append(frame_index)
            end = offset + fmt._CHUNK_HEAD.size + length + 4
        if not chunks:
            raise FormatError(f"{where}: no complete chunk (nothing to recover)")
        frame_index = np.concatenate(frames)
        codec = BodybatchCodec.from_config(header["codec"])
        body = _msgpack.packb({
            "n_frames": len(frame_index),
            "frame_index": codec.encode_frame_index(frame_index),
            "fields": list(fields or []),
            "chunks": chunks,
        })  # fmt: skip
        try:
            f.truncate(end)
            f.seek(end)
            f.write(body + fmt._TRAILER.pack(end, len(body), zlib.crc32(body), fmt._END_MAGIC))
            f.flush()
            os.fsync(f.fileno())
        except OSError as exc:
            raise OutputError(f"{where}: cannot write the recovered file ({exc.strerror})") from exc
    os.replace(partial, target)
    try:
        os.unlink(journal_path(partial))
    except FileNotFoundError:
        pass
    new_size = end + len(body) + fmt._TRAILER.size
    return {"path": str(target), "n_frames": len(frame_index), "chunks": len(chunks),
            "bytes": new_size, "dropped_bytes": int(size - end)}  # fmt: skip
