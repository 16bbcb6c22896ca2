"""The bodycompress format: per-video prediction files (read) and per-track files in
its 0.3.0 layout (written and read).

- :mod:`._header`: magic bytes, the header map, vertex orders;
- :mod:`._streams`: bounded xz/zstd decompression into msgpack objects;
- :mod:`._frames`: the ``qd_`` frame layout, decoded and encoded;
- :mod:`.predictions`: :func:`read_predictions`, the streaming per-video reader;
- :mod:`.tracks`: track files of ``codec="bodycompress"``, writer and reader;
- :mod:`._contents`: prediction file or track file, and a prediction file's
  summary and arrays.

:func:`open_file` opens either kind of file with its reader.
"""

from bodybatch.formats.bodycompress._header import MAGICS, PredictionHeader, load_vertex_order
from bodybatch.formats.bodycompress.predictions import PredictionReader, read_predictions
from bodybatch.formats.bodycompress.tracks import CompatTrackReader, TrackFileWriter

__all__ = ["MAGICS", "PredictionHeader", "PredictionReader", "read_predictions", "load_vertex_order",
           "CompatTrackReader", "TrackFileWriter", "open_track", "open_file"]  # fmt: skip

open_track = CompatTrackReader


def open_file(path, *, decode_camera=False):
    """A :class:`PredictionReader` for a per-video prediction file, a
    :class:`CompatTrackReader` for a track file (see :attr:`PredictionReader.kind`).

    Raises
    ------
    FormatError
        Naming the path: unreadable, invalid or incomplete file.
    """
    reader = PredictionReader(path, decode_camera=decode_camera)
    if reader.kind == "predictions":
        return reader
    reader.close()
    return CompatTrackReader(path, decode_camera=decode_camera)
