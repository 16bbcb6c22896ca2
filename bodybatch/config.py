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

    def config_hash(self):
        """sha256 of what decides a job's outputs: codec config, track settings and
        the reading options (not paths, pool or progress)."""
        from bodybatch.formats import TRACK_FORMAT_VERSION

        decisive = {
            "codec": self.codec_config(),
            "tracks": self.tracks_options(),
            "allow_pickle": self.values["input.allow_pickle"],
            "format": list(TRACK_FORMAT_VERSION),
        }
        text = json.dumps(decisive, sort_keys=True, separators=(",", ":"))
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
        Naming the file, the key path and the allowed values.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML (or uses tags that build objects): {_first_line(exc)}") from None
    return config_from_dict(data if data is not None else {}, base_dir=path.parent, source=str(path), overrides=overrides)


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _flatten(data, prefix, out, where):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: '{prefix or 'the top level'}' must be a mapping, got {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}: key {key!r} under '{prefix or 'top level'}' must be a string")
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and full != "manifest":
            _flatten(value, full, out, where)
        else:
            out[full] = value


def _check_value(key, value, kind, where):
    if value is None:
        return None
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(kind)}; got {value!r}")
        return value
    if kind == "path":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: {key} must be a path string; got {value!r}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be {kind.__name__}; got {value!r}")
    return value


def config_from_dict(data, base_dir=".", source="<dict>", overrides=None):
    """Validate a nested dict (as loaded from YAML) into a :class:`Config`."""
    flat = {}
    _flatten(data, "", flat, source)
    for key, value in (overrides or {}).items():
        if value is not None:
            flat[key] = value
    unknown = sorted(set(flat) - set(SCHEMA))
    if unknown:
        sections = sorted({k.split(".")[0] for k in SCHEMA})
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r}; allowed keys: "
            + ", ".join(k for k in SCHEMA if k.split(".")[0] == unknown[0].split(".")[0])
            if unknown[0].split(".")[0] in sections
            else f"{source}: unknown key {unknown[0]!r}; allowed sections: {', '.join(sections)}"
        )
    values = {}
    for key, (kind, default, _help) in SCHEMA.items():
        if key in flat:
            values[key] = _check_value(key, flat[key], kind, source)
        elif default is _REQUIRED:
            raise ConfigError(f"{source}: missing required key {key}")
        else:
            values[key] = default
    base = Path(base_dir).resolve()
    for key in ("input.root", "output.root", "manifest"):
        if values[key] is not None:
            values[key] = Path(os.path.normpath(base / os.path.expanduser(values[key])))
    out_root = values["output.root"]
    if values["manifest"] is None:
        values["manifest"] = out_root / "manifest.jsonl"
    if not is_inside(values["manifest"], out_root) or values["manifest"] == out_root:
        raise ConfigError(f"{source}: manifest must be a file inside output.root ({out_root}); got {values['manifest']}")
    _check_ranges(values, source)
    return Config(values, source)


def _check_ranges(v, where):
    def need(ok, key, rule):
        if not ok:
            raise ConfigError(f"{where}: {key} {rule}; got {v[key]!r}")

    need(v["tracks.min_length"] >= 1, "tracks.min_length", "must be >= 1")
    need(v["tracks.max_gap"] >= 0, "tracks.max_gap", "must be >= 0")
    need(v["tracks.gate_mm"] > 0, "tracks.gate_mm", "must be > 0 (mm)")
    need(v["pool.n_jobs"] == -1 or v["pool.n_jobs"] >= 1, "pool.n_jobs", "must be >= 1 or -1")
    need(0 < v["pool.connect_timeout"] < float("inf"), "pool.connect_timeout", "must be a finite number of seconds > 0")
    need(not v["input.pattern"].startswith("/") and ".." not in Path(v["input.pattern"]).parts,
         "input.pattern", "must be relative to input.root without '..'")
    from bodybatch.codec import get_codec
    from bodybatch.errors import TrackError

    name = v["codec.name"]
    keys = _codec_keys(name)
    for key in SCHEMA:
        if key.startswith("codec.") and key != "codec.name":
            short = key.split(".", 1)[1]
            if short not in keys and v[key] != SCHEMA[key][1]:
                raise ConfigError(f"{where}: {key} does not apply to codec {name}; its keys: {', '.join(keys)}")
    try:
        get_codec(name, **{k: v[f"codec.{k}"] for k in keys if v[f"codec.{k}"] is not None})
    except TrackError as exc:
        raise ConfigError(f"{where}: codec: {exc}") from None
