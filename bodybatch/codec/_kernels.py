"""Compiled decode kernels (optional: numba, installed by the ``fast`` extra).

The numpy decoders in :mod:`bodybatch.codec.predict` are the reference: a kernel here
gives bit-identical integers (tests compare both on the same streams), only faster,
because the predictor's recurrence over frames runs per point in compiled code
instead of as whole-array numpy passes per frame. Without numba (or with
``BODYBATCH_KERNELS=numpy`` in the environment) the numpy decoders run.

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

    return SimpleNamespace(decode_v1=_Specialized(numba, _make_decode_v1), decode_v3=_Specialized(numba, _make_decode_v3),
                           residuals_v3=_Specialized(numba, _make_residuals_v3), numba_version=numba.__version__)  # fmt: skip


class _Specialized:
    """Kernels compiled per (n_parents, n_dims): with both known to the compiler the
    inner loops unroll (measured 1.9x faster than one generic kernel)."""

    def __init__(self, numba, factory):
        self._numba, self._factory, self._compiled = numba, factory, {}

    def __call__(self, m, d, *args):
        fn = self._compiled.get((m, d))
        if fn is None:
            fn = self._compiled[(m, d)] = self._factory(self._numba, m, d)
        return fn(*args)


def _make_decode_v1(numba, M, D):
    import numpy as np

    HALF_M = M // 2
    N_XYZ = min(3, D)

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def decode_v1(first, rest_xyz, rest_unc, sorted_pos, parents, levels, order, n_rows, xe,
                  out):  # fmt: skip
        """v1 predictor decode of one point group (see :mod:`bodybatch.codec.predict`),
        dequantized into float32.

        first : (N, D) residuals of frame 0, stored order.
        rest_xyz, rest_unc : (N, T-1, 3) and (N, T-1, D-3) residuals of frames 1..,
            rows in the streams' sorted layout (``sorted_pos[p]`` is stored position
            ``p``'s row).
        parents : (N, M) parent positions (N: the zero point); levels : (L, 3) rows of
            (lo, hi, window); order : (N,) stored position -> original index.
        n_rows : decode frames ``[0, n_rows)`` only.
        xe : (N + 1, T, D) work array, point-major (row N must be zero).
        out_xyz (n_rows, N, 3), out_unc (n_rows, N): ``float32(x / factor)`` and
        ``float32(x / unc_factor)``; ``inv_factor``: 1 / factor when that is exact
        (factor a power of two), else 0.
        """
        obuf = np.zeros((max(n_rows, 1), D), np.int64)  # O[t] = M x[t] - C[t] of one point
        for li in range(levels.shape[0]):
            lo, hi, window = levels[li, 0], levels[li, 1], levels[li, 2]
            for p in range(lo, hi):
                sp = sorted_pos[p]
                op = order[p]
                p0, p1, p2 = parents[p, 0], parents[p, min(1, M - 1)], parents[p, min(2, M - 1)]
                for t in range(n_rows):
                    kt = min(window, t)
                    # coordinates (residuals in rest_xyz), then the uncertainty (rest_unc):
                    # two branch-free loops over the components
                    for c in range(D):
                        if M == 3:  # the default, unrolled (a compile-time constant)
                            cs = xe[p0, t, c] + xe[p1, t, c] + xe[p2, t, c]
                        else:
                            cs = xe[parents[p, 0], t, c]
                            for j in range(1, M):
                                cs += xe[parents[p, j], t, c]
                        if t == 0:
                            x = first[p, c] + (cs + HALF_M) // M
                        else:
                            r = rest_xyz[sp, t - 1, c] if c < N_XYZ else rest_unc[sp, t - 1, c - N_XYZ]
                            if kt == 1:
                                x = (cs + obuf[t - 1, c] + HALF_M) // M + r
                            elif kt == 2:
                                x = (2 * cs + obuf[t - 1, c] + obuf[t - 2, c] + M) // (2 * M) + r
                            else:
                                num = kt * cs + (M * kt) // 2
                                for i in range(1, kt + 1):
                                    num += obuf[t - i, c]
                                x = num // (M * kt) + r
                        obuf[t, c] = M * x - cs
                        xe[p, t, c] = x
                        out[t, op, c] = x

    return decode_v1


def _make_decode_v3(numba, M, D):
    import numpy as np

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def decode_v3(res, parents, vw, wpt, levels, order, n_rows, xe, out):
        """Format 3.0 predictor decode of rows 1.. of one point group (see
        :mod:`bodybatch.codec.predict3`; row 0 is decoded already).

        res : (N, T, D) int64 residuals, point-major, stored order; parents : (N, M) positions (N:
        the zero point); vw : (N, M, D) spatial weights; wpt : (N, L + 1, D) temporal
        weights (lags 1..L, then the running mean's); levels : (n_levels, 2) position
        ranges; order : (N,) stored position -> original index.
        xe : (N + 1, n_rows, D) int64 work array, point-major, row 0 decoded, row N zero.
        out : (n_rows, N, D) int64, original order (row 0 filled here too).
        """
        n_lags = wpt.shape[1] - 1
        off = np.zeros((max(n_rows, 1), D), np.int64)  # O[t] = 64 x[t] - P[t] of one point
        total = np.zeros(D, np.int64)
        for li in range(levels.shape[0]):
            for p in range(levels[li, 0], levels[li, 1]):
                op = order[p]
                for c in range(D):
                    cs = 0
                    for j in range(M):
                        cs += vw[p, j, c] * xe[parents[p, j], 0, c]
                    off[0, c] = (xe[p, 0, c] << 6) - cs
                    total[c] = off[0, c]
                    out[0, op, c] = xe[p, 0, c]
                for t in range(1, n_rows):
                    for c in range(D):
                        cs = 0
                        for j in range(M):
                            cs += vw[p, j, c] * xe[parents[p, j], t, c]
                        q = wpt[p, n_lags, c] * (total[c] // t) + 2048
                        for lag in range(1, n_lags + 1):
                            q += wpt[p, lag - 1, c] * off[max(t - lag, 0), c]
                        x = res[p, t, c] + ((cs + (q >> 12) + 32) >> 6)
                        xe[p, t, c] = x
                        out[t, op, c] = x
                        off[t, c] = (x << 6) - cs
                        total[c] += off[t, c]

    return decode_v3


def _make_residuals_v3(numba, M, D):  # M unused: one kernel per D
    import numpy as np

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def residuals_v3(x, p, off, wl, out):
        """Format 3.0 encoder: rows 1.. of one block's residuals (see
        :func:`bodybatch.codec.predict3._residuals`); all (T, k, D) int64 frame-major
        except ``wl`` (L + 1, k, D)."""
        n_frames, k = x.shape[0], x.shape[1]
        n_lags = wl.shape[0] - 1
        total = np.zeros((k, D), np.int64)
        for i in range(k):
            for c in range(D):
                total[i, c] = off[0, i, c]
        for t in range(1, n_frames):
            for i in range(k):
                for c in range(D):
                    q = wl[n_lags, i, c] * (total[i, c] // t) + 2048
                    for lag in range(1, n_lags + 1):
                        q += wl[lag - 1, i, c] * off[max(t - lag, 0), i, c]
                    out[t, i, c] = x[t, i, c] - ((p[t, i, c] + (q >> 12) + 32) >> 6)
                    total[i, c] += off[t, i, c]

    return residuals_v3
