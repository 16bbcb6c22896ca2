"""The residual streams of the ``bodybatch`` codec: point blocks (coarse levels
merged), activity classes, the per-class stream layout of a chunk, and lossless
per-component arrays (boxes, cameras). Pure functions of arrays and bytes.
"""

import numpy as np

from bodybatch.codec import entropy, predict
from bodybatch.codec._threads import Workers
from bodybatch.codec.structure import level_bounds
from bodybatch.errors import FormatError, TrackError

__all__ = ["N_CLASSES", "activity_classes"]

#: Bounds that keep a hostile header from driving allocations.
MAX_POINTS = 1 << 20
#: Levels below this many points share one residual stream.
_COARSE_POINTS = 256

#: Blocks of at least this many points split their later frames into activity classes.
_CLASSED_POINTS = 1024
N_CLASSES = 4


def _blocks(n_points):
    """Point blocks with one residual distribution each, covering ``[0, n_points)``:
    the coarse levels merged into one block, then one block per level of at least
    ``_COARSE_POINTS`` points; a last level smaller than that joins the block before it.

    (bodybatch 0.1.0 left such a last level out, so tracks whose point count was
    2**k + 1 .. 2**k + 255 for k >= 9 lost those points' residuals; their files
    cannot be decoded correctly. Every other point count has the same blocks as then.)
    """
    levels = [(lo, hi) for lo, hi in level_bounds(n_points) if hi - lo >= _COARSE_POINTS]
    first_big = levels[0][0] if levels else n_points
    blocks = ([(0, first_big)] if first_big else []) + levels
    if blocks and blocks[-1][1] < n_points:
        blocks[-1] = (blocks[-1][0], n_points)
    return blocks


def points_lost_by_0_1(n_points):
    """How many points' residuals a bodybatch 0.1.0 writer left out for ``n_points``
    points (see :func:`_blocks`): its files with such a count cannot be decoded."""
    levels = level_bounds(n_points)
    small_last = levels and levels[-1][1] - levels[-1][0] < _COARSE_POINTS
    big_before = any(hi - lo >= _COARSE_POINTS for lo, hi in levels[:-1])
    return levels[-1][1] - levels[-1][0] if small_last and big_before else 0


def _components(n_dims):
    return [(0, min(3, n_dims))] + ([(3, n_dims)] if n_dims > 3 else [])


def activity_classes(res, n_classes=N_CLASSES, res_abs=None):
    """(N,) uint8 class of each point: quartile of its mean |residual| (coordinates,
    frames 1..) within its block. Points of one class share one residual stream, so
    each stream gets the distribution of its own body regions (hands vs torso).
    ``res_abs``: max |res| when known (int32 sums when they cannot overflow)."""
    n, n_frames, d = res.shape
    classes = np.zeros(n, np.uint8)
    if n_frames < 2:
        return classes
    if res_abs is None:
        res_abs = max(int(res.max(initial=0)), -int(res.min(initial=0)))
    sum_dtype = np.int32 if (n_frames - 1) * d * res_abs < 2**31 else np.int64  # exact either way
    for lo, hi in _blocks(n):
        if hi - lo < _CLASSED_POINTS:
            continue
        act = np.empty(hi - lo, np.int64)
        for a in range(lo, hi, predict.BLOCK_POINTS):  # all D summed, then minus the 4th
            b = np.abs(res[a : min(hi, a + predict.BLOCK_POINTS), 1:])
            act[a - lo : a - lo + len(b)] = b.reshape(len(b), -1).sum(axis=1, dtype=sum_dtype)
            if d > 3:
                act[a - lo : a - lo + len(b)] -= b[:, :, 3:].sum(axis=(1, 2), dtype=sum_dtype)
        edges = np.quantile(act, np.arange(1, n_classes) / n_classes)
        classes[lo:hi] = np.searchsorted(edges, act, side="right")
    return classes


def _rest_blocks(n_points, classes):
    """Blocks for frames 1..: (lo, hi, perm, bounds) where ``perm`` sorts the block's
    points by class (None when unclassed) and ``bounds`` delimit the classes in it."""
    out = []
    for lo, hi in _blocks(n_points):
        if hi - lo < _CLASSED_POINTS:
            out.append((lo, hi, None, [0, hi - lo]))
            continue
        block = classes[lo:hi]
        perm = np.argsort(block, kind="stable")
        counts = np.bincount(block, minlength=N_CLASSES)
        out.append((lo, hi, perm, np.concatenate([[0], np.cumsum(counts)]).tolist()))
    return out


