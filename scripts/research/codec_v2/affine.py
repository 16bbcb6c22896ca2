"""Per-frame global linear map of the offsets (found by lowrank.py: 66-68% of the least-
squares predictor's residual energy sits in 4 per-frame modes, i.e. the whole body's offsets
to their parents scale and rotate together from frame to frame: depth/scale jitter and a
global rotation error of a per-frame estimator).

On top of lsq.py's temporal offset predictor (per block weights w, L lags), each frame t >= L
of a chunk gets a 3x3 integer matrix A[t] (Q = 2**16 fixed point), shared by all levels,
fitted by least squares over all vertices (encoder, float):

    e[t] = O[t] - sum_l w_l O[t-l]              (the lsq predictor's miss, in O units)
    e[t] ~ A[t] @ Oref[t],   Oref[t] = (O[t-1] + ... + O[t-L]) / L   (decoder knows it)
    x^[t] = floor((C[t]*2**S + sum_l w_l O[t-l] + ((A[t] @ sum_l O[t-l]) * 2**S / (L*Q)) + m 2**(S-1)) / (m 2**S))

all integer in the decoder (A[t]: 9 int32 a frame; uncertainties: 1 scale a frame).

    taskset -c 1 python scripts/research/codec_v2/affine.py [--sources corpus,synth]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bary  # noqa: E402
import harness as h  # noqa: E402
import lsq  # noqa: E402
from bodybatch.codec import predict  # noqa: E402
from bodybatch.codec.bodybatch_codec import _blocks, activity_classes  # noqa: E402

Q = 16
S = lsq.S


def affine_residuals(x, st, lags=8, side=None, wi=None, B=6, min_points=256):
    n, m = st.n_points, st.n_parents
    xe, c = lsq.stored(x, st)
    xs = xe[:n]
    if wi is None:  # centroid parents
        W, P = m, c[:n]
    else:  # interpolating parents (bary.py)
        W = 1 << B
        P = sum(wi[:, j, None, None] * xe[st.parents[:, j]] for j in range(m))
    O = W * xs - P
    t, d = x.shape[0], x.shape[2]
    if wi is None:
        res = predict.encode_residuals(x, st, 2).astype(np.int64)
    else:
        res = bary.bary_residuals(x, st, wi, B, lags)  # frames < L; frames >= L recomputed below
    if t <= lags:
        return res
    comps = [(0, 3)] + ([(3, d)] if d > 3 else [])
    L = lags
    hist = sum(O[:, L - l: t - l] for l in range(1, L + 1))  # (n, t-L, D): sum of the last L offsets
    for c0, c1 in comps:
        # stage 1: temporal weights per block
        tnum = np.zeros((n, t - L, c1 - c0), np.int64)
        for lo, hi in _blocks(n):
            f = lsq.features(O[lo:hi, :, c0:c1], P[lo:hi, :, c0:c1], L, t, L, False)
            w = lsq.fit_weights(O[lo:hi, L:, c0:c1], f)
            if side is not None:
                side.append(w)
            tnum[lo:hi] = (f * w).sum(-1)  # O units * 2**S
        # stage 2: per-frame global map on the offset history (fit on points of levels >= min_points)
        fit = slice(min_points, n)
        e = (O[fit, L:, c0:c1] * (1 << S) - tnum[fit]).astype(np.float64) / (1 << S)  # (n', t-L, k)
        ref = hist[fit, :, c0:c1].astype(np.float64) / L
        k = c1 - c0
        A = np.zeros((t - L, k, k), np.int64)
        for ti in range(t - L):
            X, Y = ref[:, ti], e[:, ti]
            g = X.T @ X + 1e-6 * np.eye(k) * max(1.0, np.trace(X.T @ X))
            a = np.linalg.solve(g, X.T @ Y).T  # e ~ a @ ref
            A[ti] = np.round(a * (1 << Q))
        if side is not None:
            side.append(A.ravel())
        # integer correction: (A @ hist) * 2**S / (L * 2**Q), floor
        corr = np.einsum("tij,ntj->nti", A, hist[:, :, c0:c1])  # int64
        corr = (corr << S) // (L << Q)
        num = (P[:, L:, c0:c1] << S) + tnum + corr + W * (1 << (S - 1))
        res[:, L:, c0:c1] = xs[:, L:, c0:c1] - num // (W << S)
    return res


_W = {}


def affine_scheme(x, st, tally, group, with_entropy=False, lags=8, parents="centroid", lam=0.2, **_):
    side = []
    wi = None
    if parents == "bary":
        key = (id(st), lam)
        if key not in _W:
            p0 = np.transpose(x[:1], (1, 0, 2))[st.order][:, 0, :3]
            _W[key] = bary.bary_weights(p0, st, 6, lam, 0.5)
        wi = _W[key]
    res = affine_residuals(x, st, lags, side, wi)
    if wi is not None and x.shape[2] > 3:  # uncertainties keep centroid weights
        res[:, :, 3:] = affine_residuals(x, st, lags, None, None)[:, :, 3:]
    cl = activity_classes(res)
    side_bytes = h.code(cl.astype(np.uint16)) + sum(h.code(np.asarray(s, np.int64)) for s in side)
    tally.add("side", cl, nbytes=side_bytes)
    for comp, arr in h.baseline_streams(res, cl):
        tally.add(h.family(group, comp), arr, with_entropy=with_entropy)


if __name__ == "__main__":

    a, tracks, base = h.setup("A today (K=2,m=3,chunk 64)", "corpus,synth")
    configs = [
        ("I lsq L=8 + per-frame affine", dict(lags=8)),
        ("J lsq L=8 + affine chunk 128", dict(lags=8, chunk_size=128)),
        ("K bary m=4 + lsq L=8 + affine chunk 128", dict(lags=8, parents="bary", n_parents=4, chunk_size=128)),
    ]
    for label, kw in configs:
        if a.only and label.split()[0] not in a.only.split(";"):
            continue
        _W.clear()
        kw = dict(kw)
        cs = kw.pop("chunk_size", 64)
        r = h.run_scheme(tracks, affine_scheme, chunk_size=cs, **kw)
        print(h.report(r, label, base), flush=True)
