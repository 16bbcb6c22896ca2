"""What a bodycompress file holds: per-video predictions or one track (:func:`frame_kind`),
and the contents of a prediction file as a JSON-ready summary (:func:`summarize`) or
as arrays with the ragged detections concatenated over frames (:func:`collect_arrays`).

A prediction frame holds ``N`` detections: every array field has ``N`` rows
(``vertices (N, V, 3)``, ``boxes (N, 5)``...), ``N`` may be 0, and ``camera`` is one
dict for the frame. A track row (a per-track file) holds one person: ``vertices (V, 3)``.
"""

import numpy as np

from bodybatch.errors import FormatError

__all__ = ["frame_kind", "summarize", "collect_arrays", "vertex_order_name"]

#: Dimensions of a field in a prediction frame; in a track row it has one less.
_FRAME_NDIM = {"vertices": 3, "joints": 3, "vertex_uncertainties": 2, "joint_uncertainties": 2, "boxes": 2}


def vertex_order_name(header):
    """The header's vertex order as a name: None, ``"auto"``, ``"smpl"``, ``"smplx"``
    or ``"custom"`` (a stored permutation)."""
    order = header.vertex_order
    return order if order is None or isinstance(order, str) else "custom"


def frame_kind(frame):
    """``"predictions"`` (a frame of ``N`` detections) or ``"track"`` (one person's row),
    from the dimensions of the first field of ``vertices, joints, vertex_uncertainties,
    joint_uncertainties, boxes`` the frame holds; ``"predictions"`` if it holds none."""
    for key, ndim in _FRAME_NDIM.items():
        value = frame.get(key) if isinstance(frame, dict) else None
        value = getattr(value, "indices", value)  # GridValues
        if isinstance(value, np.ndarray):
            if value.ndim == ndim:
                return "predictions"
            if value.ndim == ndim - 1:
                return "track"
    return "predictions"


def _split_frame(frame):
    """One decoded frame -> (N detections, per-detection arrays, camera dict or None,
    other per-frame values). Raises FormatError when the arrays disagree on N."""
    detections, camera, other = {}, None, {}
    for key, value in frame.items():
        if key == "camera":
            if value is not None and not isinstance(value, dict):
                raise FormatError(f"camera is a {type(value).__name__}, not a map")
            camera = value
        elif isinstance(value, np.ndarray) and value.ndim >= 1:
            detections[key] = value
        elif isinstance(value, (dict, list, tuple)):
            raise FormatError(f"field {key!r} is a {type(value).__name__}, not an array of detections")
        else:
            other[key] = value
    counts = {key: len(value) for key, value in detections.items()}
    if len(set(counts.values())) > 1:
        raise FormatError(f"fields disagree on the number of detections: {counts}")
    n = next(iter(counts.values()), 0)
    return n, detections, camera, other


def _iter_split(frames):
    for index, frame in enumerate(frames):
        try:
            yield _split_frame(frame)
        except FormatError as exc:
            raise FormatError(f"frame {index}: {exc}") from None


def _spec(value):
    value = np.asarray(value)
    return (tuple(int(s) for s in value.shape), str(value.dtype))


def _specs_json(specs, drop_first):
    """{key: set of (shape, dtype)} -> {key: {"shape": [...], "dtype": ...}} (lists of
    both when frames differ)."""
    out = {}
    for key, found in specs.items():
        shapes = sorted({shape[1:] if drop_first else shape for shape, _ in found})
        dtypes = sorted({dtype for _, dtype in found})
        out[key] = {"shape": list(shapes[0]) if len(shapes) == 1 else [list(s) for s in shapes],
                    "dtype": dtypes[0] if len(dtypes) == 1 else dtypes}  # fmt: skip
    return out


