"""Frames as bodycompress stores them (the row half of the format): coordinates under
``qd_<name>`` as ``[int32 differences along the point axis, factor]`` with
``factor = 1/step`` per mm (``1000/step`` for uncertainties in m), in a custom or
bundled vertex order.

:func:`decode_frame` gives back exactly what ``bodycompress`` decodes (float32; float64
beyond 2**24 grid steps); :func:`encode_row` writes a track row so that
``bodycompress`` 0.3.0 reads it, rounding as bodycompress rounds.
"""

import math

import numpy as np

from bodybatch import _grid, _msgpack
from bodybatch._grid import GridValues, dequantize
from bodybatch.errors import FormatError, TrackError
from bodybatch.formats.bodycompress._header import AUTO_ORDERS, bundled_inverse

__all__ = ["decode_frame", "encode_row", "QD_FIELDS"]

#: Quantized fields: (name, point axis, unit scale: values per mm).
QD_FIELDS = (("vertices", -2, 1.0), ("joints", -2, 1.0), ("vertex_uncertainties", -1, 1000.0),
             ("joint_uncertainties", -1, 1000.0))  # fmt: skip
_MISSING = object()


def _cumsum_int32(diffs, axis):
    """``np.cumsum(diffs, axis, dtype=int32)``. Along a middle axis (vertices: (n, N, 3)
    summed over N) the sums run on a contiguous (n, 3, N) copy, written back per
    component: faster than numpy's strided accumulate (on the bench_batch inputs 112
    vs 175 us a frame)."""
    axis = axis - diffs.ndim if axis >= 0 else axis
    if axis == -1 or diffs.shape[-1] > 4:
        return np.cumsum(diffs, axis=axis, dtype=np.int32)
    moved = np.moveaxis(diffs, axis, -1).astype(np.int32, order="C")  # always a copy
    np.cumsum(moved, axis=-1, out=moved)
    out = np.empty(diffs.shape, np.int32)
    for k in range(diffs.shape[-1]):
        np.moveaxis(out[..., k], axis + 1, -1)[...] = moved[..., k, :]
    return out


def _unquantize(packed, axis, name, grid=False):
    """``[diffs, factor]`` -> cumsum(diffs, axis) / factor, bit-identical to bodycompress.

    Integer cumsum (int32 when no partial sum can overflow, else int64), then
    :func:`~bodybatch._grid.dequantize`: float32 when max |cumsum| <= 2**24
    (exact), else float64. With ``grid``, exact results come back as GridValues.
    """
    if not (isinstance(packed, list) and len(packed) == 2):
        raise FormatError(f"qd_{name} is not a [diffs, factor] pair")
    diffs, factor = packed
    if not (isinstance(diffs, np.ndarray) and diffs.dtype.kind in "iu"
            and diffs.dtype.itemsize <= 4 and diffs.ndim >= -axis):  # fmt: skip
        got = f"{type(diffs).__name__} {getattr(diffs, 'dtype', '')}{getattr(diffs, 'shape', '')}"
        raise FormatError(f"qd_{name} diffs must be an int32 array of >= {-axis} dims, got {got}")
    if not (type(factor) in (float, int, np.float64, np.float32)
            and math.isfinite(factor) and factor > 0):  # fmt: skip
        raise FormatError(f"qd_{name} has invalid quantization factor {factor!r:.40}")
    lo, hi = int(diffs.min(initial=0)), int(diffs.max(initial=0))
    if max(hi, -lo) * diffs.shape[axis] < 2**31:  # no partial sum can overflow int32
        cumsum = _cumsum_int32(diffs, axis)
    else:
        cumsum = diffs.astype(np.int64)  # then accumulate in place: 4x faster than dtype=int64
        np.cumsum(cumsum, axis=axis, out=cumsum)
    max_abs = max(int(cumsum.max()), -int(cumsum.min())) if cumsum.size else 0
    if grid and max_abs <= 1 << 24:  # the integers themselves, for a codec on the same grid
        return GridValues(cumsum.astype(np.int32, copy=False), factor)
    return dequantize(cumsum, factor, max_abs)


def _permute(frame, key, inverse, axis):
    values = frame[key]
    grid = values if isinstance(values, GridValues) else None
    values = grid.indices if grid is not None else values
    if not isinstance(values, np.ndarray) or values.ndim < -axis:
        raise FormatError(f"{key!r} is not an array of >= {-axis} dims")
    if values.shape[axis] != inverse.size:
        n_found = values.shape[axis]
        raise FormatError(f"vertex_order has {inverse.size} vertices, {key!r} has {n_found}")
    values = np.take(values, inverse, axis=axis)
    frame[key] = values if grid is None else GridValues(values, grid.factor)

def decode_frame(frame, inverse_order, keep_grid=()):
    """Decode one stored frame map in place (``qd_`` fields to values in the original
    vertex order); ``keep_grid`` fields come back as GridValues. Raises FormatError."""
    if not isinstance(frame, dict):
        raise FormatError(f"is a {type(frame).__name__}, not a map")
    for name, axis, _ in QD_FIELDS:
        packed = frame.pop("qd_" + name, _MISSING)
        if packed is not _MISSING:
            frame[name] = _unquantize(packed, axis, name, name in keep_grid)
    inverse = inverse_order
    if isinstance(inverse, str):  # "auto": by vertex count, like bodycompress
        vertices = frame.get("vertices")
        n_vertices = vertices.shape[-2] if getattr(vertices, "ndim", 0) >= 2 else 0
        order_name = AUTO_ORDERS.get(n_vertices)
        inverse = None if order_name is None else bundled_inverse(order_name)
    if inverse is not None:
        if "vertices" in frame:
            _permute(frame, "vertices", inverse, -2)
        if "vertex_uncertainties" in frame:
            _permute(frame, "vertex_uncertainties", inverse, -1)
    return frame


def encode_row(row, quantization_mm, uncertainty_mm=None):
    """One track row (dict of per-row arrays) -> (msgpack bytes, max error in mm).

    ``quantization_mm``: grid step of the coordinates; ``uncertainty_mm``: that of
    the uncertainties (None: the same step)."""
    out, max_error = dict(row), 0.0
    for name, axis, scale in QD_FIELDS:
        if name not in row:
            continue
        step = quantization_mm if scale == 1.0 or uncertainty_mm is None else uncertainty_mm
        factor = scale / step
        q, err = _grid.quantize(row[name], factor, name, with_error=True)
        diffs = np.diff(q, prepend=0, axis=axis)
        if diffs.size and np.max(np.abs(diffs)) >= 2**31:
            raise TrackError(f"'{name}' differences overflow int32 in the bodycompress layout")
        del out[name]
        out[f"qd_{name}"] = (diffs.astype(np.int32), factor)
        max_error = max(max_error, err * scale)
    return _msgpack.packb(out), max_error
