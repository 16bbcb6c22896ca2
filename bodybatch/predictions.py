"""Reader for per-video prediction files written by ``bodycompress`` 0.2.x and 0.3.x.

A file is a compressed header (msgpack map), padding, a compressed metadata object and
one compressed stream of concatenated msgpack frame maps, each xz or zstd (0.2.x: xz,
possibly several concatenated streams). Coordinates are stored under ``qd_<name>`` as
``[int32 diffs, factor]``; frames come back exactly as ``bodycompress`` decodes them:
``vertices (N, V, 3)`` and ``joints (N, J, 3)`` in mm, ``vertex_uncertainties (N, V)``
and ``joint_uncertainties (N, J)`` in m (float32; float64 beyond 2**24 quantization
steps), other keys (``boxes``, ``camera`` ...) as stored. Decoded coordinates are fresh
writable arrays; other arrays are read-only views over their stored bytes. Nothing is
unpickled unless asked for and every allocation is bounded (see :mod:`bodybatch._msgpack`).
"""

import math
import os
import weakref
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from bodybatch._streams import _StreamError, _iter_raw_frames, _read_object
from bodybatch.codec.quantize import GridValues, dequantize
from bodybatch.errors import BodybatchError, FormatError

__all__ = ["read_predictions", "PredictionReader", "PredictionHeader", "load_vertex_order"]

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_FRAMES = 10**8
_HEADER_MAX_IN, _HEADER_MAX_OUT = 4 << 20, 16 << 20
_METADATA_MAX_OUT = 256 << 20
_METADATA_SEARCH_MAX = 16 << 20
_AUTO_ORDERS = {6890: "smpl", 10475: "smplx"}
_QD_FIELDS = (("vertices", -2), ("joints", -2), ("vertex_uncertainties", -1),
              ("joint_uncertainties", -1))  # fmt: skip
_MISSING = object()


@lru_cache(maxsize=None)
def load_vertex_order(name):
    """Bundled permutation ``"smpl"`` (6890,) or ``"smplx"`` (10475,), read-only int16.

    ``order[i]`` is the original index of the vertex stored at position ``i``. From
    bodycompress (MIT licence, see ``bodybatch/data/NOTICE_bodycompress.txt``).
    """
    if name not in ("smpl", "smplx"):
        raise ValueError(f"unknown bundled vertex order {name!r} (expected 'smpl' or 'smplx')")
    with resources.files("bodybatch").joinpath("data/vertex_orders.npz").open("rb") as f:
        with np.load(f, allow_pickle=False) as npz:
            order = npz[name]
    order.setflags(write=False)
    return order


@lru_cache(maxsize=None)
def _bundled_inverse(name):
    return _inverse(load_vertex_order(name))


def _inverse(order):
    inverse = np.empty(order.size, np.intp)
    inverse[order] = np.arange(order.size)
    inverse.setflags(write=False)
    return inverse


@dataclass(frozen=True, eq=False)
class PredictionHeader:
    """Validated header of a prediction file.

    Attributes
    ----------
    version : tuple of int
        ``__bodycompress_version__``, e.g. ``(0, 3, 0)``.
    compression : str
        ``"xz"`` or ``"zstd"`` (all streams of the file).
    length : int
        Number of frames the writer recorded.
    metadata_start, data_start : int
        Byte offsets of the metadata and frame streams (0.2.1 files store no metadata
        offset: there it is where the metadata stream was found).
    vertex_order : None or str or numpy.ndarray
        None, ``"auto"``, ``"smpl"``, ``"smplx"`` or a custom (V,) permutation
        (``order[i]`` = original index of stored vertex ``i``).
    """

    version: tuple
    compression: str
    length: int
    metadata_start: int
    data_start: int
    vertex_order: object = None


def _int_field(raw, key, low, high, hint=""):
    value = raw.get(key, _MISSING)
    if value is _MISSING:
        raise FormatError(f"header lacks {key!r}")
    if type(value) is not int:
        raise FormatError(f"header {key!r} is {value!r:.60}, not an integer")
    if not low <= value <= high:
        raise FormatError(f"header {key!r}={value} is outside [{low}, {high}]{hint}")
    return value


def _parse_vertex_order(value):
    """Header ``vertex_order`` -> (its PredictionHeader value, inverse or "auto" or None)."""
    if value is None or isinstance(value, str) and value == "auto":
        return value, value
    if isinstance(value, str):
        if value not in ("smpl", "smplx"):
            raise FormatError(f"header names unknown vertex_order {value!r:.40}")
        return value, _bundled_inverse(value)
    order = np.asarray(value) if isinstance(value, (list, np.ndarray)) else None
    if order is None or order.ndim != 1 or order.dtype.kind not in "iu" or not order.size:
        raise FormatError(f"header vertex_order is not a 1-D integer array: {value!r:.60}")
    in_range = order.min() >= 0 and order.max() < order.size
    if not in_range or np.bincount(order.astype(np.intp)).max() != 1:
        raise FormatError(f"header vertex_order of {order.size} entries is not a permutation")
    return order, _inverse(order)


