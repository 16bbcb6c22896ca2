"""Is there low-rank structure left? Per 64-frame chunk of vertex coordinates:

1. residual PCA: energy share of the top r singular components of the (T-L) x 3N residual
   matrix of the least-squares predictor (lsq.py, L=8), against r/(T-L) for white noise;
   the bits a rank-r correction could save at best (Gaussian estimate
   0.5*log2(total/remaining) per value) and what its basis would cost (r x 3N values at the
   residual's own ~2.4 bits/value: the floor for coding a basis that is itself noise-like).
2. position PCA: the chunk's positions relative to their per-frame mean (T x 3N); the
   energy left after a rank-r approximation, expressed as bits/value of a Gaussian at the
   0.5 mm grid, plus the basis cost per value.

    taskset -c 1 python scripts/research/codec_v2/lowrank.py [--sources corpus,synth]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import harness as h  # noqa: E402
import lsq  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--sources", default="corpus,synth")
ap.add_argument("--max-chunks", type=int, default=12)
a = ap.parse_args()
tracks = data.load(sources=tuple(a.sources.split(",")))
L = 8
for source in a.sources.split(","):
    rows = []
    for src, name, arrs in tracks:
        if src != source:
            continue
        x = arrs["V"]
        st = h.structure_for(x[0], (name, "V"))
        for c0, c1 in h.chunks(len(x), 64):
            if c1 - c0 < 64 or len(rows) >= a.max_chunks:
                continue
            res = lsq.lsq_residuals(x[c0:c1], st, lags=L, motion=False)
            R = res[:, L:, :3].transpose(1, 0, 2).reshape(64 - L, -1).astype(np.float64)
            s = np.linalg.svd(R, compute_uv=False) ** 2
            tot = s.sum()
            pos = x[c0:c1, :, :3].astype(np.float64)
            pos = (pos - pos.mean(axis=1, keepdims=True)).reshape(64, -1)
            pos -= pos.mean(axis=0)
            sp = np.linalg.svd(pos, compute_uv=False) ** 2
            rows.append((s, tot, sp, R.shape))
    if not rows:
        continue
    print(f"[{source}] {len(rows)} chunks of 64 frames")
    for r in (1, 4, 8):
        share = np.mean([s[:r].sum() / t for s, t, _, _ in rows])
        save = np.mean([0.5 * np.log2(t / (t - s[:r].sum())) for s, t, _, _ in rows])
        nvals = rows[0][3][0] * rows[0][3][1]
        basis = r * rows[0][3][1] * 2.4 / nvals
        print(f"  residual rank {r}: top energy {share:.1%} (white noise {r / (64 - L):.1%}); "
              f"saves <= {save:.3f} bits/value, basis costs ~{basis:.3f} bits/value")
    for r in (8, 16, 32):
        left = np.mean([sp[r:].sum() / (64 * sp.size and rows[0][3][1]) for _, _, sp, _ in rows])
        bits = 0.5 * np.log2(2 * np.pi * np.e * max(left, 1e-9))
        basis = r * rows[0][3][1] * 4.0 / (64 * rows[0][3][1])  # >= ~4 bits per basis value
        print(f"  positions rank {r}: residual variance {left:.2f} steps^2 per value -> ~{bits:.2f} bits/value "
              f"+ basis >= {basis:.2f} bits/value (today's predictor: ~2.5)")
