"""Small file helpers shared by the planner, the jobs and the audit."""

import hashlib
from pathlib import Path

__all__ = ["file_sha256", "is_inside"]


def file_sha256(path, block=1 << 20):
    """Hex sha256 of a file, read in ``block``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for data in iter(lambda: f.read(block), b""):
            h.update(data)
    return h.hexdigest()


def is_inside(path, root):
    """True when ``path`` is ``root`` or lies below it (lexically)."""
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False
