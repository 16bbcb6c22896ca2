"""Codec v2: bits/value of the vertex xyz / uncertainty streams per idea (sizes only).

    SRC="/work/shared/corpus/*.xz" python scripts/research/codec_v2/bits_v2.py
    SRC="/tmp/bb17_synth/*.xz" python scripts/research/codec_v2/bits_v2.py

Variants switch the v2 spatial interpolation weights off by replacing
``predict2.spatial_weights`` (encoder side only: sizes, no decoding).
Results: results/bench_codec_v2.txt.
"""
import glob
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np
import _benchdata as bd
from bodybatch.codec import get_codec, predict2
src = os.environ.get("SRC", "/work/shared/corpus/*.xz")
tracks = [t for f in sorted(glob.glob(src)) for _, t in bd.gt_tracks(f)]
even = lambda x0, parents: np.tile(predict2.base_weights(parents.shape[1]), (len(parents), 1))
orig = predict2.spatial_weights
variants = [
    ("v1 (K=2, m=3, chunk 64)", dict(chunk_size=64), orig),
    ("v1 chunk 128", dict(chunk_size=128), orig),
    ("v2 even weights, L=1, chunk 128", dict(predictor=2, chunk_size=128, n_parents=3, window=1), even),
    ("v2 even weights, L=4, chunk 64", dict(predictor=2, chunk_size=64, n_parents=3, window=4), even),
    ("v2 even weights, L=4, chunk 128", dict(predictor=2, chunk_size=128, n_parents=3, window=4), even),
    ("v2 interp, L=4, chunk 128 (V2_OPTIONS)", dict(predictor=2, chunk_size=128, n_parents=3, window=4), orig),
    ("v2 interp, L=8, chunk 128", dict(predictor=2, chunk_size=128, n_parents=3, window=8), orig),
]
for label, opts, sw in variants:
    predict2.spatial_weights = sw
    c = get_codec("bodybatch", **opts)
    xyz = unc = side = nv = 0
    for t in tracks:
        arrays = {k: np.asarray(t[k]) for k in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties")}
        lay = c.make_layout({k: v[:1] for k, v in arrays.items()})
        T, V = arrays["vertices"].shape[:2]
        nv += T * V
        for a in range(0, T, c.chunk_size):
            enc, _ = c.encode_chunk({k: v[a:a + c.chunk_size] for k, v in arrays.items()}, lay)
            e = enc["points"]["vertices"]
            st = e["streams"]
            xyz += sum(len(s) for s in st[0::2]); unc += sum(len(s) for s in st[1::2])
            side += len(e["classes"]) + len(e.get("weights", b""))
    print(f"{label:42s} Vxyz {8*xyz/nv/3:.3f}  Vunc {8*unc/nv:.3f}  side {side:,} B  vertex streams {xyz+unc+side:,} B", flush=True)
