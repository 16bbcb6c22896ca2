"""Vertex structure of a track: a coarse-to-fine vertex order and prediction parents.

Derived once per track from the first frame (integer grid coordinates) and stored
in the file header, so the decoder needs no geometry search.

- ``curve`` (N,): original point indices sorted along a 3-D Hilbert curve.
- Positions are visited in bit-reversed order of their curve rank (van der Corput),
  so every prefix of length ``2**l`` is an even subsample of the body surface:
  ``order = curve[rank]`` with ``rank = bit_reversed_positions(N)``.
- Level ``l`` holds positions ``[2**(l-1), 2**l)``; level 0 is position 0 alone.
- ``parents`` (N, m): for each position, its ``m`` nearest positions in coarser
  levels (repeated when fewer exist). Position 0 has the virtual parent ``N`` (a
  constant zero point), so its prediction is purely temporal.

Stored form: the curve, and per parent its curve-rank distance divided by the
level's sampling stride (small numbers for nearby points).
"""

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "VertexStructure",
    "build_structure",
    "hilbert_curve",
    "level_bounds",
    "structure_to_arrays",
    "structure_from_arrays",
]


@dataclass(frozen=True, eq=False)  # compared by identity: hashable, cacheable
class VertexStructure:
    """Order and parents for hierarchical prediction of N points.

    Attributes
    ----------
    order : ndarray of int32, shape (N,)
        Stored position -> original point index.
    parents : ndarray of int32, shape (N, m)
        Parent positions (all in coarser levels; N is the virtual zero point).
    """

    order: np.ndarray
    parents: np.ndarray

    @property
    def n_points(self):
        return len(self.order)

    @property
    def n_parents(self):
        return self.parents.shape[1]

    @functools.cached_property
    def inverse(self):
        """(N,) int32: original point index -> stored position (computed once)."""
        return inverse_permutation(self.order, np.int32)

    @functools.cached_property
    def is_parent(self):
        """(N + 1,) uint8: 1 where a stored position is some point's parent (the
        virtual zero point N included; computed once). Only these points' values are
        read again, by the finer levels' predictions; 44% of a body's points (its
        finest level) are nobody's parent."""
        mask = np.zeros(self.n_points + 1, np.uint8)
        mask[self.parents.ravel()] = 1
        return mask


def inverse_permutation(values, dtype=np.int64):
    """The inverse of a permutation of 0..n-1 (a scatter: O(n))."""
    inverse = np.empty(len(values), dtype)
    inverse[values] = np.arange(len(values), dtype=dtype)
    return inverse


def level_bounds(n):
    """List of ``(start, stop)`` position ranges of the levels of ``n`` points."""
    bounds, lo = [], 0
    while lo < n:
        hi = min(n, max(1, 2 * lo))
        bounds.append((lo, hi))
        lo = hi
    return bounds