def summarize(frames):
    """Scan decoded prediction frames once.

    Parameters
    ----------
    frames : iterable of dict
        Decoded frames (camera as dicts).

    Returns
    -------
    dict
        ``frames`` (int), ``detections`` (total), ``people_per_frame``
        (``min``, ``median``, ``max``; None without frames), ``fields`` (per-detection
        ``shape`` without the detection axis and ``dtype``, e.g. ``vertices``
        ``[V, 3]`` float32 mm), ``camera`` (per-frame shape and dtype of each key) and, if
        any, ``per_frame`` (other per-frame values: their type names).
    """
    counts, fields, cameras, other = [], {}, {}, {}
    for n, detections, camera, rest in _iter_split(frames):
        counts.append(n)
        for key, value in detections.items():
            fields.setdefault(key, set()).add(_spec(value))
        for key, value in (camera or {}).items():
            cameras.setdefault(key, set()).add(_spec(value))
        for key, value in rest.items():
            other.setdefault(key, set()).add(type(value).__name__)
    counts = np.asarray(counts, np.int64)
    people = None
    if counts.size:
        median = float(np.median(counts))
        people = {"min": int(counts.min()), "median": int(median) if median.is_integer() else median,
                  "max": int(counts.max())}  # fmt: skip
    out = {
        "frames": int(counts.size),
        "detections": int(counts.sum()),
        "people_per_frame": people,
        "fields": _specs_json(fields, drop_first=True),
        "camera": _specs_json(cameras, drop_first=False),
    }
    if other:
        out["per_frame"] = {key: sorted(names) for key, names in other.items()}
    return out


class _Column:
    """Parts of one output array: the detections of each frame (``ragged``: any number
    of rows, the same trailing shape) or one value per frame (the same shape)."""

    def __init__(self, key, first, ragged):
        self.key, self.ragged, self.parts = key, ragged, []
        self.tail = np.shape(first)[1:] if ragged else np.shape(first)

    def add(self, value, index):
        value = np.asarray(value)
        shape = value.shape[1:] if self.ragged else value.shape
        if shape != self.tail:
            what = "per-detection shape" if self.ragged else "shape"
            raise FormatError(f"frame {index}: {self.key!r} has {what} {shape}, earlier frames {self.tail}")
        # A copy of views: they would keep each whole stored frame alive.
        self.parts.append(value if value.flags.owndata else value.copy())

    def concatenate(self):
        """One array; the parts are released as they are copied, so the peak memory is
        about the parts plus one part, not twice the parts."""
        parts = self.parts
        dtype = np.result_type(*parts)
        rows = sum(len(p) for p in parts) if self.ragged else len(parts)
        out = np.empty((rows,) + self.tail, dtype)
        parts.reverse()
        pos = 0
        while parts:
            part = parts.pop()
            step = len(part) if self.ragged else 1
            out[pos : pos + step] = part
            pos += step
        return out


def collect_arrays(frames):
    """Every frame's contents as arrays, the detections concatenated over frames.

    Parameters
    ----------
    frames : iterable of dict
        Decoded frames (camera as dicts), read once.

    Returns
    -------
    dict
        Each per-detection field concatenated along its first axis (``vertices
        (sum N, V, 3)`` mm, ``boxes (sum N, 5)`` px...); ``counts (T,)`` int64
        detections per frame, so ``np.split(a, np.cumsum(counts)[:-1])`` gives the
        frames back; ``camera``: dict of per-frame arrays ``(T, ...)``; other per-frame
        values (scalars) as ``(T,)`` arrays under ``per_frame``.

    Raises
    ------
    FormatError
        A field missing from some frames, or its shape changing between frames.
    """
    counts, columns, cameras, others = [], {}, {}, {}
    for index, (n, detections, camera, rest) in enumerate(_iter_split(frames)):
        groups = ((columns, detections, True), (cameras, camera or {}, False), (others, rest, False))
        if index == 0:
            for target, values, ragged in groups:
                target.update({key: _Column(key, value, ragged) for key, value in values.items()})
        for target, values, _ in groups:
            if set(values) != set(target):
                raise FormatError(f"frame {index} has fields {sorted(values)}, frame 0 {sorted(target)}")
            for key, value in values.items():
                target[key].add(value, index)
        counts.append(n)
    out = {key: column.concatenate() for key, column in columns.items()}
    out["counts"] = np.asarray(counts, np.int64)
    out["camera"] = {key: column.concatenate() for key, column in cameras.items()}
    out["per_frame"] = {key: column.concatenate() for key, column in others.items()}
    return out
