"""Codec v2.1 (format 3.0): bits/value of the vertex streams and file bytes per idea,
cumulatively, from format 2.0 to ``V2_OPTIONS`` (sizes only; monkeypatched encoders).

    SRC="/work/shared/corpus/*.xz" python scripts/research/codec_v2/bits_v3.py
    SRC="/tmp/bb17_synth/*.xz" python scripts/research/codec_v2/bits_v3.py

Columns: Vxyz / Vunc bits per value (vertex coordinate / uncertainty streams), side
(classes + temporal weights, bytes), header (the vertex structure: curve + parent
steps, bytes, as the variant's format codes it, and as format 2.0 would), file bytes
(``write_track``, everything).

The numpy encoder runs (``BODYBATCH_KERNELS=numpy`` is set here): the ablations
monkeypatch numpy functions of :mod:`bodybatch.codec.predict3` that the compiled
encoder kernels do not call.
"""
import glob
import os
import sys
import tempfile
from pathlib import Path

os.environ["BODYBATCH_KERNELS"] = "numpy"  # before bodybatch chooses its kernels

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np

import _benchdata as bd
import bodybatch
from bodybatch.codec import entropy, get_codec, group3, predict2, predict3, spatial3
from bodybatch.codec.bodybatch_codec import V2_0_OPTIONS, V2_OPTIONS
from bodybatch.codec.streams import activity_classes
from bodybatch.codec.structure import structure_to_arrays

SRC = os.environ.get("SRC", "/work/shared/corpus/*.xz")
tracks = [t for f in sorted(glob.glob(SRC)) for _, t in bd.gt_tracks(f)]
ORIG = {"ridge": spatial3.ridge_weights, "mean": predict3._mean_feature, "enc": predict3.encode_residuals}


def no_classes(x, structure, blocks, groups, n_lags, n_classes=1, min_classed=0):
    """Per-block temporal weights; classes (streams only) from those residuals."""
    res, w, _ = ORIG["enc"](x, structure, blocks, groups, n_lags)
    classes = activity_classes(res.transpose(1, 0, 2)) if len(x) > 1 else np.zeros(x.shape[1], np.uint8)
    return res, np.repeat(w, n_classes, axis=1), classes


def patch(ridge=True, mean=True, classes=True, step_cost=group3.STEP_COST, bounds=(64, 128)):
    spatial3.ridge_weights = ORIG["ridge"] if ridge else predict2.spatial_weights
    predict3._mean_feature = ORIG["mean"] if mean else (lambda off: np.zeros_like(off[1:]))
    predict3.encode_residuals = ORIG["enc"] if classes else no_classes
    group3.STEP_COST = step_cost
    spatial3.MIN_SPATIAL, spatial3.MAX_SPATIAL = bounds


V3 = dict(V2_OPTIONS, n_parents=3, level=8)
OLD = dict(step_cost=0.0, bounds=(32, 96))
VARIANTS = [  # label, options, patch arguments
    ("A format 2.0 (V2_0_OPTIONS: L=4, m=3)", dict(V2_0_OPTIONS), {}),
    ("B 2.0 with L=8", dict(V2_0_OPTIONS, window=8), {}),
    ("C 3.0: fixed-point offsets, 3.0 header coding", V3, dict(OLD, ridge=False, mean=False, classes=False)),
    ("D + ridge interpolation weights", V3, dict(OLD, mean=False, classes=False)),
    ("E + running-mean feature", V3, dict(OLD, classes=False)),
    ("F + weights per activity class", V3, dict(OLD)),
    ("G + m=4 (ridge 3x3)", dict(V3, n_parents=4), dict(OLD)),
    ("H + pcodec level 12", dict(V2_OPTIONS), dict(OLD)),
    ("I + parents chosen with step cost 0.15", dict(V2_OPTIONS), dict(bounds=(32, 96))),
    ("J + weight bounds [-64, 128] (= V2_OPTIONS)", dict(V2_OPTIONS), {}),
]


def main():
    path = os.path.join(tempfile.gettempdir(), f"bits_v3_{os.getpid()}.xz")
    print(f"# {SRC}: {len(tracks)} tracks, {sum(len(t['vertices']) for t in tracks)} frames")
    for label, opts, how in VARIANTS:
        patch(**how)
        codec = get_codec("bodybatch", **opts)
        xyz = unc = side = header = header_2 = nv = total = 0
        for t in tracks:
            arrays = {k: np.asarray(t[k]) for k in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties")}
            layout = codec.make_layout({k: v[:1] for k, v in arrays.items()})
            entry = codec.layout_to_header(layout)["vertices"]
            steps = entry["steps"]
            header += len(entry["curve"]) + (sum(map(len, steps)) if isinstance(steps, list) else len(steps))
            curve, flat = structure_to_arrays(layout["vertices"]["structure"])
            header_2 += len(entropy.encode_numbers(curve, delta=True)) + len(entropy.encode_numbers(flat))
            n_frames = len(arrays["vertices"])
            nv += n_frames * arrays["vertices"].shape[1]
            for a in range(0, n_frames, codec.chunk_size):
                enc, _ = codec.encode_chunk({k: v[a : a + codec.chunk_size] for k, v in arrays.items()}, layout)
                e = enc["points"]["vertices"]
                xyz += sum(len(s) for s in e["streams"][0::2])
                unc += sum(len(s) for s in e["streams"][1::2])
                side += len(e["classes"]) + len(e.get("weights", b""))
            total += bodybatch.write_track(path, t, {"bench": True}, **opts).bytes
        print(f"{label:52s} Vxyz {8 * xyz / nv / 3:.3f}  Vunc {8 * unc / nv:.3f}  side {side:>8,d}  "
              f"header {header:>9,d} (2.0-coded {header_2:>9,d})  file bytes {total:>12,d}", flush=True)
    patch()
    os.remove(path)


if __name__ == "__main__":
    main()
