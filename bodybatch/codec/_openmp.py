"""One OpenMP thread for a block of code (the structure's kNN queries).

pykdtree runs its queries on OpenMP threads. The queries of :func:`build_structure`
are small (one per level, a few ms), and on a 2-core machine shared with other work
the threads cost more than they save: measured 2-5x slower builds (125 ms -> 25 ms for
13,718 points, m = 4, with ``OMP_NUM_THREADS=1``), the runtime's threads spinning
after each query on the core the caller needs next. Queries run one per point and
independently, so the thread count changes no result.

:func:`one_thread` sets the calling thread's thread count of every OpenMP runtime
loaded in the process (``omp_set_num_threads``: a per-thread setting) to 1 and
restores the previous value on exit: other threads, and code run after, see no
change. The runtimes are found on first use, from the process's loaded libraries
(Linux ``/proc/self/maps``, macOS dyld); elsewhere, or when none is found, the block
runs unchanged.
"""

import contextlib
import ctypes
import os
import re
import sys

__all__ = ["one_thread"]

#: Library file names of OpenMP runtimes: GNU (also wheels' vendored libgomp-<hash>),
#: LLVM, Intel.
_RUNTIME = re.compile(r"^lib(gomp|omp|iomp5)([-.]|$)")
_STATE = {}


def _loaded_libraries():
    """Paths of the shared libraries loaded in this process (empty when unknown)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps") as f:
                rows = [line.split(None, 5) for line in f]
        except OSError:
            return set()
        return {row[5].strip() for row in rows if len(row) == 6 and row[5].startswith("/")}
    if sys.platform == "darwin":
        try:
            dyld = ctypes.CDLL(None)
            dyld._dyld_get_image_name.restype = ctypes.c_char_p
            return {os.fsdecode(dyld._dyld_get_image_name(i)) for i in range(dyld._dyld_image_count())}
        except (OSError, AttributeError):
            return set()
    return set()


def _runtimes():
    """[(omp_get_max_threads, omp_set_num_threads)] of the loaded OpenMP runtimes."""
    found = []
    for path in sorted(_loaded_libraries()):
        if not _RUNTIME.match(os.path.basename(path)):
            continue
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, no new copy
            get, set_ = lib.omp_get_max_threads, lib.omp_set_num_threads
        except (OSError, AttributeError):
            continue
        get.restype, get.argtypes = ctypes.c_int, []
        set_.restype, set_.argtypes = None, [ctypes.c_int]
        found.append((get, set_))
    return found


@contextlib.contextmanager
def one_thread():
    """Run the block with one OpenMP thread in the calling thread (see the module).

    Call it after importing the library whose runtime it should limit: the runtimes
    are looked up once, on the first call.
    """
    if "runtimes" not in _STATE:
        _STATE["runtimes"] = _runtimes()
    runtimes = _STATE["runtimes"]
    before = [get() for get, _ in runtimes]
    for _, set_ in runtimes:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(runtimes, before):
            set_(n)
