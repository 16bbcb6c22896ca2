"""The batch run: lock the output root, plan, run the jobs, keep the manifest.

The driver (this process) appends each video's rows to its own manifest journal as
results arrive, after the video's files are in place, so a run killed at any moment
leaves a manifest that describes complete files only; the next run redoes what is
missing. At the end the journals are compacted into the sorted manifest file (by
the last shard to finish, when the run is sharded). A video whose new attempt
fails keeps its last complete result (rows and files) beside the failed row.
Messages go to the ``bodybatch`` logger.
"""

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bodybatch._files import human_bytes
from bodybatch._lock import OutputLock
from bodybatch.errors import BodybatchError, ConfigError, OutputError, PlanError
from bodybatch.manifest import Journal, ManifestRow, compact_manifest, iter_manifest, journal_files
from bodybatch.plan import plan_jobs

__all__ = ["run_batch", "RunSummary"]

log = logging.getLogger("bodybatch")

#: Seconds between progress lines when stderr is not a terminal.
PROGRESS_SECONDS = 30.0


@dataclass
class RunSummary:
    """What a run did (this run) and what the dataset holds afterwards (totals)."""

    converted: int = 0
    failed: int = 0
    skipped: int = 0
    up_to_date: int = 0
    person_frames: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)
    videos: int = 0
    tracks: int = 0
    frames: int = 0
    bytes_out: int = 0
    raw_bytes: int = 0
    failed_videos: int = 0

    @property
    def exit_code(self):
        """1 when a video failed in this run, else 0."""
        return 1 if self.failed else 0

    def table(self):
        worked = self.converted + self.failed
        did = [f"{self.converted} converted", f"{self.failed} failed"] if worked else ["nothing to convert"]
        if self.skipped:
            did.append(f"{self.skipped} skipped (failed before, input unchanged)")
        did.append(f"{self.up_to_date} up to date")
        lines = [("this run", ", ".join(did))]
        if worked:
            rate = f" ({self.person_frames / self.seconds:.0f} person-frames/s)" if self.person_frames else ""
            lines.append(("", f"read {human_bytes(self.bytes_read)}, wrote {human_bytes(self.bytes_written)}, "
                              f"{self.person_frames} person-frames in {self.seconds:.1f} s{rate}"))  # fmt: skip
        else:
            lines.append(("", f"{self.seconds:.1f} s"))
        ratio = f" ({self.raw_bytes / self.bytes_out:.2f}x smaller than float32)" if self.bytes_out else ""
        failed = f", {self.failed_videos} video(s) failed" if self.failed_videos else ""
        lines.append(("dataset", f"{self.videos} video(s): {self.tracks} tracks, {self.frames} person-frames, "
                                 f"{human_bytes(self.bytes_out)}{ratio}{failed}"))  # fmt: skip
        width = max(len(k) for k, _ in lines)
        return "\n".join([f"{k:<{width}}  {v}".rstrip() for k, v in lines] + [f"failed: {f}" for f in self.failures])


def _remove_temporaries(root, folders=None):
    """Delete temporary files and staging folders a killed run left in the output
    root (a whole run holds the root) or, for a shard, in its videos' ``folders``."""
    found = Path(root).rglob(".*.tmp") if folders is None else (p for d in folders for p in Path(d).glob(".*.tmp"))
    for path in sorted(found, reverse=True):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            pass


