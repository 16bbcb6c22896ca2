"""bodybatch: per-person track files from per-video 3D human predictions.

The public API is small and lazily imported, so ``import bodybatch`` is fast and has
no side effects:

- :func:`read_predictions` iterates the frame dicts of a per-video prediction file
  written by ``bodycompress`` (0.2.1 and 0.3.x, xz or zstd).
- :func:`write_track` encodes one person track into one file; :class:`TrackWriter`
  does the same frame by frame.
- :class:`VideoWriter` splits a whole video's detections into person tracks while
  they are captured (a drop-in for ``bodycompress.BodyCompressor``).
- :func:`open_track` reads a track file back (random access by row).
- :class:`Dataset` reads a converted dataset back from its manifest (whole tracks or
  windows; picklable, for DataLoader workers and process pools).
"""

from bodybatch import errors as _errors
from bodybatch._version import __version__
from bodybatch.errors import (  # noqa: F401
    BodybatchError, ConfigError, DatasetError, DependencyError, FormatError, LockError, OutputError, PlanError,
    TrackError, WriterError,
)  # fmt: skip

__all__ = ["__version__", "read_predictions", "write_track", "open_track", "TrackWriter", "TrackReader", "VideoWriter",
           "Dataset",
           *_errors.__all__]  # fmt: skip

_LAZY = {
    "read_predictions": "bodybatch.formats.bodycompress",
    "write_track": "bodybatch.track_writer",
    "TrackWriter": "bodybatch.track_writer",
    "open_track": "bodybatch.formats",
    "TrackReader": "bodybatch.formats._reader",
    "Dataset": "bodybatch.dataset",
    "VideoWriter": "bodybatch.live",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bodybatch' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
