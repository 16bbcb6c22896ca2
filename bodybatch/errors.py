"""Typed errors of bodybatch.

Every error bodybatch raises on purpose derives from :class:`BodybatchError`, so
callers (and the CLI) can tell user mistakes and bad data apart from bugs.
"""

__all__ = [
    "BodybatchError",
    "ConfigError",
    "FormatError",
    "DatasetError",
    "TrackError",
    "PlanError",
    "OutputError",
    "LockError",
    "DependencyError",
    "WriterError",
]


class BodybatchError(Exception):
    """Root of all errors raised by bodybatch on purpose."""

    exit_code = 1


class ConfigError(BodybatchError, ValueError):
    """A configuration file or option is invalid (names the key path and allowed values)."""

    exit_code = 2


class FormatError(BodybatchError, ValueError):
    """A file is not in the expected format: truncated, corrupt, hostile or unsupported.

    The message starts with the file's path when it is known.
    """

    exit_code = 3


class DatasetError(FormatError):
    """A track file a dataset's manifest lists is missing, unreadable, or of another
    size or checksum than its manifest row (the message names the file)."""


class TrackError(BodybatchError, ValueError):
    """Track data given to an encoder is invalid (wrong shape, dtype, NaN, overflow...)."""

    exit_code = 3


class WriterError(TrackError):
    """A live :class:`bodybatch.VideoWriter` could not write a frame or a track.

    Attributes
    ----------
    track : int or None
        Key of the failed track (None: the whole frame, e.g. a shape change).
    frame : int or None
        Video frame index where it happened.
    """

    def __init__(self, message, track=None, frame=None):
        super().__init__(message)
        self.track, self.frame = track, frame


class PlanError(BodybatchError):
    """The job planner cannot plan the run (e.g. unreadable input root)."""

    exit_code = 2


class OutputError(BodybatchError, OSError):
    """Writing an output failed (disk full, permission denied, path outside the root)."""

    exit_code = 4


class LockError(BodybatchError):
    """Another run holds the lock on the output root."""

    exit_code = 5


class DependencyError(BodybatchError):
    """An optional package a command needs is not installed (the message says how
    to install it)."""

    exit_code = 2
