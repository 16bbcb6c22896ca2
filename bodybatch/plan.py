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

Which inputs are considered: ``input.pattern`` under ``input.root`` (read folder by
folder with scandir), narrowed by ``input.paths_file``, ``input.exclude_file``, the
``--only``/``--exclude`` globs and, with ``--shard I/N``, the shard partition
(:func:`shard_partition`: stable when videos are added, balanced by input size). The
manifest is read as a stream: per video only what the decision needs is kept
(:class:`_History`).
"""

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from bodybatch._files import file_sha256, is_inside
from bodybatch.errors import ConfigError, FormatError, OutputError, PlanError
from bodybatch.job import Job, JobSettings

__all__ = ["Plan", "plan_jobs", "discover", "output_dir_for", "shard_partition", "parse_shard"]

#: Actions after which a video needs no work this run.
IDLE_ACTIONS = ("up to date", "skipped")

# -- which inputs: discovery, selection, shards, output folders ---------------------------

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


def _glob_match(parts, names):
    """Whether path components ``names`` match glob components ``parts``: each part
    as :func:`fnmatch.fnmatchcase` (``*``, ``?``, ``[...]`` within one name), a ``**``
    part any number of folders (none included)."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_glob_match(parts[1:], names[i:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], parts[0]) and _glob_match(parts[1:], names[1:])


def _walk(root, pattern, output_root, follow_symlinks):
    """Relative '/'-paths of the files under ``root`` matching ``pattern``, read
    folder by folder with scandir: a plain file costs no stat (its type comes with
    the folder listing); a symlink is resolved (and skipped when it leads outside
    ``root`` unless ``follow_symlinks``, or into ``output_root``). Symlinked folders
    are not entered; neither is ``output_root``."""
    parts = pattern.strip("/").split("/")
    real_root, real_out = os.path.realpath(root), os.path.realpath(output_root)
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        if os.path.realpath(folder) == real_out:
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for entry in reversed(entries):
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, rel + "/"))
            elif _glob_match(parts, rel.split("/")):
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if not os.path.isfile(real) or is_inside(real, real_out):
                        continue
                    if not follow_symlinks and not is_inside(real, real_root):
                        continue
                elif not entry.is_file(follow_symlinks=False):
                    continue
                yield rel


def parse_shard(text, environ=None):
    """``"I/N"`` (0 <= I < N) or ``"slurm"`` -> (I, N).

    ``slurm`` reads ``SLURM_ARRAY_TASK_ID`` with ``SLURM_ARRAY_TASK_COUNT``, or with
    ``SLURM_ARRAY_TASK_MIN``/``SLURM_ARRAY_TASK_MAX`` (I = ID - MIN, N = MAX - MIN + 1).
    Raises ConfigError naming what is wrong.
    """
    import os

    env = os.environ if environ is None else environ
    try:
        if text == "slurm":
            task = int(env["SLURM_ARRAY_TASK_ID"])
            if "SLURM_ARRAY_TASK_COUNT" in env and "SLURM_ARRAY_TASK_MIN" not in env:
                index, count = task, int(env["SLURM_ARRAY_TASK_COUNT"])
            else:
                low, high = int(env["SLURM_ARRAY_TASK_MIN"]), int(env["SLURM_ARRAY_TASK_MAX"])
                index, count = task - low, high - low + 1
        else:
            index, count = (int(part) for part in text.split("/"))
    except KeyError as exc:
        raise ConfigError(f"--shard slurm: {exc.args[0]} is not set (not inside a Slurm job array?)") from None
    except ValueError:
        raise ConfigError(f"--shard must be I/N (e.g. 3/16) or slurm; got {text!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text}: shard {index} of {count} does not exist (0 <= I < N)")
    return index, count


def shard_partition(config, videos, n_shards, persist=True):
    """``{video: shard}`` for ``videos``, from the partition file of ``n_shards`` shards
    in the output root (``.bodybatch.shards-N.json``), extended under a lock.

    A video keeps the shard it was first given, so adding videos never moves existing
    ones. Videos new to the file are given out largest first, each to the shard with
    the fewest input bytes so far (sizes stated once, at assignment), so shards stay
    balanced by input size. Shards starting together read the same file: the first
    to take the lock writes it. ``persist=False`` (``plan``) writes nothing.
    """
    import fcntl
    import json

    from bodybatch._files import write_atomically

    root = config.output_root
    path = root / f".bodybatch.shards-{n_shards}.json"
    try:
        lock = open(root / ".bodybatch.shards.lock", "a") if persist else open(os.devnull)
    except OSError as exc:
        raise OutputError(f"{root}: cannot create the shard partition lock ({exc.strerror})") from None
    with lock:
        if persist:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            table = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as exc:
            raise FormatError(f"{path}: unreadable shard partition ({exc})") from None
        new = [v for v in videos if v not in table]
        if new:
            loads = [0] * n_shards
            for shard, size in table.values():
                loads[shard] += size
            sizes = {}
            for video in new:
                try:
                    sizes[video] = os.stat(config.input_root / video).st_size
                except OSError:
                    sizes[video] = 0
            for video in sorted(new, key=lambda v: (-sizes[v], v)):
                shard = min(range(n_shards), key=lambda k: (loads[k], k))
                table[video] = [shard, sizes[video]]
                loads[shard] += sizes[video]
            if persist:
                text = json.dumps(table, sort_keys=True, separators=(",", ":")).encode()
                write_atomically(path, lambda f: f.write(text), "shard partition")
    return {v: table[v][0] for v in videos}


def _read_list(path, what):
    """Relative paths listed in a text file (blank lines and '#' comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    return [Path(line.strip()).as_posix() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def discover(config, only=(), exclude=(), notes=None, shard=None, persist=True):
    """Sorted relative paths of the input files matching ``input.pattern``, narrowed
    by ``input.paths_file``, ``input.exclude_file`` and the globs ``only`` (keep a
    path matching any) and ``exclude`` (drop a path matching any); with ``shard``
    ``(i, n)``, the videos of shard ``i`` of ``n`` (possibly none).

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
    found = list(_walk(root, config["input.pattern"], config.output_root, config["input.follow_symlinks"]))
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
    if shard is not None:
        partition = shard_partition(config, videos, shard[1], persist)
        videos = [v for v in videos if partition[v] == shard[0]]
    return videos


# -- what to do per video ------------------------------------------------------------------


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


def plan_jobs(config, manifest_rows, force=False, only=(), exclude=(), skip_failed=False, shard=None, persist=True):
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
    persist : bool
        Record new videos' shards in the output root (a run); ``plan`` writes nothing.

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
    videos = discover(config, only, exclude, plan.notes, shard, persist)
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
