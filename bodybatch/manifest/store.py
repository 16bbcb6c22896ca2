"""Where the manifest lives: a canonical file and append-only journals.

- The **canonical file** (``manifest.jsonl``): one :class:`ManifestRow` per line,
  sorted by (video, track), keys sorted: what a single clean run writes. Only
  :func:`compact_manifest` rewrites it (temporary file + rename, never half-written).
- **Journals** (``manifest.jsonl.journal/<writer>.jsonl``): one record per line,
  appended by the one process that owns the file (the driver of a run, or of one
  shard) as results arrive, so a result costs one append whatever the manifest's
  size. A record replaces a video's rows (``keep_ok``: the video's ``ok`` rows stay
  and the record's rows are added — a failed redo keeps the last complete result).
  Records carry ``seq`` (ns since the epoch) and are replayed in that order.
- **Durability**: a record is written and flushed at once and fsync'ed at most
  ``fsync_seconds`` later (default 1 s) and when the journal closes. A power loss may
  lose the last second of records, never a file: files are published before their
  rows, and a video without rows is converted again.
- **Torn lines**: a kill mid-append leaves a last line without its newline (or not
  valid JSON). Readers ignore it with a warning; the owner truncates it away when it
  opens the journal again. A bad line anywhere else is corruption (FormatError).

Readers (:func:`iter_manifest`) stream the union of the canonical file and all
journals, in canonical order, holding only the journals' rows in memory.
"""

import json
import os
import time
from pathlib import Path

from bodybatch._files import write_atomically
from bodybatch.errors import FormatError, OutputError
from bodybatch.manifest.row import ManifestRow

__all__ = ["Journal", "iter_manifest", "read_manifest", "compact_manifest", "journal_dir", "journal_files"]


def journal_dir(manifest):
    """Folder of the journals of ``manifest``."""
    return Path(f"{manifest}.journal")


def journal_files(manifest):
    """Sorted journal files of ``manifest`` (none when there is no journal folder)."""
    folder = journal_dir(manifest)
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".jsonl" and not p.name.startswith("."))
    except FileNotFoundError:
        return []


def _warn_default(message):
    import logging

    logging.getLogger("bodybatch").warning(f"warning: {message}")


