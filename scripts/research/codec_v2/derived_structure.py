"""Parents derived by the reader instead of stored (issue 17, measured, not built).

Format 3.0 stores each track's vertex structure: the curve (2.2% of the corpus bytes)
and the parent steps (4.7%). A format whose reader derives both from the track's first
row would store that row instead (in mesh index order, delta coded: nothing else is
known before the structure). This script measures both sides of that trade:

1. size: format 3.0 file bytes against an estimate with the structure derived (the
   parents from the exact centroid criterion, ``step_cost=0``; the header's curve and
   steps removed; the first row's spatially predicted residuals replaced by its
   index-order delta streams);
2. the reader's cost: an exact, tie-free derivation (Hilbert curve, the C nearest
   coarser points by squared distance then position, the combination of m of them
   whose centroid lies closest), compiled with numba (a uniform grid search) and
   checked against a numpy brute force, in CPU ms per track.

    python scripts/research/codec_v2/derived_structure.py [--corpus DIR]
"""

import argparse
import glob
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bodybatch.codec.structure import VertexStructure, bit_reversed_positions, hilbert_curve, level_bounds  # noqa: E402

COORD_BITS = 24
_KERNELS = {}


def _compiled():
    if not _KERNELS:
        import numba

        _KERNELS["nearest_coarser"] = make_nearest_coarser(numba)
        _KERNELS["best_combination"] = make_best_combination(numba)
    from types import SimpleNamespace

    return SimpleNamespace(**_KERNELS)


