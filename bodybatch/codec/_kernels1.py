"""Compiled format 1.0 decode kernels (see :mod:`bodybatch.codec._kernels`): the v1
predictor over tiles of points, and the gather into the original point order fused
with dequantization.

Measured on corpus chunks (64 rows, 13,718 points, ``scripts/bench_read.py`` and a
kernel micro-benchmark): the predictor writes its rows in *stored* order, frame-major,
because scattering each value to the original point order as it is decoded cost about
a third of the whole decode (each write touched its own cache line); the gather then
runs frame by frame, where a frame (220 KB) stays in cache.
"""

__all__ = ["make_decode_v1", "make_gather_dequantize"]

#: Points decoded together: their frames' recurrences run as contiguous lanes
#: (measured per value on corpus chunks: 16 points 3.1 ns, 32 2.7 ns, 64 2.5 ns,
#: 128 3.8 ns: the tile's work arrays leave the L2 cache).
TILE = 64


def make_decode_v1(numba, M, D):
    """The v1 decode kernel for ``M`` parents and ``D`` values per point."""
    import numpy as np

    from bodybatch.codec import _prefetch  # called through the module: see its docstring

    HALF_M = M // 2
    N_XYZ = min(3, D)
    K = TILE * D

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def decode_v1(first, rest_xyz, rest_unc, sorted_pos, parents, is_parent, levels, first_row, n_rows, xe, xs):
        """v1 predictor decode of one point group (see :mod:`bodybatch.codec.predict`).

        first : (N, D) residuals of frame 0, stored order.
        rest_xyz, rest_unc : (N, T-1, 3) and (N, T-1, D-3) residuals of frames 1..,
            rows in the streams' sorted layout (``sorted_pos[p]`` is stored position
            ``p``'s row).
        parents : (N, M) parent positions (N: the zero point); is_parent : (N + 1,)
            uint8, 1 for the positions some point has as a parent: only their rows of
            ``xe`` are written (the others' are never read: 5-9% of the kernel's time);
            levels : (L, 3) rows of (lo, hi, window).
        first_row, n_rows : predict frames ``[0, n_rows)``, output ``[first_row, n_rows)``.
        xe : (N + 1, >= n_rows, D) work array, point-major (row N must be zero; the
            rows of points that are nobody's parent are left unwritten).
        xs : (n_rows - first_row, N, D) decoded integers, frame-major, stored order.
        Both hold the values only (the arithmetic is int64): int16 when the chunk's
        bound allows it (measured 20% faster than int32: less memory traffic).

        Returns max |x| over every decoded value (exact: taken before ``x`` is stored,
        so a corrupt chunk whose values overflow the storage dtype fails the caller's
        bound check).

        Per level, tiles of ``TILE`` points: the parents' sums and the residuals of
        all frames are laid out frame by frame over the tile's (point, component)
        lanes, the recurrence runs over the lanes (a running sum of the last
        ``window`` offsets; the floor division by ``M * k`` from a float64 estimate,
        corrected to the exact integer), and the tile's values go back point-major
        (for the finer levels) and frame-major (the output).
        """
        rows = max(n_rows, 1)
        # rows padded off a power-of-two stride (the four rows of one frame would share
        # cache sets: measured 5-10% slower)
        cs = np.empty((rows, K + 8), np.int64)  # sum of the parents' values
        rr = np.empty((rows, K + 8), np.int64)  # residuals
        off = np.empty((rows, K + 8), np.int64)  # O[t] = M x[t] - C[t]
        xb = np.empty((rows, K + 8), np.int64)  # decoded values
        acc = np.empty(K, np.int64)  # sum of O over the window
        top = 0
        rest_flat, xe_flat = rest_xyz.reshape(-1), xe.reshape(-1)
        rest_row, xe_row = rest_xyz.shape[1] * N_XYZ, xe.shape[1] * D  # values per point
        for li in range(levels.shape[0]):
            lo, hi, window = levels[li, 0], levels[li, 1], levels[li, 2]
            for a in range(lo, hi, TILE):
                nb = min(TILE, hi - a)
                nk = nb * D
                # the next tile's residuals and parents' rows, on their way while this
                # tile computes (7-9% of the kernel's time on a 64-row chunk)
                for i in range(a + TILE, min(a + 2 * TILE, hi)):
                    for f in range(0, (n_rows - 1) * N_XYZ, 32):
                        _prefetch.prefetch(rest_flat, sorted_pos[i] * rest_row + f)
                    for j in range(M):
                        for f in range(0, n_rows * D, 32):
                            _prefetch.prefetch(xe_flat, parents[i, j] * xe_row + f)
                for i in range(nb):
                    p = a + i
                    sp = sorted_pos[p]
                    p0, p1, p2 = parents[p, 0], parents[p, min(1, M - 1)], parents[p, min(2, M - 1)]
                    for t in range(n_rows):
                        for c in range(D):
                            if M == 3:  # the default, unrolled (a compile-time constant)
                                s = np.int64(xe[p0, t, c]) + np.int64(xe[p1, t, c]) + np.int64(xe[p2, t, c])
                            else:
                                s = np.int64(xe[parents[p, 0], t, c])
                                for j in range(1, M):
                                    s += np.int64(xe[parents[p, j], t, c])
                            cs[t, i * D + c] = s
                    for c in range(D):
                        rr[0, i * D + c] = first[p, c]
                    for t in range(1, n_rows):
                        for c in range(N_XYZ):
                            rr[t, i * D + c] = rest_xyz[sp, t - 1, c]
                        for c in range(N_XYZ, D):
                            rr[t, i * D + c] = rest_unc[sp, t - 1, c - N_XYZ]
                c0, r0, o0, x0 = cs[0], rr[0], off[0], xb[0]
                for k in range(nk):
                    x = r0[k] + (c0[k] + HALF_M) // M
                    x0[k] = x
                    o0[k] = M * x - c0[k]
                    acc[k] = 0
                    top = max(top, abs(x))
                for t in range(1, n_rows):
                    kt = min(window, t)
                    d = M * kt
                    inv = 1.0 / d
                    bias = d // 2
                    newest = off[t - 1]
                    if t - 1 - kt >= 0:  # the window slides: the oldest offset leaves
                        oldest = off[t - 1 - kt]
                        for k in range(nk):
                            acc[k] += newest[k] - oldest[k]
                    else:
                        for k in range(nk):
                            acc[k] += newest[k]
                    ct, rt, ot, xt = cs[t], rr[t], off[t], xb[t]
                    for k in range(nk):
                        num = kt * ct[k] + acc[k] + bias  # |num| < 2**40: the estimate is off by at most 1
                        q = np.int64(np.floor(num * inv))
                        rem = num - q * d
                        q += (rem >= d) - (rem < 0)
                        x = q + rt[k]
                        xt[k] = x
                        ot[k] = M * x - ct[k]
                        top = max(top, abs(x))
                for i in range(nb):
                    p = a + i
                    if not is_parent[p]:  # nobody reads it: the finest level's points
                        continue
                    for t in range(n_rows):
                        for c in range(D):
                            xe[p, t, c] = xb[t, i * D + c]
                for t in range(first_row, n_rows):
                    dst = xs[t - first_row]
                    for i in range(nb):
                        for c in range(D):
                            dst[a + i, c] = xb[t, i * D + c]
        return top

    return decode_v1


