"""Safe msgpack with numpy arrays, compatible with ``msgpack_numpy``.

``msgpack_numpy`` stores an array as a map with the bytes keys ``b"nd"``, ``b"type"``,
``b"kind"``, ``b"shape"`` and ``b"data"``, and a numpy scalar as a map with
``b"nd": False``, ``b"type"`` and ``b"data"``. Its own decoder unpickles arrays of kind
``b"O"``, which runs arbitrary code from the file. This module decodes the same maps
(numeric, bool and fixed-width text dtypes; object and structured ones are refused)
without ever unpickling unless the caller opts in, with fixed limits on every length
so that a hostile length field cannot trigger an unbounded allocation.

Decoded arrays are **read-only views** (``np.frombuffer``) over the immutable ``bytes``
object msgpack creates for each binary field. That is safe: nothing can write to those
bytes, each array keeps its own buffer alive, and the buffer holds only that array's
data. Call ``.copy()`` to get a writable array.

:func:`packb` writes numeric and bool arrays (C-contiguous, little-endian dtype string
such as ``'<f4'``) and numpy scalars in the same layout, so ``msgpack_numpy`` and
``bodycompress`` read what it writes.
"""

import pickle

import msgpack
import numpy as np

from bodybatch.errors import FormatError

__all__ = [
    "MAX_BIN_LEN",
    "MAX_STR_LEN",
    "MAX_ARRAY_LEN",
    "MAX_MAP_LEN",
    "MAX_BUFFER_SIZE",
    "packb",
    "unpackb",
    "make_object_hook",
    "unpack_object_hook",
    "make_unpacker",
]

#: Largest binary field (bytes); one array's data must fit.
MAX_BIN_LEN = 512 << 20
#: Largest string field (bytes).
MAX_STR_LEN = 64 << 20
#: Most entries in one msgpack array.
MAX_ARRAY_LEN = 1 << 20
#: Most entries in one msgpack map.
MAX_MAP_LEN = 1 << 20
#: Largest extension field (bytes).
MAX_EXT_LEN = 1 << 20
#: Most undecoded bytes a streaming unpacker buffers (one binary field plus slack).
#: In streaming mode msgpack checks ``max_bin_len`` only once the whole field has
#: arrived, so this is the bound that holds while a field is still incomplete.
MAX_BUFFER_SIZE = MAX_BIN_LEN + (32 << 20)

_MAX_NDIM = 32
_MAX_DIM = 1 << 40
_MAX_DTYPE_STR = 64
# bool, integers, floats, complex, fixed-width bytes and unicode: no object pointers,
# no fields, fixed item size. Object ('O') and void/structured ('V') are refused.
_DECODABLE_KINDS = frozenset("biufcSU")
_ENCODABLE_KINDS = frozenset("biufc")
_MSGPACK_ERRORS = (ValueError, TypeError, msgpack.exceptions.UnpackException)


def _parse_dtype(descr):
    """Turn a ``b"type"`` field into a plain fixed-size numpy dtype or raise FormatError."""
    if isinstance(descr, bytes):
        descr = descr.decode("ascii", "replace")
    if not isinstance(descr, str):
        raise FormatError(
            f"refusing array with structured or non-string dtype description {descr!r:.80}"
        )
    if len(descr) > _MAX_DTYPE_STR:
        raise FormatError(f"dtype description of {len(descr)} characters is too long")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError) as exc:
        raise FormatError(f"invalid dtype {descr!r} ({exc})") from None
    if (
        dtype.kind not in _DECODABLE_KINDS
        or dtype.hasobject
        or dtype.fields is not None
        or dtype.subdtype is not None
        or dtype.itemsize == 0
    ):
        raise FormatError(f"refusing array of dtype {descr!r} (only plain numeric/bool/text)")
    return dtype


def _parse_shape(shape):
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_NDIM:
        raise FormatError(f"invalid array shape {shape!r:.80}")
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= _MAX_DIM:
            raise FormatError(f"invalid array shape {shape!r:.80}")
    return tuple(shape)


def _decode_array(obj, allow_pickle):
    kind = obj.get(b"kind", b"")
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise FormatError("array data is not a binary field")
    if kind == b"O":
        if not allow_pickle:
            raise FormatError("refusing pickled object array (allow_pickle=True to opt in)")
        try:
            return pickle.loads(data)
        except Exception as exc:  # unpickling can raise anything
            raise FormatError(f"cannot unpickle object array ({exc!r:.200})") from None
    if kind != b"":
        raise FormatError(f"refusing array of kind {kind!r:.20} (structured or unknown)")
    dtype = _parse_dtype(obj.get(b"type"))
    shape = _parse_shape(obj.get(b"shape"))
    n_items = 1
    for dim in shape:
        n_items *= dim
    if n_items * dtype.itemsize != len(data):
        raise FormatError(
            f"array of shape {shape} and dtype {dtype.str} needs "
            f"{n_items * dtype.itemsize} bytes but holds {len(data)}"
        )
    try:
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError as exc:
        raise FormatError(f"cannot build array of shape {shape} ({exc})") from None


def _decode_scalar(obj):
    data = obj.get(b"data")
    if not isinstance(data, bytes):
        raise FormatError("numpy scalar data is not a binary field")
    dtype = _parse_dtype(obj.get(b"type"))
    if len(data) != dtype.itemsize:
        raise FormatError(
            f"numpy scalar of dtype {dtype.str} needs {dtype.itemsize} bytes, holds {len(data)}"
        )
    return np.frombuffer(data, dtype=dtype)[0]


