"""The bodycompress format: per-video prediction files (read) and per-track files in
its 0.3.0 layout (written and read).

- :mod:`._header`: magic bytes, the header map, vertex orders;
- :mod:`._streams`: bounded xz/zstd decompression into msgpack objects;
- :mod:`._frames`: the ``qd_`` frame layout, decoded and encoded;
- :mod:`.predictions`: :func:`read_predictions`, the streaming per-video reader;
- :mod:`.tracks`: track files of ``codec="bodycompress"``, writer and reader.
"""

from bodybatch.formats.bodycompress._header import MAGICS, PredictionHeader, load_vertex_order
from bodybatch.formats.bodycompress.predictions import PredictionReader, read_predictions
from bodybatch.formats.bodycompress.tracks import CompatTrackReader, TrackFileWriter

__all__ = ["MAGICS", "PredictionHeader", "PredictionReader", "read_predictions", "load_vertex_order",
           "CompatTrackReader", "TrackFileWriter", "open_track"]  # fmt: skip

open_track = CompatTrackReader