@functools.lru_cache(maxsize=16)
def bit_reversed_positions(n):
    """Curve ranks 0..n-1 sorted by their bit-reversed value: ``rank[p]`` is the curve
    rank visited at position ``p`` (read-only; cached per ``n``: every file of one
    topology asks for the same)."""
    bits = max(1, int(n - 1).bit_length())
    idx = np.arange(n, dtype=np.int64)
    rev = np.zeros(n, np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    rank = np.argsort(rev, kind="stable")
    rank.setflags(write=False)
    return rank


def hilbert_codes(points, bits):
    """Hilbert curve index of (N, 3) non-negative ints below ``2**bits`` (Skilling's
    transpose algorithm, vectorized)."""
    x0, x1, x2 = (points[:, i].astype(np.int64) for i in range(3))
    xs = [x0, x1, x2]
    q = 1 << (bits - 1)
    while q > 1:
        p = q - 1
        for i in range(3):
            high = (xs[i] & q) != 0
            if i == 0:
                xs[0] = np.where(high, xs[0] ^ p, xs[0])
                continue
            swap = np.where(high, 0, (xs[0] ^ xs[i]) & p)
            xs[0] = np.where(high, xs[0] ^ p, xs[0] ^ swap)
            xs[i] = xs[i] ^ swap
        q >>= 1
    xs[1] ^= xs[0]
    xs[2] ^= xs[1]
    t = np.zeros_like(xs[2])
    q = 1 << (bits - 1)
    while q > 1:
        t ^= np.where((xs[2] & q) != 0, q - 1, 0)
        q >>= 1
    code = np.zeros_like(t)
    xs = [x ^ t for x in xs]
    for b in range(bits - 1, -1, -1):
        for x in xs:
            code = (code << 1) | ((x >> b) & 1)
    return code


def hilbert_curve(points):
    """(N,) int32 original point indices sorted along a 3-D Hilbert curve over the (N, 3)
    integer points (relative to their minimum, at most 20 bits per axis: coarser cells
    for wider extents; ties keep index order)."""
    points = np.asarray(points, np.int64)
    if not len(points):
        return np.zeros(0, np.int32)
    shifted = points - points.min(axis=0)
    bits = min(20, max(1, int(shifted.max()).bit_length()))
    shift = max(0, int(shifted.max()).bit_length() - bits)
    return np.argsort(hilbert_codes(shifted >> shift, bits), kind="stable").astype(np.int32)


def build_structure(points, n_parents=3, n_candidates=8, step_cost=0.0):
    """Derive a vertex structure from one frame of integer grid points.

    Parameters
    ----------
    points : ndarray of int, shape (N, 3)
        Quantized coordinates of one frame.
    n_parents : int
        Parents per point (m); several parents average out per-vertex noise.
    n_candidates : int
        The parents are the m of the point's ``n_candidates`` nearest coarser points
        whose centroid lies closest to it: a point surrounded by its parents is
        predicted by interpolation, not extrapolation (about 10% fewer bits than
        plain nearest neighbours on body meshes).
    step_cost : float
        0: the combination minimizing the centroid miss ``|m (centroid - point)|^2``.
        Else the one minimizing ``log2(1 + miss) + step_cost * sum_j log2(1 + |step_j|)``
        (the stored steps, :func:`structure_to_arrays`): a cheaper header for a
        slightly worse centroid (format 3.0 uses 0.15).
    """
    from pykdtree.kdtree import KDTree  # exact kNN; imports in ~1 ms (scipy.spatial: 0.3 s)

    from bodybatch.codec import _openmp

    points = np.asarray(points, np.int64)
    n = len(points)
    curve = hilbert_curve(points)
    rank = bit_reversed_positions(n)
    by_rank = inverse_permutation(rank)
    order = curve[rank]
    pos = points[order].astype(np.float64)
    grid = (points[order] - points.min(axis=0)).astype(np.int64)
    parents = np.full((n, n_parents), n, np.int32)
    combos = np.array(list(itertools.combinations(range(n_candidates), n_parents)))
    selector = np.zeros((len(combos), n_candidates), np.float32)  # row c sums combo c
    np.put_along_axis(selector, combos, 1.0, axis=1)
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        k = min(max(n_parents, n_candidates), lo)
        with _openmp.one_thread():  # small queries: OpenMP threads only cost (see _openmp)
            _, nearest = KDTree(pos[:lo]).query(pos[lo:hi], k=k)
        nearest = np.asarray(nearest).reshape(hi - lo, k)
        if k < n_candidates or n_parents >= n_candidates:
            parents[lo:hi] = nearest[:, np.arange(n_parents) % min(k, n_parents)]
            continue
        if step_cost:
            coarse, slots = _coarse_slots(rank, lo, hi, by_rank)
            slot_of = np.empty(lo, np.int64)
            slot_of[coarse] = np.arange(lo)
        for a in range(lo, hi, 4096):
            b = min(hi, a + 4096)
            near = nearest[a - lo : b - lo]
            rel = (grid[near] - grid[a:b, None]).astype(np.float32)  # (n, C, 3)
            # m * (centroid - point) per combination: (n, 3, combos) (sums of m integers
            # below 2**24: exact in float32, so in any order)
            total = _exact_products(rel.transpose(0, 2, 1).reshape(-1, rel.shape[1]), selector)
            total = total.reshape(len(rel), 3, -1)
            miss = total[:, 0] * total[:, 0]
            miss += total[:, 1] * total[:, 1]
            miss += total[:, 2] * total[:, 2]
            if step_cost:  # in integers (1/65536 bit), so every machine picks the same parents
                exact = total.astype(np.float64)  # (|total| < 2**24: exact squares and sums)
                miss_bits = _fixed_log2(1 + (exact * exact).sum(axis=1))
                step_bits = _fixed_log2(1 + np.abs(slot_of[near] - slots[a - lo : b - lo, None]))  # (n, C)
                miss = _STEP_ONE * miss_bits + round(step_cost * _STEP_ONE) * step_bits[:, combos].sum(axis=2)
            best = combos[np.argmin(miss, axis=1)]
            parents[a:b] = np.take_along_axis(near, best, axis=1)
    return VertexStructure(order, parents)


#: Fixed-point log2: 12 bits of mantissa looked up, costs in units of 2**-16 bit.
_LOG2_BITS, _LOG2_ONE, _STEP_ONE = 12, 1 << 16, 1 << 10
_LOG2_TABLE = np.array([round(math.log2(1 + i / (1 << _LOG2_BITS)) * _LOG2_ONE) for i in range((1 << _LOG2_BITS) + 1)],
                       np.int64)  # fmt: skip


def _fixed_log2(v):
    """``log2(v)`` in integer units of 2**-16 bit (to within 2**-12), for integers
    ``v >= 1`` held in float64 (exact below 2**53): the exponent from frexp, the
    mantissa's first 12 bits from a table. Integer results, the same on every machine (a float log2 is vectorized
    differently per CPU and library; its last-bit differences picked other parents)."""
    mantissa, exponent = np.frexp(np.asarray(v, np.float64))  # v = mantissa * 2**exponent, mantissa in [0.5, 1)
    index = np.floor((2 * mantissa - 1) * (1 << _LOG2_BITS)).astype(np.int64)
    return (exponent.astype(np.int64) - 1) * _LOG2_ONE + _LOG2_TABLE[index]


def _exact_products(v, selector):
    """``v @ selector.T`` (float32, (r, C) by (combos, C)) for exact sums only (small
    integers: any order gives the same values), in row blocks small enough that
    OpenBLAS runs each on the calling thread (below its M*N*K = 2**18 threshold).

    OpenBLAS's threads made this product up to 20x slower on a loaded 2-core machine.
    (The step costs were once a float32 product too: its rounding followed OpenBLAS's
    tiling and thread split, so the parents of one corpus track differed between
    ``OPENBLAS_NUM_THREADS=1`` and 2; they are integers now.)"""
    out = np.empty((len(v), len(selector)), np.float32)
    rows = max(1, (1 << 18) // (selector.size or 1))
    for a in range(0, len(v), rows):
        np.matmul(v[a : a + rows], selector.T, out=out[a : a + rows])
    return out


def _coarse_slots(rank, lo, hi, by_rank):
    """For positions [lo, hi): the positions < lo sorted by curve rank (slot ->
    position) and each position's insertion slot among them (the number of coarser
    positions of smaller rank). ``by_rank``: :func:`inverse_permutation` of ``rank``.
    Linear time: the positions are walked in curve order once (an argsort and a
    searchsorted per level cost ~1 ms per track when a file is opened)."""
    coarse = by_rank < lo
    coarse_positions = by_rank[coarse]
    slots = np.cumsum(coarse)[rank[lo:hi]]  # rank[p] itself is not coarse
    return coarse_positions, slots




def structure_to_arrays(structure):
    """Compact integer arrays for storage: ``curve (N,)`` and ``steps (N*m,)``, where a
    step is a parent's slot among the coarser points (sorted along the curve) minus
    the point's own insertion slot: small numbers for nearby points."""
    n, m = structure.n_points, structure.n_parents
    rank = bit_reversed_positions(n)
    by_rank = inverse_permutation(rank)
    curve = np.empty(n, np.int32)
    curve[rank] = structure.order
    steps = np.zeros((n, m), np.int64)
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        coarse_positions, slots = _coarse_slots(rank, lo, hi, by_rank)
        slot_of_position = np.empty(lo, np.int64)
        slot_of_position[coarse_positions] = np.arange(lo)
        steps[lo:hi] = slot_of_position[structure.parents[lo:hi]] - slots[:, None]
    return curve, steps.astype(np.int32).ravel()


def is_permutation(values):
    """Whether the (n,) integers are a permutation of 0..n-1 (O(n), no sort)."""
    values = np.asarray(values)
    n = len(values)
    if n == 0:
        return True
    if values.min() < 0 or values.max() >= n:
        return False
    seen = np.zeros(n, bool)
    seen[values] = True
    return bool(seen.all())


def structure_from_arrays(curve, steps, n_parents):
    """Invert :func:`structure_to_arrays`, validating everything.

    Raises
    ------
    ValueError
        With the reason, when the arrays do not describe a valid structure.
    """
    n = len(curve)
    if n and not is_permutation(curve):
        raise ValueError(f"vertex order is not a permutation of 0..{n - 1}")
    if steps.shape != (n * n_parents,):
        raise ValueError("parent table has the wrong size")
    steps = steps.reshape(n, n_parents).astype(np.int64)
    rank = bit_reversed_positions(n)
    by_rank = inverse_permutation(rank)
    parents = np.full((n, n_parents), n, np.int64)
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        coarse_positions, slots = _coarse_slots(rank, lo, hi, by_rank)
        slot = slots[:, None] + steps[lo:hi]
        if np.any((slot < 0) | (slot >= lo)):
            raise ValueError("vertex parents must lie in coarser levels")
        parents[lo:hi] = coarse_positions[slot]
    return VertexStructure(curve[rank].astype(np.int32), parents.astype(np.int32))
