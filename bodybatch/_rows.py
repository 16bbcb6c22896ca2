"""Track rows: the fields of a row, validation of rows given to writers, and blocks
(dicts of stacked rows) that writers buffer and readers return.

A track is a dict of per-row arrays: ``vertices (T,V,3)`` mm, ``joints (T,J,3)`` mm,
``vertex_uncertainties (T,V)`` m, ``joint_uncertainties (T,J)`` m, ``boxes (T,B)``
pixels (x, y, w, h[, score]), ``camera`` and ``frame_index (T,)`` (video frame of each
row, strictly increasing). ``camera`` is a list of per-row camera dicts/objects, one
camera dict/object for all rows, or a dict of stacked ``(T, ...)`` arrays.
"""

import copy

import numpy as np

from bodybatch.cameras import camera_to_dict
from bodybatch._grid import GridValues
from bodybatch.errors import FormatError, TrackError

__all__ = [
    "TRACK_FIELDS", "DETECTION_FIELDS", "READ_FIELDS", "check_fields", "flat_arrays", "Schema", "RowBlock",
    "row_signature", "normalize_block", "slice_block", "concat_blocks", "copy_block", "stack_blocks",
]  # fmt: skip

#: Per-detection arrays of a prediction frame that a track row takes.
DETECTION_FIELDS = ("vertices", "joints", "vertex_uncertainties", "joint_uncertainties", "boxes")
TRACK_FIELDS = DETECTION_FIELDS + ("camera", "frame_index")
_FLOAT_FIELDS = {"vertices": 3, "joints": 3, "vertex_uncertainties": 2, "joint_uncertainties": 2, "boxes": 2}


