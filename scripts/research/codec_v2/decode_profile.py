"""Where today's decode time goes (one synthetic track, cProfile, cumulative time by stage),
and the cost of the least-squares predictor's sequential integer decode (L lags) against
today's K=2 decode of the same residual shape.

    taskset -c 1 python scripts/research/codec_v2/decode_profile.py
"""
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import harness as h  # noqa: E402
from bodybatch.codec import predict  # noqa: E402

tracks = data.load(sources=("synth",))
source, name, arrs = tracks[0]
x = arrs["V"][:256]
st = h.structure_for(x[0], (name, "V"))

# 1) whole-file decode profile
import bodybatch  # noqa: E402

T = len(x)
track = {
    "vertices": (x[..., :3] * 0.5).astype(np.float32), "vertex_uncertainties": (x[..., 3] / 2000).astype(np.float32),
    "joints": (arrs["J"][:T, :, :3] * 0.5).astype(np.float32), "joint_uncertainties": (arrs["J"][:T, :, 3] / 2000).astype(np.float32),
    "boxes": np.zeros((T, 5), np.float32), "frame_index": np.arange(T),
}
with tempfile.TemporaryDirectory() as tmp:
    p = Path(tmp) / "t.bb"
    bodybatch.write_track(p, track, {})
    with bodybatch.open_track(p) as r:
        r.to_arrays()
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    with bodybatch.open_track(p) as r:
        r.to_arrays()
    pr.disable()
    dt = time.perf_counter() - t0
print(f"decode {T} frames: {dt * 1e3:.0f} ms = {T / dt:.0f} pf/s (profiled)")
s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
print("\n".join(s.getvalue().splitlines()[6:30]))


# 2) sequential integer decode of an L-lag offset predictor vs today's
def decode_lsq(P, r, w, W, S, L):
    """x[t] = r[t] + floor((P[t]<<S + sum_l w_l (W x[t-l] - P[t-l]) + W 2^(S-1)) / (W << S)), frames >= L
    (frames < L given). Frame-major contiguous arrays (T, n, D)."""
    T = P.shape[0]
    x = np.empty_like(P)
    x[:L] = r[:L]
    O = np.empty_like(P)
    O[:L] = W * x[:L] - P[:L]
    known = (P << S) + W * (1 << (S - 1))
    sh = W << S
    for t in range(L, T):
        acc = known[t].copy()
        for l in range(1, L + 1):
            acc += w[l - 1] * O[t - l]
        acc //= sh
        acc += r[t]
        x[t] = acc
        O[t] = W * acc - P[t]
    return x


res = predict.encode_residuals(x[:64], st, 2)
for _ in range(2):
    t0 = time.perf_counter()
    predict.decode_residuals(res, st, 2, int(np.abs(x).max()))
    t_today = time.perf_counter() - t0
n = st.n_points
for L in (4, 8):
    P = np.ascontiguousarray(np.random.default_rng(0).integers(-5000, 5000, (64, n, 4)), np.int64)
    r = np.ascontiguousarray(np.random.default_rng(1).integers(-3, 3, (64, n, 4)), np.int64)
    w = np.full(L, 4096 // L, np.int64)
    for _ in range(2):
        t0 = time.perf_counter()
        decode_lsq(P, r, w, 64, 12, L)
        t_l = time.perf_counter() - t0
    print(f"64-frame chunk, {n} points: today's decode_residuals {t_today * 1e3:.1f} ms; "
          f"L={L} sequential loop (numpy, int64, all levels at once) {t_l * 1e3:.1f} ms "
          f"(+ parents' sums and level order not included)")
