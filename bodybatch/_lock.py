"""Locks on an output root that a killed run does not leave stuck.

``fcntl.flock`` locks belong to the open file: the kernel releases them when the
process dies, however it dies, so a stale lock file never blocks the next run.

A whole run holds ``<output_root>/.bodybatch.lock`` exclusively. A shard ``i`` of
``n`` holds it shared (so shards run together, and never beside a whole run) and
``.bodybatch.shard-IIII-of-NNNN.lock`` exclusively (so one process per shard).
"""

import json
import os
import socket
import time
from pathlib import Path

from bodybatch.errors import LockError, OutputError

__all__ = ["OutputLock", "LOCK_NAME", "shard_name"]

LOCK_NAME = ".bodybatch.lock"


def shard_name(shard):
    """``shard-0003-of-0016`` for shard (3, 16); ``run`` for a whole run."""
    return "run" if shard is None else f"shard-{shard[0]:04d}-of-{shard[1]:04d}"


class OutputLock:
    """Context manager holding the output root's lock(s) for a run or a shard.

    Parameters
    ----------
    output_root : path-like
    shard : (int, int), optional
    """

    def __init__(self, output_root, shard=None):
        self.root = Path(output_root)
        self.path = self.root / LOCK_NAME
        self.shard = shard
        self.name = shard_name(shard)
        self._files = []
        self.exclusive = shard is None

    def _open(self, path):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return open(path, "a+")
        except OSError as exc:
            raise OutputError(f"{path}: cannot create lock file ({exc.strerror})") from exc

    def _take(self, path, mode, what):
        import fcntl

        f = self._open(path)
        try:
            fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise LockError(f"{self.root}: {what} ({holder}); wait for it or stop it") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": self.name,
                            "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))  # fmt: skip
        f.flush()
        self._files.append(f)

    def __enter__(self):
        import fcntl

        if self.shard is None:
            self._take(self.path, fcntl.LOCK_EX, "another bodybatch run holds the output root (or a shard of one)")
        else:
            try:
                self._take(self.path, fcntl.LOCK_SH, "a whole bodybatch run holds the output root")
                self._take(self.root / f".bodybatch.{self.name}.lock", fcntl.LOCK_EX, f"{self.name} is already running")
            except BaseException:
                self.__exit__()
                raise
        return self

    def try_exclusive(self):
        """For a shard at its end: trade the shared lock for the exclusive one if no
        other shard or run holds the root. True when this process now holds it."""
        import fcntl

        if self.exclusive:
            return True
        main = self._files[0]
        fcntl.flock(main.fileno(), fcntl.LOCK_UN)
        try:
            fcntl.flock(main.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        self.exclusive = True
        return True

    def __exit__(self, *exc):
        for f in reversed(self._files):
            f.close()
        self._files = []
