"""Fixed-point space-time prediction of integer point tracks (codec v2.1, format 3.0).

Same ingredients as :mod:`bodybatch.codec.predict2` (frame 0 from the parents' mean,
interpolating spatial weights from frame 0, least-squares temporal weights per block
and component group), but the offset to the parents is kept at full precision
instead of being rounded to the grid every frame. Per chunk, with ``x[t, p]`` the grid
values at stored position ``p`` and ``N`` the virtual zero point:

1. **Frame 0**: ``r[0, p] = x[0, p] - floor((sum_j x[0, p_j] + m//2) / m)``.
2. **Spatial weights** ``W[p, j]`` (sum 64) from the chunk's decoded frame 0
   (:func:`bodybatch.codec.spatial3.ridge_weights`; even weights for the uncertainty component).
3. **Weighted parents** ``P[t, p] = sum_j W[p, j] * x[t, p_j]`` and the exact
   64-scaled offset ``O[t, p] = 64 * x[t, p] - P[t, p]`` (no rounding).
4. **Temporal**: with ``w[b, g, 0..L]`` the stored int16 weights (``F = 12``
   fractional bits) of the point's block and component group, for ``t >= 1``: the
   lags and the running mean ``M[t, p] = floor(sum_{i < t} O[i, p] / t)`` give
   ``Q[t, p] = (sum_{l=1..L} w[b, g, l-1] * O[max(t - l, 0), p] + w[b, g, L] * M[t, p]
   + 2**(F-1)) >> F`` and ``r[t, p] = x[t, p] - ((P[t, p] + Q[t, p] + 32) >> 6)``.

One rounding per value instead of two (v2 rounds ``P / 64`` and the temporal sum
separately and predicts from rounded offsets): about 3% smaller files; the running
mean carries the slowly varying part of the offset (about as much as 24 more lags,
for one term). The price is
the decode order: ``O[t]`` needs ``x[t]``, which needs the parents at frame ``t``, so
the decoder goes level by level and, inside a level, frame by frame (v1's order);
the arrays it needs are those of v2 (spatial weights (N, m, D), parents, temporal
weights (n_blocks, n_classes, n_groups, L + 1) and block bounds). All arithmetic is int64: with
``|x| <= 2**30``, ``|W| <= 128``, m <= 4 (even weights otherwise) and T <= 2**13,
``|O| < 2**40``, the running sums stay below 2**53 and the temporal sum below 2**57.
"""

import numpy as np

from bodybatch.codec import _kernels
from bodybatch.codec.predict2 import (
    FIT_POINTS, FRACTION_BITS, MAX_WEIGHT, SPATIAL_BITS, SPATIAL_ONE, _gather, _parent_pred, base_weights,
)  # fmt: skip
from bodybatch.codec.spatial3 import value_weights
from bodybatch.codec.structure import level_bounds

__all__ = ["encode_residuals", "decode_residuals"]

#: Rows of a chunk the encoder's first pass (activity classes) looks at.
CLASS_FRAMES = 128


def _weighted_sum(xe, parents, weights):
    """P = sum_j weights[:, j] * xe[:, parents[:, j]]: (T, len(parents), D) int64."""
    p = _gather(xe, parents[:, 0]) * weights[:, 0]
    for j in range(1, parents.shape[1]):
        p += _gather(xe, parents[:, j]) * weights[:, j]
    return p


def _point_weights(weights, blocks, groups, classes, lo, hi, d):
    """[(a, b, wl)]: the segments of positions [lo, hi) inside one block each, with
    their points' (L + 1, b - a, D) temporal weights (lag 1 first, the running mean's
    last) from the (n_blocks, n_classes, n_groups, L + 1) table."""
    out = []
    for bi, (b0, b1) in enumerate(blocks):
        a, b = max(lo, b0), min(hi, b1)
        if a < b:
            table = np.empty((weights.shape[1], weights.shape[3], d), np.int64)  # class, feature, D
            for gi, (c0, c1) in enumerate(groups):
                table[:, :, c0:c1] = weights[bi, :, gi].astype(np.int64)[:, :, None]
            out.append((a, b, np.ascontiguousarray(table[classes[a:b]].transpose(1, 0, 2))))
    return out