def make_nearest_coarser(numba):
    """``nearest_coarser(pos, lo, hi, out)``: ``out[i]`` (k = out.shape[1]) the positions
    ``< lo`` nearest to position ``lo + i`` of ``pos`` ((N, 3) int64, non-negative,
    below 2**24), ordered by squared distance then position."""
    import numpy as np

    @numba.njit(nogil=True, boundscheck=False, cache=False)
    def build_grid(pos, lo, side, dims, start, cell_of):
        """Counting sort of positions < lo into cells; returns the occupied cells."""
        start[:] = 0
        for q in range(lo):
            cell = (pos[q, 0] // side * dims[1] + pos[q, 1] // side) * dims[2] + pos[q, 2] // side
            cell_of[q] = cell
            start[cell + 1] += 1
        occupied = 0
        for c in range(len(start) - 1):
            occupied += start[c + 1] > 0
            start[c + 1] += start[c]
        return occupied

    @numba.njit(nogil=True, boundscheck=False, cache=False)
    def grid_dims(top, side, dims):
        for c in range(3):
            dims[c] = top[c] // side + 1
        return dims[0] * dims[1] * dims[2]

    @numba.njit(nogil=True, boundscheck=False, cache=False)
    def nearest_coarser(pos, lo, hi, out, per_cell):
        k = out.shape[1]
        top = np.zeros(3, np.int64)
        for p in range(hi):  # the grid spans the queries too
            for c in range(3):
                top[c] = max(top[c], pos[p, c])
        # ~2 coarse points per occupied cell: a first side from the bounding volume, then
        # rescaled by the occupancy it gives (the points lie on a surface: ~side**2)
        volume = float(top[0] + 1) * float(top[1] + 1) * float(top[2] + 1)
        side = max(1, int((volume / lo) ** (1.0 / 3.0)))
        dims = np.empty(3, np.int64)
        cell_of = np.empty(lo, np.int64)
        start = np.zeros(grid_dims(top, side, dims) + 1, np.int64)
        occupied = build_grid(pos, lo, side, dims, start, cell_of)
        side = max(1, int(side * (per_cell * occupied / lo) ** 0.5))
        n_cells = grid_dims(top, side, dims)
        if n_cells > 64 * lo + 4096:  # (a degenerate cloud: keep the memory bounded)
            side = max(1, int((volume / (64.0 * lo)) ** (1.0 / 3.0)) + 1)
            n_cells = grid_dims(top, side, dims)
        start = np.zeros(n_cells + 1, np.int64)
        build_grid(pos, lo, side, dims, start, cell_of)
        fill = start[:-1].copy()
        members = np.empty(lo, np.int64)
        coords = np.empty((lo, 3), np.int64)  # the coarse points cell by cell: contiguous scans
        for q in range(lo):  # ascending q within each cell
            j = fill[cell_of[q]]
            members[j] = q
            for c in range(3):
                coords[j, c] = pos[q, c]
            fill[cell_of[q]] += 1
        best_d = np.empty(k, np.int64)
        best_q = np.empty(k, np.int64)
        max_ring = max(dims[0], max(dims[1], dims[2]))
        for p in range(lo, hi):
            px, py, pz = pos[p, 0], pos[p, 1], pos[p, 2]
            cx, cy, cz = px // side, py // side, pz // side
            count = 0
            for r in range(max_ring + 1):
                for ix in range(max(cx - r, 0), min(cx + r, dims[0] - 1) + 1):
                    for iy in range(max(cy - r, 0), min(cy + r, dims[1] - 1) + 1):
                        row = (ix * dims[1] + iy) * dims[2]
                        z0, z1 = max(cz - r, 0), min(cz + r, dims[2] - 1)
                        for part in range(2):
                            if abs(ix - cx) == r or abs(iy - cy) == r:  # the shell's side: the whole z run
                                if part:
                                    break
                                first, last = start[row + z0], start[row + z1 + 1]
                            else:  # inside the square: only the cells z = cz -+ r
                                iz = cz - r if part == 0 else cz + r
                                if iz < z0 or iz > z1 or (part and r == 0):
                                    continue
                                first, last = start[row + iz], start[row + iz + 1]
                            for j in range(first, last):  # cells of a z run are contiguous
                                ex, ey, ez = coords[j, 0] - px, coords[j, 1] - py, coords[j, 2] - pz
                                d = ex * ex + ey * ey + ez * ez
                                q = members[j]
                                if count == k and (d > best_d[k - 1] or (d == best_d[k - 1] and q > best_q[k - 1])):
                                    continue
                                i = count if count < k else k - 1  # insertion into the sorted list
                                while i > 0 and (best_d[i - 1] > d or (best_d[i - 1] == d and best_q[i - 1] > q)):
                                    best_d[i] = best_d[i - 1]
                                    best_q[i] = best_q[i - 1]
                                    i -= 1
                                best_d[i] = d
                                best_q[i] = q
                                if count < k:
                                    count += 1
                if count < k:
                    continue
                # every point not visited yet lies outside the cells within r of p's, at
                # least `bound` away along some axis (there are no cells beyond the grid)
                bound = -1
                for c in range(3):
                    v = pos[p, c]
                    home = v // side
                    if home - r > 0:
                        gap = v - (home - r) * side + 1
                        bound = gap if bound < 0 else min(bound, gap)
                    if home + r < dims[c] - 1:
                        gap = (home + r + 1) * side - v
                        bound = gap if bound < 0 else min(bound, gap)
                if bound < 0 or best_d[k - 1] < bound * bound:
                    break
            for i in range(k):
                out[p - lo, i] = best_q[i]

    return nearest_coarser


def make_best_combination(numba):
    """``best_combination(pos, lo, near, combos, out)``: for position ``lo + i``, the
    combination of m = combos.shape[1] of its candidates ``near[i]`` (in the
    lexicographic order of ``combos``, which only gives m) with the smallest
    ``|sum_j (q_j - p)|^2`` (the first on ties), as positions in ``out[i]``."""

    import numpy as np

    @numba.njit(nogil=True, boundscheck=False, cache=False)
    def best_combination(pos, lo, near, combos, out):
        n, n_cand = near.shape
        m = combos.shape[1]
        rel = np.empty((n_cand, 3), np.int64)
        idx = np.empty(m, np.int64)
        sums = np.zeros((m + 1, 3), np.int64)  # sums[j]: the first j chosen candidates
        for i in range(n):
            p = lo + i
            for a in range(n_cand):
                for c in range(3):
                    rel[a, c] = pos[near[i, a], c] - pos[p, c]
            for j in range(m):  # the first combination (0, 1, .., m - 1)
                idx[j] = j
                for c in range(3):
                    sums[j + 1, c] = sums[j, c] + rel[j, c]
            best_miss = -1
            combo = 0
            while True:  # combinations in lexicographic order, as itertools.combinations
                miss = sums[m, 0] * sums[m, 0] + sums[m, 1] * sums[m, 1] + sums[m, 2] * sums[m, 2]
                if best_miss < 0 or miss < best_miss:
                    best_miss = miss
                    for j in range(m):
                        out[i, j] = near[i, idx[j]]
                combo += 1
                j = m - 1  # the next: raise the last index that can still rise
                while j >= 0 and idx[j] == n_cand - m + j:
                    j -= 1
                if j < 0:
                    break
                idx[j] += 1
                for t in range(j + 1, m):
                    idx[t] = idx[t - 1] + 1
                for t in range(j, m):
                    for c in range(3):
                        sums[t + 1, c] = sums[t, c] + rel[idx[t], c]

    return best_combination


def derive_structure(points, n_parents, n_candidates=8, compiled=True):
    """The structure of a track from its first row.

    Parameters
    ----------
    points : ndarray of int, shape (N, 3)
        Grid coordinates of the first row, original point order.
    n_parents, n_candidates : int
        m and C.

    Returns
    -------
    VertexStructure
        Parents sorted by curve rank (N, the zero point, last).
    """
    points = np.asarray(points, np.int64)
    n = len(points)
    order = hilbert_curve(points)[bit_reversed_positions(n)] if n else np.zeros(0, np.int32)
    pos = points[order] - (points.min(axis=0) if n else 0)
    extent = int(pos.max()) if n else 0
    pos = np.ascontiguousarray(pos >> max(0, extent.bit_length() - COORD_BITS))
    combos = np.array(list(itertools.combinations(range(n_candidates), n_parents)), np.int64).reshape(-1, n_parents)
    parents = np.full((n, n_parents), n, np.int32)
    compiled = _compiled() if compiled else None
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        k = min(max(n_parents, n_candidates), lo)
        near = np.empty((hi - lo, k), np.int64)
        if compiled is not None:
            compiled.nearest_coarser(pos, lo, hi, near, 2.0)
        else:
            _nearest_coarser(pos, lo, hi, near)
        if k < n_candidates or n_parents >= n_candidates:
            parents[lo:hi] = near[:, np.arange(n_parents) % min(k, n_parents)]
        elif compiled is not None:
            best = np.empty((hi - lo, n_parents), np.int64)
            compiled.best_combination(pos, lo, near, combos, best)
            parents[lo:hi] = best
        else:
            parents[lo:hi] = _best_combination(pos, lo, near, combos)
    return VertexStructure(order.astype(np.int32), _sort_by_curve(parents, n))


def _sort_by_curve(parents, n):
    rank = np.append(bit_reversed_positions(n), n) if n else np.array([0])
    keys = rank[parents]
    return np.ascontiguousarray(np.take_along_axis(parents, np.argsort(keys, axis=1, kind="stable"), axis=1))


def _nearest_coarser(pos, lo, hi, out, block=256):
    """Numpy reference: ``out[i]`` the k = out.shape[1] positions ``< lo`` nearest to
    position ``lo + i`` (squared distance, then position), nearest first."""
    k = out.shape[1]
    coarse = pos[:lo]
    for a in range(lo, hi, block):
        b = min(hi, a + block)
        d2 = ((pos[a:b, None, :] - coarse[None, :, :]) ** 2).sum(axis=2)  # (rows, lo) int64
        kth = np.partition(d2, k - 1, axis=1)[:, k - 1 : k]
        less = d2 < kth
        tied = d2 == kth
        take = less | (tied & (np.cumsum(tied, axis=1) <= k - less.sum(axis=1, keepdims=True)))
        idx = np.nonzero(take)[1].reshape(b - a, k)  # ascending positions per row
        dist = np.take_along_axis(d2, idx, axis=1)
        out[a - lo : b - lo] = np.take_along_axis(idx, np.argsort(dist, axis=1, kind="stable"), axis=1)


def _best_combination(pos, lo, near, combos):
    """(hi - lo, m) parents: per point the combination of its candidates with the
    smallest ``|sum_j (q_j - p)|^2`` (first wins ties)."""
    hi = lo + len(near)
    rel = pos[near] - pos[lo:hi, None, :]  # (n, C, 3), |.| < 2**24
    total = rel[:, combos].sum(axis=2)  # (n, combos, 3)
    miss = (total * total).sum(axis=2)
    best = combos[np.argmin(miss, axis=1)]
    return np.take_along_axis(near, best, axis=1)


def size_estimate(tracks):
    import bodybatch
    from bodybatch.codec import entropy, group3
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS
    from bodybatch.codec.structure import build_structure

    path = os.path.join(tempfile.mkdtemp(), "t.bb")

    def size(track):
        bodybatch.write_track(path, track, None, **V2_OPTIONS)
        return os.path.getsize(path)

    def first_row(track):
        return {k: v[:1] for k, v in track.items()}

    tot = dict.fromkeys(["now", "derived_parents", "header", "row0", "index_delta"], 0)
    for name, track in tracks:
        q = np.round(np.asarray(track["vertices"][0], np.float64) / 0.5).astype(np.int64)
        u = np.round(np.asarray(track["vertex_uncertainties"][0], np.float64) * 2000).astype(np.int64)
        tot["now"] += size(track)
        group3.STEP_COST = 0.0  # the parents a reader would derive (the plain centroid criterion)
        try:
            tot["derived_parents"] += size(track)
            curve, cols = group3.encode_structure(group3.sorted_parents(build_structure(q, 4, 8)))
            tot["header"] += len(curve) + sum(map(len, cols))
            tot["row0"] += size(first_row(track))  # a one-row file: header + row 0 (+ small fixed bytes)
        finally:
            group3.STEP_COST = 0.15
        for comp in (q[:, 0], q[:, 1], q[:, 2], u):
            tot["index_delta"] += len(entropy.encode_numbers(np.ascontiguousarray(comp, np.int32), level=12, delta=True))
    est = tot["derived_parents"] - tot["header"] - (tot["row0"] - tot["header"]) + tot["index_delta"]
    print(f"format 3.0 file bytes: {tot['now']:,}")
    print(f"  with the exact-centroid parents (still stored): {tot['derived_parents']:,}; their header {tot['header']:,}")
    print(f"  row 0 as coded today: {tot['row0'] - tot['header']:,}; in index order, delta coded: {tot['index_delta']:,}")
    print(f"  estimate with the structure derived: {est:,} ({100 * (est / tot['now'] - 1):+.1f}%)")


def timings(tracks, repeats=10):
    rows = {}
    for name, track in tracks:
        q = np.round(np.asarray(track["vertices"][0], np.float64) / 0.5).astype(np.int64)
        for c in (8, 6):
            derive_structure(q, 4, c)  # compile
            t = time.process_time()
            for _ in range(repeats):
                a = derive_structure(q, 4, c)
            rows.setdefault(f"derive C={c} (compiled)", []).append((time.process_time() - t) / repeats)
        t = time.process_time()
        for _ in range(repeats):
            hilbert_curve(q)
        rows.setdefault("of which the Hilbert curve (numpy)", []).append((time.process_time() - t) / repeats)
        if len(rows.get("numpy reference", [])) < 2:
            t = time.process_time()
            b = derive_structure(q, 4, 6, compiled=False)
            rows.setdefault("numpy reference", []).append(time.process_time() - t)
            assert np.array_equal(a.order, b.order) and np.array_equal(a.parents, b.parents), name
    print(f"reader's cost per track ({len(tracks)} corpus tracks, CPU ms; compiled == numpy reference checked):")
    for key, values in rows.items():
        print(f"  {key:38s} median {1e3 * np.median(values):7.1f} ms")


def main():
    import _benchdata as bd

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(bd.SHARED / "corpus"))
    args = ap.parse_args()
    tracks = [(n, t) for f in sorted(glob.glob(os.path.join(args.corpus, "*.xz"))) for n, t in bd.gt_tracks(f)]
    timings(tracks)
    size_estimate(tracks)


if __name__ == "__main__":
    main()
