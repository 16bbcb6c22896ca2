"""The audit manifest: JSON Lines, one row per output track (or per failed/empty video).

Only the driver process writes it, always as a whole file via a temporary file and
``os.replace`` in the same folder, so it is never half-written; rows are sorted by
(video, track) and serialized with sorted keys, so the same results give the same
bytes. See the README for the schema.
"""

import json
import math
import time
from pathlib import Path

from bodybatch._files import write_atomically
from bodybatch.errors import FormatError

__all__ = ["ROW_FIELDS", "read_manifest", "ManifestWriter", "rows_by_video", "row_sort_key", "dumps_row", "to_jsonable"]

#: Fields of an ``ok`` row (failed rows carry ``video``, ``status``, ``error``, ``input``,
#: ``config_hash``, ``bodybatch_version``, ``created``).
ROW_FIELDS = (
    "path", "status", "sha256", "bytes", "raw_bytes", "ratio", "video", "track",
    "n_frames", "first_frame", "last_frame", "input", "codec", "config_hash",
    "bodybatch_version", "created", "encode_seconds", "max_abs_error_mm", "metadata", "tracking",
)
STATUSES = ("ok", "failed", "no_tracks")


def row_sort_key(row):
    track = row.get("track")
    return (str(row.get("video", "")), -1 if track is None else int(track), str(row.get("path") or ""))


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
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:{lineno}: not a JSON row ({exc.msg})") from None
        if not isinstance(row, dict) or row.get("status") not in STATUSES or "video" not in row:
            raise FormatError(f"{path}:{lineno}: not a manifest row (needs 'video' and a status in {STATUSES})")
        rows.append(row)
    return rows


def rows_by_video(rows):
    out = {}
    for row in rows:
        out.setdefault(row["video"], []).append(row)
    return out


def dumps_row(row):
    return json.dumps(to_jsonable(row), sort_keys=True, separators=(",", ":"), allow_nan=False)


def to_jsonable(obj):
    """Nested dicts/lists of numpy arrays, scalars, bytes and paths -> plain JSON values
    (non-finite floats become strings, so rows stay strict JSON)."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


class ManifestWriter:
    """Holds the manifest rows of a run and rewrites the file atomically.

    Parameters
    ----------
    path : path-like
    rows : list of dict
        Rows to start from (the previous manifest's rows).
    flush_seconds : float
        :meth:`maybe_flush` writes at most this often.
    """

    def __init__(self, path, rows=(), flush_seconds=10.0):
        self.path = Path(path)
        self._videos = rows_by_video(rows)
        self.flush_seconds = flush_seconds
        self._last_flush = 0.0
        self._dirty = False

    def replace_video(self, video, rows):
        """Set the rows of one video (replacing its previous rows)."""
        self._videos[video] = list(rows)
        self._dirty = True

    def rows(self):
        return sorted((r for rows in self._videos.values() for r in rows), key=row_sort_key)

    def maybe_flush(self):
        if self._dirty and time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self):
        """Write all rows to a temporary file beside the manifest and rename it."""
        data = "".join(dumps_row(r) + "\n" for r in self.rows()).encode("utf-8")
        write_atomically(self.path, lambda f: f.write(data), "manifest", make_parents=True)
        self._last_flush = time.monotonic()
        self._dirty = False
