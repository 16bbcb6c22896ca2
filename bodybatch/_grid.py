"""The quantization grid, bit-compatible with bodycompress (one home for the input
reader and the track codecs).

Coordinates in millimetres are divided by the step (``factor = 1 / step_mm``);
uncertainties in metres use ``factor = 1000 / step_mm``. Rounding is
``np.round(x * factor)`` in float64 (half to even), exactly as bodycompress does,
so both codecs put a value on the same grid point.
"""

import math

import numpy as np

from bodybatch.errors import TrackError

__all__ = ["GridValues", "quantize", "quantize_into", "dequantize", "float32_target", "check_step", "MAX_ABS_VALUE"]

#: Largest allowed magnitude of a grid index (codecs predict in int32 below it).
MAX_ABS_VALUE = 2**30


class GridValues:
    """Values known to lie on a grid: integer ``indices`` and ``factor`` (grid steps
    per unit), standing for ``indices / factor``.

    The prediction reader hands these out on request (its values come from integers),
    so that a codec with the same grid copies the integers instead of dividing and
    rounding again. Anything else sees float arrays: ``np.asarray(g)`` gives
    ``indices / factor`` as float32 (exact: |indices| <= 2**24 is required).
    Indexing indexes the integers.
    """

    __slots__ = ("indices", "factor")

    def __init__(self, indices, factor):
        self.indices, self.factor = indices, float(factor)

    shape = property(lambda self: self.indices.shape)
    ndim = property(lambda self: self.indices.ndim)
    dtype = property(lambda self: np.dtype(np.float32))  # what it stands for

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        return GridValues(self.indices[key], self.factor)

    def __array__(self, dtype=None, copy=None):
        values = dequantize(self.indices, self.factor, 1 << 24)
        return values if dtype is None else values.astype(dtype)

    @staticmethod
    def concatenate(parts):
        """Concatenate along the first axis; GridValues when all share one factor."""
        if all(isinstance(p, GridValues) for p in parts) and len({p.factor for p in parts}) == 1:
            return GridValues(np.concatenate([p.indices for p in parts]), parts[0].factor)
        return np.concatenate([np.asarray(p) for p in parts])


def check_step(step_mm):
    """Validate a quantization step in millimetres; return it as float."""
    try:
        step = float(step_mm)
    except (TypeError, ValueError):
        raise TrackError(f"quantization_mm must be a number, got {step_mm!r}") from None
    if not (np.isfinite(step) and 1e-6 <= step <= 1e3):
        raise TrackError(f"quantization_mm must be within [1e-6, 1000] mm, got {step_mm!r}")
    return step


def _scaled(values, factor):
    """``values * factor``: in float32 when exact (factor = 2**k), else float64."""
    values = np.asarray(values)
    if values.dtype == np.float32 and math.frexp(factor)[0] == 0.5:
        # factor = 2**k: the float32 product is exact, so rounding it gives the very
        # same integers as float64 would, with half the memory traffic.
        return np.multiply(values, np.float32(factor))
    return np.multiply(values, factor, dtype=np.float64)


def _check_range(scaled, factor, name, first_row=0):
    """max |round(scaled)|; TrackError for NaN/inf or values beyond the grid.
    ``first_row``: row of ``scaled[0]`` in the caller's array (for the message)."""
    if scaled.size == 0:
        return 0
    lo, hi = float(np.round(scaled.min())), float(np.round(scaled.max()))  # NaN propagates
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = np.argwhere(~np.isfinite(scaled))[0]
        bad[0] += first_row
        raise TrackError(f"'{name}' contains NaN or inf (first at index {tuple(int(i) for i in bad)})")
    if max(hi, -lo) > MAX_ABS_VALUE:
        raise TrackError(
            f"'{name}' has values too large for the grid: |value| / step must stay below "
            f"2**30 (got up to {max(hi, -lo) / factor:.6g}); check the units "
            f"(millimetres for coordinates, metres for uncertainties) and quantization_mm"
        )
    return int(max(hi, -lo))