def _as_float(name, value, ndim, where):
    if isinstance(value, GridValues):  # integers on a grid, kept as they are
        if value.ndim != ndim:
            raise TrackError(f"{where}'{name}' must have {ndim} dimensions (rows first), got shape {value.shape}")
        return value
    a = np.asarray(value)
    if a.dtype.kind not in "fiu" or a.dtype == np.float16:
        raise TrackError(f"{where}'{name}' must be a float array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise TrackError(f"{where}'{name}' must have {ndim} dimensions (rows first), got shape {a.shape}")
    return a


def _stack_cameras(camera, n_rows, where):
    """Any accepted camera form -> dict of (T, ...) arrays."""
    if isinstance(camera, dict) and "intr" in camera and np.ndim(camera["intr"]) == 3:
        stacked = {k: np.asarray(v) for k, v in camera.items()}
        if any(len(v) != n_rows for v in stacked.values()):
            raise TrackError(f"{where}stacked camera arrays must have {n_rows} rows")
        camera_to_dict({k: v[0] for k, v in stacked.items()}) if n_rows else None
        return stacked
    if isinstance(camera, (list, tuple)):
        if len(camera) != n_rows:
            raise TrackError(f"{where}'camera' has {len(camera)} entries for {n_rows} rows")
        dicts = [camera_to_dict(c) for c in camera]
    else:
        dicts = [camera_to_dict(camera)] * n_rows
    keys = set(dicts[0]) if dicts else set()
    for i, d in enumerate(dicts):
        if set(d) != keys:
            raise TrackError(f"{where}camera of row {i} has keys {sorted(d)}, expected {sorted(keys)}")
    try:
        return {k: np.stack([np.asarray(d[k]) for d in dicts]) for k in sorted(keys)}
    except ValueError:
        raise TrackError(f"{where}camera arrays change shape between rows") from None


def normalize_block(track, where=""):
    """Validate a dict of stacked rows; return normalized arrays and the row count."""
    if not isinstance(track, dict):
        raise TrackError(f"{where}a track must be a dict of arrays, got {type(track).__name__}")
    unknown = sorted(set(track) - set(TRACK_FIELDS))
    if unknown:
        raise TrackError(f"{where}unknown track fields {unknown}; allowed: {', '.join(TRACK_FIELDS)}")
    if "vertices" not in track and "joints" not in track:
        raise TrackError(f"{where}a track needs 'vertices' or 'joints'")
    out = {}
    for name, ndim in _FLOAT_FIELDS.items():
        if name in track and track[name] is not None:
            out[name] = _as_float(name, track[name], ndim, where)
    n_rows = len(out["vertices"] if "vertices" in out else out["joints"])
    for name, a in out.items():
        if len(a) != n_rows:
            raise TrackError(f"{where}'{name}' has {len(a)} rows, expected {n_rows}")
    for coord, unc in (("vertices", "vertex_uncertainties"), ("joints", "joint_uncertainties")):
        if coord in out and out[coord].shape[2] != 3:
            raise TrackError(f"{where}'{coord}' must have shape (T, N, 3), got {out[coord].shape}")
        if unc in out:
            if coord not in out:
                raise TrackError(f"{where}'{unc}' needs '{coord}'")
            if out[unc].shape[1] != out[coord].shape[1]:
                raise TrackError(
                    f"{where}'{unc}' has {out[unc].shape[1]} points but '{coord}' has {out[coord].shape[1]}"
                )
    if track.get("camera") is not None:
        out["camera"] = _stack_cameras(track["camera"], n_rows, where)
    if track.get("frame_index") is not None:
        fi = np.asarray(track["frame_index"])
        if fi.dtype.kind not in "iu" or fi.shape != (n_rows,):
            raise TrackError(f"{where}'frame_index' must be {n_rows} integers, got {fi.dtype} {fi.shape}")
        out["frame_index"] = fi.astype(np.int64)
    return out, n_rows


class Schema:
    """Field set and per-row shapes fixed by the first rows of a track."""

    def __init__(self, block):
        self.fields = sorted(k for k in block if k != "frame_index")
        self.shapes = {k: block[k].shape[1:] for k in self.fields if k != "camera"}
        self.camera = {k: v.shape[1:] for k, v in block.get("camera", {}).items()}

    def check(self, block, first_row, where=""):
        fields = sorted(k for k in block if k != "frame_index")
        if fields != self.fields:
            raise TrackError(f"{where}row {first_row}: fields {fields} differ from the track's {self.fields}")
        for k, shape in self.shapes.items():
            if block[k].shape[1:] != shape:
                raise TrackError(
                    f"{where}row {first_row}: '{k}' has shape {block[k].shape[1:]} per row, "
                    f"the track started with {shape} (point counts cannot change mid-track)"
                )
        cam = {k: v.shape[1:] for k, v in block.get("camera", {}).items()}
        if cam != self.camera:
            raise TrackError(f"{where}row {first_row}: camera keys or shapes changed mid-track")

    def raw_bytes_per_row(self):
        """float32 bytes of one row of every stored array (the 'raw' size), plus the
        frame index (4 bytes)."""
        values = sum(int(np.prod(s)) for s in self.shapes.values())
        values += sum(int(np.prod(s)) for s in self.camera.values())
        return 4 * (values + 1)


def slice_block(block, start, stop=None):
    """Rows of a dict of arrays (camera nested): a slice ``start:stop`` or, when
    ``start`` is an index array, those rows."""
    sel = start if stop is None and not isinstance(start, (int, np.integer)) else slice(start, stop)
    return {k: ({ck: cv[sel] for ck, cv in v.items()} if k == "camera" else v[sel]) for k, v in block.items()}


def copy_block(block):
    """A block that shares no memory with ``block`` (whose arrays the caller may reuse)."""

    def copy(v):
        return GridValues(v.indices.copy(), v.factor) if isinstance(v, GridValues) else np.array(v)

    return {k: ({ck: copy(cv) for ck, cv in v.items()} if k == "camera" else copy(v)) for k, v in block.items()}


def concat_blocks(blocks):
    if len(blocks) == 1:
        return blocks[0]
    out = {}
    for k, v in blocks[0].items():
        if k == "camera":
            out[k] = {ck: np.concatenate([b[k][ck] for b in blocks]) for ck in v}
        else:
            out[k] = GridValues.concatenate([b[k] for b in blocks])
    return out


def stack_blocks(parts, n_rows, target=None):
    """Stack an iterable of blocks holding ``n_rows`` rows in all into new arrays,
    taking one part at a time: peak memory is the result plus one part (concatenating
    a list of parts holds all of them too: twice the result for a whole long track).
    A part whose fields, shapes or dtypes differ from the first's (or GridValues) makes
    the rest a plain concatenation (as :func:`concat_blocks`).

    ``target`` (a dict): ``target["out"]`` is set to the output once allocated, so that
    the parts that follow can be decoded straight into their rows of it; a part's
    array that already is its rows of the output is not copied. Arrays already in
    ``target["out"]`` (allocated before the first part, of ``n_rows`` rows) are the
    output's for their fields when the first part's layout agrees."""
    parts = iter(parts)
    first = next(parts)

    def plain(block):
        return all(isinstance(v, np.ndarray) or (k == "camera" and all(isinstance(c, np.ndarray) for c in v.values()))
                   for k, v in block.items())  # fmt: skip

    def layout(block):
        return {k: ({ck: (cv.shape[1:], cv.dtype) for ck, cv in v.items()} if k == "camera" else (v.shape[1:], v.dtype))
                for k, v in block.items()}  # fmt: skip

    if not plain(first):
        return concat_blocks([first, *parts])
    want = layout(first)

    ready = (target or {}).get("out") or {}

    def alloc(v, given=None):
        shape = (n_rows,) + v.shape[1:]
        if isinstance(given, np.ndarray) and given.shape == shape and given.dtype == v.dtype:
            return given
        return np.empty(shape, v.dtype)

    out = {k: ({ck: alloc(cv) for ck, cv in v.items()} if k == "camera" else alloc(v, ready.get(k)))
           for k, v in first.items()}  # fmt: skip
    if target is not None:
        target["out"] = out
    row, part = 0, first
    while part is not None:
        if not plain(part) or layout(part) != want:  # e.g. one chunk dequantized to float64
            return concat_blocks([slice_block(out, 0, row), part, *parts])
        n = next(len(v) for v in part.values() if not isinstance(v, dict))
        for k, v in part.items():
            if k == "camera":
                for ck, cv in v.items():
                    out[k][ck][row : row + n] = cv
            elif not _is_view(v, out[k], row):
                out[k][row : row + n] = v
        row += n
        part = next(parts, None)
    if row != n_rows:
        raise ValueError(f"stack_blocks: the parts hold {row} rows, not {n_rows}")
    return out


def _is_view(part, whole, row):
    """Whether ``part`` is exactly rows ``row:row + len(part)`` of ``whole`` (decoded in place)."""
    address = whole.__array_interface__["data"][0] + row * whole.strides[0]
    return (part.dtype == whole.dtype and part.shape[1:] == whole.shape[1:] and part.strides == whole.strides
            and part.__array_interface__["data"][0] == address)  # fmt: skip


def row_signature(row):
    """What must match for rows to be stacked: field names, shapes, dtypes, grids."""
    sig = []
    for k, v in sorted(row.items()):
        if k == "camera":
            sig.append((k,))
        elif isinstance(v, GridValues):
            sig.append((k, v.indices.shape, v.indices.dtype.str, v.factor))
        else:
            sig.append((k, v.shape, v.dtype.str))
    return tuple(sig)


class RowBlock:
    """Rows of one signature copied into preallocated ``(size, ...)`` arrays as they
    arrive (cameras copied too): one copy per row, and later changes to the caller's
    arrays do not leak in."""

    def __init__(self, row, size):
        self.n, self.size, self.grids, self.arrays = 0, size, {}, {}
        self.cameras = [] if "camera" in row else None
        for k, v in row.items():
            if isinstance(v, GridValues):
                self.grids[k], v = v.factor, v.indices
            if k != "camera":
                self.arrays[k] = np.empty((size,) + v.shape, v.dtype)

    full = property(lambda self: self.n >= self.size)

    def add(self, row):
        for k, buffer in self.arrays.items():
            v = row[k]
            buffer[self.n] = v.indices if k in self.grids else v
        if self.cameras is not None:
            camera = row["camera"]
            self.cameras.append({k: np.array(v) for k, v in camera.items()} if isinstance(camera, dict)
                                else copy.deepcopy(camera))  # fmt: skip
        self.n += 1
        return self

    def block(self):
        block = {k: b[: self.n] if k not in self.grids else GridValues(b[: self.n], self.grids[k])
                 for k, b in self.arrays.items()}  # fmt: skip
        if self.cameras is not None:
            block["camera"] = self.cameras
        return block


def flat_arrays(arrays, metadata, path):
    """Arrays ready for ``numpy.savez``: each dict of arrays (``camera``, ``frame``)
    becomes ``<name>_<key>`` entries (``camera_intr``), and ``metadata`` a JSON string
    (a 0-d unicode array, loaded without pickle: ``json.loads(str(npz["metadata"]))``).

    Raises
    ------
    FormatError
        Naming ``path``: a stored field clashes with a name this layout adds.
    """
    import json

    from bodybatch._json import to_jsonable

    out = {k: np.asarray(v) for k, v in arrays.items() if not isinstance(v, dict)}
    added = {f"{name}_{k}": np.asarray(v) for name, group in arrays.items() if isinstance(group, dict)
             for k, v in group.items()}  # fmt: skip
    added["metadata"] = np.array(json.dumps(to_jsonable(metadata), sort_keys=True))
    clash = sorted(set(out) & set(added))
    if clash:
        raise FormatError(f"{path}: field(s) {clash} clash with the names the export adds")
    out.update(added)
    return out


#: Fields a reader's ``fields=`` selects from: a track row's fields but ``frame_index``
#: (always returned).
READ_FIELDS = TRACK_FIELDS[:-1]


def check_fields(fields):
    """``fields`` (None, a name, or names) -> None or a frozenset of names.

    ``frame_index`` is accepted and dropped (it is always returned).

    Raises
    ------
    ConfigError
        An unknown field name (the message lists :data:`READ_FIELDS`).
    """
    if fields is None:
        return None
    if isinstance(fields, str):
        fields = (fields,)
    out = frozenset(fields) - {"frame_index"}
    unknown = sorted(out - set(READ_FIELDS))
    if unknown:
        from bodybatch.errors import ConfigError

        raise ConfigError(f"unknown field(s) {unknown}; known: {', '.join(TRACK_FIELDS)}")
    return out
