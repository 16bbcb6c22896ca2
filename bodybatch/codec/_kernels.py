"""Compiled decode kernels (optional: numba, installed by the ``fast`` extra).

The numpy decoders in :mod:`bodybatch.codec.predict` (v1) and
:mod:`bodybatch.codec.predict2` (v2) are the reference: a kernel here gives
bit-identical integers (tests compare both on the same streams), only faster, because
the predictors' recurrences run in compiled loops sized for the caches instead of as
whole-array numpy passes. Without numba (or with ``BODYBATCH_KERNELS=numpy`` in the
environment) the numpy decoders run.

v2 keeps frame 0 and the spatial weights in numpy (:func:`predict2.decode_residuals`);
its kernels take the weights as plain arrays (any number of parents and lags).

The other formats' kernels live in their own modules and are registered here, in the
same namespace: format 1.0 in :mod:`bodybatch.codec._kernels1` (``decode_v1``,
``gather_dequantize``), format 3.0's decoder in :mod:`bodybatch.codec._kernels3`
(``decode_v3``, ``predict_v3``, ``values_v3``, ``ridge_v3``) and its encoder in
:mod:`bodybatch.codec._kernels3_encode` (``offsets_v3``, ``residuals_v3``, ``gram_v3``).

numba is imported, and the kernels compiled, on first use only (``import bodybatch``
stays fast); compiled code is cached on disk by numba (``cache=True``).
"""

import os

__all__ = ["kernels", "KERNELS_ENV"]

#: Environment variable: ``numpy`` (or ``0``/``off``) forces the numpy decoders.
KERNELS_ENV = "BODYBATCH_KERNELS"
_STATE = {}


def kernels():
    """The compiled kernels (a namespace), or None when numba is missing or disabled."""
    if os.environ.get(KERNELS_ENV, "").strip().lower() in ("numpy", "0", "off", "no", "false"):
        return None
    if "kernels" not in _STATE:
        try:
            import numba
        except ImportError:
            _STATE["kernels"] = None
        else:
            _STATE["kernels"] = _compile(numba)
    return _STATE["kernels"]


def _compile(numba):
    from types import SimpleNamespace

    from bodybatch.codec import _kernels3, _kernels3_encode
    from bodybatch.codec._kernels1 import make_decode_v1, make_gather_dequantize

    return SimpleNamespace(
        decode_v1=_Specialized(numba, make_decode_v1),
        gather_dequantize=_Specialized(numba, make_gather_dequantize, 1),
        temporal_v2=_Specialized(numba, _make_temporal_v2, 3),
        spatial_v2=_Specialized(numba, _make_spatial_v2, 3),
        decode_v3=_Specialized(numba, _kernels3.make_decode_v3),
        predict_v3=_Specialized(numba, _kernels3.make_predict_v3, 4),
        values_v3=_Specialized(numba, _kernels3.make_values_v3, 1),
        ridge_v3=_Specialized(numba, _kernels3.make_ridge_v3, 1),
        offsets_v3=_Specialized(numba, _kernels3_encode.make_offsets_v3),
        residuals_v3=_Specialized(numba, _kernels3_encode.make_residuals_v3, 1),
        gram_v3=_Specialized(numba, _kernels3_encode.make_gram_v3),
        dequantize=_Specialized(numba, _make_dequantize, 1),
        numba_version=numba.__version__,
    )


class _Specialized:
    """Kernels compiled per key of ``n_keys`` small constants, e.g. (n_parents, n_dims):
    known to the compiler, they unroll the inner loops (v1: measured 1.9x faster than
    one generic kernel). Called as ``kernel(*key, *arrays)``."""

    def __init__(self, numba, factory, n_keys=2):
        self._numba, self._factory, self._n_keys, self._compiled = numba, factory, n_keys, {}

    def __call__(self, *args):
        key, args = args[: self._n_keys], args[self._n_keys :]
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = self._factory(self._numba, *key)
        return fn(*args)


