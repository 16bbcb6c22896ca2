"""Separable space-time prediction of integer point tracks (codec v2; integer arithmetic).

v1 (:mod:`bodybatch.codec.predict`) predicts a point from its parents' centroid plus
its own offset averaged over past frames: the recurrence couples space and time, so
its decoder loops over levels x frames. v2 separates the two steps, so the decoder
needs one vectorized pass per frame (all points at once) plus one per level (all
frames at once). Per chunk, with ``x[t, p]`` the grid values at stored position ``p``
(the structure's order and parents, :mod:`bodybatch.codec.structure`; ``N`` is the
virtual zero point):

1. **Frame 0**: ``r[0, p] = x[0, p] - floor((sum_j x[0, p_j] + m//2) / m)`` (parents' mean).
2. **Spatial weights** from the chunk's frame 0 (:func:`spatial_weights`): per point,
   ``m`` integers ``W[p, j]`` summing to ``64``: interpolation weights of the point in
   its parents' frame-0 configuration (m = 3), or even weights. The uncertainty
   component always uses the even weights (:func:`base_weights`).
3. **Spatial residual**, every frame:
   ``s[t, p] = x[t, p] - ((sum_j W[p, j] * x[t, p_j] + 32) >> 6)``.
4. **Temporal**: per residual block ``b`` and component group ``g`` (coordinates /
   uncertainty) the encoder fits ``L`` integer weights ``w[b, g, l]`` (``F = 12``
   fractional bits, ``|w| <= 2**13``) by least squares and stores them; for ``t >= 1``,
   ``r[t, p] = s[t, p] - ((sum_l w[b, g, l] * s[max(t - l, 0), p] + 2**(F-1)) >> F)``.

``>>`` is an arithmetic shift (floor division by a power of two). Decoding: frame 0
level by level, the weights, ``s[0]``, the temporal recurrence for all points frame
by frame, then ``x`` level by level for all frames at once. Intermediates are int32
when the chunk's bounds (``max_abs``, ``s_abs``) exclude overflow, else int64: the
results are identical either way.
"""

import numpy as np

from bodybatch.codec.predict import BLOCK_POINTS, _floor_div, _units
from bodybatch.codec.structure import level_bounds

__all__ = ["FRACTION_BITS", "MAX_WEIGHT", "work_dtype", "encode_residuals", "decode_residuals", "spatial_bound"]

#: Fractional bits of the temporal weights, and the bound on |weight|.
FRACTION_BITS = 12
MAX_WEIGHT = 1 << 13
#: Spatial interpolation weights: fractional bits, their sum, and their bounds.
SPATIAL_BITS = 6
SPATIAL_ONE = 1 << SPATIAL_BITS
MIN_SPATIAL = 32
MAX_SPATIAL = 96
_DIFF_BITS = 12
#: Points per block used to fit the temporal weights (an even subsample of larger blocks).
FIT_POINTS = 1024


def spatial_bound(max_abs, n_parents):
    """Bound on |s| implied by |x| <= max_abs (|spatial weight| <= MAX_SPATIAL)."""
    return (1 + 2 * n_parents) * max_abs + 2


def work_dtype(s_abs, n_lags):
    """int32 when the weighted sum (plus residual) cannot overflow it."""
    return np.int32 if (n_lags * MAX_WEIGHT + (1 << FRACTION_BITS)) * (s_abs + 1) + (1 << FRACTION_BITS) < 2**31 else np.int64


def _spatial_dtype(max_abs, m):
    """int32 when weighted parent sums and spatial residuals cannot overflow it."""
    return np.int32 if 2 * (MAX_SPATIAL * m + SPATIAL_ONE) * (max_abs + 1) < 2**31 else np.int64


