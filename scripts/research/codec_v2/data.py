"""Quantized person tracks for the codec v2 research: corpus tracks (by their ground-truth
ids) and synthetic tracks, on the 0.5 mm grid exactly as bodybatch quantizes them, cached
as int32 arrays so that every experiment reads the same integers fast.

    python scripts/research/codec_v2/data.py [--synth-dir /tmp/bb17_synth] [--cache /tmp/bb17_cache.npz]

Each track: ``V`` (T, 13718, 4) int32 = vertex x, y, z (mm / 0.5) and uncertainty
(m * 2000); ``J`` (T, 25, 4) int32 likewise for joints.
"""

import argparse
import glob
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the repository (scripts/research/codec_v2/..)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

STEP_MM = 0.5
DEFAULT_CACHE = "/tmp/bb17_cache.npz"
DEFAULT_SYNTH = "/tmp/bb17_synth"


def quantize_track(track, step=STEP_MM):
    out = {}
    for group, (coord, unc) in {"V": ("vertices", "vertex_uncertainties"), "J": ("joints", "joint_uncertainties")}.items():
        c = np.round(np.asarray(track[coord], np.float64) / step)
        u = np.round(np.asarray(track[unc], np.float64) * (1000.0 / step))
        out[group] = np.concatenate([c, u[..., None]], axis=-1).astype(np.int32)
    return out


def build(corpus_dir, synth_dir, cache):
    import _benchdata as bd

    arrays, names = {}, []
    files = [("corpus", f) for f in sorted(glob.glob(os.path.join(corpus_dir, "*.xz")))]
    files += [("synth", f) for f in sorted(glob.glob(os.path.join(synth_dir, "*.xz")))]
    for source, f in files:
        for name, track in bd.gt_tracks(f):
            q = quantize_track(track)
            key = f"{source}:{name}"
            names.append(key)
            arrays[f"{len(names) - 1}_V"] = q["V"]
            arrays[f"{len(names) - 1}_J"] = q["J"]
            print(key, q["V"].shape, flush=True)
    np.savez(cache, names=np.array(names), **arrays)


def load(cache=DEFAULT_CACHE, sources=("corpus", "synth")):
    """[(source, name, {"V": int32 (T,N,4), "J": int32 (T,J,4)})]"""
    z = np.load(cache)
    out = []
    for i, key in enumerate(z["names"]):
        source, name = str(key).split(":", 1)
        if source in sources:
            out.append((source, name, {"V": z[f"{i}_V"], "J": z[f"{i}_J"]}))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/shared/corpus")
    ap.add_argument("--synth-dir", default=DEFAULT_SYNTH)
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    a = ap.parse_args()
    build(a.corpus, a.synth_dir, a.cache)
