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

from bodybatch._grid import float32_target
from bodybatch.codec import entropy, predict3, spatial3
from bodybatch.codec._kernels3 import PREDICT_TILE
from bodybatch.codec._threads import Workers, split_steps
from bodybatch.codec.streams import (
    _CLASSED_POINTS, N_CLASSES, _blocks, _classes_and_dtype, _components, _rest_blocks, _sorted_layout,
    decode_stream_jobs, frame_major_entry,
)  # fmt: skip
from bodybatch.codec.structure import (
    VertexStructure, bit_reversed_positions, inverse_permutation, is_permutation, level_bounds, structure_from_arrays,
    structure_to_arrays,
)  # fmt: skip
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
    ranks = inverse_permutation(curve, np.int32)
    gaps = np.diff(steps, axis=1, prepend=0).astype(np.int32)  # column 0: the step; then the gaps (>= 0: sorted)
    return entropy.encode_numbers(ranks, delta=True), [entropy.encode_numbers(gaps[:, j].copy()) for j in range(gaps.shape[1])]


def decode_structure(curve, steps, n, m, where):
    """Invert :func:`encode_structure` (FormatError, naming ``where``, on anything invalid)."""
    if len(steps) != m:
        raise FormatError(f"{where}expected {m} parent columns")
    ranks = entropy.decode_numbers(curve, np.int32, n, f"{where}order")
    if n and not is_permutation(ranks):
        raise FormatError(f"{where}vertex order is not a permutation of 0..{n - 1}")
    curve = inverse_permutation(ranks, np.int32)
    cols = [entropy.decode_numbers(s, np.int32, n, f"{where}parents") for s in steps]
    gaps = np.stack(cols, axis=1).astype(np.int64)
    if np.any(gaps[:, 1:] < 0):
        raise FormatError(f"{where}parents are not sorted along the curve")
    steps = np.cumsum(gaps, axis=1)  # |gap| < 2**31: no overflow
    if np.abs(steps).max(initial=0) >= 2**31:
        raise FormatError(f"{where}parent steps out of range")
    try:
        structure = structure_from_arrays(curve, steps.astype(np.int32).ravel(), m)
    except ValueError as exc:
        raise FormatError(f"{where}{exc}") from None
    return structure


def encode_group(x, structure, n_lags, level, max_abs):
    """One point group's chunk entry from its (T, N, D) grid values."""
    n_frames, n, d = x.shape
    blocks, groups = _blocks(n), _components(d)
    res, weights, classes = predict3.encode_residuals(x, structure, blocks, groups, n_lags, N_CLASSES, _CLASSED_POINTS)
    res_abs = max(int(res.max(initial=0)), -int(res.min(initial=0)))
    stream_dtype = np.int16 if res_abs < 2**15 else (np.int32 if res_abs < 2**31 else np.int64)
    return frame_major_entry(res, classes, weights, level, max_abs, stream_dtype)


