"""Low-rank correction of the least-squares predictor's residual (lowrank.py found 66-68% of
its energy in 4 per-frame modes: the synthetic estimator's smooth surface error, 6 fixed
Gaussian bumps with per-frame random amplitudes, leaks into the parent-relative residual
through its spatial gradient).

Per chunk (``scope="chunk"``) or once per track from its first chunk (``scope="track"``),
the encoder takes the top r right singular vectors of the (T-L) x 3N coordinate residual
matrix (float, encoder only), stores them as integers b_k = round(2**10 v_k) (pcodec, in
stored point order) and per frame integer coefficients c[t,k] = round(R[t] . v_k) (least
squares in the quantized basis); the coded residual is
r'[t] = r[t] - ((sum_k c[t,k] b_k + 2**9) >> 10) with c = 2**10 x its float value, an integer correction every decoder
reproduces exactly. Basis and coefficients count as side information.

    taskset -c 1 python scripts/research/codec_v2/pca_residual.py [--sources corpus,synth]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402
import lsq  # noqa: E402
from bodybatch.codec.bodybatch_codec import activity_classes  # noqa: E402

BB = 10
_BASIS = {}


def basis_from(R, rank):
    _, _, vt = np.linalg.svd(R.astype(np.float64), full_matrices=False)
    return np.round(vt[:rank] * (1 << BB)).astype(np.int64)  # (r, 3N)


def pca_scheme(x, st, tally, group, with_entropy=False, rank=4, scope="chunk", lags=8, **_):
    res = lsq.lsq_residuals(x, st, lags=lags, motion=False)
    side = 0
    n, t, d = res.shape
    if group == "V" and t > lags + rank:
        R = res[:, lags:, :3].transpose(1, 0, 2).reshape(t - lags, -1)  # (frames, 3N)
        key = id(st)
        if scope == "chunk" or key not in _BASIS:
            b = basis_from(R, rank)
            side += sum(h.code(bk) for bk in b)
            if scope == "track":
                _BASIS[key] = b
        else:
            b = _BASIS[key]
        bf = b.astype(np.float64)
        coef = np.round(np.linalg.lstsq(bf.T, R.T.astype(np.float64), rcond=None)[0] * (1 << BB)).astype(np.int64)  # (r, frames)
        side += h.code(coef.ravel())
        corr = (coef.T @ b + (1 << (BB - 1))) >> BB  # (frames, 3N)
        R2 = R - corr
        res[:, lags:, :3] = R2.reshape(t - lags, n, 3).transpose(1, 0, 2)
    cl = activity_classes(res)
    tally.add("side", cl, nbytes=h.code(cl.astype(np.uint16)) + side)
    for comp, arr in h.baseline_streams(res, cl):
        tally.add(h.family(group, comp), arr, with_entropy=with_entropy)


if __name__ == "__main__":

    a, tracks, base = h.setup("A today (K=2,m=3,chunk 64)", "corpus,synth")
    configs = [
        ("P1 lsq L=8 + residual PCA r=1/chunk", dict(rank=1)),
        ("P4 lsq L=8 + residual PCA r=4/chunk", dict(rank=4)),
        ("P8 lsq L=8 + residual PCA r=8/chunk", dict(rank=8)),
        ("T8 lsq L=8 + residual PCA r=8/track", dict(rank=8, scope="track")),
        ("T18 lsq L=8 + residual PCA r=18/track", dict(rank=18, scope="track")),
        ("T8c128 lsq L=8 + PCA r=8/track chunk 128", dict(rank=8, scope="track", chunk_size=128)),
    ]
    for label, kw in configs:
        if a.only and label.split()[0] not in a.only.split(";"):
            continue
        _BASIS.clear()
        kw = dict(kw)
        cs = kw.pop("chunk_size", 64)
        r = h.run_scheme(tracks, pca_scheme, chunk_size=cs, **kw)
        print(h.report(r, label, base), flush=True)
