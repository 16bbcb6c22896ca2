"""The audit manifest: JSON Lines, one :class:`ManifestRow` per output track (or per
failed or empty video).

This module owns the row: its constructors from a finished :class:`~bodybatch.job.Job`,
the accessors the planner, the audit and the run summary read, and its one
serialization (sorted keys, strict JSON). Only the driver process writes the file,
always as a whole via a temporary file and ``os.replace`` in the same folder, so it
is never half-written; rows are sorted by (video, track), so the same results give
the same bytes. See the README for the fields.
"""

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from bodybatch._files import write_atomically
from bodybatch._json import to_jsonable
from bodybatch._version import __version__
from bodybatch.errors import FormatError

__all__ = ["ManifestRow", "STATUSES", "read_manifest", "ManifestWriter"]

STATUSES = ("ok", "failed", "no_tracks")


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManifestRow(Mapping):
    """One manifest row: a read-only mapping (a JSON object) with ``video`` and a
    ``status`` in STATUSES.

    Build rows with :meth:`from_job` (or :meth:`ok`, :meth:`failed`,
    :meth:`no_tracks`); read the common fields as attributes (``row.video``,
    ``row.bytes`` ...) and any field as ``row["field"]`` or ``row.get("field")``.
    """

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    # -- constructors (the driver builds rows from a finished job) ----------------------
    @classmethod
    def _base(cls, job, status, **fields):
        return cls({
            "video": job.video, "status": status, "input": job.input,
            "config_hash": job.settings.config_hash, "bodybatch_version": __version__, "created": _now(),
            **fields,
        })  # fmt: skip

    @classmethod
    def ok(cls, job, key, path, info):
        """The row of track ``key`` of ``job``, written to ``path`` (relative to the
        output root) as :class:`~bodybatch.track_writer.TrackInfo` ``info`` says."""
        return cls._base(
            job, "ok", path=path, sha256=info.sha256, bytes=info.bytes, raw_bytes=info.raw_bytes,
            ratio=round(info.ratio, 4), track=int(key), n_frames=info.n_frames, first_frame=info.first_frame,
            last_frame=info.last_frame, codec=info.codec, encode_seconds=info.encode_seconds,
            max_abs_error_mm=info.max_abs_error_mm, metadata=job.metadata, tracking=job.tracking,
        )

    @classmethod
    def failed(cls, job):
        return cls._base(job, "failed", error=job.error, path=None, track=None)

    @classmethod
    def no_tracks(cls, job):
        return cls._base(job, "no_tracks", error=None, path=None, track=None, tracking=job.tracking)

    @classmethod
    def from_job(cls, job):
        """The rows of a job returned by a worker: one per track, or one failed or
        no_tracks row."""
        if job.error is not None:
            return [cls.failed(job)]
        if not job.tracks:
            return [cls.no_tracks(job)]
        return [cls.ok(job, key, path, info) for key, (path, info) in sorted(job.tracks.items())]

    # -- accessors -----------------------------------------------------------------------
    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)

    video = property(lambda self: self.data["video"])
    status = property(lambda self: self.data["status"])
    track = property(lambda self: self.data.get("track"))
    path = property(lambda self: self.data.get("path"))
    bytes = property(lambda self: self.data.get("bytes"))
    raw_bytes = property(lambda self: self.data.get("raw_bytes"))
    n_frames = property(lambda self: self.data.get("n_frames"))
    error = property(lambda self: self.data.get("error"))
    config_hash = property(lambda self: self.data.get("config_hash"))
    input = property(lambda self: self.data.get("input") or {})

    def sort_key(self):
        track = self.track
        return (str(self.video), -1 if track is None else int(track), str(self.path or ""))

    # -- serialization -------------------------------------------------------------------
    def to_json(self):
        """One line of strict JSON (keys sorted, no spaces)."""
        return json.dumps(to_jsonable(self.data), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line, where="manifest"):
        """Parse one line; FormatError naming ``where`` when it is not a manifest row."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{where}: not a JSON row ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("status") not in STATUSES or "video" not in data:
            raise FormatError(f"{where}: not a manifest row (needs 'video' and a status in {STATUSES})")
        return cls(data)

    def __repr__(self):
        return f"ManifestRow({self.video!r}, {self.status!r}, track={self.track!r})"


def read_manifest(path):
    """Rows of a manifest file ([] when it does not exist).

    Raises
    ------
    FormatError
        Naming the file and line when a row is not a JSON object with a known status.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: cannot read manifest ({exc})") from None
    return [ManifestRow.from_json(line, f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]


class ManifestWriter:
    """Holds the manifest rows of a run and rewrites the file atomically.

    Parameters
    ----------
    path : path-like
    rows : list of ManifestRow
        Rows to start from (the previous manifest's rows).
    flush_seconds : float
        :meth:`maybe_flush` writes at most this often.
    """

    def __init__(self, path, rows=(), flush_seconds=10.0):
        self.path = Path(path)
        self._videos = {}
        for row in rows:
            self._videos.setdefault(row.video, []).append(row)
        self.flush_seconds = flush_seconds
        self._last_flush = 0.0
        self._dirty = False

    def replace_video(self, video, rows):
        """Set the rows of one video (replacing its previous rows)."""
        self._videos[video] = list(rows)
        self._dirty = True

    @property
    def dirty(self):
        """Whether rows changed since the last :meth:`flush`."""
        return self._dirty

    def rows(self):
        return sorted((r for rows in self._videos.values() for r in rows), key=ManifestRow.sort_key)

    def maybe_flush(self):
        if self._dirty and time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self):
        """Write all rows to a temporary file beside the manifest and rename it."""
        data = "".join(r.to_json() + "\n" for r in self.rows()).encode("utf-8")
        write_atomically(self.path, lambda f: f.write(data), "manifest", make_parents=True)
        self._last_flush = time.monotonic()
        self._dirty = False