def quantize(values, factor, name, with_error=False):
    """Round ``values * factor`` (in float64, half to even) to grid indices.

    Parameters
    ----------
    values : array of float
    factor : float
        Grid steps per unit (``1/step_mm`` for mm, ``1000/step_mm`` for m).
    name : str
        Field name for error messages.
    with_error : bool
        Also return the largest |grid value - input| in the input's unit.

    Returns
    -------
    q : ndarray of float holding integers (callers cast to their int type)
    error : float, when ``with_error``

    Raises
    ------
    TrackError
        For NaN/inf or values whose grid index exceeds ``MAX_ABS_VALUE`` (2**30).
    """
    scaled = _scaled(values, factor)
    _check_range(scaled, factor, name)
    q = np.round(scaled)
    if not with_error:
        return q
    if q.size == 0:
        return q, 0.0
    scaled -= q
    return q, float(np.max(np.abs(scaled))) / factor


#: Values per block in :func:`quantize_into`: its temporaries stay in cache.
_BLOCK_VALUES = 1 << 17


def quantize_into(values, factor, name, out):
    """Like :func:`quantize`, writing the grid indices into the int array ``out``
    (same shape, may be a strided view), block by block along the first axis.

    Returns
    -------
    max_abs : int
        Largest |grid index|.
    error : float
        Largest |grid value - input| in the input's unit.
    """
    if isinstance(values, GridValues):
        if values.factor == factor:  # already on this grid: copy the integers
            indices = values.indices
            if indices.size == 0:
                return 0, 0.0
            if indices.ndim == 3:  # per component: 3x faster than one strided 3-D copy
                for d in range(indices.shape[2]):
                    out[:, :, d] = indices[:, :, d]
            else:
                out[...] = indices
            return max(int(indices.max()), -int(indices.min())), 0.0
    values = np.asarray(values)
    if values.size == 0:
        return 0, 0.0
    rows = max(1, _BLOCK_VALUES // (values.size // len(values) or 1))
    max_abs, error = 0, 0.0
    for a in range(0, len(values), rows):
        scaled = _scaled(values[a : a + rows], factor)
        max_abs = max(max_abs, _check_range(scaled, factor, name, first_row=a))
        np.rint(scaled, out=out[a : a + rows], casting="unsafe")  # half to even, as np.round
        np.subtract(scaled, out[a : a + rows], out=scaled, casting="unsafe")  # |diff| <= 0.5
        np.abs(scaled, out=scaled)
        error = max(error, float(scaled.max()))
    return max_abs, error / factor


#: Largest |grid index| whose float32 value is exact (dequantize gives float32 up to it).
MAX_EXACT_FLOAT32 = 2**24


def dequantize_scale(factor):
    """``(scale, divide)`` as the compiled dequantizer takes them: ``(1 / factor,
    False)`` when multiplying by it in float32 is exact (factor a power of two), else
    ``(factor, True)``: divide in float64, then round to float32 (as :func:`dequantize`)."""
    return (1.0 / factor, False) if math.frexp(factor)[0] == 0.5 else (float(factor), True)


def float32_target(array, shape):
    """Where a decoder writes float32 values of ``shape``: ``array`` (a caller's
    output, e.g. a slice of a whole track's) when it is a writable C-contiguous float32
    array of that shape, else a new array."""
    if (array is not None and array.shape == tuple(shape) and array.dtype == np.float32
            and array.flags.c_contiguous and array.flags.writeable):  # fmt: skip
        return array
    return np.empty(shape, np.float32)


def dequantize(q, factor, max_abs=None):
    """Grid indices back to values: ``q / factor`` rounded to float32 when exactly
    representable (|q| <= 2**24), else float64, matching bodycompress.

    ``max_abs`` (a known bound on |q|) skips a pass over the data.
    """
    if max_abs is None:
        max_abs = int(np.max(np.abs(q))) if q.size else 0
    if max_abs > MAX_EXACT_FLOAT32:
        return q / factor
    out = np.empty(q.shape, np.float32)
    if q.ndim == 3 and not q.flags.c_contiguous:
        for d in range(q.shape[2]):  # per component: much faster than a strided 3-D copy
            out[:, :, d] = q[:, :, d]
    else:
        out[...] = q
    if math.frexp(factor)[0] == 0.5:
        out *= np.float32(1.0 / factor)  # factor = 2**k: exact, hence identical
    else:
        np.divide(q, factor, out=out, dtype=np.float64, casting="same_kind")
    return out