def _make_output_root(root):
    """Create the output root; returns True when this call created it."""
    try:
        root.mkdir(parents=True)
    except FileExistsError:
        if root.is_dir():  # there already (or another shard made it just now)
            return False
        raise OutputError(f"{root}: output.root exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(f"{root}: cannot create output.root ({exc.strerror})") from None
    return True


def run_batch(config, force=False, progress=None, only=(), exclude=(), skip_failed=False, shard=None):
    """Convert every selected video that is not up to date. Returns a :class:`RunSummary`.

    Parameters
    ----------
    config : Config
    force : bool
        Redo every selected video.
    progress : bool, optional
        Progress bar on a terminal, else a line every 30 s (default ``pool.progress``).
    only, exclude : sequence of str
        Globs over the videos' relative paths.
    skip_failed : bool
        Do not retry videos that failed before and whose input is unchanged.
    shard : (int, int), optional
        Run only shard ``i`` of ``n``; shards of one output root run concurrently.
    """
    from bodybatch.pool import run_jobs

    progress = config["pool.progress"] if progress is None else progress
    start = time.perf_counter()
    if not config.input_root.is_dir():  # before anything is created
        raise PlanError(f"{config.input_root}: input.root is not a folder")
    created = _make_output_root(config.output_root)
    summary = RunSummary()
    with OutputLock(config.output_root, shard) as lock:
        _check_shard_count(config.manifest_path, shard)
        try:
            if shard is None:
                _remove_temporaries(config.output_root)
            plan = plan_jobs(config, iter_manifest(config.manifest_path), force, only, exclude, skip_failed, shard)
        except BodybatchError:
            if created:  # leave nothing behind (the lock file included) for a run that could not start
                shutil.rmtree(config.output_root, ignore_errors=True)
            raise
        if shard is not None:
            _remove_temporaries(config.output_root, [config.output_root / j.output_dir for j in plan.jobs])
        for note in plan.notes:
            log.info(f"note: {note}")
        for video in plan.orphans:
            log.info(f"note: {video}: in the manifest but its input is gone (rows kept)")
        todo = plan.todo
        summary.skipped = sum(job.action == "skipped" for job in plan.jobs)
        summary.up_to_date = len(plan.jobs) - len(todo) - summary.skipped
        bar = _Progress(len(todo), progress, start)
        journal = Journal(config.manifest_path, lock.name)
        try:
            pool = [config[f"pool.{key}"] for key in ("n_jobs", "backend", "scheduler", "connect_timeout")]
            for job in run_jobs(_largest_first(todo), *pool):
                _record(job, journal, summary, bar)
        finally:
            bar.close()
            journal.close()
        if lock.try_exclusive():  # no other shard running: merge the journals
            compact_manifest(config.manifest_path)
        _dataset_totals(config.manifest_path, summary)
    summary.seconds = time.perf_counter() - start
    return summary


def _check_shard_count(manifest, shard):
    """Refuse a shard count other than that of unfinished shards' journals: shards of
    two partitions would convert some videos twice and others never."""
    if shard is None:
        return
    counts = {p.stem.rsplit("-of-", 1)[1] for p in journal_files(manifest) if p.stem.startswith("shard-")}
    others = sorted(int(c) for c in counts if c.isdigit() and int(c) != shard[1])
    if others:
        raise ConfigError(f"{manifest}: shards of a {others[0]}-shard run have not been merged yet; "
                          f"run them with --shard I/{others[0]}, or merge first: bodybatch manifest compact CONFIG")


def _record(job, journal, summary, bar):
    """Journal a finished job's rows and count it."""
    summary.bytes_read += (job.input or {}).get("bytes", 0)
    if job.error is None:
        summary.converted += 1
        summary.person_frames += job.person_frames
        summary.bytes_written += sum(info.bytes for _, info in job.tracks.values())
    else:
        summary.failed += 1
        summary.failures.append(job.error)
        bar.write(f"failed: {job.error}")
        log.debug(f"{job.video}: traceback of the failure:\n{job.traceback}")
    if job.truncated is not None:
        log.warning(f"{job.video}: truncated input: kept {job.truncated['frames_read']} of "
                    f"{job.truncated['frames_expected']} frames ({job.truncated['error']})")  # fmt: skip
    journal.append(job.video, ManifestRow.from_job(job), keep_ok=job.error is not None)
    bar.update(summary.person_frames)


def _dataset_totals(manifest, summary):
    videos = set()
    for row in iter_manifest(manifest):
        videos.add(row.video)
        if row.status == "ok":
            summary.tracks += 1
            summary.frames += row.n_frames
            summary.bytes_out += row.bytes
            summary.raw_bytes += row.raw_bytes
        elif row.status == "failed":
            summary.failed_videos += 1
    summary.videos = len(videos)


def _largest_first(jobs):
    """Jobs by input size, largest first (ties by video name): the long videos start
    early instead of leaving one worker busy at the end (measured on 20 synthetic
    videos, 2 workers: 1.7 s less wall time of 12.8 s). Outputs do not depend on it."""

    def size(job):
        try:
            return os.path.getsize(job.input_path)
        except OSError:
            return 0

    return sorted(jobs, key=lambda job: (-size(job), job.video))


class _Progress:
    """A tqdm bar on a terminal; elsewhere a plain log line every PROGRESS_SECONDS
    (no carriage-return frames in log files); nothing when disabled."""

    def __init__(self, total, enabled, start):
        self.total, self.done, self.start = total, 0, start
        self.enabled = bool(enabled and total)
        self.bar, self.last_line = None, time.monotonic()
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="video", desc="bodybatch", dynamic_ncols=True, file=sys.stderr)

    def write(self, message):
        if self.bar is not None:
            self.bar.write(message)
        else:
            log.warning(message)

    def update(self, person_frames):
        self.done += 1
        rate = person_frames / max(time.perf_counter() - self.start, 1e-9)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rate:.0f} person-frames/s", refresh=False)
            self.bar.update(1)
        elif self.enabled and time.monotonic() - self.last_line >= PROGRESS_SECONDS:
            self.last_line = time.monotonic()
            elapsed = time.perf_counter() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            log.info(f"progress: {self.done}/{self.total} videos, {rate:.0f} person-frames/s, ETA {eta:.0f} s")

    def close(self):
        if self.bar is not None:
            self.bar.close()
