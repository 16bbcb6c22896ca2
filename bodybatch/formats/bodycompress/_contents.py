"""What a bodycompress file holds: per-video predictions or one track (:func:`frame_kind`),
and the contents of a prediction file as a JSON-ready summary (:func:`summarize`) or
as arrays with the ragged detections concatenated over frames (:func:`collect_arrays`).

A prediction frame holds ``N`` detections (``N`` may be 0): ``vertices (N, V, 3)``,
``joints (N, J, 3)``, ``vertex_uncertainties (N, V)``, ``joint_uncertainties (N, J)``,
``boxes (N, 5)`` (the first of them present gives ``N``), ``camera`` (one dict for the
frame), and whatever else the writer stored. Another key is per detection when in
every frame it is an array of ``N`` rows (e.g. ``ids (N,)``), else per frame. A track
row (a per-track file) holds one person: ``vertices (V, 3)``.
"""

import json

import numpy as np

from bodybatch._grid import GridValues
from bodybatch._rows import DETECTION_FIELDS
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
    from the dimensions of the first of ``vertices, joints, vertex_uncertainties,
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


def _spec(value):
    """(rows or None, shape, dtype) of an array or number; (None, None, type name) else."""
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        value = np.asarray(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return (len(value) if value.ndim else None), value.shape, str(value.dtype)
    return None, None, type(value).__name__


class _Column:
    """One key over the frames: the spec of its value in each frame holding it, and
    the values themselves when ``keep``."""

    def __init__(self, key, keep):
        self.key, self.keep = key, keep
        self.frames, self.specs, self.values = [], [], []

    def add(self, t, value):
        self.frames.append(t)
        self.specs.append(_spec(value))
        if self.keep:
            if isinstance(value, np.ndarray) and not value.flags.owndata:
                value = value.copy()  # a view would keep the whole stored frame alive
            self.values.append(value)

    def layout(self, counts):
        """``"detections"`` (N rows in every frame), ``"frames"`` (one array of the same
        shape in every frame) or ``"json"`` (anything else)."""
        complete = len(self.frames) == len(counts)
        arrays = all(shape is not None for _, shape, _ in self.specs)
        if self.key in DETECTION_FIELDS:
            return "detections"
        rows_match = all(rows is not None and rows == counts[t] for t, (rows, _, _) in zip(self.frames, self.specs))
        if complete and rows_match and len({shape[1:] for _, shape, _ in self.specs}) == 1:
            return "detections"
        if complete and arrays and len({shape for _, shape, _ in self.specs}) == 1:
            return "frames"
        return "json"

    def describe(self, layout):
        """JSON-ready shape (without the detection axis) and dtype, or type names."""
        if layout == "json":  # type names; dtypes for arrays and numbers
            return {"type": sorted({name for _, _, name in self.specs})}
        shapes = sorted({shape[1:] if layout == "detections" else shape for _, shape, _ in self.specs})
        dtypes = sorted({dtype for _, _, dtype in self.specs})
        return {"shape": list(shapes[0]) if len(shapes) == 1 else [list(s) for s in shapes],
                "dtype": dtypes[0] if len(dtypes) == 1 else dtypes}  # fmt: skip

    def array(self, layout, counts):
        """All values as one array (``detections``: concatenated; ``frames``: stacked;
        ``json``: one JSON string a frame, null where missing). The kept values are
        released as they are copied: the peak is about one array, not two."""
        if layout == "json":
            from bodybatch._json import to_jsonable

            texts = ["null"] * len(counts)
            for t, value in zip(self.frames, self.values):
                texts[t] = json.dumps(to_jsonable(value), sort_keys=True)
            return np.array(texts)
        for t, (rows, shape, _) in zip(self.frames, self.specs):
            if shape is None or (layout == "detections" and rows != counts[t]):
                raise FormatError(f"frame {t}: {self.key!r} is not an array of {counts[t]} detections")
        if len(self.frames) != len(counts):
            missing = sorted(set(range(len(counts))) - set(self.frames))[0]
            raise FormatError(f"frame {missing} lacks {self.key!r}")
        tails = sorted({shape[1:] if layout == "detections" else shape for _, shape, _ in self.specs})
        if len(tails) > 1:
            raise FormatError(f"{self.key!r} changes shape between frames: {tails[0]} and {tails[1]}")
        parts, self.values = self.values, []
        out = np.empty((sum(counts) if layout == "detections" else len(counts),) + tails[0], np.result_type(*parts))
        parts.reverse()
        pos = 0
        while parts:
            part = parts.pop()
            step = len(part) if layout == "detections" else 1
            out[pos : pos + step] = part
            pos += step
        return out


def _scan(frames, keep):
    """One pass over decoded frames -> (counts (T,) int64, columns, camera columns)."""
    counts, columns, cameras = [], {}, {}
    for t, frame in enumerate(frames):
        frame = {k: (np.asarray(v) if isinstance(v, GridValues) else v) for k, v in frame.items()}
        n, first = None, None
        for key in DETECTION_FIELDS:
            rows = _spec(frame[key])[0] if key in frame else None
            if key in frame and rows is None:
                raise FormatError(f"frame {t}: {key!r} is not an array of detections")
            if rows is not None and n is not None and rows != n:
                raise FormatError(f"frame {t}: {key!r} has {rows} detections, {first!r} {n}")
            if rows is not None and n is None:
                n, first = rows, key
        counts.append(n or 0)
        for key, value in frame.items():
            if key != "camera":
                columns.setdefault(key, _Column(key, keep)).add(t, value)
            elif isinstance(value, dict):
                for ck, cv in value.items():
                    cameras.setdefault(ck, _Column(f"camera/{ck}", keep)).add(t, cv)
            elif value is not None:
                raise FormatError(f"frame {t}: camera is a {type(value).__name__}, not a map")
    return np.asarray(counts, np.int64), columns, cameras


def summarize(frames):
    """Scan decoded prediction frames once (keeping no arrays).

    Parameters
    ----------
    frames : iterable of dict
        Decoded frames (camera as dicts).

    Returns
    -------
    dict
        ``frames`` (int), ``detections`` (total), ``people_per_frame`` (``min``,
        ``median``, ``max``; None without frames), ``fields`` (per-detection keys:
        ``shape`` without the detection axis and ``dtype``, e.g. ``vertices [V, 3]``
        float32 mm), ``camera`` (shape and dtype of each camera key) and, if any,
        ``per_frame`` (other keys: shape and dtype, or their type names).
    """
    counts, columns, cameras = _scan(frames, keep=False)
    people = None
    if counts.size:
        median = float(np.median(counts))
        people = {"min": int(counts.min()), "median": int(median) if median.is_integer() else median,
                  "max": int(counts.max())}  # fmt: skip
    layouts = {key: column.layout(counts) for key, column in columns.items()}
    out = {
        "frames": int(counts.size),
        "detections": int(counts.sum()),
        "people_per_frame": people,
        "fields": {k: c.describe("detections") for k, c in columns.items() if layouts[k] == "detections"},
        "camera": {k: c.describe("json" if c.layout(counts) == "json" else "frames") for k, c in cameras.items()},
    }
    per_frame = {k: c.describe(layouts[k]) for k, c in columns.items() if layouts[k] != "detections"}
    if per_frame:
        out["per_frame"] = per_frame
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
        Each per-detection key concatenated along its first axis (``vertices
        (D, V, 3)`` mm, ``boxes (D, 5)`` px..., D = all detections); ``counts (T,)``
        int64 detections per frame, so ``np.split(a, np.cumsum(counts)[:-1])`` gives
        the T frames back; ``camera``: dict of per-frame ``(T, ...)`` arrays;
        ``frame``: dict of the other per-frame keys, ``(T, ...)`` arrays, or ``(T,)``
        JSON strings for values that are no arrays of one shape (null: missing).

    Raises
    ------
    FormatError
        A detection field or camera key missing from some frames or changing shape.
    """
    counts, columns, cameras = _scan(frames, keep=True)
    out = {"counts": counts, "camera": {}, "frame": {}}
    for key, column in columns.items():
        layout = column.layout(counts)
        target = out if layout == "detections" else out["frame"]
        if key in target:
            raise FormatError(f"field {key!r} clashes with the name of an exported array")
        target[key] = column.array(layout, counts)
    for key, column in cameras.items():
        out["camera"][key] = column.array("frames", counts)
    return out
