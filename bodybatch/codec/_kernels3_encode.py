"""Compiled format 3.0 encoder kernels (optional: numba; registered by
:func:`bodybatch.codec._kernels._compile`, compiled on first use; the decoder's are in
:mod:`bodybatch.codec._kernels3`).

The numpy encoder in :mod:`bodybatch.codec.predict3` is the reference: these give
the same integers (and, when it is exact, the same Gram matrix of the temporal fit),
only faster: the same bytes (tested). Integer arithmetic is int64 (values may come as
int32) and exact (bounds in :mod:`bodybatch.codec.predict3`).
"""

__all__ = ["make_offsets_v3", "make_residuals_v3", "make_gram_v3"]

#: Points per tile of the residual kernel: their values run as contiguous lanes
#: (measured: 256 points 1.3x faster than 64).
TILE = 256


def make_offsets_v3(numba, M, D):
    """The offsets ``O = 64 x - P`` of a block of points (P: the weighted parents)."""
    import numpy as np

    N_XYZ = min(3, D)

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def offsets_v3(xe, parents, rw, bw, lo, off):
        """xe : (T, (N + 1) * D) int32 or int64 values in stored order, flat rows (point N:
        zero); parents (N, M) positions; rw (N, M) int64 spatial weights of the first
        three components, bw (M,) those of the others (as
        :func:`bodybatch.codec.spatial3.value_weights`); off : (T, k * D) int64, the
        offsets of positions ``[lo, lo + k)`` (``P = sum_j w_j * x[parent_j]``, the sum
        over j in order as :func:`predict3._weighted_sum`: exact integers anyway).

        Frame by frame: a frame's values (about 440 kB for 13,718 points) stay in cache
        while the parents are read; the weights per point, not per value (4x less to
        read each frame).
        """
        n_frames, k = off.shape[0], off.shape[1] // D
        base = np.empty((k, M), np.int64)  # the parents' first values in a row
        for i in range(k):
            for j in range(M):
                base[i, j] = parents[lo + i, j] * D
        for t in range(n_frames):
            row, orow = xe[t], off[t]
            for i in range(k):
                q, b, w = lo + i, base[i], rw[lo + i]
                for c in range(N_XYZ):
                    s = 0
                    for j in range(M):
                        s += w[j] * np.int64(row[b[j] + c])
                    orow[i * D + c] = (np.int64(row[q * D + c]) << 6) - s
                for c in range(N_XYZ, D):
                    s = 0
                    for j in range(M):
                        s += bw[j] * np.int64(row[b[j] + c])
                    orow[i * D + c] = (np.int64(row[q * D + c]) << 6) - s

    return offsets_v3


def make_residuals_v3(numba, D):
    import numpy as np

    K = TILE * D

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def residuals_v3(x, off, table, classes, n_rows, out, act, write):
        """Rows ``1 .. n_rows - 1`` of one block's residuals (see
        :func:`bodybatch.codec.predict3._residuals`).

        x, off : (T, k * D) values (int32 or int64) and int64 offsets (frame-major, flat
        rows; P = 64 x - O);
        table : (n_classes, L + 1, D) int64 temporal weights per class (lags 1..L, then
        the running mean's); classes : (k,) the points' classes.
        out : (T, k * D) int64 residuals (rows 1 .. n_rows - 1 written when ``write``);
        act : (k,) int64, plus each point's sum of |residual| over its first three
        components (the activity classes' measure: all the first pass needs).

        Per tile of ``TILE`` points, frame by frame over contiguous lanes; the running
        mean ``floor(total / t)`` from a float estimate corrected by one
        (``|total| < 2**52``: the estimate is off by at most 1).
        """
        n_lags = table.shape[1] - 1
        k = classes.shape[0]
        w = np.empty((n_lags + 1, K), np.int64)
        total = np.empty(K, np.int64)
        q = np.empty(K, np.int64)
        acc = np.empty(K, np.int64)
        for a in range(0, k, TILE):
            nb = min(TILE, k - a)
            nk = nb * D
            lo, hi = a * D, a * D + nk
            for i in range(nb):
                cl = classes[a + i]
                for c in range(D):
                    for lag in range(n_lags + 1):
                        w[lag, i * D + c] = table[cl, lag, c]
            first = off[0, lo:hi]
            for j in range(nk):
                total[j] = first[j]
                acc[j] = 0
            for t in range(1, n_rows):
                inv_t = 1.0 / t
                wm = w[n_lags]
                for j in range(nk):
                    tot = total[j]
                    mean = np.int64(np.floor(tot * inv_t))
                    rem = tot - mean * t
                    mean += (rem >= t) - (rem < 0)
                    q[j] = wm[j] * mean + 2048
                for lag in range(1, n_lags + 1):
                    src, wl = off[max(t - lag, 0), lo:hi], w[lag - 1]  # 1-d slices: 2x faster than 2-d indexing
                    for j in range(nk):
                        q[j] += wl[j] * src[j]
                xrow, orow, rrow = x[t, lo:hi], off[t, lo:hi], out[t, lo:hi]
                if write:
                    for j in range(nk):
                        xj, oj = np.int64(xrow[j]), orow[j]
                        r = xj - ((((xj << 6) - oj) + (q[j] >> 12) + 32) >> 6)
                        rrow[j] = r
                        acc[j] += abs(r)
                        total[j] += oj
                else:
                    for j in range(nk):
                        xj, oj = np.int64(xrow[j]), orow[j]
                        acc[j] += abs(xj - ((((xj << 6) - oj) + (q[j] >> 12) + 32) >> 6))
                        total[j] += oj
            for i in range(nb):
                s = 0
                for c in range(min(3, D)):
                    s += acc[i * D + c]
                act[a + i] += s

    return residuals_v3


