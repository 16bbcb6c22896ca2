"""The manifest row: one per output track (or per failed or empty video).

This module owns the row: its constructors from a finished :class:`~bodybatch.job.Job`,
the accessors the planner, the audit and the run summary read, and its one
serialization (sorted keys, strict JSON). See the README for the fields.
"""

import json
from collections.abc import Mapping
from datetime import datetime, timezone

from bodybatch._json import to_jsonable
from bodybatch._version import __version__
from bodybatch.errors import FormatError

__all__ = ["ManifestRow", "STATUSES"]

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

    __slots__ = ("data", "_line")

    def __init__(self, data, line=None):
        self.data = data
        self._line = line  # its JSON text when read from a file (plain JSON already)

    # -- constructors (the driver builds rows from a finished job) ----------------------
    @classmethod
    def _base(cls, job, status, **fields):
        data = {
            "video": job.video, "status": status, "input": job.input, "config_hash": job.settings.config_hash,
            "settings": job.settings.decisive, "bodybatch_version": __version__, "created": _now(), **fields,
        }  # fmt: skip
        if job.truncated is not None:  # on_truncated: keep
            data.update(truncated=True, frames_read=job.truncated["frames_read"],
                        frames_expected=job.truncated["frames_expected"])  # fmt: skip
        return cls(data)

    @staticmethod
    def _track_fields(key, path, info):
        """The fields of track ``key`` written to ``path`` (relative to the output
        root) as :class:`~bodybatch.track_writer.TrackInfo` ``info`` says."""
        return dict(
            path=path, sha256=info.sha256, bytes=info.bytes, raw_bytes=info.raw_bytes, ratio=round(info.ratio, 4),
            track=int(key), n_frames=info.n_frames, first_frame=info.first_frame, last_frame=info.last_frame,
            codec=info.codec, encode_seconds=info.encode_seconds, max_abs_error_mm=info.max_abs_error_mm,
        )

    @classmethod
    def ok(cls, job, key, path, info):
        """The row of track ``key`` of ``job`` (see :meth:`_track_fields`)."""
        return cls._base(job, "ok", **cls._track_fields(key, path, info), metadata=job.metadata, tracking=job.tracking)

    @classmethod
    def live(cls, video, key, path, info, settings, metadata, tracking):
        """The row of a track a :class:`~bodybatch.VideoWriter` wrote: no input file and
        no config hash; ``live: true``."""
        return cls({
            "video": video, "status": "ok", "input": None, "config_hash": None, "settings": settings,
            "bodybatch_version": __version__, "created": _now(), **cls._track_fields(key, path, info),
            "metadata": metadata, "tracking": tracking, "live": True,
        })  # fmt: skip

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
        if self._line is None:
            self._line = json.dumps(to_jsonable(self.data), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return self._line

    @classmethod
    def from_json(cls, line, where="manifest"):
        """Parse one line; FormatError naming ``where`` when it is not a manifest row."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{where}: not a JSON row ({exc.msg})") from None
        row = cls.from_data(data, where)
        row._line = line.strip()  # bodybatch wrote it sorted and compact: kept as is
        return row

    @classmethod
    def from_data(cls, data, where="manifest"):
        """A row from a parsed JSON object; FormatError when it is not a manifest row."""
        if not isinstance(data, dict) or data.get("status") not in STATUSES or "video" not in data:
            raise FormatError(f"{where}: not a manifest row (needs 'video' and a status in {STATUSES})")
        return cls(data)

    def __repr__(self):
        return f"ManifestRow({self.video!r}, {self.status!r}, track={self.track!r})"