def _mean_feature(off):
    """(T - 1, ...) running means ``floor(sum_{i < t} O[i] / t)`` of frames 1..T-1."""
    n_frames = off.shape[0]
    total = np.cumsum(off[:-1], axis=0)
    return np.floor_divide(total, np.arange(1, n_frames).reshape((-1,) + (1,) * (off.ndim - 1)), out=total)


def _predict_offsets(off, mean, wl, out):
    """out[t - 1] += the temporal sum of frame t (1..T-1) before the shift: weights
    ``wl`` (L + 1, k, D) (or broadcastable), offsets ``off`` (T, k, D), running means
    ``mean`` (T - 1, k, D)."""
    n_frames, n_lags = off.shape[0], wl.shape[0] - 1
    for lag in range(1, n_lags + 1):
        k = min(lag - 1, n_frames - 1)  # frames 1..lag-1 see frame 0 instead
        if lag < n_frames:
            out[k:] += wl[lag - 1] * off[: n_frames - lag]
        out[:k] += wl[lag - 1] * off[0]
    out += wl[n_lags] * mean


def _fit(off, points, groups, n_lags):
    """(n_groups, L + 1) int16 least-squares weights of the offsets ``off[:, points]``
    (``off``: (T, k, D); float64; encoder only). The Gram matrix of the (integer)
    features and target: the compiled kernel's when exact (every sum below 2**52, so
    equal to BLAS's), else numpy's and BLAS's."""
    w = np.zeros((len(groups), n_lags + 1), np.int16)
    n_frames = off.shape[0]
    if n_frames < 2 or len(points) == 0:
        return w
    compiled = _kernels.kernels()
    points = np.asarray(points, np.int64)
    if compiled is not None:  # per component (exact integers: their sums are too)
        grams, bound = np.empty((off.shape[2], n_lags + 2, n_lags + 2)), np.empty(off.shape[2])
        compiled.gram_v3(n_lags, off.shape[2], off.reshape(n_frames, -1), points, grams, bound)
    rows = [np.maximum(np.arange(1, n_frames) - lag, 0) for lag in range(1, n_lags + 1)]
    for gi, (c0, c1) in enumerate(groups):
        if compiled is not None and bound[c0:c1].sum() * (n_frames - 1) < 2.0**52:  # (a margin for rounding)
            full = grams[c0:c1].sum(axis=0)
        else:
            sub = off[:, points, c0:c1]
            o = sub.astype(np.float64)
            feats = np.empty((n_lags + 2,) + o[1:].shape)  # the features, then the target
            for lag in range(n_lags):
                feats[lag] = o[rows[lag]]
            feats[n_lags] = _mean_feature(sub)
            feats[n_lags + 1] = o[1:]
            design = feats.reshape(n_lags + 2, -1)
            full = design @ design.T  # one GEMM (a matrix-vector product here is ~10x slower)
        gram, rhs = full[: n_lags + 1, : n_lags + 1].copy(), full[: n_lags + 1, n_lags + 1]
        # A little ridge keeps the fit stable on constant or tiny blocks.
        gram[np.diag_indices(n_lags + 1)] += 1e-6 * (np.trace(gram) / (n_lags + 1) + 1.0)
        try:
            coef = np.linalg.solve(gram, rhs)
        except np.linalg.LinAlgError:
            coef = np.zeros(n_lags + 1)
        w[gi] = np.clip(np.round(coef * (1 << FRACTION_BITS)), -MAX_WEIGHT, MAX_WEIGHT).astype(np.int16)
    return w


def _activity_classes(act, n_classes):
    """(k,) uint8 quantile class of each point's activity ``act`` (its sum of
    |coordinate residual| over rows 1..)."""
    edges = np.quantile(act, np.arange(1, n_classes) / n_classes)
    return np.searchsorted(edges, act, side="right").astype(np.uint8)