def make_gram_v3(numba, L, D):
    import numpy as np

    NP = max(1, 64 // D)  # points per tile; their D * NP series' accumulators stay in L1
    TL = NP * D

    @numba.njit(nogil=True, boundscheck=False, cache=True)
    def gram_v3(off, idx, full, bound):
        """Per component ``c``, the (L + 2, L + 2) Gram matrix ``design @ design.T`` of
        :func:`bodybatch.codec.predict3._fit` (rows: lags 1..L, the running mean, the
        target) of the offsets ``off (T, k * D)`` (flat rows) at points ``idx``, into
        ``full[c]``, and ``bound[c]``: the sum over the points of ``max_t |O|**2``.
        Every sum of products of a set of components is below ``(T - 1)`` times their
        bounds: below 2**52 they are exact (then any order of the float64 sums, BLAS's
        included, gives these same integers); else ``full`` is not to be used.

        Per series (a point's component), with ``e[s] = O[max(s, 0)]``: the lag
        entries are ``G[a, a + d] = sum_{s=1-a}^{T-1-a} e[s] e[s - d]``, from one running
        sum per ``d`` over ``s <= T - 1 - L``, the last L frames per ``a``, and ``o0**2``
        per frame ``s <= 0``; the running mean's entries directly. One gather of the
        points' frames serves all components.
        """
        n_frames = off.shape[0]
        full[:] = 0.0
        bound[:] = 0.0
        sub = np.empty((n_frames, idx.shape[0] * D))  # the points' frames, row by row: the
        for t in range(n_frames):  # reads run up each row (3.5x faster than tile by tile)
            src, dst = off[t], sub[t]
            for i in range(idx.shape[0]):
                q = idx[i] * D
                for c in range(D):
                    dst[i * D + c] = np.float64(src[q + c])
        lagsum = np.empty((L + 1, TL))  # running sums of e[s] e[s - d], s <= T - 1 - L
        tail = np.empty((L + 1, L + 1, TL))  # G[a, b] of the last frames
        cross = np.empty((L + 2, TL))  # mean x target, mean x lag 1..L, mean x mean
        sq0 = np.zeros(TL)  # o0 * o0, the value of the frames s <= 0
        lagsum[:] = 0.0  # the lane accumulators sum over all tiles (lane j: component j % D),
        tail[:] = 0.0  # reduced once at the end
        cross[:] = 0.0
        cum = np.empty(TL)
        mrow = np.empty(TL)
        for p0 in range(0, idx.shape[0], NP):
            nb = min(NP, idx.shape[0] - p0)
            nl = nb * D
            lo, hi = p0 * D, p0 * D + nl  # the tile's lanes: 1-d row slices sub[t, lo:hi]
            for j in range(nl):
                cum[j] = 0.0  # (here: max |O|)
            for t in range(n_frames):
                et = sub[t, lo:hi]
                for j in range(nl):
                    cum[j] = max(cum[j], abs(et[j]))
            for j in range(nl):
                bound[j % D] += cum[j] * cum[j]
            e0 = sub[0, lo:hi]
            for j in range(nl):
                cum[j] = e0[j]
                sq0[j] += e0[j] * e0[j]
            mm, mt = cross[L + 1], cross[0]  # (1-d slices: 2-d indexing here is not vectorized)
            for s in range(1, n_frames):
                es = sub[s, lo:hi]
                for j in range(nl):  # the running mean floor(cum / s): exact below 2**53
                    m = np.floor(cum[j] / s)
                    mrow[j] = m
                    mm[j] += m * m
                    mt[j] += m * es[j]
                    cum[j] += es[j]
                for d in range(L + 1):
                    ed = sub[max(s - d, 0), lo:hi]
                    if d > 0:  # the mean x lag d
                        acc = cross[d]
                        for j in range(nl):
                            acc[j] += mrow[j] * ed[j]
                    if s <= n_frames - 1 - L:
                        acc = lagsum[d]
                        for j in range(nl):
                            acc[j] += es[j] * ed[j]
                    else:
                        for a in range(L + 1 - d):
                            if s <= n_frames - 1 - a:
                                acc = tail[a, a + d]
                                for j in range(nl):
                                    acc[j] += es[j] * ed[j]
        for j in range(min(TL, idx.shape[0] * D)):
            g = full[j % D]
            for d in range(L + 1):
                for a in range(L + 1 - d):
                    b = a + d
                    v = lagsum[d, j] + tail[a, b, j] + min(a, n_frames - 1) * sq0[j]  # frames s <= 0: o0 * o0
                    ra = L + 1 if a == 0 else a - 1  # design rows: lag a -> a - 1, target -> L + 1
                    rb = L + 1 if b == 0 else b - 1
                    g[ra, rb] += v
                    if ra != rb:
                        g[rb, ra] += v
            for b in range(L + 2):
                r = L + 1 if b == 0 else (L if b == L + 1 else b - 1)
                g[L, r] += cross[b, j]
                if r != L:
                    g[r, L] += cross[b, j]

    return gram_v3
