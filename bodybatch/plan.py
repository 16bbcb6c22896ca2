"""Discover the per-video prediction files and decide, per video, what to do.

The decision for a video is taken with the cheapest checks first and recorded with
its reason (DVC style):

1. ``new``: the manifest has no row for the video;
2. ``changed``: the codec or track settings differ (config hash);
3. ``retry``: the previous attempt failed;
4. ``changed``: the input's size differs, or its mtime differs *and* its sha256 does;
5. ``incomplete``: an output file is missing or its size differs from the manifest;
6. ``up to date`` otherwise (nothing is re-encoded).
"""

import hashlib
import os
import re
from pathlib import Path

from bodybatch._files import file_sha256, is_inside
from bodybatch.errors import PlanError
from bodybatch.job import Job, JobSettings

__all__ = ["discover", "plan_jobs", "output_dir_for"]

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


def discover(config):
    """Sorted relative paths of the input files matching ``input.pattern``.

    Symlinks leading outside ``input.root`` are skipped unless
    ``input.follow_symlinks``; files inside ``output.root`` are never inputs.
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
    return sorted(set(found))


def plan_jobs(config, manifest_rows, force=False):
    """Decide, for every discovered video, whether and why it must be (re)done.

    Parameters
    ----------
    config : Config
    manifest_rows : list of ManifestRow
        The manifest as it is (:func:`bodybatch.manifest.read_manifest`).
    force : bool
        Redo every video.

    Returns
    -------
    jobs : list of Job (sorted by video), each with the run's settings
    orphans : list of str — videos with manifest rows but no input file any more
    """
    by_video = {}
    for row in manifest_rows:
        by_video.setdefault(row.video, []).append(row)
    settings = JobSettings(
        output_root=str(config.output_root), codec=config.codec(), tracks=config.tracks_options(),
        allow_pickle=config["input.allow_pickle"], config_hash=config.config_hash(),
    )  # fmt: skip
    jobs = []
    videos = discover(config)
    for video in videos:
        job = Job(video, config.input_root / video, output_dir_for(video), settings=settings)
        job.action, job.reason = _decide(job, by_video.get(video, []), config.output_root, force)
        job.todo = job.action != "up to date"
        jobs.append(job)
    orphans = sorted(set(by_video) - set(videos))
    return jobs, orphans


def _decide(job, rows, out_root, force):
    config_hash = job.settings.config_hash
    if force:
        return "changed", "--force"
    if not rows:
        return "new", "no manifest row"
    if any(r.config_hash != config_hash for r in rows):
        return "changed", "codec or track settings changed (config hash)"
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        return "retry", f"previous attempt failed: {failed[0].error or ''}"[:200]
    recorded = rows[0].input
    try:
        stat = job.input_path.stat()
    except OSError as exc:
        return "retry", f"input unreadable ({exc.strerror})"
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