def _residuals(xe, p, off, mean, table, classes, res, lo, write=True):
    """Rows 1.. of the residuals of positions ``[lo, lo + k)`` into ``res`` (T, N, D),
    from the values ``xe``, offsets ``off`` (T, k, D) (and ``p``, numpy only), weights
    ``table[classes]`` (``table``: (n_classes, L + 1, D)); returns each point's sum of
    |coordinate residual| (all the kernel computes when not ``write``)."""
    n_frames, k, d = off.shape
    compiled = _kernels.kernels()
    if compiled is not None:
        act = np.zeros(k, np.int64)
        if k:
            flat, xf = res.reshape(res.shape[0], -1), xe.reshape(xe.shape[0], -1)
            compiled.residuals_v3(d, xf[:n_frames, lo * d :], off.reshape(n_frames, -1), table, classes, n_frames,
                                  flat[:, lo * d :], act, write)  # fmt: skip
        return act
    if mean is None:
        mean = _mean_feature(off)
    out = res[:n_frames, lo : lo + k]
    acc = np.full(mean.shape, 1 << (FRACTION_BITS - 1), np.int64)
    _predict_offsets(off, mean, table[classes].transpose(1, 0, 2), acc)
    acc >>= FRACTION_BITS
    acc += p[1:]
    acc += SPATIAL_ONE // 2
    acc >>= SPATIAL_BITS
    np.subtract(xe[1:n_frames, lo : lo + k], acc, out=out[1:])
    return np.abs(out[1:, :, :3]).sum(axis=(0, 2))


def _block_weights(weights, groups, d):
    """(n_classes, L + 1, D) per-value weights from one block's (n_classes, n_groups, L + 1)."""
    table = np.empty((weights.shape[0], weights.shape[2], d), np.int64)
    for gi, (c0, c1) in enumerate(groups):
        table[:, :, c0:c1] = weights[:, gi].astype(np.int64)[:, :, None]
    return table