def _encode_residual_streams(res, classes, level, stream_dtype):
    """(N, T, D) residuals -> list of coded streams (see docs/format.md, chunk layout)."""
    n, n_frames, d = res.shape
    res = res.astype(stream_dtype, copy=False)  # one pass; the streams are cut from it
    streams = []
    for lo, hi in _blocks(n):
        for c0, c1 in _components(d):
            streams.append(entropy.encode_numbers(res[lo:hi, 0, c0:c1], level))
    if n_frames < 2:
        return streams
    for lo, hi, perm, bounds in _rest_blocks(n, classes):
        # Per component group, the block's rows sorted by class in one contiguous
        # copy: each class's stream is then a slice of it.
        parts = [np.ascontiguousarray(res[lo:hi, 1:, c0:c1]) if perm is None
                 else np.take(res[lo:hi, 1:, c0:c1], perm, axis=0) for c0, c1 in _components(d)]  # fmt: skip
        for a, b in zip(bounds[:-1], bounds[1:]):
            streams.extend(entropy.encode_numbers(part[a:b], level) for part in parts)
    return streams


def _decode_residual_streams(streams, classes, shape, dtype, stream_dtype, where):
    """Invert :func:`_encode_residual_streams` into a new (N, T, D) array of ``dtype``
    (the numpy decoder's layout; :func:`decode_residual_parts` reads the streams)."""
    n, n_frames, d = shape
    first, rest_xyz, rest_unc, sorted_pos = decode_residual_parts(streams, classes, shape, stream_dtype, where)
    res = np.empty(shape, dtype)
    res[:, 0] = first
    if n_frames > 1:
        res[:, 1:, :3] = rest_xyz[sorted_pos]
        res[:, 1:, 3:] = rest_unc[sorted_pos]
    return res


def encode_frame_major_streams(res, classes, level):
    """Formats 2.0 and 3.0: ``(T, N, D)`` stored-order residuals (already of the stream
    dtype) -> the coded streams: row 0 per block and component group, then rows 1..
    per block, class and component group, frame-major ``(T-1, points, components)``."""
    n_frames, n, d = res.shape
    blocks, groups = _blocks(n), _components(d)
    streams = [entropy.encode_numbers(res[0, lo:hi, c0:c1], level) for lo, hi in blocks for c0, c1 in groups]
    if n_frames > 1:
        rest = np.take(res[1:], _sorted_layout(n, classes), axis=1)
        for lo, hi, _, bounds in _rest_blocks(n, classes):
            for a, b in zip(bounds[:-1], bounds[1:]):
                streams.extend(entropy.encode_numbers(rest[:, lo + a : lo + b, c0:c1], level) for c0, c1 in groups)
    return streams


def frame_major_entry(res, classes, weights, level, max_abs, stream_dtype, **extra):
    """Formats 2.0 and 3.0: a point group's chunk entry from its ``(T, N, D)`` residuals,
    activity classes and int16 temporal weights; ``extra`` entries (format 2.0's
    ``s_abs``) come before the weights (the map's order is part of the bytes)."""
    res = res.astype(stream_dtype, copy=False)
    return {
        "max_abs": max_abs,
        "classes": entropy.encode_numbers(classes.astype(np.uint16)),
        "dtype": np.dtype(stream_dtype).name,
        "streams": encode_frame_major_streams(res, classes, level),
        **extra,
        "weights": entropy.encode_numbers(weights.ravel()),
    }


