"""The YAML run configuration: one schema, validated before any work starts.

Every key, its type, default and allowed values are declared once in :data:`SCHEMA`;
the README's configuration table documents the same keys (a test keeps them in sync).
Relative paths resolve against the folder of the config file. YAML is read with
``yaml.safe_load`` only (tags that would build Python objects are refused).
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bodybatch._files import is_inside
from bodybatch.errors import ConfigError

__all__ = ["SCHEMA", "Config", "load_config", "config_from_dict"]

_REQUIRED = object()


def _schema():
    """key path -> (type or tuple of allowed values, default, help). Codec keys come
    from the codec registry, track modes from the splitter, backends from the pool."""
    from bodybatch.codec import codec_class, codec_ids
    from bodybatch.pool import BACKENDS
    from bodybatch.splitting import TRACK_MODES

    schema = {
        "input.root": ("path", _REQUIRED, "folder holding the per-video prediction files"),
        "input.pattern": (str, "**/*.xz", "glob (relative to input.root) of the prediction files"),
        "input.follow_symlinks": (bool, False, "follow symlinks that lead outside input.root"),
        "input.allow_pickle": (bool, False, "decode pickled object arrays (trusted files only)"),
        "input.paths_file": ("path", None, "file listing the inputs to convert, one path (relative to input.root) per line"),
        "input.exclude_file": ("path", None, "file listing inputs to skip, one path (relative to input.root) per line"),
        "input.on_truncated": (("fail", "keep"), "fail", "a truncated input fails, or keep converts its readable frames"),
        "output.root": ("path", _REQUIRED, "folder receiving one .xz file per person track"),
        "manifest": ("path", None, "manifest path (default <output.root>/manifest.jsonl); inside output.root"),
        "tracks.mode": (TRACK_MODES, "associate", "how detections become tracks"),
        "tracks.min_length": (int, 10, "tracks with fewer rows are dropped (and reported)"),
        "tracks.max_gap": (int, 10, "associate: frames a track may go undetected before it ends"),
        "tracks.gate_mm": (float, 500.0, "associate: largest mean joint distance (mm) of a match"),
        "tracks.id_key": (str, "ids", "ids: frame key holding the per-detection person ids"),
        "codec.name": (codec_ids(), codec_ids()[0], "track codec"),
    }
    for codec_id in codec_ids():
        for option in codec_class(codec_id).options:
            key = f"codec.{option.name}"
            if key in schema:  # shared by several codecs (quantization_mm)
                schema[key] = schema[key][:2] + (schema[key][2].replace(": ", f", {codec_id}: ", 1),)
            else:
                schema[key] = (option.kind, option.default, f"{codec_id}: {option.help}")
    schema.update({
        "pool.n_jobs": (int, 2, "worker processes (-1: one per core)"),
        "pool.backend": (BACKENDS, BACKENDS[0], "joblib backend; dask runs on a dask.distributed cluster"),
        "pool.scheduler": (str, None, "dask: scheduler address (unset: a local cluster of n_jobs workers)"),
        "pool.connect_timeout": (float, 10.0, "dask: seconds to wait for pool.scheduler before giving up"),
        "pool.progress": (bool, True, "show a progress bar"),
    })  # fmt: skip
    return schema


#: Every configuration key, declared once (see :func:`_schema`).
SCHEMA = _schema()
#: Keys holding paths, resolved against the config file's folder.
_PATH_KEYS = tuple(k for k, (kind, _, _) in SCHEMA.items() if kind == "path")


def _codec_keys(name):
    from bodybatch.codec import codec_class

    return tuple(option.name for option in codec_class(name).options)


@dataclass(frozen=True)
class Config:
    """A validated run configuration (absolute paths, every key filled in)."""

    values: dict
    source: str

    def __getitem__(self, key):
        return self.values[key]

    @property
    def input_root(self):
        return Path(self.values["input.root"])

    @property
    def output_root(self):
        return Path(self.values["output.root"])

    @property
    def manifest_path(self):
        return Path(self.values["manifest"])

    def codec(self):
        """The configured codec (:class:`bodybatch.codec.Codec`)."""
        from bodybatch.codec import get_codec

        name = self.values["codec.name"]
        options = {k: self.values[f"codec.{k}"] for k in _codec_keys(name) if self.values[f"codec.{k}"] is not None}
        return get_codec(name, **options)

    def codec_config(self):
        """The codec's JSON-safe config (:meth:`bodybatch.codec.Codec.get_config`)."""
        return self.codec().get_config()

    def tracks_options(self):
        return {k.split(".", 1)[1]: v for k, v in self.values.items() if k.startswith("tracks.")}

    def decisive(self):
        """What decides a job's outputs: the codec config, the track settings, the
        reading options and the track format version (not paths, pool or progress).
        Hashed into :meth:`config_hash` and recorded in every manifest row, so the
        planner can name what changed."""
        from bodybatch.formats import TRACK_FORMAT_VERSION

        return {
            "codec": self.codec_config(),
            "tracks": self.tracks_options(),
            "allow_pickle": self.values["input.allow_pickle"],
            "format": list(TRACK_FORMAT_VERSION),
        }

    def config_hash(self):
        """sha256 of :meth:`decisive`."""
        text = json.dumps(self.decisive(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def load_config(path, overrides=None):
    """Read and validate a YAML config file.

    Parameters
    ----------
    path : path-like
    overrides : dict, optional
        Dotted keys (e.g. ``{"pool.n_jobs": 4}``) applied after the file (CLI flags).

    Raises
    ------
    ConfigError
        Naming the file and every bad key with its allowed values (YAML syntax
        errors: the line and column).
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or _first_line(exc)
        if "could not determine a constructor" in str(exc):
            problem = f"tags that build objects are not allowed ({problem})"
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    return config_from_dict(data if data is not None else {}, base_dir=path.parent, source=str(path), overrides=overrides)


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _flatten(data, prefix, out, problems):
    if not isinstance(data, dict):
        problems.append(f"'{prefix or 'the top level'}' must be a mapping, got {type(data).__name__}")
        return
    for key, value in data.items():
        if not isinstance(key, str):
            problems.append(f"key {key!r} under '{prefix or 'top level'}' must be a string")
            continue
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and full != "manifest":
            _flatten(value, full, out, problems)
        else:
            out[full] = value


def _check_value(key, value, kind):
    """The validated value, or raise ValueError with the problem."""
    if value is None:
        return None
    if isinstance(kind, tuple):
        if value not in kind:
            raise ValueError(f"{key} must be one of {', '.join(kind)}; got {value!r}")
        return value
    if kind == "path":
        if not isinstance(value, str) or not value:
            raise ValueError(f"{key} must be a path string; got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{key} must be {kind.__name__}; got {value!r}")
    return value


def _unknown_key(key):
    sections = sorted({k.split(".")[0] for k in SCHEMA})
    section = key.split(".")[0]
    if section in sections:
        return f"unknown key {key!r}; allowed keys: " + ", ".join(k for k in SCHEMA if k.split(".")[0] == section)
    return f"unknown key {key!r}; allowed sections: {', '.join(sections)}"


def config_from_dict(data, base_dir=".", source="<dict>", overrides=None):
    """Validate a nested dict (as loaded from YAML) into a :class:`Config`.

    Every problem is collected and reported at once in one ConfigError
    (``source: problem; problem; ...``).
    """
    problems, flat = [], {}
    _flatten(data, "", flat, problems)
    for key, value in (overrides or {}).items():
        if value is not None:
            flat[key] = value
    problems += [_unknown_key(key) for key in sorted(set(flat) - set(SCHEMA))]
    values = {}
    for key, (kind, default, _help) in SCHEMA.items():
        if key in flat:
            try:
                values[key] = _check_value(key, flat[key], kind)
            except ValueError as exc:
                problems.append(str(exc))
                values[key] = default if default is not _REQUIRED else None
        elif default is _REQUIRED:
            problems.append(f"missing required key {key}")
            values[key] = None
        else:
            values[key] = default
    base = Path(base_dir).resolve()
    for key in _PATH_KEYS:
        if values[key] is not None:
            values[key] = Path(os.path.normpath(base / os.path.expanduser(values[key])))
    out_root = values["output.root"]
    if out_root is not None:
        if values["manifest"] is None:
            values["manifest"] = out_root / "manifest.jsonl"
        if not is_inside(values["manifest"], out_root) or values["manifest"] == out_root:
            problems.append(f"manifest must be a file inside output.root ({out_root}); got {values['manifest']}")
    if not problems:
        _check_ranges(values, problems)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return Config(values, source)


def _check_ranges(v, problems):
    def need(ok, key, rule):
        if not ok:
            problems.append(f"{key} {rule}; got {v[key]!r}")

    need(v["tracks.min_length"] >= 1, "tracks.min_length", "must be >= 1")
    need(v["tracks.max_gap"] >= 0, "tracks.max_gap", "must be >= 0")
    need(v["tracks.gate_mm"] > 0, "tracks.gate_mm", "must be > 0 (mm)")
    need(v["pool.n_jobs"] == -1 or v["pool.n_jobs"] >= 1, "pool.n_jobs", "must be >= 1 or -1")
    need(0 < v["pool.connect_timeout"] < float("inf"), "pool.connect_timeout", "must be a finite number of seconds > 0")
    need(not v["input.pattern"].startswith("/") and ".." not in Path(v["input.pattern"]).parts,
         "input.pattern", "must be relative to input.root without '..'")  # fmt: skip
    from bodybatch.codec import get_codec
    from bodybatch.errors import TrackError

    name = v["codec.name"]
    keys = _codec_keys(name)
    for key in SCHEMA:
        if key.startswith("codec.") and key != "codec.name":
            short = key.split(".", 1)[1]
            if short not in keys and v[key] != SCHEMA[key][1]:
                problems.append(f"{key} does not apply to codec {name}; its keys: {', '.join(keys)}")
    try:
        get_codec(name, **{k: v[f"codec.{k}"] for k in keys if v[f"codec.{k}"] is not None})
    except TrackError as exc:
        problems.append(f"codec: {exc}")
