"""One job: one video, from the planner to a worker and back.

A :class:`Job` is planned by :mod:`bodybatch.plan` (what to do and why), carries the
run's :class:`JobSettings` to a worker process, where :func:`run_job` reads the
video's predictions once, splits them into person tracks
(:mod:`bodybatch.splitting`) and writes every track to its own file; the same
object comes back holding the facts of the outcome (tracks written, input file,
error). The driver turns those facts into manifest rows (:mod:`bodybatch.manifest`).
``run_job`` never raises for a bad video.
"""

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bodybatch._files import file_sha256
from bodybatch._rows import DETECTION_FIELDS
from bodybatch.errors import BodybatchError, OutputError

__all__ = ["Job", "JobSettings", "run_job", "TRACK_PREFIX"]

#: Track files of a video are ``<output dir>/track_NNNN.xz``.
TRACK_PREFIX = "track_"


@dataclass(frozen=True)
class JobSettings:
    """What every job of a run needs (picklable, JSON-safe values).

    Attributes
    ----------
    output_root : str
    codec : Codec
        The run's codec (picklable).
    tracks : dict
        ``tracks.*`` settings (``mode``, ``min_length``, ...).
    allow_pickle : bool
    config_hash : str
    """

    output_root: str
    codec: object
    tracks: dict
    allow_pickle: bool
    config_hash: str


@dataclass
class Job:
    """One video: where it is, what the planner decided, and what the worker did.

    Attributes
    ----------
    video : str
        Input path relative to ``input.root``, '/'-separated.
    input_path : pathlib.Path
    output_dir : str
        Folder of the video's tracks, relative to ``output.root``.
    action, reason : str
        The planner's decision (``new``, ``changed``, ``retry``, ``incomplete``,
        ``up to date``) and why.
    todo : bool
        Whether the video is to be converted (every action but ``up to date``).
    input_sha256 : str or None
        Hashed by the planner when it had to (saves the worker a pass).
    settings : JobSettings
    input : dict or None
        Outcome: ``path``, ``bytes``, ``mtime_ns``, ``sha256`` of the input.
    metadata : dict or None
        Outcome: the prediction file's metadata (JSON-ready).
    tracks : dict
        Outcome: track key -> (path relative to the output root, TrackInfo).
    tracking : dict or None
        Outcome: ``mode``, tracks ``kept`` and ``dropped_short``.
    error : str or None
        Outcome: why the video failed (one line naming the file).
    person_frames : int
        Outcome: rows written over all tracks.
    """

    video: str
    input_path: Path
    output_dir: str
    action: str = "new"
    reason: str = ""
    todo: bool = True
    input_sha256: Optional[str] = None
    settings: Optional[JobSettings] = None
    input: Optional[dict] = None
    metadata: Optional[dict] = None
    tracks: dict = field(default_factory=dict)
    tracking: Optional[dict] = None
    error: Optional[str] = None
    person_frames: int = 0
    seconds: float = 0.0


def _input_info(job):
    stat = job.input_path.stat()
    sha256 = job.input_sha256 or file_sha256(job.input_path)
    return {"path": job.video, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def _safe_target(out_root, rel):
    """Absolute path of ``rel`` inside ``out_root``; refuses anything that escapes it."""
    root = os.path.realpath(out_root)
    target = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, target]) != root or target == root:
        raise OutputError(f"{rel}: output path leaves the output root {root}")
    return Path(target)


def run_job(job):
    """Convert one video; returns ``job`` with its outcome filled in (``error`` set
    when it failed: every error is caught, so one bad video never stops a run)."""
    start = time.perf_counter()
    job.tracks, job.error = {}, None
    try:
        _convert(job)
    except BodybatchError as exc:
        job.error = str(exc)
    except MemoryError:
        job.error = "out of memory"
    except Exception as exc:  # a bug or an unexpected library error: keep the run going
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        job.error = f"internal error {type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}: {exc}"
    if job.error is not None:
        job.tracks = {}
        if not job.error.startswith(str(job.input_path)):
            job.error = f"{job.video}: {job.error}"
        try:
            job.input = _input_info(job)
        except OSError as exc:
            job.input = {"path": job.video, "error": exc.strerror}
    job.person_frames = sum(info.n_frames for _, info in job.tracks.values())
    job.seconds = time.perf_counter() - start
    return job


def _convert(job):
    from bodybatch.formats.bodycompress import read_predictions
    from bodybatch._json import to_jsonable
    from bodybatch.splitting import make_splitter
    from bodybatch.track_writer import TrackWriter

    settings = job.settings
    out_root = settings.output_root
    out_dir = _safe_target(out_root, job.output_dir)
    job.input = _input_info(job)
    codec = settings.codec
    reader = read_predictions(job.input_path, allow_pickle=settings.allow_pickle, keep_grid=codec.grid_fields)
    job.metadata = to_jsonable(reader.metadata) if isinstance(reader.metadata, dict) else {}
    options = dict(settings.tracks)
    min_length = options.pop("min_length")
    splitter = make_splitter(options.pop("mode"), min_length=min_length, **options)
    writers, done, dropped, structures = {}, {}, [], {}
    out_dir.mkdir(parents=True, exist_ok=True)

    def close(key):
        writer = writers.pop(key)
        if len(writer) >= min_length:
            done[key] = writer.close()
        else:
            writer.abort()
            dropped.append(len(writer))

    try:
        for t, frame in enumerate(reader):
            update = splitter.update(t, frame)
            for key, j in update.assignments:
                writer = writers.get(key)
                if writer is None:
                    target = _safe_target(out_root, f"{job.output_dir}/{TRACK_PREFIX}{key:04d}.xz")
                    meta = {"video": job.video, "track": int(key), "source": job.metadata}
                    writer = writers[key] = TrackWriter(target, meta, codec=codec, structures=structures)
                row = {k: frame[k][j] for k in DETECTION_FIELDS if k in frame}
                if frame.get("camera") is not None:
                    row["camera"] = frame["camera"]
                writer.append(row, frame_index=t)
            for key in update.ended:
                close(key)
        for key in splitter.finish():
            if key in writers:
                close(key)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    _remove_stale(out_dir, {Path(info.path).name for info in done.values()})
    real_root = os.path.realpath(out_root)
    for key in sorted(done):
        info = done[key]
        if info.sha256 is None:
            info.sha256 = file_sha256(info.path)
        job.tracks[int(key)] = (Path(info.path).relative_to(real_root).as_posix(), info)
    job.tracking = {"mode": settings.tracks["mode"], "kept": len(done), "dropped_short": len(dropped)}


def _remove_stale(out_dir, keep):
    """Delete track files of an earlier run of this video that this run did not write."""
    for path in out_dir.glob(f"{TRACK_PREFIX}*.xz"):
        if path.name not in keep:
            path.unlink()