def decode_residual_parts(streams, classes, shape, stream_dtype, where, first_only=False, workers=None):
    """The residual streams of :func:`_encode_residual_streams` decoded in place, with
    no scatter: ``first`` (N, D) frame 0 in stored order, ``rest`` per component group
    ((N, T-1, 3) and (N, T-1, D-3)) with rows in sorted layout, and ``sorted_pos`` (N,)
    (stored position -> row of ``rest``). For :mod:`bodybatch.codec._kernels`.
    ``first_only``: frame 0 is all the caller predicts; the streams of frames 1.. (point-
    major: a prefix would not help) are left undecoded and ``rest`` has no frames.
    ``workers`` (:class:`bodybatch.codec._threads.Workers`): decode those streams on
    its threads, in bins of about equal size."""
    n, n_frames, d = shape
    comps = _components(d)
    rest_blocks = _rest_blocks(n, classes) if n_frames > 1 else []
    expected = (len(_blocks(n)) + sum(len(b) - 1 for _, _, _, b in rest_blocks)) * len(comps)
    if len(streams) != expected:
        raise FormatError(f"{where}expected {expected} residual streams, found {len(streams)}")
    it = iter(streams)
    first = np.empty((n, d), stream_dtype)
    for lo, hi in _blocks(n):
        for c0, c1 in comps:
            vals = entropy.decode_numbers(next(it), stream_dtype, (hi - lo) * (c1 - c0), where)
            first[lo:hi, c0:c1] = vals.reshape(hi - lo, c1 - c0)
    n_rest = 0 if first_only else max(n_frames - 1, 0)
    rest = [np.empty((n, n_rest, 3), stream_dtype), np.empty((n, n_rest, d - 3), stream_dtype)]
    jobs = []  # (stream, the part of rest it fills)
    for lo, hi, _, bounds in rest_blocks if n_rest else []:
        for a, b in zip(bounds[:-1], bounds[1:]):
            jobs.extend((next(it), rest[g][lo + a : lo + b].reshape(-1)) for g in range(len(comps)))

    decode_stream_jobs(jobs, stream_dtype, where, workers)
    layout = _sorted_layout(n, classes, rest_blocks) if rest_blocks else np.arange(n)
    sorted_pos = np.empty(n, np.intp)
    sorted_pos[layout] = np.arange(n)
    return first, rest[0], rest[1], sorted_pos


def decode_stream_jobs(jobs, stream_dtype, where, workers=None, prefix=False):
    """Entropy-decode ``jobs``, pairs of (stream, the 1-D part of an array it fills), in
    place: on the threads of ``workers`` (:class:`bodybatch.codec._threads.Workers`;
    None: this one) in bins of about equal bytes. ``prefix``: a part holds only the
    first values of its stream."""

    def decode(picked):
        for data, part in picked:
            entropy.decode_numbers(data, stream_dtype, part.size, where, out=part, prefix=prefix)

    (workers or Workers(1)).run_bins(jobs, [len(data) for data, _ in jobs], decode)


def _sorted_layout(n, classes, rest_blocks=None):
    """(N,) stored positions in *sorted layout* (v2): each classed block's points
    sorted by class (stable), so that every class stream of rows 1.. is one slice
    (``rest_blocks``: :func:`_rest_blocks` of the same classes, when at hand)."""
    rest_blocks = _rest_blocks(n, classes) if rest_blocks is None else rest_blocks
    parts = [np.arange(lo, hi) if perm is None else lo + perm for lo, hi, perm, _ in rest_blocks]
    return np.concatenate(parts).astype(np.intp) if parts else np.zeros(0, np.intp)


def _encode_array(a, level):
    """Lossless (T, ...) array -> map; per-component time series for pcodec."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TrackError(f"cannot store array of dtype {a.dtype}")
    series = np.moveaxis(a, 0, -1)
    return {
        "dtype": a.dtype.newbyteorder("<").str,
        "shape": list(a.shape[1:]),
        "data": entropy.encode_numbers(series.ravel(), level),
    }


def _decode_array(entry, n_frames, where):
    """Invert :func:`_encode_array` (``entry`` checked against
    :data:`bodybatch.codec._entries.ARRAY`)."""
    try:
        dtype = np.dtype(entry["dtype"])
    except TypeError:
        raise FormatError(f"{where}: unknown dtype {entry['dtype'][:40]!r}") from None
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise FormatError(f"{where}: unsupported dtype {dtype}")
    shape = entry["shape"]
    if len(shape) > 4 or any(s < 0 or s > MAX_POINTS for s in shape):
        raise FormatError(f"{where}: implausible shape {shape}")
    count = int(np.prod(shape, dtype=np.int64)) * n_frames
    vals = entropy.decode_numbers(entry["data"], dtype, count, where)
    return np.moveaxis(vals.reshape(shape + [n_frames]), -1, 0).copy()


def _classes_and_dtype(entry, n_points, where):
    """A point group's activity classes (N,) uint16 and residual stream dtype name,
    checked (FormatError naming ``where``)."""
    classes = entropy.decode_numbers(entry["classes"], np.uint16, n_points, f"{where}classes")
    if classes.size and classes.max() >= N_CLASSES:
        raise FormatError(f"{where}invalid activity class")
    stream_dtype = str(entry["dtype"])
    if stream_dtype not in ("int16", "int32", "int64"):
        raise FormatError(f"{where}invalid residual dtype {stream_dtype!r}")
    return classes, stream_dtype
