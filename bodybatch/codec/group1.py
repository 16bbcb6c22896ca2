"""Format 1.x (codec v1, the default predictor): one point group's chunk entry (see
:mod:`bodybatch.codec.predict`): the residual streams per block, component group and
activity class (:mod:`bodybatch.codec.streams`), point-major."""

import numpy as np

from bodybatch.codec import _kernels, entropy, predict
from bodybatch.codec._kernels1 import TILE
from bodybatch.codec._threads import Workers, split_steps
from bodybatch.codec.streams import (
    _classes_and_dtype, _decode_residual_streams, _encode_residual_streams, activity_classes, decode_residual_parts,
)  # fmt: skip

__all__ = ["encode_group", "decode_group"]


def encode_group(x, structure, window, level, max_abs):
    """One point group's chunk entry from its (T, N, D) grid values."""
    res = predict.encode_residuals(x, structure, window, max_abs)
    res_abs = max(int(res.max(initial=0)), -int(res.min(initial=0)))
    classes = activity_classes(res, res_abs=res_abs)
    stream_dtype = np.int16 if res_abs < 2**15 else res.dtype
    return {
        "max_abs": max_abs,
        "classes": entropy.encode_numbers(classes.astype(np.uint16)),
        "dtype": np.dtype(stream_dtype).name,
        "streams": _encode_residual_streams(res, classes, level, stream_dtype),
    }


def decode_group(entry, structure, n_dims, n_frames, window, max_abs, where, rows=None, workers=None):
    """Invert :func:`encode_group`: (T, N, D) integers in original point order from the
    numpy decoder; ``rows``: a slice of the rows to return (the compiled decoder stops
    at its end). The compiled decoder returns ``(x, inverse, top)``: rows in stored
    point order, the stored position of each point (the caller gathers as it
    dequantizes) and max |x| over the decoded values (the caller's bound check).
    ``workers`` (:class:`bodybatch.codec._threads.Workers`): the compiled path's threads."""
    n, d = structure.n_points, n_dims
    rdtype = predict.work_dtype(max_abs, structure.n_parents, window)
    classes, stream_dtype = _classes_and_dtype(entry, n, where)
    classes = classes.astype(np.uint8)
    compiled = _kernels.kernels()
    if compiled is None:
        res = _decode_residual_streams(entry["streams"], classes, (n, n_frames, d), rdtype, stream_dtype, where)
        x = predict.decode_residuals(res, structure, window, max_abs)
        return x if rows is None else x[rows.start : rows.stop]
    start, stop = (0, n_frames) if rows is None else (rows.start, rows.stop)
    first, rest_xyz, rest_unc, sorted_pos = decode_residual_parts(
        entry["streams"], classes, (n, n_frames, d), stream_dtype, where, stop == 1, workers
    )
    levels = np.array(predict.level_windows(n, window), np.int64).reshape(-1, 3)
    storage = np.int16 if max_abs < 2**15 else rdtype  # values only: the kernel's arithmetic is int64
    xe = np.empty((n + 1, stop, d), storage)
    xe[n] = 0  # the virtual zero point; a parent's row is written before it is read, the others' never
    xs = np.empty((stop - start, n, d), storage)
    workers, top = (workers or Workers(1)).for_rows(stop), 0
    for step in split_steps(levels, np.arange(len(levels)), workers.n, TILE):  # barriers between steps
        tops = workers.run([
            lambda part=part: compiled.decode_v1(structure.n_parents, d, first, rest_xyz, rest_unc, sorted_pos,
                                                 structure.parents, structure.is_parent, part, start, stop, xe, xs)
            for part in step
        ])  # fmt: skip
        top = max([top] + tops)
    return xs, structure.inverse, top