class Journal:
    """The append-only journal of one writer (a run, or one shard of a run).

    Parameters
    ----------
    manifest : path-like
        The canonical manifest path.
    writer : str
        The journal's name (``run``, ``shard-0003-of-0016``); one process at a time
        (the caller holds the matching lock).
    fsync_seconds : float
        Longest time between a record's write and its fsync.
    """

    def __init__(self, manifest, writer="run", fsync_seconds=1.0):
        self.path = journal_dir(manifest) / f"{writer}.jsonl"
        self.fsync_seconds = fsync_seconds
        self._f = None  # opened by the first append: a run that records nothing leaves no journal
        self._synced = time.monotonic()
        self._dirty = False

    def _open(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "ab")
            self._drop_torn_tail()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot open the manifest journal ({exc.strerror})") from None

    def _drop_torn_tail(self):
        """Cut a last line that a killed writer left without its newline."""
        size = self._f.seek(0, os.SEEK_END)
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(max(0, size - (1 << 20)))
            tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= len(tail) else None)
        if keep is None:
            raise FormatError(f"{self.path}: last line longer than 1 MiB and unfinished")
        self._f.truncate(keep)
        self._f.seek(0, os.SEEK_END)

    def append(self, video, rows, keep_ok=False):
        """Record the rows of one video (a list of ManifestRow)."""
        record = {"seq": time.time_ns(), "video": video, "keep_ok": bool(keep_ok), "rows": [r.data for r in rows]}
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        if self._f is None:
            self._open()
        try:
            self._f.write(line)
            self._f.flush()
            self._dirty = True
            if time.monotonic() - self._synced >= self.fsync_seconds:
                self.sync()
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot append to the manifest journal ({exc.strerror})") from None

    def sync(self):
        if self._dirty:
            os.fsync(self._f.fileno())
            self._dirty = False
        self._synced = time.monotonic()

    def close(self):
        if self._f is not None and not self._f.closed:
            try:
                self.sync()
            finally:
                self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_journal(path, warn):
    """Records of one journal file: [(seq, video, keep_ok, rows)]."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"{path}: cannot read manifest journal ({exc.strerror})") from None
    lines = data.split(b"\n")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if n == len(lines):  # no newline after it: its writer was killed mid-line
            warn(f"{path}:{n}: ignoring an unfinished last line (a writer was killed mid-append)")
            continue
        try:
            record = json.loads(line)
            rows = [ManifestRow.from_data(r, f"{path}:{n}") for r in record["rows"]]
            records.append((int(record["seq"]), str(record["video"]), bool(record.get("keep_ok")), rows))
        except (ValueError, KeyError, TypeError, FormatError) as exc:
            raise FormatError(f"{path}:{n}: not a manifest journal record ({exc})") from None
    return records


def _load_journals(manifest, warn):
    """video -> its records in replay order, over every journal of ``manifest``."""
    records = [r for path in journal_files(manifest) for r in _read_journal(path, warn)]
    records.sort(key=lambda r: r[0])
    by_video = {}
    for seq, video, keep_ok, rows in records:
        by_video.setdefault(video, []).append((keep_ok, rows))
    return by_video


def _replay(records, rows):
    for keep_ok, new_rows in records:
        rows = ([r for r in rows if r.status == "ok"] if keep_ok else []) + new_rows
    return sorted(rows, key=ManifestRow.sort_key)


def _canonical_lines(manifest):
    try:
        f = open(manifest, encoding="utf-8")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FormatError(f"{manifest}: cannot read manifest ({exc.strerror})") from None
    with f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield ManifestRow.from_json(line, f"{manifest}:{n}")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{manifest}: cannot read manifest ({exc})") from None


def iter_manifest(manifest, warn=None):
    """Rows of the manifest (canonical file and journals), streamed.

    Rows come in canonical order (video, track) when the canonical file is sorted,
    as bodybatch writes it; memory holds the journals' rows and one video's rows.

    Parameters
    ----------
    manifest : path-like
    warn : callable, optional
        Called with a message for each ignored torn journal line (default: a
        warning on the ``bodybatch`` logger).

    Raises
    ------
    FormatError
        Naming the file and line of a row or record that is not valid.
    """
    records = _load_journals(manifest, warn or _warn_default)
    pending = sorted(records)
    group, video = [], None
    for row in _canonical_lines(manifest):
        if row.video != video:
            yield from _flush_group(video, group, records, pending)
            group, video = [], row.video
        group.append(row)
    yield from _flush_group(video, group, records, pending)
    for video in pending:
        yield from _replay(records[video], [])


def _flush_group(video, group, records, pending):
    """Journal-only videos sorted before ``video``, then ``video``'s rows."""
    if video is None:
        return
    while pending and pending[0] < video:
        yield from _replay(records[pending.pop(0)], [])
    if video in records:
        if pending and pending[0] == video:
            pending.pop(0)
        yield from _replay(records[video], group)
    else:
        yield from group


def read_manifest(manifest, warn=None):
    """All rows of the manifest as a list ([] when there is none); see :func:`iter_manifest`."""
    return list(iter_manifest(manifest, warn))


def compact_manifest(manifest, warn=None):
    """Merge the journals into the canonical file and delete them. The caller holds
    the output root's exclusive lock. Returns the number of journal files merged.

    The canonical file is written sorted with sorted keys, byte-identical to what a
    single clean run with the same results writes; it is replaced atomically.
    """
    files = journal_files(manifest)
    if not files:
        return 0

    def write(f):
        last = None
        for row in iter_manifest(manifest, warn):
            key = row.sort_key()
            if last is not None and key < last:
                raise _Unsorted
            last = key
            f.write(row.to_json().encode("utf-8") + b"\n")

    try:
        write_atomically(manifest, write, "manifest", make_parents=True)
    except _Unsorted:  # a hand-edited canonical file: sort everything in memory
        rows = sorted(_union_in_memory(manifest, warn), key=ManifestRow.sort_key)
        write_atomically(manifest, lambda f: f.writelines(r.to_json().encode() + b"\n" for r in rows), "manifest")
    for path in files:
        path.unlink()
    try:
        journal_dir(manifest).rmdir()
    except OSError:
        pass
    return len(files)


class _Unsorted(Exception):
    pass


def _union_in_memory(manifest, warn):
    by_video = {}
    for row in _canonical_lines(manifest):
        by_video.setdefault(row.video, []).append(row)
    records = _load_journals(manifest, warn or _warn_default)
    for video, recs in records.items():
        by_video[video] = _replay(recs, by_video.get(video, []))
    return [row for rows in by_video.values() for row in rows]
