"""Format 2.0 (codec v2, ``predictor=2``): one point group's chunk entry (see
:mod:`bodybatch.codec.predict2`)."""

import numpy as np

from bodybatch.codec import _kernels, entropy, predict2
from bodybatch.codec.streams import (
    _blocks, _classes_and_dtype, _components, _rest_blocks, _sorted_layout, activity_classes, frame_major_entry,
)  # fmt: skip
from bodybatch.codec.structure import level_bounds
from bodybatch.errors import FormatError

__all__ = ["encode_group", "decode_group"]


def encode_group(x, structure, n_lags, level, max_abs):
    """Format 2: one point group's chunk entry (see :mod:`bodybatch.codec.predict2`).

    Streams as in format 1 (per block, component group and class), but rows 1.. of a
    class are stored frame-major: ``(T-1, points, components)`` in C order.
    """
    n_frames, n, d = x.shape
    blocks, groups = _blocks(n), _components(d)
    res, weights, s_abs = predict2.encode_residuals(x, structure, blocks, groups, n_lags, max_abs)
    res_abs = max(int(res.max(initial=0)), -int(res.min(initial=0)))
    classes = activity_classes(res.transpose(1, 0, 2), res_abs=res_abs)
    stream_dtype = np.int16 if res_abs < 2**15 else res.dtype
    return frame_major_entry(res, classes, weights, level, max_abs, stream_dtype, s_abs=s_abs)


def decode_group(entry, structure, n_dims, n_frames, n_lags, max_abs, where, rows=None):
    """Invert :func:`encode_group`: (T, N, D) integers in original point order
    (``rows``: a slice of the rows to return; the compiled decoder stops at its end).

    The residuals are decoded in sorted layout (no scatter); the temporal step runs
    there as is (weights are per block) and the spatial step with the parents and
    the output order mapped through the layout.
    """
    n = structure.n_points
    blocks, groups = _blocks(n), _components(n_dims)
    s_abs = int(entry["s_abs"])
    if not 0 <= s_abs <= predict2.spatial_bound(max_abs, structure.n_parents):
        raise FormatError(f"{where}implausible residual bound {s_abs}")
    classes, stream_dtype = _classes_and_dtype(entry, n, where)
    weights = entropy.decode_numbers(entry["weights"], np.int16, len(blocks) * len(groups) * n_lags, f"{where}weights")
    weights = weights.reshape(len(blocks), len(groups), n_lags)
    classes = classes.astype(np.uint8)
    rest = _rest_blocks(n, classes) if n_frames > 1 else []
    streams = entry["streams"]
    expected = len(blocks) * len(groups) + sum(len(b) - 1 for _, _, _, b in rest) * len(groups)
    if len(streams) != expected:
        raise FormatError(f"{where}expected {expected} residual streams, found {len(streams)}")
    m = structure.n_parents
    xe = np.empty((n_frames, n + 1, n_dims), predict2.decode_dtype(s_abs, n_lags, max_abs, m))
    it = iter(streams)
    for lo, hi in blocks:
        for c0, c1 in groups:
            vals = entropy.decode_numbers(next(it), stream_dtype, (hi - lo) * (c1 - c0), where)
            xe[0, lo:hi, c0:c1] = vals.reshape(hi - lo, c1 - c0)
    if rest:
        layout = _sorted_layout(n, classes)
        xe[0, :n] = xe[0, layout]
        for lo, hi, _, bounds in rest:
            for a, b in zip(bounds[:-1], bounds[1:]):
                for c0, c1 in groups:
                    count = (b - a) * (n_frames - 1) * (c1 - c0)
                    vals = entropy.decode_numbers(next(it), stream_dtype, count, where)
                    xe[1:, lo + a : lo + b, c0:c1] = vals.reshape(n_frames - 1, b - a, c1 - c0)
        position = np.empty(n + 1, np.intp)  # stored position -> sorted position; N stays N
        position[layout] = np.arange(n)
        position[n] = n
        levels = {lo for lo, _ in level_bounds(n)}
        if any(perm is not None and any(lo < s < hi for s in levels) for lo, hi, perm, _ in rest):
            # A classed block holding two levels (a small last level joined to the one
            # before): the level-by-level spatial step needs stored order.
            xe[0, :n] = xe[0, position[:n]]
            xe[1:, :n] = np.take(xe[1:, :n], position[:n], axis=1)
            layout = np.arange(n)
            position = np.arange(n + 1)
        parents = position[structure.parents[layout]]
        inverse = np.empty(n, np.intp)
        inverse[structure.order[layout]] = np.arange(n)
    else:
        parents = structure.parents
        inverse = np.empty(n, np.intp)
        inverse[structure.order] = np.arange(n)
    stop = None if rows is None else rows.stop
    x = predict2.decode_residuals(xe, inverse, parents, blocks, weights, s_abs, _kernels.kernels(), stop)
    if x is None:
        raise FormatError(f"{where}decoded residuals exceed their bound")
    return x if rows is None else x[rows.start : rows.stop]
