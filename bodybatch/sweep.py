"""Size against error over quantization steps (``bodybatch sweep``).

Tracks come from prediction files (split with the default ``tracks.*`` settings),
track files (one track each) or a run configuration (a sample of its videos, split
as it says, by :func:`bodybatch.job.split_tracks`). Each step encodes every track
into a temporary folder with the chosen codec, decodes it and measures the bytes and
the per-field error against the tracks as read. bodycompress itself (0.5 mm, xz,
its defaults) is measured on the same tracks as a reference when importable.

Units: coordinates in mm; uncertainties are stored in m and their errors are
reported in mm. The JSON schema is :data:`JSON_SCHEMA` (README, "Quality sweep").
"""

import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bodybatch._rows import DETECTION_FIELDS
from bodybatch.errors import ConfigError, PlanError

__all__ = ["FIELDS", "SweepPoint", "SweepResult", "collect_tracks", "run_sweep", "JSON_VERSION"]

#: Quantized fields and the factor that turns each one's unit into mm.
FIELDS = {"vertices": 1.0, "joints": 1.0, "vertex_uncertainties": 1000.0, "joint_uncertainties": 1000.0}
#: Version of the ``--json`` document (bumped when a key changes meaning or goes).
JSON_VERSION = 1
#: Reference point: bodycompress with its defaults.
REFERENCE = {"id": "bodycompress", "package": "bodycompress", "quantization_mm": 0.5, "compression": "xz"}


@dataclass
class SweepPoint:
    """One encoding of all tracks.

    Attributes
    ----------
    codec : dict
        Codec config (``get_config``), or :data:`REFERENCE` plus the package version.
    step_mm, uncertainty_step_mm : float
        Grid steps of the coordinates and of the uncertainties, in mm.
    bytes : int
        Size of all encoded track files.
    ratio : float
        float32 size of the stored arrays (``raw_bytes``) / ``bytes``.
    bits_per_vertex_frame : float or None
        ``8 * bytes / (person-frames * vertices per mesh)``: the whole file (joints,
        uncertainties, boxes, cameras too) per mesh vertex and frame; None without
        vertices.
    errors_mm : dict
        Per field: ``max``, ``mean`` and ``rms`` of |decoded - input| in mm, over
        ``n`` values.
    reference : bool
        True for the bodycompress reference point.
    """

    codec: dict
    step_mm: float
    uncertainty_step_mm: float
    bytes: int
    ratio: float
    bits_per_vertex_frame: object
    errors_mm: dict
    reference: bool = False

    @property
    def label(self):
        name = "bodycompress (ref.)" if self.reference else self.codec["id"]
        return name


@dataclass
class SweepResult:
    """Every point of a sweep and what it was measured on (see :meth:`to_json`)."""

    sources: list
    fields: list
    n_tracks: int
    person_frames: int
    n_vertices: int
    raw_bytes: int
    points: list
    input_grid_mm: object = None

    def to_json(self):
        """JSON-safe dict: ``version``, ``sources``, ``fields``, ``tracks``,
        ``person_frames``, ``n_vertices``, ``raw_bytes`` and ``points`` (each a
        :class:`SweepPoint` as a dict), ``input_grid_mm``."""
        return {"version": JSON_VERSION, "sources": self.sources, "fields": self.fields, "tracks": self.n_tracks,
                "person_frames": self.person_frames, "n_vertices": self.n_vertices, "raw_bytes": self.raw_bytes,
                "input_grid_mm": self.input_grid_mm, "points": [asdict(p) for p in self.points]}  # fmt: skip

    def table(self):
        """The points as a text table (errors in mm: max / mean / rms per field)."""
        short = {"vertices": "vertices", "joints": "joints", "vertex_uncertainties": "vertex unc.",
                 "joint_uncertainties": "joint unc."}  # fmt: skip
        head = f"{'codec':<19} {'step':>5} {'unc.':>5} {'size':>10} {'x f32':>6} {'bits/v/f':>8}"
        cell = 20
        lines = [
            f"{self.n_tracks} track(s), {self.person_frames} person-frames, {self.n_vertices} vertices per mesh; "
            f"steps and errors in mm (uncertainties converted to mm); error columns: max / mean / rms",
            head + "".join(f" | {short[f]:^{cell}}" for f in self.fields),
        ]
        lines.append("-" * len(lines[1]))
        if self.input_grid_mm:
            lines.insert(1, f"note: the inputs lie on a {self.input_grid_mm:g} mm grid already; errors are measured "
                            f"against them (steps dividing {self.input_grid_mm:g} mm lose nothing)")
        for p in self.points:
            bpvf = "" if p.bits_per_vertex_frame is None else f"{p.bits_per_vertex_frame:.3f}"
            row = (f"{p.label:<19} {p.step_mm:>5g} {p.uncertainty_step_mm:>5g} {_size(p.bytes):>10} "
                   f"{p.ratio:>6.2f} {bpvf:>8}")  # fmt: skip
            for f in self.fields:
                e = p.errors_mm[f]
                row += f" | {e['max']:6.3f} {e['mean']:6.3f} {e['rms']:6.3f}"
            lines.append(row)
        return "\n".join(lines)


