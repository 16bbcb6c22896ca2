"""Format 3.x spatial weights: each point's integer interpolation weights (rows sum
to 64) over its parents, from the chunk's decoded row 0, by a ridge least squares
solved exactly in integers (Cramer's rule), so that every machine gets the same
weights. The compiled ``ridge_v3`` (:mod:`bodybatch.codec._kernels3`) computes the
same integers.
"""

import numpy as np

from bodybatch.codec import _kernels
from bodybatch.codec.predict2 import base_weights, SPATIAL_ONE

__all__ = ["ridge_weights", "value_weights", "MIN_SPATIAL", "MAX_SPATIAL"]

#: Coordinate differences are shifted to below 2**_RIDGE_BITS before the solve (int64-safe).
_RIDGE_BITS = 9
#: Bounds of the spatial weights (sum 64): -1 and 2 (v2: -0.5 and 1.5).
MIN_SPATIAL = 64
MAX_SPATIAL = 128
#: Ridge strength: lambda = 1 / _RIDGE_DIV times the mean squared edge length.
_RIDGE_DIV = 16
#: m = 4: the normal equations times 12 / lambda (192: lambda = 1/16, as for m = 3).
_RIDGE4_SCALE = 192

def ridge_weights(x0, parents):
    """(N, m) int64 interpolation weights (rows sum to 64) from one decoded frame.

    For m = 3 and a point ``p`` with real parents ``q1, q2, q3``: ``a = q1 - q3``,
    ``b = q2 - q3``, ``y = p - q3`` (shifted right by one number of bits so that every
    component is below 2**9), the ridge least squares ``u`` of ``y ~ u1 a + u2 b``
    shrunk toward ``1/3`` with ``lambda = (|a|^2 + |b|^2) / 32``, solved exactly by
    Cramer's rule on the system multiplied by 96:
    ``G = 96 [[aa, ab], [ab, bb]] + 3 (aa + bb) I``, ``h = 96 [ay, by] + (aa + bb)``;
    ``w_i = floor((128 num_i + det) / (2 det))``, ``w3 = 64 - w1 - w2``. Kept when
    ``det > 0`` and each weight is in ``[-64, 128]``; else the even weights of
    :func:`bodybatch.codec.predict2.base_weights`. m = 4: the same with three edges
    ``a_i = q_i - q_4`` (:func:`_ridge4`); other m: even weights.

    Parameters
    ----------
    x0 : (N + 1, 3) int array (row N: the zero point).
    parents : (N, m) int array of rows of ``x0``.
    """
    n, m = parents.shape
    w = np.tile(base_weights(m), (n, 1))
    if m not in (3, 4) or n == 0:
        return w
    x0 = np.asarray(x0, np.int64)
    q = x0[parents]
    edges = [q[:, i] - q[:, m - 1] for i in range(m - 1)] + [x0[:n] - q[:, m - 1]]
    big = np.maximum(np.abs(np.concatenate(edges, axis=1)).max(axis=1), 1)
    shift = np.maximum(np.frexp(big.astype(np.float64))[1] - _RIDGE_BITS, 0)[:, None]  # exact: big < 2**53
    edges = [e >> shift for e in edges]
    if m == 4:
        cand, ok = _ridge4(*edges)
    else:
        cand, ok = _ridge3(*edges)
    ok &= (parents < n).all(axis=1)
    ok &= ((cand >= -MIN_SPATIAL) & (cand <= MAX_SPATIAL)).all(axis=1)
    w[ok] = cand[ok]
    return w


def _ridge3(a, b, y):
    """(n, 3) candidate weights and (n,) det > 0 for m = 3 (see :func:`ridge_weights`)."""
    aa, bb, ab = (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)
    ay, by = (a * y).sum(1), (b * y).sum(1)
    scale = 96 // (2 * _RIDGE_DIV) * (aa + bb)  # 96 * lambda
    g11, g22, g12 = 96 * aa + scale, 96 * bb + scale, 96 * ab
    h1, h2 = 96 * ay + (aa + bb), 96 * by + (aa + bb)
    det = g11 * g22 - g12 * g12
    ok = det > 0
    safe = np.where(ok, det, 1)
    w1 = (2 * SPATIAL_ONE * (g22 * h1 - g12 * h2) + safe) // (2 * safe)
    w2 = (2 * SPATIAL_ONE * (g11 * h2 - g12 * h1) + safe) // (2 * safe)
    return np.stack([w1, w2, SPATIAL_ONE - w1 - w2], axis=1), ok


def _ridge4(a0, a1, a2, y):
    """(n, 4) candidate weights and (n,) det > 0 for m = 4.

    ``G = 192 A^T A + 4 S I``, ``h = 192 A^T y + S`` with ``S = sum |a_i|^2`` (ridge
    ``S / 48`` toward 1/4, times 192), both shifted right by one number of bits per
    point so that every entry is below 2**15, then Cramer's rule (|det| < 2**48).
    """
    edges = (a0, a1, a2)
    big_s = sum((e * e).sum(1) for e in edges)
    a = _RIDGE4_SCALE
    g = [[a * (edges[i] * edges[j]).sum(1) + (4 * big_s if i == j else 0) for j in range(3)] for i in range(3)]
    h = [a * (e * y).sum(1) + big_s for e in edges]
    top = np.maximum(np.abs(np.stack([v for row in g for v in row] + h, axis=1)).max(axis=1), 1)
    sh = np.maximum(np.frexp(top.astype(np.float64))[1] - 15, 0)
    g = [[v >> sh for v in row] for row in g]
    h = [v >> sh for v in h]

    def det3(c0, c1, c2):  # columns
        return (c0[0] * (c1[1] * c2[2] - c2[1] * c1[2]) - c1[0] * (c0[1] * c2[2] - c2[1] * c0[2])
                + c2[0] * (c0[1] * c1[2] - c1[1] * c0[2]))  # fmt: skip

    cols = [[g[i][j] for i in range(3)] for j in range(3)]
    det = det3(*cols)
    ok = det > 0
    safe = np.where(ok, det, 1)
    ws = []
    for j in range(3):
        num = det3(*[h if k == j else cols[k] for k in range(3)])
        ws.append((2 * SPATIAL_ONE * num + safe) // (2 * safe))
    return np.stack(ws + [SPATIAL_ONE - ws[0] - ws[1] - ws[2]], axis=1), ok


def value_weights(x0, parents, d):
    """(N, m, D) int64 per-value spatial weights: ridge for coordinates, even for the rest
    (the compiled ``ridge_v3`` when there is one: the same integers, ~10x faster)."""
    w = np.empty(parents.shape + (d,), np.int64)
    compiled = _kernels.kernels()
    if compiled is not None and len(parents):
        ridge = np.empty(parents.shape, np.int64)
        compiled.ridge_v3(parents.shape[1], np.ascontiguousarray(x0[:, :3], np.int64),
                          np.ascontiguousarray(parents, np.int64), ridge)  # fmt: skip
    else:
        ridge = ridge_weights(x0[:, :3], parents)
    w[:, :, :3] = ridge[:, :, None]
    w[:, :, 3:] = base_weights(parents.shape[1])[None, :, None]
    return w
