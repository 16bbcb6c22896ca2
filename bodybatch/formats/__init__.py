"""On-disk formats, one module (or package) per format, each owning its magic bytes,
header, reader and writer:

- :mod:`bodybatch.formats.bodybatch`: the bodybatch track file (chunked container);
- :mod:`bodybatch.formats.bodycompress`: per-video prediction files and track files in
  the bodycompress 0.3.0 layout.

This module holds the one table that maps magic bytes to formats
(:func:`sniff`), :func:`open_track`, :func:`open_file` (any file bodybatch reads:
prediction or track file) and :func:`track_file_writer`, which picks the format a
codec's output is framed in (:attr:`bodybatch.codec.Codec.file_format`).
"""

import importlib
import os

from bodybatch.errors import FormatError, TrackError

__all__ = ["FORMATS", "TRACK_FORMAT_VERSION", "sniff", "open_track", "open_file", "track_file_writer", "format_module"]

#: Format name -> module; :func:`sniff` tries them in this order.
FORMATS = {
    "bodybatch": "bodybatch.formats.bodybatch",
    "bodycompress": "bodybatch.formats.bodycompress",
}
#: Version of the bodybatch track format this release writes (part of the config hash:
#: a new version redoes every video).
TRACK_FORMAT_VERSION = (1, 0)


def format_module(name):
    """The module of format ``name``; FormatError listing the known formats."""
    if name not in FORMATS:
        raise FormatError(f"unknown file format {name!r}; known: {', '.join(FORMATS)}")
    return importlib.import_module(FORMATS[name])


def sniff(path):
    """Name of the format of the file at ``path``, from its first bytes.

    Raises
    ------
    FormatError
        Empty file or unknown magic bytes (naming the path).
    OSError
        The file cannot be opened.
    """
    with open(path, "rb") as f:
        start = f.read(16)
    if not start:
        raise FormatError(f"{path}: empty file")
    for name in FORMATS:
        if start.startswith(format_module(name).MAGICS):
            return name
    raise FormatError(f"{path}: not a bodybatch or bodycompress file (unknown magic {start[:8]!r})")


def open_track(path, *, decode_camera=False, fields=None, recover=False, threads=1):
    """Open a track file of any format (see :class:`bodybatch.TrackReader`).

    Parameters
    ----------
    path : path-like
    decode_camera : bool
        Return camera objects (``deltacamera``) instead of camera dicts.
    fields : str or collection of str, optional
        Default field selection of indexing and iteration (see
        :class:`~bodybatch.TrackReader`); None: all fields.
    recover : bool
        When ``path`` is a partial file of a live writer (``*.partial``), or names a
        file that only exists as one, first publish its complete chunks
        (:func:`bodybatch.formats._journal.recover_track`) and open the result.
    threads : int
        Threads decoding the chunks of a multi-chunk read in parallel (see
        :attr:`~bodybatch.TrackReader.threads`); 1: none.
    """
    if recover:
        from bodybatch.formats._journal import PARTIAL_SUFFIX, recover_track

        name = str(path)
        if name.endswith(PARTIAL_SUFFIX) or (not os.path.exists(name) and os.path.exists(name + PARTIAL_SUFFIX)):
            path = recover_track(path)["path"]
    reader = format_module(sniff(path)).open_track(path, decode_camera=decode_camera, fields=fields)
    try:
        reader.threads = threads
    except BaseException:
        reader.close()
        raise
    return reader


def open_file(path, *, decode_camera=False):
    """Open any file bodybatch reads with its reader: a track file (bodybatch or
    bodycompress layout) as a :class:`~bodybatch.TrackReader`, a per-video prediction
    file as a :class:`~bodybatch.formats.bodycompress.PredictionReader`.

    Both readers have ``metadata``, ``summary()`` (JSON-ready, with ``kind``
    ``"track"`` or ``"predictions"``), ``to_arrays()``, ``export_arrays()`` (flat
    arrays for ``numpy.savez``) and ``close()``, and are context managers.

    Raises
    ------
    FormatError
        Naming the path: empty, unknown, invalid or incomplete file.
    """
    module = format_module(sniff(path))
    opener = getattr(module, "open_file", module.open_track)
    return opener(path, decode_camera=decode_camera)


def track_file_writer(path, codec, metadata, structures=None, recoverable=False):
    """The writer of one track file in the format of ``codec``'s output
    (``recoverable``: a live file, see :mod:`bodybatch.formats._journal`; bodybatch
    format only)."""
    cls = format_module(codec.file_format).TrackFileWriter
    if recoverable:
        if codec.file_format != "bodybatch":
            raise TrackError(f"{path}: recoverable live files need the bodybatch codec, not {codec.file_format}")
        return cls(path, codec, metadata, structures, recoverable=True)
    return cls(path, codec, metadata, structures)
