"""Shared helpers of the benchmark scripts: person tracks cut from prediction files
by their ground-truth ids, and synthetic data from ../shared/bench/synth.py."""

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bodybatch._rows import DETECTION_FIELDS as FIELDS

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"


def require_shared(*parts):
    """Exit with a one-line message unless ``../shared/<parts>`` exists (the corpus,
    synth.py: the benchmarks' data sit beside the checkout, not in it)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        sys.exit(f"{Path(sys.argv[0]).name}: needs {path} (../shared beside this checkout)")


def gt_tracks(path, min_length=10):
    """Yield (name, track dict) per true person of a prediction file (``NAME.gt.npz``
    beside it gives the person id of every detection, -1 for spurious ones)."""
    from _groundtruth import gt_tracks as tracks_by_id

    for pid, track in tracks_by_id(path, min_length=min_length).items():
        yield f"{Path(path).stem}/p{pid}", track


def synth_dataset(out_dir, videos, frames, people, seed=0, compression="zstd", parallel=2):
    """Generate (once) a synthetic dataset with shared/bench/synth.py, in ``parallel``
    processes (xz writing is slow); return its prediction files."""
    out_dir = Path(out_dir)
    files = sorted(glob.glob(str(out_dir / "*.xz")))
    if len(files) >= videos:
        return files[:videos]
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for part in range(parallel):
        count = videos // parallel + (part < videos % parallel)
        if not count:
            continue
        cmd = [
            sys.executable, str(SHARED / "bench" / "synth.py"), str(out_dir),
            "--videos", str(count), "--seed", str(seed * 1000 + part), "--prefix", f"s{part}_video",
            "--frames", str(frames[0]), str(frames[1]),
            "--people", str(people[0]), str(people[1]),
            "--compression", compression,
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit("synth.py failed")
    return sorted(glob.glob(str(out_dir / "*.xz")))[:videos]


def dense_body_model(path, n_vertices=15_830, seed=0):
    """Write (once) a denser variant of ../shared/data/body_model.npz for synth.py
    ``--model``: the 13,718 vertices plus midpoints of random mesh edges (each skinned
    like its first endpoint), ``n_vertices`` in all. Returns ``path``."""
    path = Path(path)
    if path.exists():
        return path
    model = dict(np.load(SHARED / "data" / "body_model.npz"))
    faces = model["faces"]
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    extra = n_vertices - model["rest_vertices"].shape[1]
    pick = edges[np.random.default_rng(seed).choice(len(edges), extra, replace=False)]
    rest = model["rest_vertices"]
    model["rest_vertices"] = np.concatenate([rest, (rest[:, pick[:, 0]] + rest[:, pick[:, 1]]) / 2], axis=1)
    model["weight_index"] = np.concatenate([model["weight_index"], model["weight_index"][pick[:, 0]]])
    model["weight"] = np.concatenate([model["weight"], model["weight"][pick[:, 0]]])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".tmp.npz"), **model)
    os.replace(path.with_suffix(".tmp.npz"), path)
    return path


def raw_float32_bytes(track):
    """Size of the track's arrays as float32 (the 'raw' reference)."""
    n = sum(np.asarray(track[k]).size for k in FIELDS if k in track)
    return 4 * n


def max_abs_error(decoded, track):
    """Largest |decoded - input| over coordinates (mm) and uncertainties (in mm)."""
    err = 0.0
    for k, scale in (("vertices", 1), ("joints", 1), ("vertex_uncertainties", 1000), ("joint_uncertainties", 1000)):
        if k in track:
            a = np.asarray(decoded[k], np.float64)
            b = np.asarray(track[k], np.float64)
            err = max(err, float(np.max(np.abs(a - b))) * scale)
    return err


def cpu_env_note():
    return f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