def _read_group(entry, n, n_dims, n_frames, n_lags, where, n_rows, workers=None):
    """A chunk entry's classes (N,) uint8, weights (n_blocks, N_CLASSES, n_groups, L + 1)
    int16, frame 0's residuals (N, D) and the streams of rows 1.. (decoded when
    ``n_rows > 1``) as ``(buf, [(block, a, b, [offset per component group])])``: one
    flat array in stream order, each class segment ``[a, b)`` of a block's sorted
    layout frame-major ``(n_rows - 1, b - a, components)`` at its offset. The streams
    are frame-major, so only their first ``n_rows - 1`` rows are entropy-decoded
    (``workers``: on its threads)."""
    blocks, groups = _blocks(n), _components(n_dims)
    classes, stream_dtype = _classes_and_dtype(entry, n, where)
    n_weights = len(blocks) * N_CLASSES * len(groups) * (n_lags + 1)  # L lags and the running mean
    weights = entropy.decode_numbers(entry["weights"], np.int16, n_weights, f"{where}weights")
    weights = weights.reshape(len(blocks), N_CLASSES, len(groups), n_lags + 1)
    classes = classes.astype(np.uint8)
    streams = entry["streams"]
    rest = _rest_blocks(n, classes) if n_frames > 1 else []
    n_rest = sum(len(b) - 1 for _, _, _, b in rest) * len(groups)
    if len(streams) != len(blocks) * len(groups) + n_rest:
        raise FormatError(f"{where}expected {len(blocks) * len(groups) + n_rest} residual streams, found {len(streams)}")
    first = np.empty((n, n_dims), np.int64)
    it = iter(streams)
    for lo, hi in blocks:
        for c0, c1 in groups:
            vals = entropy.decode_numbers(next(it), stream_dtype, (hi - lo) * (c1 - c0), where)
            first[lo:hi, c0:c1] = vals.reshape(hi - lo, c1 - c0)
    segments, size = [], 0
    for bi, (lo, hi, _, bounds) in enumerate(rest if n_rows > 1 else []):
        for a, b in zip(bounds[:-1], bounds[1:]):
            offsets = []
            for c0, c1 in groups:
                offsets.append(size)
                size += (b - a) * (n_rows - 1) * (c1 - c0)
            segments.append((bi, lo + a, lo + b, offsets))
    buf = np.empty(size, stream_dtype)
    jobs = []  # (stream, the part of buf it fills)
    for _, a, b, offsets in segments:
        for (c0, c1), off in zip(groups, offsets):
            jobs.append((next(it), buf[off : off + (b - a) * (n_rows - 1) * (c1 - c0)]))
    decode_stream_jobs(jobs, stream_dtype, where, workers, prefix=n_rows < n_frames)
    return classes, weights, first, buf, segments


def decode_group(entry, structure, n_dims, n_frames, n_lags, where, rows=None):
    """Invert :func:`encode_group`: (T, N, D) int64 in original point order (``rows``: a
    slice of the rows to return; only the frames up to its end are predicted)."""
    n = structure.n_points
    n_rows = n_frames if rows is None else max(1, min(rows.stop, n_frames))
    classes, weights, first, buf, segments = _read_group(entry, n, n_dims, n_frames, n_lags, where, n_rows)
    res = np.empty((n, n_rows, n_dims), np.int64)  # point-major, stored order
    res[:, 0] = first
    if segments:
        layout = _sorted_layout(n, classes)  # sorted position -> stored position
        for _, a, b, offsets in segments:
            for (c0, c1), off in zip(_components(n_dims), offsets):
                vals = buf[off : off + (b - a) * (n_rows - 1) * (c1 - c0)]
                vals = vals.reshape(n_rows - 1, b - a, c1 - c0)
                res[layout[a:b], 1:, c0:c1] = vals.transpose(1, 0, 2)
    x = predict3.decode_residuals(res, structure.order, structure.parents, _blocks(n), weights, classes)
    return x if rows is None else x[rows.start : rows.stop]


def float_exact(max_abs, n_parents, weights, n_rows):
    """Whether :func:`decode_group_values`' float64 sums are exact for values bounded by
    ``max_abs``: the spatial weights sum to at most ``S`` in magnitude (ridge: each in
    [-64, 128]; even weights: 64), so ``|P| <= S A``, ``|O| = |64 x - P| <= (64 + S) A``;
    the running sums stay below ``T (64 + S) A`` and the temporal sum below
    ``sum |w| ((64 + S) A + 1) + 2**11``; every one below 2**52 is exact."""
    spatial = spatial3.MAX_SPATIAL * n_parents if n_parents in (3, 4) else 64
    offset = (64 + spatial) * max_abs
    wsum = int(np.abs(weights.astype(np.int64)).sum(axis=-1).max(initial=0))
    return max(n_rows * offset, wsum * (offset + 1) + 2048) < 2**52 and max_abs < 2**30


