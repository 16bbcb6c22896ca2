"""Adaptive linear temporal prediction of the offset to the parents (integer arithmetic).

With C[t] = sum of the m parents and O[t] = m*x[t] - C[t] (as today's predictor), frames
t >= L of a chunk predict

    x^[t] = floor((2**S * C[t] + sum_i w_i f_i[t] + m * 2**(S-1)) / (m * 2**S))

with integer weights w_i (S = 12 fractional bits) over integer features f_i:
O[t-1] .. O[t-L] (the offset history) and, with ``motion``, D[t] = C[t] - C[t-1] and
D[t-1] (the parents' motion, for points that lag behind or overshoot it).
The weights are fitted per chunk, per level block and per component group (xyz / uncertainty)
by least squares in float (encoder only), rounded to integers and stored (int16 side
information); the decoder only does the integer sum above, so every machine decodes the same
bits. Frames 1..L-1 use today's rule (window min(t, 2)). With ``unc_temporal`` the
uncertainty uses the same machinery (its own weights).

    taskset -c 1 python scripts/research/codec_v2/lsq.py [--sources corpus,synth]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402
from bodybatch.codec import predict  # noqa: E402
from bodybatch.codec.bodybatch_codec import _blocks, activity_classes  # noqa: E402

S = 12


def stored(x, st):
    """(N+1, T, D) int64 in stored order with the zero row, and C = parents' sums."""
    n = st.n_points
    xe = np.zeros((n + 1,) + x.shape[:1] + x.shape[2:], np.int64)
    xe[:n] = np.transpose(x, (1, 0, 2))[st.order]
    c = sum(xe[st.parents[:, j]] for j in range(st.n_parents))
    return xe, c


def features(o, c, t0, t1, lags, motion, blend=False, xs=None, m=None):
    """(n, t1-t0, D, F) features for frames t0..t1-1."""
    f = [o[:, t0 - l: t1 - l] for l in range(1, lags + 1)]
    if blend:  # C[t] - m x[t-1]: lets the predictor lean on the point's own last position
        f.append(c[:, t0:t1] - m * xs[:, t0 - 1: t1 - 1])
    if motion:
        f.append(c[:, t0:t1] - c[:, t0 - 1: t1 - 1])
        f.append(c[:, t0 - 1: t1 - 1] - c[:, t0 - 2: t1 - 2])
    return np.stack(f, axis=-1)


def fit_weights(y, f, ridge=1e-3):
    """Least squares y ~ f @ w (flattened), weights rounded to S fractional bits (int)."""
    F = f.reshape(-1, f.shape[-1]).astype(np.float64)
    Y = y.reshape(-1).astype(np.float64)
    g = F.T @ F
    g += ridge * np.trace(g) / len(g) * np.eye(len(g)) + 1e-9 * np.eye(len(g))
    w = np.linalg.solve(g, F.T @ Y)
    return np.clip(np.round(w * 2**S), -(2**15), 2**15 - 1).astype(np.int64)


def lsq_residuals(x, st, lags=4, motion=True, per="block", unc_lags=None, side=None, window=2, blend=False):
    """(N, T, D) residuals; ``side`` (list) receives the stored weights."""
    n, m = st.n_points, st.n_parents
    xe, c = stored(x, st)
    xs = xe[:n]
    o = m * xs - c[:n]
    cc = c[:n]
    t = x.shape[0]
    res = predict.encode_residuals(x, st, window).astype(np.int64)  # frames < L as today
    d = x.shape[2]
    need = max(lags, 2 if motion else 1)
    if t <= need:
        return res
    comps = [(0, 3)] + ([(3, d)] if d > 3 else [])
    blocks = _blocks(n) if per == "block" else [(0, n)]
    for lo, hi in blocks:
        for c0, c1 in comps:
            L = lags if (c0 == 0 or unc_lags is None) else unc_lags
            nd = max(L, 2 if motion else 1)
            if t <= nd:
                continue
            f = features(o[lo:hi, :, c0:c1], cc[lo:hi, :, c0:c1], nd, t, L, motion, blend, xs[lo:hi, :, c0:c1], m)
            y = o[lo:hi, nd:, c0:c1]
            w = fit_weights(y, f)
            if side is not None:
                side.append(w)
            num = (cc[lo:hi, nd:, c0:c1] << S) + (f * w).sum(-1) + m * (1 << (S - 1))
            pred = num // (m << S)
            res[lo:hi, nd:, c0:c1] = xs[lo:hi, nd:, c0:c1] - pred
    return res


def lsq_scheme(x, st, tally, group, with_entropy=False, classes=True, **kw):
    side = []
    kw = {k: v for k, v in kw.items() if k in ("lags", "motion", "per", "unc_lags", "window", "blend")}
    res = lsq_residuals(x, st, side=side, **kw)
    cl = activity_classes(res) if classes else np.zeros(st.n_points, np.uint8)
    tally.add("side", cl, nbytes=h.code(cl.astype(np.uint16)) + 2 * sum(len(w) for w in side))
    for comp, arr in h.baseline_streams(res, cl):
        tally.add(h.family(group, comp), arr, with_entropy=with_entropy)


if __name__ == "__main__":
    import data

    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default="corpus,synth")
    ap.add_argument("--only", default="")
    ap.add_argument("--chunk", type=int, default=64)
    a = ap.parse_args()
    tracks = data.load(sources=tuple(a.sources.split(",")))
    base = h.run_scheme(tracks, h.today)
    print(h.report(base, "today"), flush=True)
    configs = {
        "lsq L=2": dict(lags=2, motion=False),
        "lsq L=4": dict(lags=4, motion=False),
        "lsq L=4 +motion": dict(lags=4, motion=True),
        "lsq L=8 +motion": dict(lags=8, motion=True),
        "lsq L=4 +blend": dict(lags=4, motion=False, blend=True),
        "lsq L=8 +blend": dict(lags=8, motion=False, blend=True),
        "lsq L=8 +blend +motion": dict(lags=8, motion=True, blend=True),
    }
    for label, kw in configs.items():
        if a.only and label not in a.only.split(";"):
            continue
        r = h.run_scheme(tracks, lsq_scheme, chunk_size=a.chunk, **kw)
        print(h.report(r, label + f" chunk={a.chunk}", base), flush=True)
