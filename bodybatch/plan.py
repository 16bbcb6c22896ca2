"""Discover the per-video prediction files and decide, per video, what to do.

The decision for a video is taken with the cheapest checks first and recorded with
its reason (DVC style):

1. ``new``: the manifest has no row for the video;
2. ``changed``: the codec or track settings differ (config hash); the reason names
   each changed setting (``codec.quantization_mm 0.5 -> 1.0``);
3. ``retry``: the previous attempt failed (``skipped`` instead, with ``skip_failed``,
   while the input's size and mtime are those of the failed attempt);
4. ``changed``: the input's size differs, or its mtime differs *and* its sha256 does;
5. ``incomplete``: an output file is missing or its size differs from the manifest;
6. ``up to date`` otherwise (nothing is re-encoded).

Which inputs are considered: :mod:`bodybatch.discover`. The manifest is read as a
stream: per video only what the decision needs is kept (:class:`_History`).
"""

import os
from dataclasses import dataclass, field
from typing import Optional

from bodybatch._files import file_sha256
from bodybatch.discover import discover, output_dir_for
from bodybatch.job import Job, JobSettings

__all__ = ["Plan", "plan_jobs"]

#: Actions after which a video needs no work this run.
IDLE_ACTIONS = ("up to date", "skipped")

@dataclass
class Plan:
    """What a run would do.

    Attributes
    ----------
    jobs : list of Job
        One per selected input, sorted by video, each with its action and reason.
    orphans : list of str
        Videos with manifest rows whose input file is gone (their rows are kept).
    notes : list of str
        Things worth telling the user (e.g. listed inputs that do not exist).
    """

    jobs: list
    orphans: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def todo(self):
        return [job for job in self.jobs if job.todo]


@dataclass
class _History:
    """What the planner keeps of a video's manifest rows."""

    hashes: set = field(default_factory=set)
    input: Optional[dict] = None  # of the first row
    failed: Optional[tuple] = None  # (error, input) of the first failed row
    outputs: list = field(default_factory=list)  # (path, bytes) of the ok rows
    other_settings: Optional[dict] = None  # settings (or codec) of a row with another hash

    def add(self, row, config_hash):
        self.hashes.add(row.config_hash)
        if self.input is None:
            self.input = row.input
        if row.status == "failed" and self.failed is None:
            self.failed = (row.error, row.input)
        elif row.status == "ok":
            self.outputs.append((row.path, row.bytes))
        if row.config_hash != config_hash and self.other_settings is None:
            settings = row.get("settings")
            self.other_settings = settings if settings else {"codec": row["codec"]} if row.get("codec") else {}


def plan_jobs(config, manifest_rows, force=False, only=(), exclude=(), skip_failed=False, shard=None):
    """Decide, for every selected video, whether and why it must be (re)done.

    Parameters
    ----------
    config : Config
    manifest_rows : iterable of ManifestRow
        The manifest as it is (:func:`bodybatch.manifest.iter_manifest`), read once.
    force : bool
        Redo every selected video.
    only, exclude : sequence of str
        Globs over the videos' relative paths (``--only``, ``--exclude``).
    skip_failed : bool
        Do not retry a video whose last attempt failed while its input is unchanged.
    shard : (int, int), optional
        Only the videos of shard ``i`` of ``n``.

    Returns
    -------
    Plan
    """
    settings = JobSettings(
        output_root=str(config.output_root), codec=config.codec(), tracks=config.tracks_options(),
        allow_pickle=config["input.allow_pickle"], on_truncated=config["input.on_truncated"],
        config_hash=config.config_hash(), decisive=config.decisive(),
    )  # fmt: skip
    history = {}
    for row in manifest_rows:
        history.setdefault(row.video, _History()).add(row, settings.config_hash)
    plan = Plan([])
    videos = discover(config, only, exclude, plan.notes, shard)
    for video in videos:
        job = Job(video, config.input_root / video, output_dir_for(video), settings=settings)
        job.action, job.reason = _decide(job, history.get(video), config.output_root, force, skip_failed)
        job.todo = job.action not in IDLE_ACTIONS
        plan.jobs.append(job)
    if shard is None:
        gone = set(history) - set(videos)
        plan.orphans = sorted(v for v in gone if not (config.input_root / v).is_file())
    return plan


def _flat(settings, prefix=""):
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif key != "id" or not prefix:
            out[f"{prefix}{key}"] = value
    return out


def _changes(recorded, current):
    """'key old -> new' for each decisive setting that differs from the recorded ones
    (older manifests record only the codec)."""
    if set(recorded) == {"codec"}:
        current = {"codec": current["codec"]}
    old, new = _flat(recorded), _flat(current)
    old = {("codec.name" if k == "codec.id" else k): v for k, v in old.items()}
    new = {("codec.name" if k == "codec.id" else k): v for k, v in new.items()}
    return [f"{k} {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]  # fmt: skip


def _decide(job, history, out_root, force, skip_failed=False):
    config_hash = job.settings.config_hash
    if force:
        return "changed", "--force"
    if history is None:
        return "new", "no manifest row"
    if history.hashes != {config_hash}:
        changes = _changes(history.other_settings or {}, job.settings.decisive)
        return "changed", ("changed: " + ", ".join(changes)) if changes else "codec or track settings changed (config hash)"
    try:
        stat = job.input_path.stat()
    except OSError as exc:
        return "retry", f"input unreadable ({exc.strerror})"
    if history.failed is not None:
        error, before = history.failed
        before = before or {}
        if skip_failed and (stat.st_size, stat.st_mtime_ns) == (before.get("bytes"), before.get("mtime_ns")):
            return "skipped", "failed before; input unchanged (--skip-failed)"
        return "retry", f"previous attempt failed: {error or ''}"[:200]
    recorded = history.input or {}
    if stat.st_size != recorded.get("bytes"):
        return "changed", f"input size changed ({recorded.get('bytes')} -> {stat.st_size} bytes)"
    if stat.st_mtime_ns != recorded.get("mtime_ns"):
        job.input_sha256 = file_sha256(job.input_path)
        if job.input_sha256 != recorded.get("sha256"):
            return "changed", "input content changed (sha256)"
    for path, size in history.outputs:
        try:
            found = os.stat(out_root / path).st_size
        except OSError:
            return "incomplete", f"output missing: {path}"
        if found != size:
            return "incomplete", f"output size differs from manifest: {path}"
    return "up to date", f"{len(history.outputs)} track(s) match the manifest"
