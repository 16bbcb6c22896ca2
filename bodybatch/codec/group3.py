"""Format 3.0 (codec v2.1, ``predictor=3``): one point group's chunk entry and the
structure's parent table.

The chunk entry is format 2.0's (same streams, classes and weights; no ``s_abs``),
the residuals coming from :mod:`bodybatch.codec.predict3`. The structure header is
coded more compactly: the curve as its inverse permutation (each point's curve rank,
delta coded: ~7% smaller, mesh indices are locally coherent), the parent table with
each point's parents sorted along the curve, as the first step and the gaps between
consecutive ones, one stream per column (~13% smaller than one stream of steps for
m = 4).
"""

import numpy as np

from bodybatch.codec import entropy, predict3
from bodybatch.codec.streams import (
    _CLASSED_POINTS, N_CLASSES, _blocks, _classes_and_dtype, _components, _rest_blocks, _sorted_layout,
    encode_frame_major_streams,
)  # fmt: skip
from bodybatch.codec.structure import VertexStructure, bit_reversed_positions, structure_from_arrays, structure_to_arrays
from bodybatch.errors import FormatError

__all__ = ["encode_group", "decode_group", "sorted_parents", "encode_structure", "decode_structure", "STEP_COST"]

#: Parent choice: weight of the stored steps' bits against the centroid miss
#: (:func:`bodybatch.codec.structure.build_structure`).
STEP_COST = 0.15


def sorted_parents(structure):
    """The structure with each point's parents sorted by curve rank (format 3.0's
    canonical form: the order of a point's parents is not stored)."""
    rank = np.append(bit_reversed_positions(structure.n_points), structure.n_points)  # N sorts last
    keys = rank[structure.parents]
    parents = np.take_along_axis(structure.parents, np.argsort(keys, axis=1, kind="stable"), axis=1)
    return VertexStructure(structure.order, np.ascontiguousarray(parents))


def encode_structure(structure):
    """Sorted-parent structure -> (curve-rank bytes, [bytes of column j of the step gaps])."""
    curve, steps = structure_to_arrays(structure)
    steps = steps.reshape(-1, structure.n_parents)
    ranks = np.empty(len(curve), np.int32)
    ranks[curve] = np.arange(len(curve), dtype=np.int32)
    gaps = np.diff(steps, axis=1, prepend=0).astype(np.int32)  # column 0: the step; then the gaps (>= 0: sorted)
    return entropy.encode_numbers(ranks, delta=True), [entropy.encode_numbers(gaps[:, j].copy()) for j in range(gaps.shape[1])]


def decode_structure(curve, steps, n, m, where):
    """Invert :func:`encode_structure` (FormatError/ValueError on anything invalid)."""
    if not isinstance(steps, (list, tuple)) or len(steps) != m:
        raise FormatError(f"{where}expected {m} parent columns")
    ranks = entropy.decode_numbers(curve, np.int32, n, f"{where}order")
    if n and not np.array_equal(np.sort(ranks), np.arange(n)):
        raise ValueError(f"vertex order is not a permutation of 0..{n - 1}")
    curve = np.argsort(ranks).astype(np.int32)
    cols = [entropy.decode_numbers(s, np.int32, n, f"{where}parents") for s in steps]
    gaps = np.stack(cols, axis=1).astype(np.int64)
    if np.any(gaps[:, 1:] < 0):
        raise ValueError("parents are not sorted along the curve")
    steps = np.cumsum(gaps, axis=1)  # |gap| < 2**31: no overflow
    if np.abs(steps).max(initial=0) >= 2**31:
        raise ValueError("parent steps out of range")
    structure = structure_from_arrays(curve, steps.astype(np.int32).ravel(), m)
    return structure


def encode_group(x, structure, n_lags, level, max_abs):
    """One point group's chunk entry from its (T, N, D) grid values."""
    n_frames, n, d = x.shape
    blocks, groups = _blocks(n), _components(d)
    res, weights, classes = predict3.encode_residuals(x, structure, blocks, groups, n_lags, N_CLASSES, _CLASSED_POINTS)
    res_abs = max(int(res.max(initial=0)), -int(res.min(initial=0)))
    stream_dtype = np.int16 if res_abs < 2**15 else (np.int32 if res_abs < 2**31 else np.int64)
    res = res.astype(stream_dtype)
    streams = encode_frame_major_streams(res, classes, level)
    return {
        "max_abs": max_abs,
        "classes": entropy.encode_numbers(classes.astype(np.uint16)),
        "dtype": np.dtype(stream_dtype).name,
        "streams": streams,
        "weights": entropy.encode_numbers(weights.ravel()),
    }


def decode_group(entry, structure, n_dims, n_frames, n_lags, where, rows=None):
    """Invert :func:`encode_group`: (T, N, D) int64 in original point order (``rows``: a
    slice of the rows to return; only the frames up to its end are predicted)."""
    n = structure.n_points
    blocks, groups = _blocks(n), _components(n_dims)
    classes, stream_dtype = _classes_and_dtype(entry, n, where)
    n_weights = len(blocks) * N_CLASSES * len(groups) * (n_lags + 1)  # L lags and the running mean
    weights = entropy.decode_numbers(entry["weights"], np.int16, n_weights, f"{where}weights")
    weights = weights.reshape(len(blocks), N_CLASSES, len(groups), n_lags + 1)
    classes = classes.astype(np.uint8)
    n_rows = n_frames if rows is None else max(1, min(rows.stop, n_frames))
    rest = _rest_blocks(n, classes) if n_rows > 1 else []
    streams = entry["streams"]
    n_rest = sum(len(b) - 1 for _, _, _, b in _rest_blocks(n, classes)) * len(groups) if n_frames > 1 else 0
    if len(streams) != len(blocks) * len(groups) + n_rest:
        raise FormatError(f"{where}expected {len(blocks) * len(groups) + n_rest} residual streams, found {len(streams)}")
    res = np.empty((n, n_rows, n_dims), np.int64)  # point-major, stored order
    it = iter(streams)
    for lo, hi in blocks:
        for c0, c1 in groups:
            vals = entropy.decode_numbers(next(it), stream_dtype, (hi - lo) * (c1 - c0), where)
            res[lo:hi, 0, c0:c1] = vals.reshape(hi - lo, c1 - c0)
    if rest:
        layout = _sorted_layout(n, classes)  # sorted position -> stored position
        for lo, hi, _, bounds in rest:
            for a, b in zip(bounds[:-1], bounds[1:]):
                for c0, c1 in groups:
                    count = (b - a) * (n_frames - 1) * (c1 - c0)
                    vals = entropy.decode_numbers(next(it), stream_dtype, count, where)
                    vals = vals.reshape(n_frames - 1, b - a, c1 - c0)[: n_rows - 1]
                    res[layout[lo + a : lo + b], 1:, c0:c1] = vals.transpose(1, 0, 2)
    x = predict3.decode_residuals(res, structure.order, structure.parents, blocks, weights, classes)
    return x if rows is None else x[rows.start : rows.stop]