def _make_temporal_v2(numba, D, L, dtype):
    import numpy as np

    from bodybatch.codec.predict2 import FRACTION_BITS as F

    # Arithmetic in the work dtype, as numpy's: the same integers even where a corrupt
    # chunk's sums wrap around (the bound check then fails in both decoders).
    WORK = np.dtype(dtype).type
    HALF = 1 << (F - 1)
    N_XYZ = min(3, D)
    TILE = 64 * D  # values per tile: the L + 1 frames a tile works on stay in L1

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def temporal_v2(s, weights, blocks, n_rows):
        """v2 temporal recurrence (see :mod:`bodybatch.codec.predict2`), in place:
        ``s[t, p] += (sum_l w[b, g, l] * s[max(t - l, 0), p] + 2**(F-1)) >> F`` for
        ``t = 1 .. n_rows - 1``, ``p`` in block ``b``, components of group ``g``.

        s : (T, (N + 1) * D) residuals (a flat view of (T, N + 1, D); frame 0: the
            spatial residuals); the zero point is not touched.
        weights : (n_blocks, n_groups, L) int; blocks : (n_blocks, 2) point ranges.
        Returns max |s| over frames ``[0, n_rows)`` (the caller's bound check).

        Per tile of points, frame by frame, lag by lag over the tile's values: the
        inner loops are contiguous and vectorize (measured 5x faster than one loop over
        the values with the lags inside, 6x faster than per value over frames).
        """
        tile_weights = np.empty((L, TILE), s.dtype)  # the block's weights per value of a tile
        acc = np.empty(TILE, s.dtype)
        top, bottom = WORK(0), WORK(0)
        for bi in range(blocks.shape[0]):
            for k in range(TILE):
                for lag in range(L):
                    tile_weights[lag, k] = weights[bi, 0 if k % D < N_XYZ else 1, lag]
            for a in range(blocks[bi, 0] * D, blocks[bi, 1] * D, TILE):
                e = min(blocks[bi, 1] * D, a + TILE)
                size = e - a
                for k in range(a, e):
                    top, bottom = max(top, s[0, k]), min(bottom, s[0, k])
                for t in range(1, n_rows):
                    for k in range(size):
                        acc[k] = HALF
                    for lag in range(L):
                        src = s[max(t - 1 - lag, 0), a:e]
                        w = tile_weights[lag]
                        for k in range(size):
                            acc[k] = WORK(acc[k] + WORK(w[k] * src[k]))
                    dst = s[t, a:e]
                    for k in range(size):
                        v = WORK(dst[k] + (acc[k] >> F))
                        dst[k] = v
                        top, bottom = max(top, v), min(bottom, v)
        return max(np.int64(top), -np.int64(bottom))

    return temporal_v2


def _make_spatial_v2(numba, M, D, dtype):
    import numpy as np

    from bodybatch.codec.predict2 import SPATIAL_BITS, SPATIAL_ONE

    WORK = np.dtype(dtype).type  # as in the temporal kernel
    HALF = SPATIAL_ONE // 2

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def spatial_v2(xe, weights, parents, levels, inverse, n_rows, out):
        """v2 spatial step (see :mod:`bodybatch.codec.predict2`) frame by frame, level by
        level: ``x[t, p] = s[t, p] + ((sum_j W[p, j] * x[t, parent_j] + 32) >> 6)``;
        each frame then gathered into the original point order.

        xe : (T, N + 1, D): frame 0 decoded, frames 1.. the spatial residuals s
            (overwritten with x; row N set to zero).
        weights : (N, M, D) of ``xe.dtype``; parents : (N, M) rows of ``xe``;
            levels : (n, 2) position ranges, parents before children; inverse : (N,)
            original index -> position.
        out : (n_rows, N, D): ``x`` of frames ``[0, n_rows)``, original order.

        Frame by frame, a frame's values stay in cache while its levels are decoded
        and it is gathered (measured: 1.7x faster than scattering each value as it is
        decoded; batches of 2-8 frames per level were slower).
        """
        n = parents.shape[0]
        for t in range(n_rows):
            row = xe[t]  # one frame (L2-sized): the parents' values are near
            for c in range(D):
                row[n, c] = 0
            for li in range(levels.shape[0] if t > 0 else 0):
                for p in range(levels[li, 0], levels[li, 1]):
                    # up to 4 parents unrolled (M is a compile-time constant)
                    p0, p1 = parents[p, 0], parents[p, min(1, M - 1)]
                    p2, p3 = parents[p, min(2, M - 1)], parents[p, min(3, M - 1)]
                    for c in range(D):
                        acc = WORK(HALF + WORK(weights[p, 0, c] * row[p0, c]))
                        if M > 1:
                            acc = WORK(acc + WORK(weights[p, 1, c] * row[p1, c]))
                        if M > 2:
                            acc = WORK(acc + WORK(weights[p, 2, c] * row[p2, c]))
                        if M > 3:
                            acc = WORK(acc + WORK(weights[p, 3, c] * row[p3, c]))
                        for j in range(4, M):
                            acc = WORK(acc + WORK(weights[p, j, c] * row[parents[p, j], c]))
                        row[p, c] = WORK(row[p, c] + (acc >> SPATIAL_BITS))
            frame = out[t]
            for i in range(n):
                q = inverse[i]
                for c in range(D):
                    frame[i, c] = row[q, c]

    return spatial_v2


def _make_dequantize(numba, D):
    import numpy as np

    N_XYZ = min(3, D)

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def dequantize(x, scale, divide, unc_scale, unc_divide, xyz, unc):
        """One pass over decoded integers ``x (T, N, D)``: ``xyz (T, N, 3)`` and ``unc
        (T, N)`` float32 values, exactly as :func:`bodybatch._grid.dequantize` (a
        ``divide`` factor: ``float32(x / scale)`` in float64; else ``x * scale`` in
        float32, exact for a power-of-two factor). Returns max |x| (the caller's bound
        check)."""
        top = 0
        for t in range(x.shape[0]):
            for p in range(x.shape[1]):
                for c in range(D):
                    q = x[t, p, c]
                    top = max(top, abs(q))
                    if c < N_XYZ:
                        xyz[t, p, c] = np.float32(q / scale) if divide else np.float32(q) * np.float32(scale)
                    else:
                        unc[t, p] = np.float32(q / unc_scale) if unc_divide else np.float32(q) * np.float32(unc_scale)
        return top

    return dequantize
