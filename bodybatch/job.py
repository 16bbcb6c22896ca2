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
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bodybatch._files import file_sha256
from bodybatch._json import to_jsonable as _to_jsonable
from bodybatch.errors import BodybatchError, OutputError

__all__ = ["Job", "JobSettings", "run_job", "split_tracks", "TRACK_PREFIX"]

#: Track files of a video are ``<output dir>/track_NNNN.xz`` (:data:`bodybatch.live.TRACK_NAME`).
TRACK_PREFIX = "track_"
#: A job writes into ``<output dir>/.staging-XXXX.tmp/`` first (removed by the next run
#: if the job was killed).
STAGING_PREFIX = ".staging-"


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
    on_truncated : {"fail", "keep"}
        What a truncated or corrupt input does: fail the video, or keep the frames
        read before the damage.
    config_hash : str
    decisive : dict
        The settings the hash is taken of (recorded in the manifest rows).
    """

    output_root: str
    codec: object
    tracks: dict
    allow_pickle: bool
    on_truncated: str
    config_hash: str
    decisive: dict


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
    traceback : str or None
        Outcome: the full traceback of the failure (for the log, not the manifest).
    truncated : dict or None
        Outcome with ``on_truncated: keep``: ``frames_read``, ``frames_expected`` and
        the ``error`` that ended the input early.
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
    traceback: Optional[str] = None
    truncated: Optional[dict] = None
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
    job.tracks, job.error, job.traceback, job.truncated, job.input = {}, None, None, None, None
    try:
        _convert(job)
    except Exception as exc:  # every error: one bad video never stops a run
        job.traceback = traceback.format_exc()
        job.error = _describe(exc)
    if job.error is not None:
        job.tracks = {}
        if not job.error.startswith(str(job.input_path)):
            job.error = f"{job.video}: {job.error}"
        if job.input is None:  # the failure came before the input was described (hashed) once
            try:
                job.input = _input_info(job)
            except OSError as exc:
                job.input = {"path": job.video, "error": exc.strerror}
    job.person_frames = sum(info.n_frames for _, info in job.tracks.values())
    job.seconds = time.perf_counter() - start
    return job


def _describe(exc):
    """One line for the manifest: the message of a bodybatch error; where a bug or an
    unexpected library error happened."""
    if isinstance(exc, BodybatchError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "out of memory"
    tb = traceback.extract_tb(exc.__traceback__)[-1]
    return f"internal error {type(exc).__name__} at {Path(tb.filename).name}:{tb.lineno}: {exc}"


def _convert(job):
    """Read, split and write; track files are written to a staging folder and moved
    into place only when the whole video succeeded, so a failure leaves the video's
    previous files as they were."""
    from bodybatch.formats.bodycompress import read_predictions

    settings = job.settings
    out_dir = _safe_target(settings.output_root, job.output_dir)
    job.input = _input_info(job)
    codec = settings.codec
    reader = read_predictions(job.input_path, allow_pickle=settings.allow_pickle, keep_grid=codec.grid_fields)
    job.metadata = _to_jsonable(reader.metadata) if isinstance(reader.metadata, dict) else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, suffix=".tmp", dir=out_dir))
    try:
        done, dropped = _write_tracks(job, reader, staging)
        for info in done.values():  # whole video done: publish its files
            final = out_dir / Path(info.path).name
            os.replace(info.path, final)
            info.path = str(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale(out_dir, {Path(info.path).name for info in done.values()})
    real_root = os.path.realpath(settings.output_root)
    for key in sorted(done):
        info = done[key]
        job.tracks[int(key)] = (Path(info.path).relative_to(real_root).as_posix(), info)
    job.tracking = {"mode": settings.tracks["mode"], "kept": len(done), "dropped_short": len(dropped)}


def _write_tracks(job, reader, staging):
    """Feed the frames of ``reader`` to a :class:`~bodybatch.VideoWriter` writing into
    ``staging`` (the live writer's code path); returns ({key: TrackInfo}, [lengths of
    dropped short tracks])."""
    from bodybatch.live import VideoWriter

    writer = VideoWriter(staging, job.metadata, tracks=job.settings.tracks, video=job.video,
                         codec=job.settings.codec, recoverable=False, max_queue=4)  # fmt: skip
    try:
        job.truncated = _feed(reader, writer.append, job.settings.on_truncated)
        done = writer.close()
    except BaseException:
        writer.abort()
        raise
    for info in done.values():
        if info.sha256 is None:
            info.sha256 = file_sha256(info.path)
    return done, writer.dropped_short


def _feed(reader, append, on_truncated, max_frames=None):
    """Call ``append(**frame)`` for every frame of ``reader``; returns the
    ``truncated`` facts (or None), see :func:`split_tracks`."""
    from bodybatch.errors import FormatError

    t, frames = 0, iter(reader)
    while max_frames is None or t < max_frames:
        try:
            frame = next(frames, None)
        except FormatError as exc:
            if on_truncated != "keep":
                raise
            return {"frames_read": t, "frames_expected": len(reader), "error": str(exc)}
        if frame is None:
            break
        append(**frame)
        t += 1
    return None


def split_tracks(reader, splitter, open_writer, min_length, on_truncated="fail", max_frames=None):
    """Route every detection of ``reader``'s frames to its person track.

    Parameters
    ----------
    reader : iterable of frame dicts with ``len``
        Per frame: ``vertices (N, V, 3)`` mm, ``joints (N, J, 3)`` mm, uncertainties
        ``(N, V)``/``(N, J)`` m, ``boxes (N, 5)``, optional ``camera`` dict.
    splitter : from :func:`bodybatch.splitting.make_splitter`
    open_writer : callable
        ``open_writer(key)`` -> an object with ``append(row, frame_index=t)``,
        ``len``, ``close()`` (its result is kept) and ``abort()``:
        a :class:`~bodybatch.TrackWriter`, or an in-memory collector.
    min_length : int
        Tracks with fewer rows are aborted and counted as dropped.
    on_truncated : {"fail", "keep"}
        A FormatError while reading: raise it, or end the video there.
    max_frames : int, optional
        Read only the first frames.

    Returns
    -------
    done : dict
        Track key -> ``close()`` result of its writer.
    dropped : list of int
        Rows of each dropped short track.
    truncated : dict or None
        With ``keep`` on a damaged input: ``frames_read``, ``frames_expected``, ``error``.
    """
    from bodybatch.live import TrackRouter

    router = TrackRouter(splitter, open_writer, min_length)
    t = 0

    def append(**frame):
        nonlocal t
        router.frame(t, frame)
        t += 1

    try:
        truncated = _feed(reader, append, on_truncated, max_frames)
        router.finish()
    except BaseException:
        router.abort()
        raise
    return router.done, router.dropped, truncated


def _remove_stale(out_dir, keep):
    """Delete track files of an earlier run of this video that this run did not write."""
    for path in out_dir.glob(f"{TRACK_PREFIX}*.xz"):
        if path.name not in keep:
            path.unlink()
