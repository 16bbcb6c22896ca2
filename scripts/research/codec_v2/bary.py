"""Interpolating parents: predict from a weighted parent position P[t] = sum_j w_j x[p_j, t]
with integer weights w_j (sum W = 2**B) instead of the plain centroid (w_j = 1/m).

The weights are generalized barycentric coordinates of the point in its parents' frame-0
configuration: least squares sum_j w_j p_j ~ v with sum w_j = 1, ridge-shrunk toward 1/m
(``lam``), clipped to [-clip, 1 + clip], rounded to B bits. A locally linear displacement
field (a limb rotating) then moves P[t] with the point, so the offset O[t] = W x[t] - P[t]
stays nearly constant and the temporal offset predictor (lsq.py) works better at coarse
levels where the parents are far away.

Prototype: the weights are computed in float from the track's first frame (encoder) and
would be stored (m small ints a point) or derived decoder-side with integer arithmetic; the
side-cost column counts them stored, coded with pcodec.

    taskset -c 1 python scripts/research/codec_v2/bary.py [--sources corpus,synth]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402
import lsq  # noqa: E402
from bodybatch.codec.bodybatch_codec import _blocks, activity_classes  # noqa: E402


def bary_weights(p0, st, B=6, lam=0.05, clip=0.5):
    """(N, m) int64 weights summing to 2**B per point (stored order)."""
    n, m = st.n_points, st.n_parents
    pts = np.concatenate([p0.astype(np.float64), np.zeros((1, 3))])
    par = pts[st.parents]  # (N, m, 3)
    v = pts[:n]
    base = par[:, 0]
    A = np.transpose(par[:, 1:] - base[:, None], (0, 2, 1))  # (N, 3, m-1)
    b = v - base
    u0 = np.full((n, m - 1), 1.0 / m)
    scale = np.einsum("nij,nij->n", A, A) / max(1, m - 1) + 1e-9
    G = np.einsum("nji,njk->nik", A, A) + (lam * scale)[:, None, None] * np.eye(m - 1)
    rhs = np.einsum("nji,nj->ni", A, b) + (lam * scale)[:, None] * u0
    u = np.linalg.solve(G, rhs[..., None])[..., 0]
    w = np.concatenate([1 - u.sum(1, keepdims=True), u], axis=1)
    w = np.clip(w, -clip, 1 + clip)
    w /= w.sum(1, keepdims=True)
    W = 1 << B
    wi = np.round(w * W).astype(np.int64)
    wi[np.arange(n), np.argmax(np.abs(wi), 1)] += W - wi.sum(1)
    wi[0] = W // m  # the root: virtual parent, weights irrelevant
    wi[0, 0] += W - wi[0].sum()
    return wi


def bary_residuals(x, st, wi, B=6, lags=8, side=None):
    n, m = st.n_points, st.n_parents
    W = 1 << B
    xe, _ = lsq.stored(x, st)
    xs = xe[:n]
    P = sum(wi[:, j, None, None] * xe[st.parents[:, j]] for j in range(m))
    O = W * xs - P
    t, d = x.shape[0], x.shape[2]
    res = np.empty_like(xs)
    res[:, 0] = xs[:, 0] - (P[:, 0] + W // 2) // W
    for ti in range(1, min(t, lags)):
        k = min(2, ti)
        num = k * P[:, ti] + O[:, ti - k: ti].sum(1) + (W * k) // 2
        res[:, ti] = xs[:, ti] - num // (W * k)
    if t > lags:
        comps = [(0, 3)] + ([(3, d)] if d > 3 else [])
        for lo, hi in _blocks(n):
            for c0, c1 in comps:
                f = lsq.features(O[lo:hi, :, c0:c1], P[lo:hi, :, c0:c1], lags, t, lags, False)
                w = lsq.fit_weights(O[lo:hi, lags:, c0:c1], f)
                if side is not None:
                    side.append(w)
                num = (P[lo:hi, lags:, c0:c1] << lsq.S) + (f * w).sum(-1) + W * (1 << (lsq.S - 1))
                res[lo:hi, lags:, c0:c1] = xs[lo:hi, lags:, c0:c1] - num // (W << lsq.S)
    return res


_W = {}


def bary_scheme(x, st, tally, group, with_entropy=False, B=6, lam=0.05, clip=0.5, lags=8, unc_centroid=True,
                track_first=None, **_):
    key = (id(st), B, lam, clip)
    if key not in _W:
        p0 = np.transpose(x[:1], (1, 0, 2))[st.order][:, 0, :3]  # this chunk's frame 0 (first chunk: track's)
        _W[key] = bary_weights(p0, st, B, lam, clip)
        tally.add("side", np.zeros(0), nbytes=h.code(_W[key][:, 1:].ravel()))  # stored once per track
    wi = _W[key]
    side = []
    res = bary_residuals(x, st, wi, B, lags, side)
    if unc_centroid and x.shape[2] > 3:  # uncertainties: plain centroid weights
        w0 = np.full_like(wi, (1 << B) // st.n_parents)
        w0[:, 0] += (1 << B) - w0.sum(1)
        res[:, :, 3:] = bary_residuals(x, st, w0, B, lags, side)[:, :, 3:]
    cl = activity_classes(res)
    tally.add("side", cl, nbytes=h.code(cl.astype(np.uint16)) + 2 * sum(len(w) for w in side))
    for comp, arr in h.baseline_streams(res, cl):
        tally.add(h.family(group, comp), arr, with_entropy=with_entropy)


if __name__ == "__main__":

    a, tracks, base = h.setup("today", "corpus,synth")
    r = h.run_scheme(tracks, lsq.lsq_scheme, lags=8, motion=False)
    print(h.report(r, "lsq L=8 (centroid)", base), flush=True)
    configs = {
        "bary m=3 B=6 lam=.05": dict(),
        "bary m=3 B=6 lam=.2": dict(lam=0.2),
        "bary m=4 B=6 lam=.05": dict(n_parents=4),
        "bary m=4 B=6 lam=.2": dict(n_parents=4, lam=0.2),
    }
    for label, kw in configs.items():
        if a.only and label not in a.only.split(";"):
            continue
        _W.clear()
        r = h.run_scheme(tracks, bary_scheme, **kw)
        print(h.report(r, label, base), flush=True)