def make_gather_dequantize(numba, D):
    """The gather + dequantize kernel for ``D`` values per point."""
    import numpy as np

    N_XYZ = min(3, D)

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def gather_dequantize(xs, inverse, scale, divide, unc_scale, unc_divide, xyz, unc):
        """Decoded integers ``xs (T, N, D)`` in stored order -> ``xyz (T, N, 3)`` and
        ``unc (T, N)`` float32 in the original point order (``inverse[i]``: the stored
        position of point ``i``), exactly as :func:`bodybatch._grid.dequantize` (as
        :func:`bodybatch.codec._kernels` ``dequantize``); the bound check is the
        decoder's (:func:`make_decode_v1`).

        Frame by frame: a first, sequential pass brings the frame into the cache, so
        that the gather's random reads hit it (measured 2.3x faster than gathering
        from memory).
        """
        buf = np.empty(xs.shape[1:], xs.dtype)
        for t in range(xs.shape[0]):
            row = xs[t]
            for q in range(row.shape[0]):
                for c in range(D):
                    buf[q, c] = row[q, c]
            for i in range(inverse.shape[0]):
                q = inverse[i]
                for c in range(N_XYZ):
                    v = buf[q, c]
                    xyz[t, i, c] = np.float32(v / scale) if divide else np.float32(v) * np.float32(scale)
                for c in range(N_XYZ, D):
                    v = buf[q, c]
                    unc[t, i] = np.float32(v / unc_scale) if unc_divide else np.float32(v) * np.float32(unc_scale)

    return gather_dequantize
