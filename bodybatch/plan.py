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

Which inputs are considered: ``input.pattern`` under ``input.root``, narrowed by
``input.paths_file``, ``input.exclude_file`` and the ``--only``/``--exclude`` globs.
"""

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bodybatch._files import file_sha256, is_inside
from bodybatch.errors import ConfigError, PlanError
from bodybatch.job import Job, JobSettings

__all__ = ["Plan", "discover", "plan_jobs", "output_dir_for"]

#: Actions after which a video needs no work this run.
IDLE_ACTIONS = ("up to date", "skipped")

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def output_dir_for(video):
    """Output folder (relative to output.root) of a video: its relative path without
    the suffix, each part reduced to ``[A-Za-z0-9._-]`` and never hidden or '..'.
    Parts that had to change get a short hash of the original, so no two videos share
    a folder."""
    parts = video.split("/")
    parts[-1] = parts[-1][: -len(Path(parts[-1]).suffix)] if Path(parts[-1]).suffix else parts[-1]
    out = []
    for part in parts:
        safe = _SAFE.sub("_", part).lstrip(".") or "_"
        if safe != part:
            safe = f"{safe}-{hashlib.sha256(part.encode()).hexdigest()[:8]}"
        out.append(safe)
    return "/".join(out)


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


def _read_list(path, what):
    """Relative paths listed in a text file (blank lines and '#' comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    return [Path(line.strip()).as_posix() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def discover(config, only=(), exclude=(), notes=None):
    """Sorted relative paths of the input files matching ``input.pattern``, narrowed
    by ``input.paths_file``, ``input.exclude_file`` and the globs ``only`` (keep a
    path matching any) and ``exclude`` (drop a path matching any).

    Symlinks leading outside ``input.root`` are skipped unless
    ``input.follow_symlinks``; files inside ``output.root`` are never inputs.

    Raises
    ------
    PlanError
        ``input.root`` is not a folder, or nothing is selected (naming the root,
        the pattern and the filters).
    """
    root = config.input_root
    if not root.is_dir():
        raise PlanError(f"{root}: input.root is not a folder")
    real_root = root.resolve()
    out_root = config.output_root.resolve()
    found = []
    for path in root.glob(config["input.pattern"]):
        if not path.is_file():
            continue
        real = path.resolve()
        if not config["input.follow_symlinks"] and not is_inside(real, real_root):
            continue
        if is_inside(real, out_root) or is_inside(path.absolute(), out_root):
            continue
        found.append(path.relative_to(root).as_posix())
    if not found:
        raise PlanError(f"{root}: input.pattern {config['input.pattern']!r} matches no file")
    videos, filters = sorted(set(found)), []
    if config["input.paths_file"] is not None:
        listed = _read_list(config["input.paths_file"], "input.paths_file")
        missing = sorted(set(listed) - set(videos))
        if missing and notes is not None:
            notes.append(f"{len(missing)} input(s) listed in {config['input.paths_file']} not found, e.g. {missing[0]}")
        videos, filters = sorted(set(videos) & set(listed)), filters + ["input.paths_file"]
    if config["input.exclude_file"] is not None:
        skip = set(_read_list(config["input.exclude_file"], "input.exclude_file"))
        videos, filters = [v for v in videos if v not in skip], filters + ["input.exclude_file"]
    if only:
        videos = [v for v in videos if any(fnmatch.fnmatchcase(v, g) for g in only)]
        filters += [f"--only {g}" for g in only]
    if exclude:
        videos = [v for v in videos if not any(fnmatch.fnmatchcase(v, g) for g in exclude)]
        filters += [f"--exclude {g}" for g in exclude]
    if not videos:
        raise PlanError(f"{root}: no input left after {', '.join(filters)} ({len(found)} match the pattern)")
    return videos


def plan_jobs(config, manifest_rows, force=False, only=(), exclude=(), skip_failed=False):
    """Decide, for every selected video, whether and why it must be (re)done.

    Parameters
    ----------
    config : Config
    manifest_rows : list of ManifestRow
        The manifest as it is (:func:`bodybatch.manifest.read_manifest`).
    force : bool
        Redo every selected video.
    only, exclude : sequence of str
        Globs over the videos' relative paths (``--only``, ``--exclude``).
    skip_failed : bool
        Do not retry a video whose last attempt failed while its input is unchanged.

    Returns
    -------
    Plan
    """
    by_video = {}
    for row in manifest_rows:
        by_video.setdefault(row.video, []).append(row)
    settings = JobSettings(
        output_root=str(config.output_root), codec=config.codec(), tracks=config.tracks_options(),
        allow_pickle=config["input.allow_pickle"], on_truncated=config["input.on_truncated"],
        config_hash=config.config_hash(), decisive=config.decisive(),
    )  # fmt: skip
    plan = Plan([])
    videos = discover(config, only, exclude, plan.notes)
    for video in videos:
        job = Job(video, config.input_root / video, output_dir_for(video), settings=settings)
        job.action, job.reason = _decide(job, by_video.get(video, []), config.output_root, force, skip_failed)
        job.todo = job.action not in IDLE_ACTIONS
        plan.jobs.append(job)
    plan.orphans = sorted(v for v in set(by_video) - set(videos) if not (config.input_root / v).is_file())
    return plan


def _flat(settings, prefix=""):
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        elif key != "id" or not prefix:
            out[f"{prefix}{key}"] = value
    return out


def _changes(rows, current):
    """'key old -> new' for each decisive setting that differs from the rows'."""
    recorded = next((r.get("settings") for r in rows if r.get("settings")), None)
    if recorded is None:  # rows of an older manifest: only the codec is recorded
        codec = next((r.get("codec") for r in rows if r.get("codec")), None)
        recorded, current = ({"codec": codec}, {"codec": current["codec"]}) if codec else ({}, {})
    old, new = _flat(recorded), _flat(current)
    old = {("codec.name" if k == "codec.id" else k): v for k, v in old.items()}
    new = {("codec.name" if k == "codec.id" else k): v for k, v in new.items()}
    return [f"{k} {old.get(k, 'unset')} -> {new.get(k, 'unset')}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]  # fmt: skip


def _decide(job, rows, out_root, force, skip_failed=False):
    config_hash = job.settings.config_hash
    if force:
        return "changed", "--force"
    if not rows:
        return "new", "no manifest row"
    if any(r.config_hash != config_hash for r in rows):
        changes = _changes([r for r in rows if r.config_hash != config_hash], job.settings.decisive)
        return "changed", ("changed: " + ", ".join(changes)) if changes else "codec or track settings changed (config hash)"
    try:
        stat = job.input_path.stat()
    except OSError as exc:
        return "retry", f"input unreadable ({exc.strerror})"
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        before = failed[0].input
        if skip_failed and (stat.st_size, stat.st_mtime_ns) == (before.get("bytes"), before.get("mtime_ns")):
            return "skipped", "failed before; input unchanged (--skip-failed)"
        return "retry", f"previous attempt failed: {failed[0].error or ''}"[:200]
    recorded = rows[0].input
    if stat.st_size != recorded.get("bytes"):
        return "changed", f"input size changed ({recorded.get('bytes')} -> {stat.st_size} bytes)"
    if stat.st_mtime_ns != recorded.get("mtime_ns"):
        job.input_sha256 = file_sha256(job.input_path)
        if job.input_sha256 != recorded.get("sha256"):
            return "changed", "input content changed (sha256)"
    ok = [r for r in rows if r.status == "ok"]
    for row in ok:
        try:
            size = os.stat(out_root / row.path).st_size
        except OSError:
            return "incomplete", f"output missing: {row.path}"
        if size != row.bytes:
            return "incomplete", f"output size differs from manifest: {row.path}"
    return "up to date", f"{len(ok)} track(s) match the manifest"
