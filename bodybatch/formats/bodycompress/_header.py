"""The bodycompress header: magic bytes, the header map (read and written), and the
vertex orders it may name.

A file is a compressed header (msgpack map), zero padding (room for the final
header, rewritten at close), a compressed metadata object and one compressed stream
of msgpack frame maps, all xz or zstd (0.2.x: xz, possibly several concatenated
streams, no ``metadata_start``).
"""

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from bodybatch import _msgpack
from bodybatch.errors import FormatError
from bodybatch.formats.bodycompress._streams import read_object

__all__ = ["XZ_MAGIC", "ZSTD_MAGIC", "MAGICS", "PredictionHeader", "load_vertex_order", "pack_header",
           "HEADER_PADDING", "AUTO_ORDERS", "read_start"]  # fmt: skip

XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_FRAMES = 10**8
_HEADER_MAX_IN, _HEADER_MAX_OUT = 4 << 20, 16 << 20
_METADATA_MAX_OUT = 256 << 20
_METADATA_SEARCH_MAX = 16 << 20
MAGICS = (XZ_MAGIC, ZSTD_MAGIC)
#: Vertex count -> bundled order that ``vertex_order: "auto"`` means (as bodycompress).
AUTO_ORDERS = {6890: "smpl", 10475: "smplx"}
#: Bytes reserved after the first header so that the final header fits (as bodycompress).
HEADER_PADDING = 128
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
def bundled_inverse(name):
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
        return value, bundled_inverse(value)
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


def pack_header(compression, length, metadata_start, data_start):
    """The uncompressed 0.3.0 header map of a file this package writes (no vertex order)."""
    return _msgpack.packb({
        "__bodycompress_version__": (0, 3, 0),
        "compression": compression,
        "length": length,
        "metadata_start": metadata_start,
        "data_start": data_start,
        "vertex_order": None,
    })  # fmt: skip


def read_start(f, size, allow_pickle):
    """Read and check the header and metadata of the open file ``f`` of ``size`` bytes.

    Returns
    -------
    header : PredictionHeader
    inverse_order : ndarray, "auto" or None
        Stored position of each original vertex (None: stored in original order).
    metadata : dict or None

    Raises
    ------
    FormatError
        Without the path (the caller adds it).
    """
    magic = f.read(len(XZ_MAGIC))
    if not magic:
        raise FormatError("empty file")
    if not magic.startswith(MAGICS):
        raise FormatError(f"not a bodycompress file (unknown magic {magic!r})")
    compression = "xz" if magic.startswith(XZ_MAGIC) else "zstd"
    stop = min(size, _HEADER_MAX_IN)
    raw, header_end = read_object(f, 0, stop, compression, "header", _HEADER_MAX_OUT, allow_pickle, True)
    header, inverse_order = _parse_header(raw, size, compression)
    metadata_start = header.metadata_start
    if metadata_start is None:
        metadata_start = _find_metadata(f, header_end, header.data_start)
    elif metadata_start < header_end:
        raise FormatError(f"metadata_start={metadata_start} lies inside the header stream")
    metadata, _ = read_object(f, metadata_start, header.data_start, compression, "metadata", _METADATA_MAX_OUT,
                              allow_pickle)  # fmt: skip
    if metadata is not None and not isinstance(metadata, dict):
        raise FormatError(f"metadata is a {type(metadata).__name__}, not a map")
    header = PredictionHeader(header.version, compression, header.length, metadata_start, header.data_start,
                              header.vertex_order)  # fmt: skip
    return header, inverse_order, metadata