def encode_residuals(x, structure, blocks, groups, n_lags, n_classes=1, min_classed=0):
    """Residuals of integer points.

    Parameters
    ----------
    x : ndarray of int, shape (T, N, D), original point order, |x| <= 2**30.
    structure : VertexStructure
    blocks, groups : lists of (lo, hi) point blocks / (c0, c1) component groups that
        share temporal weights.
    n_lags : int
        L >= 1.
    n_classes, min_classed : int
        Blocks of at least ``min_classed`` points are split into ``n_classes``
        activity classes (quantiles of a first pass's mean |coordinate residual|),
        each with its own weights.

    Returns
    -------
    res : ndarray of int64, shape (T, N, D), stored order (frame-major).
    weights : ndarray of int16, shape (len(blocks), n_classes, len(groups), L + 1).
    classes : ndarray of uint8, shape (N,).
    """
    n_frames, n, d = x.shape
    compiled = _kernels.kernels()
    x = np.ascontiguousarray(x)
    # The values in stored order (int32 when given so, for the kernels: half the reads).
    xe = np.zeros((n_frames, n + 1, d), np.int32 if compiled is not None and x.dtype == np.int32 else np.int64)
    xe[:, :n] = _gather(x, structure.order)
    parents = structure.parents
    vw = value_weights(xe[0], parents, d)
    rw, bw = vw[:, :, 0].copy(), base_weights(parents.shape[1])  # (the compiled offsets' weights)
    res = np.empty((n_frames, n, d), np.int64)
    classes = np.zeros(n, np.uint8)
    weights = np.zeros((len(blocks), n_classes, len(groups), n_lags + 1), np.int16)
    for bi, (lo, hi) in enumerate(blocks):
        if compiled is not None:  # O only (the kernels take P = 64 x - O)
            off = np.empty((n_frames, hi - lo, d), np.int64)
            compiled.offsets_v3(parents.shape[1], d, xe.reshape(n_frames, -1), parents, rw, bw, lo,
                                off.reshape(n_frames, -1))  # fmt: skip
            p = mean = None
        else:
            p = _weighted_sum(xe, parents[lo:hi], vw[lo:hi])
            off = (xe[:, lo:hi] << SPATIAL_BITS) - p  # O = 64 x - P
            mean = _mean_feature(off)
        if n_frames > 1 and n_classes > 1 and hi - lo >= min_classed:
            f = min(n_frames, CLASS_FRAMES)  # the first pass looks at the chunk's first rows
            first = _fit(off[:f], np.arange(0, hi - lo, max(1, (hi - lo) // FIT_POINTS)), groups, n_lags)
            first = _block_weights(first[None], groups, d)
            act = _residuals(xe, None if p is None else p[:f], off[:f], None if mean is None else mean[: f - 1],
                             first, np.zeros(hi - lo, np.uint8), res, lo, write=False)  # fmt: skip
            classes[lo:hi] = _activity_classes(act, n_classes)
        cl = classes[lo:hi]
        for c in range(n_classes):
            idx = np.flatnonzero(cl == c)
            step = max(1, len(idx) * n_classes // FIT_POINTS)  # an even subsample: FIT_POINTS a block
            weights[bi, c] = _fit(off, idx[::step], groups, n_lags)
        if n_frames > 1:
            _residuals(xe, p, off, mean, _block_weights(weights[bi], groups, d), cl, res, lo)
    res[0] = xe[0, :n] - _parent_pred(xe[:1].astype(np.int64), parents)[0]
    return res, weights, classes


def decode_first_row(first, parents):
    """(N + 1, D) int64 row 0 (row N: the zero point) from its (N, D) residuals, stored
    order: each level from the parents' mean."""
    n, d = first.shape
    xe = np.zeros((1, n + 1, d), np.int64)
    xe[0, :n] = first
    for lo, hi in level_bounds(n):
        xe[:, lo:hi] += _parent_pred(xe, parents[lo:hi])
    return xe[0]


def decode_residuals(res, order, parents, blocks, weights, classes):
    """Invert :func:`encode_residuals`.

    Parameters
    ----------
    res : ndarray of int64, shape (N, T, D), point-major residuals in stored order
        (T: the rows to decode, a prefix of the chunk's).
    order : (N,) int array
        Stored position -> original point index (the structure's order).
    parents : (N, m) int array of stored positions (N: the zero point).
    blocks : (lo, hi) blocks of the temporal weights.
    weights : (len(blocks), n_classes, n_groups, L + 1) int array (component groups:
        [0, 3), [3, D)).
    classes : (N,) int array of stored positions' classes (below n_classes).

    Returns
    -------
    x : ndarray of int64, shape (T, N, D), original point order.
    """
    n, n_frames, d = res.shape
    n_lags = weights.shape[3] - 1
    groups = [(0, min(3, d))] + ([(3, d)] if d > 3 else [])
    xe = decode_first_row(res[:, 0], parents)[None]
    compiled = _kernels.kernels() if n_frames > 1 else None
    if compiled is not None:
        vw = value_weights(xe[0], parents, d)
        wpt = np.concatenate([w for _, _, w in _point_weights(weights, blocks, groups, classes, 0, n, d)], axis=1)
        work = np.zeros((n + 1, n_frames, d), np.int64)  # point-major; row N: the zero point
        work[:n, 0] = xe[0, :n]
        out = np.empty((n_frames, n, d), np.int64)
        levels = np.array(level_bounds(n), np.int64).reshape(-1, 2)
        compiled.decode_v3(parents.shape[1], d, res,
                           np.ascontiguousarray(parents, np.int64), vw, np.ascontiguousarray(wpt.transpose(1, 0, 2)),
                           levels, n_frames, work, out)  # fmt: skip
        return _gather(out, np.argsort(order))
    if n_frames == 1:
        return _gather(xe, np.argsort(order))
    x0 = xe[0]
    xe = np.zeros((n_frames, n + 1, d), np.int64)
    xe[:, :n] = res.transpose(1, 0, 2)
    xe[0] = x0
    # the numpy reference
    vw = value_weights(xe[0], parents, d)
    half = 1 << (FRACTION_BITS - 1)
    for lo, hi in level_bounds(n):
        p = _weighted_sum(xe, parents[lo:hi], vw[lo:hi])  # parents: all frames known
        for a, b, wl in _point_weights(weights, blocks, groups, classes, lo, hi, d):
            # hist[i]: the offsets of frame i - (L - 1), frame 0 for i < L.
            hist = np.empty((n_frames + n_lags - 1, b - a, d), np.int64)
            pa = p[:, a - lo : b - lo]
            hist[:n_lags] = (xe[0, a:b] << SPATIAL_BITS) - pa[0]
            total = hist[0].copy()  # sum of the offsets of frames < t
            wrev = np.ascontiguousarray(wl[n_lags - 1 :: -1])  # (L, b - a, D), oldest lag first, as in hist
            w_mean = wl[n_lags]
            x = xe[:, a:b]
            for t in range(1, n_frames):
                q = (wrev * hist[t - 1 : t - 1 + n_lags]).sum(axis=0)
                q += w_mean * (total // t)
                q += half
                q >>= FRACTION_BITS
                q += pa[t]
                q += SPATIAL_ONE // 2
                q >>= SPATIAL_BITS
                x[t] += q
                o = hist[t + n_lags - 1]
                np.subtract(x[t] << SPATIAL_BITS, pa[t], out=o)
                total += o
    return _gather(xe, np.argsort(order))
