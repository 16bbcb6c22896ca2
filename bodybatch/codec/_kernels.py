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

    return SimpleNamespace(decode_v1=_Specialized(numba, _make_decode_v1), numba_version=numba.__version__)


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
    def decode_v1(first, rest_xyz, rest_unc, sorted_pos, parents, levels, order, first_row, n_rows, xe, out):
        """v1 predictor decode of one point group (see :mod:`bodybatch.codec.predict`).

        first : (N, D) residuals of frame 0, stored order.
        rest_xyz, rest_unc : (N, T-1, 3) and (N, T-1, D-3) residuals of frames 1..,
            rows in the streams' sorted layout (``sorted_pos[p]`` is stored position
            ``p``'s row).
        parents : (N, M) parent positions (N: the zero point); levels : (L, 3) rows of
            (lo, hi, window); order : (N,) stored position -> original index.
        first_row, n_rows : predict frames ``[0, n_rows)``, output ``[first_row, n_rows)``.
        xe : (N + 1, >= n_rows, D) work array, point-major (row N must be zero).
        out : (n_rows - first_row, N, D) decoded integers, original point order.
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
                        if t >= first_row:
                            out[t - first_row, op, c] = x

    return decode_v1