def unpack_object_hook(obj, allow_pickle=False):
    """Decode one msgpack map: numpy array/scalar/complex maps, others unchanged.

    Parameters
    ----------
    obj : dict
        A freshly unpacked msgpack map.
    allow_pickle : bool
        Unpickle object arrays (kind ``b"O"``). Only for trusted files.

    Returns
    -------
    numpy.ndarray or numpy.generic or complex or dict
        Arrays are read-only views over their ``bytes`` data (see module docstring).

    Raises
    ------
    FormatError
        For object arrays without ``allow_pickle``, structured/void/object dtypes,
        malformed shapes, or data whose length differs from ``prod(shape) * itemsize``.
    """
    if b"nd" in obj:
        nd = obj[b"nd"]
        if nd is True:
            return _decode_array(obj, allow_pickle)
        if nd is False:
            return _decode_scalar(obj)
        raise FormatError(f"invalid numpy map marker b'nd'={nd!r:.40}")
    if b"complex" in obj:
        text = obj.get(b"data")
        if not isinstance(text, str) or len(text) > 100:
            raise FormatError("invalid complex number map")
        try:
            return complex(text)
        except ValueError:
            raise FormatError(f"invalid complex number {text!r}") from None
    return obj


def make_object_hook(allow_pickle=False):
    """Return an ``object_hook`` for msgpack: :func:`unpack_object_hook` bound to the flag."""
    if allow_pickle:
        return lambda obj: unpack_object_hook(obj, True)
    return unpack_object_hook


def _limits():
    return dict(
        raw=False,
        strict_map_key=False,
        use_list=True,
        max_bin_len=MAX_BIN_LEN,
        max_str_len=MAX_STR_LEN,
        max_array_len=MAX_ARRAY_LEN,
        max_map_len=MAX_MAP_LEN,
        max_ext_len=MAX_EXT_LEN,
    )


def make_unpacker(*, allow_pickle=False, max_buffer_size=MAX_BUFFER_SIZE):
    """Create a streaming ``msgpack.Unpacker`` (``feed`` mode) with the safe hook and limits.

    Parameters
    ----------
    allow_pickle : bool
        Unpickle object arrays; only for trusted files.
    max_buffer_size : int
        Most undecoded bytes held (bytes); ``feed`` raises ``msgpack.BufferFull`` beyond.

    Returns
    -------
    msgpack.Unpacker
        Feed it bytes, iterate it for objects. Decoding errors raise
        :class:`~bodybatch.errors.FormatError` (from the hook) or msgpack's own
        ``ValueError``/``TypeError`` subclasses; callers add the file name.
    """
    return msgpack.Unpacker(
        None,
        object_hook=make_object_hook(allow_pickle),
        max_buffer_size=max_buffer_size,
        **_limits(),
    )


def unpackb(data, *, where=None, allow_pickle=False):
    """Decode exactly one msgpack object from ``data``.

    Parameters
    ----------
    data : bytes-like
        The packed object, nothing before or after it.
    where : str, optional
        Prefix for error messages, e.g. ``"track.xz: header"``.
    allow_pickle : bool
        Unpickle object arrays; only for trusted files.

    Raises
    ------
    FormatError
        If ``data`` is not exactly one valid object; the message starts with ``where``.
    """
    prefix = f"{where}: " if where else ""
    try:
        return msgpack.unpackb(data, object_hook=make_object_hook(allow_pickle), **_limits())
    except FormatError as exc:
        raise FormatError(f"{prefix}{exc}") from None
    except msgpack.exceptions.ExtraData:
        raise FormatError(f"{prefix}unexpected bytes after the msgpack object") from None
    except _MSGPACK_ERRORS as exc:
        raise FormatError(f"{prefix}invalid msgpack data ({exc})") from None
    except RecursionError:
        raise FormatError(f"{prefix}msgpack data nested too deeply") from None


def _encode_default(obj):
    """msgpack ``default``: numpy arrays/scalars and complex in msgpack_numpy layout."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ENCODABLE_KINDS or obj.dtype.fields is not None:
            raise TypeError(
                f"cannot pack array of dtype {obj.dtype} (numeric and bool arrays only)"
            )
        arr = np.asarray(obj, dtype=obj.dtype.newbyteorder("<"), order="C")
        return {
            b"nd": True,
            b"type": arr.dtype.str,
            b"kind": b"",
            b"shape": list(arr.shape),
            b"data": arr.tobytes() if arr.ndim == 0 else arr.data,
        }
    if isinstance(obj, (np.bool_, np.number)):
        arr = np.asarray(obj, dtype=obj.dtype.newbyteorder("<"))
        return {b"nd": False, b"type": arr.dtype.str, b"data": arr.tobytes()}
    if isinstance(obj, complex):
        return {b"complex": True, b"data": repr(obj)}
    raise TypeError(f"cannot pack object of type {type(obj).__name__}")


def packb(obj):
    """Pack ``obj`` to msgpack bytes that ``msgpack_numpy`` and ``bodycompress`` can read.

    Parameters
    ----------
    obj : object
        Nested dicts/lists/tuples of None, bool, int, float, str, bytes, complex,
        numpy scalars and numeric/bool numpy arrays (any layout or byte order; stored
        C-contiguous little-endian). Tuples come back as lists.

    Returns
    -------
    bytes

    Raises
    ------
    TypeError
        For object, structured, string or other unsupported values.
    """
    return msgpack.packb(obj, default=_encode_default, use_bin_type=True)