def _size(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# -- tracks -------------------------------------------------------------------------------
class _Collector:
    """In-memory stand-in for a TrackWriter (see :func:`bodybatch.job.split_tracks`)."""

    def __init__(self):
        self.rows, self.frames = [], []

    def append(self, row, frame_index):
        self.rows.append({k: (dict(v) if k == "camera" else np.array(v)) for k, v in row.items()})
        self.frames.append(int(frame_index))

    def __len__(self):
        return len(self.rows)

    def close(self):
        track = {k: np.stack([r[k] for r in self.rows]) for k in DETECTION_FIELDS if k in self.rows[0]}
        if "camera" in self.rows[0]:
            track["camera"] = [r["camera"] for r in self.rows]
        track["frame_index"] = np.array(self.frames, np.int64)
        return track

    def abort(self):
        self.rows = []


def _split(reader, tracks_options, max_frames, on_truncated="fail"):
    from bodybatch.job import split_tracks
    from bodybatch.splitting import make_splitter

    options = dict(tracks_options)
    min_length = options.pop("min_length")
    splitter = make_splitter(options.pop("mode"), min_length=min_length, **options)
    done, _, _ = split_tracks(reader, splitter, lambda key: _Collector(), min_length, on_truncated, max_frames)
    return [done[k] for k in sorted(done)]


def _read_track_file(path):
    from bodybatch.formats import open_track

    with open_track(path) as reader:
        track = reader.to_arrays()
        track["frame_index"] = np.asarray(reader.frame_index)
    return track


def _is_prediction_file(path):
    """bodycompress files are predictions unless bodybatch wrote them as a track."""
    from bodybatch.formats import sniff
    from bodybatch.formats.bodycompress import read_predictions

    if sniff(path) != "bodycompress":
        return False
    reader = read_predictions(path)
    try:
        return not (isinstance(reader.metadata, dict) and "bodybatch" in reader.metadata)
    finally:
        reader.close()


def collect_tracks(inputs, videos=5, max_frames=None):
    """Person tracks of the sweep's inputs.

    Parameters
    ----------
    inputs : list of path-like
        Prediction files, track files, or one YAML run configuration.
    videos : int
        With a configuration: how many of its videos, spread evenly over the sorted list.
    max_frames : int, optional
        Read only the first frames of each video.

    Returns
    -------
    tracks : list of dict
        ``vertices (T, V, 3)`` mm, ``joints (T, J, 3)`` mm, ``vertex_uncertainties
        (T, V)`` m, ``joint_uncertainties (T, J)`` m, ``boxes``, ``camera``,
        ``frame_index (T,)``.
    sources : list of str
    codec : Codec or None
        The configuration's codec (None for files).
    """
    from bodybatch.config import SCHEMA, load_config
    from bodybatch.formats.bodycompress import read_predictions

    paths = [Path(p) for p in inputs]
    configs = [p for p in paths if p.suffix.lower() in (".yaml", ".yml")]
    if configs:
        if len(paths) > 1:
            raise ConfigError(f"{configs[0]}: a config must be the only INPUT of sweep")
        from bodybatch.plan import discover

        config = load_config(configs[0])
        found = discover(config)
        picks = sorted({int(round(i)) for i in np.linspace(0, len(found) - 1, min(videos, len(found)))})
        tracks, sources = [], []
        for i in picks:
            reader = read_predictions(config.input_root / found[i], allow_pickle=config["input.allow_pickle"])
            with reader:
                tracks += _split(reader, config.tracks_options(), max_frames, config["input.on_truncated"])
            sources.append(found[i])
        codec = config.codec()
    else:
        defaults = {k.split(".", 1)[1]: v[1] for k, v in SCHEMA.items() if k.startswith("tracks.")}
        tracks, sources, codec = [], [str(p) for p in paths], None
        for path in paths:
            if _is_prediction_file(path):
                with read_predictions(path) as reader:
                    tracks += _split(reader, defaults, max_frames)
            else:
                tracks.append(_read_track_file(path))
    if not tracks:
        raise PlanError(f"no person track in {', '.join(sources)} (tracks shorter than tracks.min_length are dropped)")
    return tracks, sources, codec


# -- measuring ------------------------------------------------------------------------------
class _Errors:
    """Running max, sum and sum of squares of |error| per field, in mm."""

    def __init__(self, fields):
        self.acc = {f: [0.0, 0.0, 0.0, 0] for f in fields}

    def add(self, decoded, original):
        for f, acc in self.acc.items():
            d = np.abs(np.asarray(decoded[f], np.float64) - np.asarray(original[f], np.float64)) * FIELDS[f]
            acc[0] = max(acc[0], float(d.max(initial=0.0)))
            acc[1] += float(d.sum())
            acc[2] += float(np.square(d).sum())
            acc[3] += d.size

    def result(self):
        return {f: {"max": a[0], "mean": a[1] / max(a[3], 1), "rms": math.sqrt(a[2] / max(a[3], 1)), "n": a[3]}
                for f, a in self.acc.items()}  # fmt: skip


def _encode_bodycompress(track, path):
    """Write ``track`` with bodycompress itself (its defaults); the decoded arrays."""
    import bodycompress

    with bodycompress.BodyCompressor(str(path), {}, n_threads=1) as writer:
        for i in range(len(track["frame_index"])):
            frame = {k: track[k][i] for k in DETECTION_FIELDS if k in track}
            if "camera" in track:
                frame["camera"] = track["camera"][i]
            writer.append(**frame)
    frames = list(bodycompress.BodyDecompressor(str(path)))
    return {k: np.stack([f[k] for f in frames]) for k in FIELDS if k in frames[0]}


def run_sweep(tracks, steps, codec="bodybatch", fields=None, uncertainty_step=None, reference=True,
              progress=None, sources=()):  # fmt: skip
    """Encode every track at every step and measure size and error.

    Parameters
    ----------
    tracks : list of dict
        From :func:`collect_tracks` (arrays of one person each).
    steps : sequence of float
        Grid steps of the coordinates, mm.
    codec : str, dict or Codec
        Codec and its other options (``quantization_mm`` is replaced by each step).
    fields : sequence of str, optional
        Quantized fields to keep and measure (default: those of :data:`FIELDS`
        the tracks have); the others are left out of the encoded tracks.
    uncertainty_step : float, optional
        Fixed grid step of the uncertainties, mm (default: each step).
    reference : bool
        Also measure bodycompress 0.5 mm xz when it is importable.
    progress : bool, optional
        tqdm bar; default: only when stderr is a terminal.

    Returns
    -------
    SweepResult
    """
    from tqdm import tqdm

    from bodybatch.codec import get_codec
    from bodybatch.track_writer import write_track

    present = [f for f in FIELDS if f in tracks[0]]
    fields = present if fields is None else [f for f in FIELDS if f in fields]
    if not fields or not set(fields) <= set(present):
        raise ConfigError(f"--fields must name fields the tracks have: {', '.join(present)}")
    tracks = [{k: v for k, v in t.items() if k not in FIELDS or k in fields} for t in tracks]
    base = get_codec(codec).get_config()
    base.pop("uncertainty_quantization_mm", None)
    if reference:
        try:
            import bodycompress
        except ImportError:
            reference = False
    person_frames = sum(len(t["frame_index"]) for t in tracks)
    n_vertices = tracks[0]["vertices"].shape[1] if "vertices" in tracks[0] else 0
    total = len(tracks) * (len(steps) + bool(reference))
    progress = sys.stderr.isatty() if progress is None else progress
    points, raw = [], 0
    with tempfile.TemporaryDirectory(prefix="bodybatch-sweep-") as tmp, \
            tqdm(total=total, disable=not progress, unit="track", desc="sweep", leave=False) as bar:  # fmt: skip
        path = Path(tmp) / "track.xz"
        for step in sorted(steps):
            c = get_codec(base, quantization_mm=step, uncertainty_quantization_mm=uncertainty_step)
            errors, size, raw = _Errors(fields), 0, 0
            for track in tracks:
                info = write_track(path, track, codec=c)
                size, raw = size + info.bytes, raw + info.raw_bytes
                errors.add(_read_track_file(path), track)
                bar.update()
            points.append(_point(c.get_config(), step, c.uncertainty_step_mm, size, raw, person_frames, n_vertices,
                                 errors))  # fmt: skip
        if reference:
            errors, size = _Errors(fields), 0
            for track in tracks:
                errors.add(_encode_bodycompress(track, path), track)
                size += os.path.getsize(path)
                bar.update()
            config = dict(REFERENCE, version=getattr(bodycompress, "__version__", "unknown"))
            points.append(_point(config, 0.5, 0.5, size, raw, person_frames, n_vertices, errors, True))
    grid = input_grid(tracks, list(steps) + [0.5])
    return SweepResult(list(sources), fields, len(tracks), person_frames, n_vertices, raw, points, grid)


def input_grid(tracks, candidates):
    """The largest of ``candidates`` (mm) that every coordinate of the first track is a
    multiple of (prediction files hold values on their writer's grid), or None."""
    track = tracks[0]
    values = [np.asarray(track[f], np.float64).ravel()[:100_000] for f in ("vertices", "joints") if f in track]
    if not values:
        return None
    values = np.concatenate(values)
    for step in sorted(set(candidates), reverse=True):
        q = values / step
        if np.all(np.abs(q - np.round(q)) < 1e-6):
            return float(step)
    return None


def _point(config, step, unc_step, size, raw, person_frames, n_vertices, errors, reference=False):
    bpvf = 8 * size / (person_frames * n_vertices) if n_vertices and person_frames else None
    return SweepPoint(config, float(step), float(unc_step), int(size), raw / size if size else 0.0, bpvf,
                      errors.result(), reference)  # fmt: skip
