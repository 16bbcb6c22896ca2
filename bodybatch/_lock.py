"""An exclusive lock on an output root that a killed run does not leave stuck.

``fcntl.flock`` locks belong to the open file: the kernel releases them when the
process dies, however it dies, so a stale lock file never blocks the next run.
"""

import json
import os
import socket
import time
from pathlib import Path

from bodybatch.errors import LockError, OutputError

__all__ = ["OutputLock", "LOCK_NAME"]

LOCK_NAME = ".bodybatch.lock"


class OutputLock:
    """Context manager holding ``<output_root>/.bodybatch.lock``."""

    def __init__(self, output_root):
        self.path = Path(output_root) / LOCK_NAME
        self._f = None

    def __enter__(self):
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(self.path, "a+")
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create lock file ({exc.strerror})") from exc
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise LockError(
                f"{self.path.parent}: another bodybatch run holds the output root ({holder}); "
                f"wait for it or stop it"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}))
        f.flush()
        self._f = f
        return self

    def __exit__(self, *exc):
        if self._f is not None:
            self._f.close()
            self._f = None
