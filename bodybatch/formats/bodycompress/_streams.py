"""Bounded streaming decompression of bodycompress streams (xz or zstd) into
msgpack objects. Every read and every decompressed piece has a fixed size limit, so a
hostile stream cannot make the reader allocate without bound."""

from bodybatch import _msgpack

__all__ = ["StreamError", "iter_raw_frames", "read_object"]
from bodybatch.errors import FormatError

_READ_SIZE = 1 << 20  # compressed bytes read at a time
_XZ_OUT_SIZE = 1 << 20  # most decompressed bytes per xz call
_ZSTD_IN_SIZE = 4 << 10  # compressed bytes per zstd call; zstd expands <= 32768x: 128 MiB
_XZ_MEMLIMIT = 512 << 20  # xz -9 needs 65 MiB; refuses hostile dictionary sizes
_END = b"\xc0"  # msgpack nil fed after the last byte: a dangling partial object absorbs it


def _xz_decompressor():
    """An xz decompressor with a memory limit: ``lzma_mt`` (a newer liblzma, ~15%
    faster; the stdlib API) when installed, else the standard library's ``lzma``."""
    import lzma

    try:
        import lzma_mt
    except ImportError:
        return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT), lzma.LZMAError
    obj = lzma_mt.LZMADecompressor(lzma.FORMAT_XZ, memlimit=_XZ_MEMLIMIT, threads=1)
    return obj, (lzma.LZMAError, lzma_mt.LZMAError)


def _is_header(obj):
    return isinstance(obj, dict) and "__bodycompress_version__" in obj


class _Decoder:
    """One xz stream or zstd frame; ``feed`` yields decompressed pieces of bounded size."""

    def __init__(self, compression):
        self.compression, self.unused_data = compression, b""
        if compression == "xz":
            self._obj, self._errors = _xz_decompressor()
        else:
            import zstandard

            self._obj = zstandard.ZstdDecompressor().decompressobj()
            self._errors = zstandard.ZstdError

    @property
    def eof(self):
        return self._obj.eof

    def feed(self, data):
        obj = self._obj
        try:
            if self.compression == "xz":
                out = obj.decompress(data, _XZ_OUT_SIZE)
                while True:
                    if out:
                        yield out
                    if obj.eof or obj.needs_input:
                        break
                    out = obj.decompress(b"", _XZ_OUT_SIZE)
                self.unused_data = obj.unused_data
                return
            view = memoryview(data)
            for start in range(0, len(view), _ZSTD_IN_SIZE):
                out = obj.decompress(view[start : start + _ZSTD_IN_SIZE])
                if out:
                    yield out
                if obj.eof:
                    self.unused_data = bytes(obj.unused_data) + view[start + _ZSTD_IN_SIZE :]
                    return
        except self._errors as exc:
            raise FormatError(f"corrupt {self.compression} data ({exc})") from None


class StreamError(Exception):
    """The data stream as a whole is broken (the reader adds path and frame count)."""


def _iter_decompressed(f, compression):
    """Yield the decompressed bytes of the streams from ``f``'s position to end of file.

    More streams may follow the first, after zero padding (as the xz tool writes);
    anything else after a stream is corrupt. Raises StreamError.
    """
    decoder = _Decoder(compression)
    try:
        while chunk := f.read(_READ_SIZE):
            while chunk:
                if decoder is None:
                    chunk = chunk.lstrip(b"\0")
                    if not chunk:
                        break
                    decoder = _Decoder(compression)
                yield from decoder.feed(chunk)
                chunk, decoder = (decoder.unused_data, None) if decoder.eof else (b"", decoder)
    except FormatError as exc:
        raise StreamError(str(exc)) from None
    if decoder is not None:
        raise StreamError(f"truncated {compression} stream")


def iter_raw_frames(f, compression, allow_pickle):
    """Yield the msgpack objects of the data stream (undecodable: ValueError/TypeError).

    At most ``MAX_BUFFER_SIZE`` decompressed bytes are accepted for one frame, which
    bounds the memory a hostile frame can claim.
    """
    unpacker = _msgpack.make_unpacker(allow_pickle=allow_pickle)
    fed = frame_start = 0
    for piece in _iter_decompressed(f, compression):
        fed += len(piece)
        if fed - frame_start > _msgpack.MAX_BUFFER_SIZE:
            raise StreamError(f"a frame exceeds {_msgpack.MAX_BUFFER_SIZE} bytes")
        unpacker.feed(piece)
        for obj in unpacker:
            frame_start = unpacker.tell()
            yield obj
    unpacker.feed(_END)
    tail = list(unpacker)
    if len(tail) != 1 or tail[0] is not None:
        raise StreamError("data stream ends inside a frame")


def read_object(f, start, stop, compression, what, max_out, allow_pickle, is_header=False):
    """Decode the one msgpack object of the stream at ``[start, stop)``.

    Returns ``(object, end offset of the stream)``. The stream must end before ``stop``,
    decompress to at most ``max_out`` bytes and hold exactly one object.
    """
    f.seek(start)
    decoder = _Decoder(compression)
    unpacker = _msgpack.make_unpacker(allow_pickle=allow_pickle)
    objects, pos, out_total = [], start, 0
    try:
        while not decoder.eof:
            chunk = f.read(min(_READ_SIZE, stop - pos)) if stop > pos else b""
            if not chunk:
                raise FormatError("stream is truncated or too long")
            pos += len(chunk)
            for piece in decoder.feed(chunk):
                out_total += len(piece)
                if out_total > max_out:
                    raise FormatError(f"decompresses to more than {max_out} bytes")
                unpacker.feed(piece)
                objects.extend(unpacker)
                if is_header and objects and not _is_header(objects[0]):
                    raise FormatError("not a bodycompress prediction file (0.1 files: unsupported)")
        unpacker.feed(_END)
        tail = list(unpacker)
        if len(objects) != 1 or len(tail) != 1 or tail[0] is not None:
            raise FormatError("stream does not hold exactly one msgpack object")
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    except (ValueError, TypeError) as exc:  # msgpack's errors
        raise FormatError(f"{what}: invalid msgpack data ({exc})") from None
    return objects[0], pos - len(decoder.unused_data)