def base_weights(m):
    """(m,) integer weights summing to 2**SPATIAL_BITS, as even as possible."""
    w = np.full(m, SPATIAL_ONE // m, np.int64)
    w[: SPATIAL_ONE % m] += 1
    return w


def spatial_weights(x0, parents):
    """(N, m) int64 interpolation weights (each row sums to 2**SPATIAL_BITS) of the
    points from their parents, from one decoded frame's coordinates.

    For m = 3 and a point ``p`` with distinct real parents ``q1, q2, q3``: with
    ``a = q1 - q3``, ``b = q2 - q3``, ``y = p - q3`` (each shifted right by the same
    number of bits so that all fit in 12 bits), the least-squares ``w1, w2`` of
    ``y ~ w1 a + w2 b`` by Cramer's rule, ``w = floor((2 * 64 * num + det) / (2 * det))``,
    ``w3 = 64 - w1 - w2``; kept when ``det > 0`` and every weight is within
    ``[-MIN_SPATIAL, MAX_SPATIAL]``. Everything else (and m != 3) gets :func:`base_weights`.
    All integer (int64, no overflow possible).

    Parameters
    ----------
    x0 : (N + 1, 3) int array (row N: the zero point).
    parents : (N, m) int array of rows of ``x0``.
    """
    n, m = parents.shape
    w = np.tile(base_weights(m), (n, 1))
    if m != 3 or n == 0:
        return w
    x0 = x0.astype(np.int64)
    q = x0[parents]
    a, b, y = q[:, 0] - q[:, 2], q[:, 1] - q[:, 2], x0[:n] - q[:, 2]
    big = np.maximum(np.abs(np.concatenate([a, b, y], axis=1)).max(axis=1), 1)
    shift = np.maximum(np.frexp(big.astype(np.float64))[1] - _DIFF_BITS, 0)[:, None]  # exact: big < 2**53
    a, b, y = a >> shift, b >> shift, y >> shift
    aa, bb, ab = (a * a).sum(1), (b * b).sum(1), (a * b).sum(1)
    ay, by = (a * y).sum(1), (b * y).sum(1)
    det = aa * bb - ab * ab
    ok = (det > 0) & (parents < n).all(axis=1)
    ok &= (parents[:, 0] != parents[:, 1]) & (parents[:, 0] != parents[:, 2]) & (parents[:, 1] != parents[:, 2])
    safe = np.where(ok, det, 1)
    w1 = (2 * SPATIAL_ONE * (bb * ay - ab * by) + safe) // (2 * safe)
    w2 = (2 * SPATIAL_ONE * (aa * by - ab * ay) + safe) // (2 * safe)
    cand = np.stack([w1, w2, SPATIAL_ONE - w1 - w2], axis=1)
    ok &= ((cand >= -MIN_SPATIAL) & (cand <= MAX_SPATIAL)).all(axis=1)
    w[ok] = cand[ok]
    return w


def _lag_rows(n_frames, lag):
    """Row indices ``max(t - lag, 0)`` for t = 1..T-1."""
    return np.maximum(np.arange(1, n_frames) - lag, 0)


def fit_weights(s, blocks, groups, n_lags):
    """(n_blocks, n_groups, L) int16 least-squares weights of s (frame-major (T, N, D)).

    Encoder only, in float64 on an even subsample of each block: the decoder uses the
    stored integers, so decoded values are exact everywhere; the weights chosen (and so
    a file's bytes) could differ between BLAS builds in rare rounding ties.
    """
    n_frames = s.shape[0]
    w = np.zeros((len(blocks), len(groups), n_lags), np.int16)
    if n_frames < 2:
        return w
    rows = [_lag_rows(n_frames, lag) for lag in range(1, n_lags + 1)]
    for bi, (lo, hi) in enumerate(blocks):
        stride = max(1, (hi - lo) // FIT_POINTS)
        for gi, (c0, c1) in enumerate(groups):
            y = s[:, lo:hi:stride, c0:c1].astype(np.float64)
            target = y[1:].ravel()
            design = np.stack([y[r].ravel() for r in rows], axis=1)
            gram = design.T @ design
            rhs = design.T @ target
            # A little ridge keeps the fit stable on constant or tiny blocks.
            gram[np.diag_indices(n_lags)] += 1e-6 * (np.trace(gram) / n_lags + 1.0)
            try:
                coef = np.linalg.solve(gram, rhs)
            except np.linalg.LinAlgError:
                coef = np.zeros(n_lags)
            q = np.clip(np.round(coef * (1 << FRACTION_BITS)), -MAX_WEIGHT, MAX_WEIGHT)
            w[bi, gi] = q.astype(np.int16)
    return w


def _weight_planes(weights, blocks, groups, n, d, dtype):
    """(L, N, D) per-value weights from the (blocks, groups, L) table."""
    planes = np.zeros((weights.shape[2], n, d), dtype)
    for bi, (lo, hi) in enumerate(blocks):
        for gi, (c0, c1) in enumerate(groups):
            planes[:, lo:hi, c0:c1] = weights[bi, gi].astype(dtype)[:, None, None]
    return planes


def _gather(xe, idx, out=None):
    """xe[:, idx] for a frame-major (T, N + 1, D) array, moving D values at once
    (into ``out``, a C-contiguous (T, len(idx), D) array, when given)."""
    shape = (xe.shape[0], len(idx), xe.shape[2])
    if out is None:
        return np.take(_units(xe), idx, axis=1).view(xe.dtype).reshape(shape)
    np.take(_units(xe), idx, axis=1, out=_units(out), mode="clip")  # idx are valid: no buffering
    return out


def _parent_pred(xe, parents):
    """floor((C + m//2) / m), C the sum of the parents' values: (T, len(parents), D)."""
    m = parents.shape[1]
    c = _gather(xe, parents[:, 0])
    for j in range(1, m):
        c += _gather(xe, parents[:, j])
    c += m // 2
    return _floor_div(c, m, out=c)


def _weighted_pred(xe, parents, weights, work=None):
    """floor((sum_j w_j x[parent_j] + 32) / 64): (T, len(parents), D); ``weights`` (k, m, D).
    ``work``: two flat buffers of at least T * len(parents) * D values (reused)."""
    shape = (xe.shape[0], len(parents), xe.shape[2])
    size = shape[0] * shape[1] * shape[2]
    c, g = (None, None) if work is None else (w[:size].reshape(shape) for w in work)
    c = _gather(xe, parents[:, 0], c)
    c *= weights[:, 0]
    for j in range(1, parents.shape[1]):
        g = _gather(xe, parents[:, j], g)
        g *= weights[:, j]
        c += g
    c += SPATIAL_ONE // 2
    c >>= SPATIAL_BITS
    return c


def _value_weights(x0, parents, d, dtype):
    """(N, m, D) per-value spatial weights: interpolation for coordinates, even for the rest."""
    w = np.empty(parents.shape + (d,), dtype)
    w[:, :, :3] = spatial_weights(x0[:, :3], parents)[:, :, None]
    w[:, :, 3:] = base_weights(parents.shape[1])[None, :, None]
    return w


def encode_residuals(x, structure, blocks, groups, n_lags, max_abs):
    """Residuals of integer points.

    Parameters
    ----------
    x : ndarray of int, shape (T, N, D), original point order, |x| <= max_abs.
    structure : VertexStructure
    blocks, groups : lists of (lo, hi) point blocks / (c0, c1) component groups that
        share temporal weights.
    n_lags : int
        L >= 1.

    Returns
    -------
    res : ndarray, shape (T, N, D), stored order (frame-major).
    weights : ndarray of int16, shape (len(blocks), len(groups), L).
    s_abs : int
        max |s| of the chunk (the decoder's bound).
    """
    n_frames, n, d = x.shape
    m = structure.n_parents
    dtype = _spatial_dtype(max_abs, m)
    xe = np.empty((n_frames, n + 1, d), dtype)
    xe[:, n] = 0
    xe[:, :n] = _gather(np.ascontiguousarray(x, dtype), structure.order)
    s = np.empty((n_frames, n, d), dtype)  # spatial residuals
    vw = _value_weights(xe[0], structure.parents, d, dtype)
    for a in range(0, n, BLOCK_POINTS):
        b = min(n, a + BLOCK_POINTS)
        np.subtract(xe[:, a:b], _weighted_pred(xe, structure.parents[a:b], vw[a:b]), out=s[:, a:b])
    s_abs = max(int(s.max(initial=0)), -int(s.min(initial=0)))
    first = xe[0, :n] - _parent_pred(xe[:1], structure.parents)[0]  # frame 0: parents' mean
    weights = fit_weights(s, blocks, groups, n_lags)
    wdtype = work_dtype(s_abs, n_lags)
    s = s.astype(wdtype, copy=False)
    if n_frames > 1:
        planes = _weight_planes(weights, blocks, groups, n, d, wdtype)
        # Per block of points (cache-sized); acc[t - 1] is the prediction of frame t.
        for a in range(0, n, BLOCK_POINTS):
            b = min(n, a + BLOCK_POINTS)
            sb = s[:, a:b]
            acc = np.full((n_frames - 1, b - a, d), 1 << (FRACTION_BITS - 1), wdtype)
            tmp = np.empty_like(acc)
            for lag in range(1, n_lags + 1):
                w = planes[lag - 1, a:b]
                k = min(lag - 1, n_frames - 1)  # frames 1..lag-1 see frame 0 instead
                if k < n_frames - 1:
                    np.multiply(w, sb[: n_frames - lag], out=tmp[k:])
                np.multiply(w, sb[0], out=tmp[:k])
                acc += tmp
            acc >>= FRACTION_BITS
            sb[1:] -= acc
    s[0] = first
    return s, weights, s_abs


def decode_dtype(s_abs, n_lags, max_abs, n_parents):
    """Work dtype of :func:`decode_residuals` (int32 unless a bound needs int64)."""
    return np.promote_types(work_dtype(s_abs, n_lags), _spatial_dtype(max_abs, n_parents))


def decode_residuals(xe, inverse, parents, blocks, weights, s_abs, kernels=None, n_rows=None):
    """Invert :func:`encode_residuals`.

    Parameters
    ----------
    xe : ndarray of :func:`decode_dtype`, shape (T, N + 1, D), frame-major: the
        residuals in ``[:, :N]``, in stored order or any permutation of it that keeps
        every block's points inside the block; overwritten with the decoded values.
    inverse : (N,) int array
        Original point index -> position in ``xe`` (the inverse of the structure's
        ``order`` in that permutation).
    parents : (N, m) int array
        The structure's parents as positions of the permutation (N: the zero point).
    blocks : (lo, hi) blocks of the temporal weights.
    weights : (len(blocks), n_groups, L) int array (component groups: [0, 3), [3, D)).
    s_abs : int
        The encoder's bound on |s| (values beyond it are an error).
    kernels : namespace from :func:`bodybatch.codec._kernels.kernels`, optional
        Run the temporal and spatial steps compiled (the same integers).
    n_rows : int, optional
        With ``kernels``: decode (and check the bound on) frames ``[0, n_rows)``
        only (default: all).

    Returns
    -------
    x : ndarray, shape (T, N, D) (``(n_rows, N, D)``), original order; None when a
        spatial residual exceeds ``s_abs``.
    """
    n_frames, n, d = xe.shape
    n -= 1
    n_lags = weights.shape[2]
    groups = [(0, min(3, d))] + ([(3, d)] if d > 3 else [])
    s = xe[:, :n]
    # Frame 0 from the parents' mean, level by level; it gives the spatial weights.
    xe[0, n] = 0
    for lo, hi in level_bounds(n):
        xe[:1, lo:hi] += _parent_pred(xe[:1], parents[lo:hi])
    x0 = xe[0].copy()
    n_rows = n_frames if n_rows is None or kernels is None else max(1, min(n_rows, n_frames))
    if n_rows == 1:
        return _gather(xe[:1], inverse)
    vw = _value_weights(x0, parents, d, xe.dtype)
    s[0] -= _weighted_pred(xe[:1], parents, vw)[0]
    if kernels is not None:
        return _decode_compiled(kernels, xe, x0, inverse, parents, vw, blocks, weights, s_abs, n_rows)
    # Temporal: all points at once, frame by frame.
    planes = _weight_planes(weights, blocks, groups, n, d, xe.dtype)
    acc = np.empty((n, d), xe.dtype)
    tmp = np.empty((n, d), xe.dtype)
    half = 1 << (FRACTION_BITS - 1)
    for t in range(1, n_frames):
        np.multiply(planes[0], s[t - 1], out=acc)
        for lag in range(2, n_lags + 1):
            np.multiply(planes[lag - 1], s[max(t - lag, 0)], out=tmp)
            acc += tmp
        acc += half
        acc >>= FRACTION_BITS
        s[t] += acc
    if s.size and max(int(s.max()), -int(s.min())) > s_abs:
        return None
    xe[0] = x0
    xe[1:, n] = 0
    rest = xe[1:]
    largest = max(hi - lo for lo, hi in level_bounds(n))
    work = [np.empty((n_frames - 1) * largest * d, xe.dtype) for _ in range(2)]
    for lo, hi in level_bounds(n):
        rest[:, lo:hi] += _weighted_pred(rest, parents[lo:hi], vw[lo:hi], work)
    return _gather(xe, inverse)


def _decode_compiled(kernels, xe, x0, inverse, parents, vw, blocks, weights, s_abs, n_rows):
    """Frames ``[0, n_rows)`` of :func:`decode_residuals` by the compiled temporal and
    spatial steps (``xe[:, :N]`` holds s, frame 0 included; ``x0`` the decoded frame 0)."""
    n, d = len(parents), xe.shape[2]
    block_bounds = np.array(blocks, np.int64).reshape(-1, 2)
    flat = xe.reshape(len(xe), -1)
    if kernels.temporal_v2(d, weights.shape[2], xe.dtype, flat, weights, block_bounds, n_rows) > s_abs:
        return None
    xe[0] = x0
    levels = np.array(level_bounds(n), np.int64).reshape(-1, 2)
    out = np.empty((n_rows, n, d), xe.dtype)
    kernels.spatial_v2(parents.shape[1], d, xe.dtype, xe, vw, parents, levels, inverse, n_rows, out)
    return out