def decode_group_values(entry, structure, n_dims, n_frames, n_lags, where, rows, max_abs, scales, compiled,
                        workers=None, into=(None, None)):  # fmt: skip
    """The compiled path of one point group straight to float32 values, original point
    order: ``(xyz (R, N, 3), unc (R, N) or None)`` of ``rows`` (None: all), with
    ``scales`` the dequantizer's ``(scale, divide, unc_scale, unc_divide)``. None when
    the float64 kernel cannot vouch for its integers (a value beyond ``max_abs``, bounds
    too large): the caller then takes :func:`decode_group`, which gives the same values
    or raises. ``workers`` (:class:`bodybatch.codec._threads.Workers`): the threads of
    the prediction (a level's runs shared out) and of the dequantization (points).
    ``into``: ``(xyz, unc)`` arrays to write into when of the right shape (else new)."""
    n = structure.n_points
    n_rows = n_frames if rows is None else max(1, min(rows.stop, n_frames))
    start = 0 if rows is None else rows.start
    classes, weights, first, buf, segments = _read_group(entry, n, n_dims, n_frames, n_lags, where, n_rows, workers)
    if not float_exact(max_abs, structure.n_parents, weights, n_rows):
        return None
    layout = _sorted_layout(n, classes)  # sorted position -> stored position
    no_runs = (np.zeros((0, 7), np.int64), np.zeros(0, np.int64))
    runs, run_levels = _runs(n, classes, layout, segments) if n_rows > 1 else no_runs
    if runs is None:
        return None
    wtab = np.zeros((weights.shape[0] * N_CLASSES, 2, n_lags + 1))
    wtab[:, : weights.shape[2]] = weights.reshape(-1, weights.shape[2], n_lags + 1)
    x0 = predict3.decode_first_row(first, structure.parents)
    if np.abs(x0).max(initial=0) > max_abs:
        return None
    m, order = structure.n_parents, structure.order
    wi = np.empty((n, m), np.int64)
    compiled.ridge_v3(m, x0, structure.parents, wi)
    xe = np.empty((n + 1, n_rows, n_dims), np.int16 if max_abs < 2**15 else np.int32)  # original order
    xe[order, 0] = x0[:n]
    xe[n] = 0  # the zero point
    po = np.append(order, n)[structure.parents]  # the parents' original indices
    workers = (workers or Workers(1)).for_rows(n_rows)
    for step in split_steps(runs, run_levels, workers.n, PREDICT_TILE):  # barriers between steps
        ok = workers.run([
            lambda part=part: compiled.predict_v3(m, n_dims, n_lags, max_abs < 2**15, x0, wi, structure.parents, po,
                                                  part, layout, buf, wtab, max_abs, n_rows, order, xe)
            for part in step
        ])  # fmt: skip
        if not all(ok):
            return None
    n_out = max(0, n_rows - start)
    xyz, unc = float32_target(into[0], (n_out, n, 3)), float32_target(into[1], (n_out, n))
    workers.run([lambda a=a, b=b: compiled.values_v3(n_dims, xe, start, n_rows, a, b, *scales, xyz, unc)
                 for a, b in workers.ranges(n)])  # points  # fmt: skip
    return xyz, unc if n_dims == 4 else None


def _runs(n, classes, layout, segments):
    """``(runs, levels)``: (n_runs, 7) int64 runs of
    :func:`bodybatch.codec._kernels3.make_predict_v3`, per level the sorted positions
    (``layout``: :func:`_sorted_layout`) of each class segment inside it, and (n_runs,)
    the level of each. ``(None, None)`` when an unclassed block mixes classes (a
    hostile file; the caller takes the numpy path)."""
    levels = level_bounds(n)
    runs = []
    for bi, a, b, offsets in segments:
        seg = layout[a:b]
        if b - a and (classes[seg] != classes[seg[0]]).any():
            return None, None
        wrow = bi * N_CLASSES + (int(classes[seg[0]]) if b - a else 0)
        cuts = np.searchsorted(seg, [lo for lo, _ in levels] + [n])
        for li in np.flatnonzero(cuts[1:] > cuts[:-1]):
            runs.append((li, a + cuts[li], a + cuts[li + 1], a, b - a, offsets[0], offsets[-1], wrow))
    runs.sort(key=lambda r: r[0])
    return np.array([r[1:] for r in runs], np.int64).reshape(-1, 7), np.array([r[0] for r in runs], np.int64)
