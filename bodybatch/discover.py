"""Which inputs a run considers: discovery under ``input.root``, the selection
filters, the shard partition, and each video's output folder.

Discovery walks ``input.pattern`` once; ``input.paths_file``, ``input.exclude_file``
and the ``--only``/``--exclude`` globs narrow the set; with ``shard=(i, n)`` only the
videos of shard ``i`` remain. A video's shard depends on its path alone (a hash), so
adding videos never moves existing ones between shards, and shards of large datasets
are balanced in count and in bytes in expectation.
"""

import fnmatch
import hashlib
import os
import re
from pathlib import Path

from bodybatch._files import is_inside
from bodybatch.errors import ConfigError, PlanError

__all__ = ["discover", "output_dir_for", "shard_of", "parse_shard"]

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


def _glob_regex(pattern):
    """A compiled regex of a glob over '/'-paths: ``*`` and ``?`` stay within one
    folder, ``[...]`` as in fnmatch, a ``**`` part matches any number of folders."""
    parts = []
    for part in pattern.strip("/").split("/"):
        if part == "**":
            parts.append("(?:[^/]+/)*")
            continue
        regex, i = "", 0
        while i < len(part):
            c = part[i]
            if c == "*":
                regex += "[^/]*"
            elif c == "?":
                regex += "[^/]"
            elif c == "[" and "]" in part[i + 2 :] or c == "[" and part[i + 1 : i + 2] == "]":
                end = part.index("]", i + 2) if part[i + 1 : i + 2] in ("!", "]") else part.index("]", i + 1)
                body = part[i + 1 : end].replace("\\", "\\\\")
                regex += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end
            else:
                regex += re.escape(c)
            i += 1
        parts.append(regex + "/")
    return re.compile("".join(parts)[:-1] + r"\Z" if not pattern.endswith("**") else "".join(parts) + r".*\Z")


def _walk(root, pattern, output_root, follow_symlinks):
    """Relative '/'-paths of the files under ``root`` matching ``pattern``, read
    folder by folder with scandir: a plain file costs no stat; a symlink is resolved
    (and skipped when it leads outside ``root`` unless ``follow_symlinks``, or into
    ``output_root``). Symlinked folders are not entered."""
    matcher = _glob_regex(pattern)
    real_root, real_out = os.path.realpath(root), os.path.realpath(output_root)
    for folder, dirs, files in os.walk(root):
        if os.path.realpath(folder) == real_out:
            dirs[:] = []
            continue
        rel_folder = os.path.relpath(folder, root)
        prefix = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        for name in files:
            rel = prefix + name
            if not matcher.match(rel):
                continue
            path = os.path.join(folder, name)
            if os.path.islink(path):
                real = os.path.realpath(path)
                if not os.path.isfile(real) or is_inside(real, real_out):
                    continue
                if not follow_symlinks and not is_inside(real, real_root):
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


def shard_of(video, n_shards):
    """Shard (0..n_shards-1) of a video: from a hash of its relative path only."""
    return int.from_bytes(hashlib.sha256(video.encode()).digest()[:8], "big") % n_shards


def _read_list(path, what):
    """Relative paths listed in a text file (blank lines and '#' comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({getattr(exc, 'strerror', None) or exc})") from None
    return [Path(line.strip()).as_posix() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def discover(config, only=(), exclude=(), notes=None, shard=None):
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
        videos = [v for v in videos if shard_of(v, shard[1]) == shard[0]]
    return videos