def _parse_header(raw, size, compression):
    """Validate a header map -> (PredictionHeader, inverse vertex order or "auto" or None)."""
    version = raw["__bodycompress_version__"]
    if not (isinstance(version, list) and len(version) == 3
            and all(type(v) is int for v in version)):  # fmt: skip
        raise FormatError(f"invalid __bodycompress_version__ {version!r:.60}")
    version = tuple(version)
    if version[:2] not in ((0, 2), (0, 3)):
        raise FormatError(f"unsupported bodycompress version {version} (0.2.x/0.3.x only)")
    if raw.get("data_start", 0) is None or raw.get("metadata_start", 0) is None:
        raise FormatError(
            "incomplete file: its writer was never closed or was killed (the header "
            "offsets are unset); the frames cannot be recovered"
        )
    stated = raw.get("compression", "xz" if version[:2] == (0, 2) else _MISSING)
    if stated is _MISSING:
        raise FormatError("header lacks 'compression'")
    if stated != compression:
        raise FormatError(f"header says compression {stated!r:.20} but the file is {compression}")
    hint = f" (file is {size} bytes; truncated?)"
    length = _int_field(raw, "length", 0, MAX_FRAMES)
    data_start = _int_field(raw, "data_start", 1, size, hint)
    metadata_start = None
    if version[:2] == (0, 3) or "metadata_start" in raw:
        metadata_start = _int_field(raw, "metadata_start", 1, data_start - 1, hint)
    vertex_order, inverse = _parse_vertex_order(raw.get("vertex_order"))
    fields = (version, compression, length, metadata_start, data_start, vertex_order)
    return PredictionHeader(*fields), inverse


def _find_metadata(f, header_end, data_start):
    """Offset of a 0.2.x file's metadata stream: the first xz magic after the header."""
    if data_start - header_end > _METADATA_SEARCH_MAX:
        raise FormatError(f"no metadata stream within {_METADATA_SEARCH_MAX} bytes of header")
    f.seek(header_end)
    found = f.read(data_start - header_end).find(XZ_MAGIC)
    if found < 0:
        raise FormatError("no metadata stream between header and data_start")
    return header_end + found


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
    :func:`~bodybatch.codec.quantize.dequantize`: float32 when max |cumsum| <= 2**24
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


def _to_camera(camera):
    from bodybatch.cameras import dict_to_camera

    if not isinstance(camera, dict):
        raise FormatError(f"camera is a {type(camera).__name__}, not a map")
    try:
        return dict_to_camera(camera)
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"invalid camera dict ({exc!r:.200})") from None


