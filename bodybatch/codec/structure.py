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

from dataclasses import dataclass

import numpy as np

__all__ = [
    "VertexStructure",
    "build_structure",
    "level_bounds",
    "structure_to_arrays",
    "structure_from_arrays",
]


@dataclass(frozen=True)
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


def level_bounds(n):
    """List of ``(start, stop)`` position ranges of the levels of ``n`` points."""
    bounds, lo = [], 0
    while lo < n:
        hi = min(n, max(1, 2 * lo))
        bounds.append((lo, hi))
        lo = hi
    return bounds


def bit_reversed_positions(n):
    """Curve ranks 0..n-1 sorted by their bit-reversed value: ``rank[p]`` is the curve
    rank visited at position ``p``."""
    bits = max(1, int(n - 1).bit_length())
    idx = np.arange(n, dtype=np.int64)
    rev = np.zeros(n, np.int64)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return np.argsort(rev, kind="stable")


def hilbert_codes(points, bits):
    """Hilbert curve index of (N, 3) non-negative ints below ``2**bits`` (Skilling's
    transpose algorithm, vectorized)."""
    x = points.astype(np.int64).copy()
    q = 1 << (bits - 1)
    while q > 1:
        p = q - 1
        for i in range(3):
            high = (x[:, i] & q) != 0
            x[high, 0] ^= p
            low = ~high
            t = (x[low, 0] ^ x[low, i]) & p
            x[low, 0] ^= t
            x[low, i] ^= t
        q >>= 1
    x[:, 1] ^= x[:, 0]
    x[:, 2] ^= x[:, 1]
    t = np.zeros(len(x), np.int64)
    q = 1 << (bits - 1)
    while q > 1:
        t[(x[:, 2] & q) != 0] ^= q - 1
        q >>= 1
    x ^= t[:, None]
    code = np.zeros(len(x), np.int64)
    for b in range(bits - 1, -1, -1):
        for i in range(3):
            code = (code << 1) | ((x[:, i] >> b) & 1)
    return code


def build_structure(points, n_parents=4):
    """Derive a vertex structure from one frame of integer grid points.

    Parameters
    ----------
    points : ndarray of int, shape (N, 3)
        Quantized coordinates of one frame.
    n_parents : int
        Parents per point (m); several parents average out per-vertex noise.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, np.int64)
    n = len(points)
    shifted = points - points.min(axis=0)
    span = int(shifted.max()) if n else 0
    shift = max(0, span.bit_length() - 20)
    curve = np.argsort(hilbert_codes(shifted >> shift, 20), kind="stable").astype(np.int32)
    order = curve[bit_reversed_positions(n)]
    pos = points[order].astype(np.float64)
    parents = np.full((n, n_parents), n, np.int32)
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        k = min(n_parents, lo)
        _, nearest = cKDTree(pos[:lo]).query(pos[lo:hi], k=k)
        nearest = np.asarray(nearest).reshape(hi - lo, k)
        parents[lo:hi] = nearest[:, np.arange(n_parents) % k]
    return VertexStructure(order, parents)


def _coarse_slots(rank, lo, hi):
    """For positions [lo, hi): the sorted curve ranks of positions < lo, the sort
    order (slot -> position) and each position's insertion slot among them."""
    coarse_positions = np.argsort(rank[:lo], kind="stable")
    slots = np.searchsorted(rank[coarse_positions], rank[lo:hi])
    return coarse_positions, slots


def structure_to_arrays(structure):
    """Compact integer arrays for storage: ``curve (N,)`` and ``steps (N*m,)``, where a
    step is a parent's slot among the coarser points (sorted along the curve) minus
    the point's own insertion slot: small numbers for nearby points."""
    n, m = structure.n_points, structure.n_parents
    rank = bit_reversed_positions(n)
    curve = np.empty(n, np.int32)
    curve[rank] = structure.order
    steps = np.zeros((n, m), np.int64)
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        coarse_positions, slots = _coarse_slots(rank, lo, hi)
        slot_of_position = np.empty(lo, np.int64)
        slot_of_position[coarse_positions] = np.arange(lo)
        steps[lo:hi] = slot_of_position[structure.parents[lo:hi]] - slots[:, None]
    return curve, steps.astype(np.int32).ravel()


def structure_from_arrays(curve, steps, n_parents):
    """Invert :func:`structure_to_arrays`, validating everything.

    Raises
    ------
    ValueError
        With the reason, when the arrays do not describe a valid structure.
    """
    n = len(curve)
    if n and not np.array_equal(np.sort(curve), np.arange(n)):
        raise ValueError(f"vertex order is not a permutation of 0..{n - 1}")
    if steps.shape != (n * n_parents,):
        raise ValueError("parent table has the wrong size")
    steps = steps.reshape(n, n_parents).astype(np.int64)
    rank = bit_reversed_positions(n)
    parents = np.full((n, n_parents), n, np.int64)
    for lo, hi in level_bounds(n):
        if lo == 0:
            continue
        coarse_positions, slots = _coarse_slots(rank, lo, hi)
        slot = slots[:, None] + steps[lo:hi]
        if np.any((slot < 0) | (slot >= lo)):
            raise ValueError("vertex parents must lie in coarser levels")
        parents[lo:hi] = coarse_positions[slot]
    return VertexStructure(curve[rank].astype(np.int32), parents.astype(np.int32))
