"""Small file helpers shared by the planner, the jobs, the manifest, the audit and
the CLI."""

import hashlib
import os
from pathlib import Path

from bodybatch.errors import OutputError

__all__ = ["file_sha256", "human_bytes", "is_inside", "publish", "write_atomically"]


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


def write_atomically(path, write, what="", make_parents=False):
    """Write a whole file through ``write(f)`` (``f`` open in binary mode) to a
    temporary name beside ``path``, fsync it and rename it into place, so that
    ``path`` is complete or untouched. On any error the temporary is removed; an
    OSError becomes an OutputError naming ``path`` (and ``what`` it is)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "wb")
        with f:
            write(f)
            publish(f, tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write{' ' + what if what else ''} ({exc.strerror})") from exc
        raise


def publish(f, tmp_path, path):
    """Flush, fsync and close ``f`` (open on ``tmp_path``), then rename it to ``path``
    (same folder, so the rename is atomic): the file appears complete or not at all."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp_path, path)


def human_bytes(n):
    """``1536`` -> ``"1.5 KiB"``: binary units, labelled as such (B, KiB, MiB, GiB, TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