class PredictionReader:
    """Streaming reader of one bodycompress prediction file.

    The header and metadata are read and validated on construction; the file is
    opened again for each iteration, which decodes from the first frame (re-iterable)
    holding about one frame plus a few MiB of buffers.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by bodycompress 0.2.x or 0.3.x (xz or zstd inside).
    decode_camera : bool
        Turn each frame's ``camera`` dict into a ``deltacamera.Camera``; raises
        :class:`~bodybatch.errors.BodybatchError` now if deltacamera is not installed.
    allow_pickle : bool
        Unpickle object arrays stored in the file. That runs code from the file: only
        for trusted files. Otherwise such arrays raise FormatError.
    keep_grid : iterable of str
        Quantized fields (``vertices``, ``joints``, ``vertex_uncertainties``,
        ``joint_uncertainties``) to return as :class:`bodybatch.codec.quantize.GridValues`
        (the stored integers and their factor) instead of float arrays, for consumers
        that quantize again; ``np.asarray`` of one gives the same floats.

    Attributes
    ----------
    path : pathlib.Path
    header : PredictionHeader
    metadata : dict or None
        The writer's metadata (e.g. ``video_path``, ``fps``, ``n_frames``).

    Raises
    ------
    FormatError
        Message starts with the path. On construction: empty, unknown, incomplete,
        truncated or corrupt file, invalid header or metadata. During iteration: corrupt
        or truncated data, invalid frames, fewer or more frames than ``len(reader)``.
        FileNotFoundError and other OSErrors propagate unchanged.
    """

    def __init__(self, path, *, decode_camera=False, allow_pickle=False, keep_grid=()):
        self.path = Path(path)
        self._keep_grid = frozenset(keep_grid)
        self._decode_camera, self._allow_pickle = bool(decode_camera), bool(allow_pickle)
        self._closed, self._live = False, weakref.WeakSet()
        if self._decode_camera:
            try:
                import deltacamera  # noqa: F401
            except ImportError:
                raise BodybatchError(
                    "decode_camera=True needs deltacamera: pip install 'bodybatch[camera]'"
                ) from None
        with open(self.path, "rb") as f:
            self._size = os.fstat(f.fileno()).st_size
            try:
                self._read_start(f)
            except FormatError as exc:
                raise FormatError(f"{self.path}: {exc}") from None

    def _read_start(self, f):
        magic = f.read(len(XZ_MAGIC))
        if not magic:
            raise FormatError("empty file")
        if magic.startswith(XZ_MAGIC) or magic.startswith(ZSTD_MAGIC):
            compression = "xz" if magic.startswith(XZ_MAGIC) else "zstd"
        else:
            raise FormatError(f"not a bodycompress file (unknown magic {magic!r})")
        stop = min(self._size, _HEADER_MAX_IN)
        raw, header_end = _read_object(
            f, 0, stop, compression, "header", _HEADER_MAX_OUT, self._allow_pickle, True
        )
        header, self._inverse_order = _parse_header(raw, self._size, compression)
        metadata_start = header.metadata_start
        if metadata_start is None:
            metadata_start = _find_metadata(f, header_end, header.data_start)
        elif metadata_start < header_end:
            raise FormatError(f"metadata_start={metadata_start} lies inside the header stream")
        self.metadata, _ = _read_object(
            f, metadata_start, header.data_start, compression, "metadata", _METADATA_MAX_OUT,
            self._allow_pickle,
        )
        if self.metadata is not None and not isinstance(self.metadata, dict):
            raise FormatError(f"metadata is a {type(self.metadata).__name__}, not a map")
        self.header = PredictionHeader(header.version, compression, header.length, metadata_start,
                                       header.data_start, header.vertex_order)  # fmt: skip

    def __len__(self):
        """Number of frames recorded in the header."""
        return self.header.length

    def __iter__(self):
        if self._closed:
            raise ValueError(f"{self.path}: reader is closed")
        frames = self._iter_frames()
        self._live.add(frames)
        return frames

    def _iter_frames(self):
        path, length = self.path, self.header.length
        n_frames = 0
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != self._size:
                raise FormatError(f"{path}: file size changed since it was opened")
            f.seek(self.header.data_start)
            raw_frames = _iter_raw_frames(f, self.header.compression, self._allow_pickle)
            while True:
                try:
                    frame = next(raw_frames, _MISSING)
                except _StreamError as exc:
                    raise FormatError(f"{path}: {exc} after frame {n_frames} of {length}") from None
                except FormatError as exc:
                    raise FormatError(f"{path}: frame {n_frames}: {exc}") from None
                except (ValueError, TypeError) as exc:  # msgpack's errors
                    message = f"frame {n_frames}: invalid msgpack data ({exc})"
                    raise FormatError(f"{path}: {message}") from None
                if frame is _MISSING:
                    break
                if n_frames == length:
                    raise FormatError(f"{path}: data stream holds more than {length} frames")
                yield self._decode_frame(frame, n_frames)
                n_frames += 1
        if n_frames < length:
            raise FormatError(f"{path}: data stream ends after frame {n_frames} of {length}")

    def _decode_frame(self, frame, index):
        try:
            if not isinstance(frame, dict):
                raise FormatError(f"is a {type(frame).__name__}, not a map")
            for name, axis in _QD_FIELDS:
                packed = frame.pop("qd_" + name, _MISSING)
                if packed is not _MISSING:
                    frame[name] = _unquantize(packed, axis, name, name in self._keep_grid)
            inverse = self._inverse_order
            if isinstance(inverse, str):  # "auto": by vertex count, like bodycompress
                vertices = frame.get("vertices")
                n_vertices = vertices.shape[-2] if getattr(vertices, "ndim", 0) >= 2 else 0
                order_name = _AUTO_ORDERS.get(n_vertices)
                inverse = None if order_name is None else _bundled_inverse(order_name)
            if inverse is not None:
                if "vertices" in frame:
                    _permute(frame, "vertices", inverse, -2)
                if "vertex_uncertainties" in frame:
                    _permute(frame, "vertex_uncertainties", inverse, -1)
            if self._decode_camera and "camera" in frame:
                frame["camera"] = _to_camera(frame["camera"])
        except FormatError as exc:
            raise FormatError(f"{self.path}: frame {index}: {exc}") from None
        return frame

    def close(self):
        """Stop running iterations (closing their files); iterating again raises ValueError."""
        self._closed = True
        for frames in list(self._live):
            frames.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        h = self.header
        return (f"PredictionReader({str(self.path)!r}, version={h.version}, "
                f"compression={h.compression!r}, frames={h.length})")  # fmt: skip


def read_predictions(path, *, decode_camera=False, allow_pickle=False, keep_grid=()):
    """Open a bodycompress prediction file: a :class:`PredictionReader` (see there).

    ``len(reader)`` is the frame count; iterating yields one dict per frame. The header
    and metadata are read and checked now (FormatError naming the path), frames lazily.
    """
    return PredictionReader(path, decode_camera=decode_camera, allow_pickle=allow_pickle, keep_grid=keep_grid)
