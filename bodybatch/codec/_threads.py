"""Threads inside one chunk's decode (``decode_chunk(..., threads=n)``).

A read that touches one chunk (a row, a window, a short track) cannot spread over
chunks (:mod:`bodybatch.formats._parallel`), but two parts of its decode split
without changing a value:

- the residual streams: independent pcodec streams (pcodec releases the GIL),
  shared out in bins of about equal size (:func:`balanced_bins`);
- the compiled predictor: the points of one level depend only on coarser levels, so a
  large level splits into ranges of points, one per thread, with a barrier between
  levels (:func:`split_steps`).

:class:`Workers` runs a list of parts with the calling thread doing the first.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["Workers", "balanced_bins", "split_steps"]

#: Levels with fewer points run whole, in one call (a barrier costs more than they do).
SPLIT_MIN_POINTS = 1024
#: Predictions of fewer rows run in one thread (a few barriers cost ~0.5 ms).
SPLIT_MIN_ROWS = 4


#: The process's pool of decode threads, grown on demand (``[pool, size]``); dropped in
#: a forked child, whose copy has no threads.
_POOL = [None, 0]
_POOL_LOCK = threading.Lock()
_AT_FORK = []  # non-empty once the fork hook is registered


def _shared_pool(size):
    """A pool of at least ``size`` threads, shared by every decode of the process
    (starting threads for each read would cost more than a short read). A smaller
    pool is replaced, not shut down: a decode still holding it finishes on it, and its
    idle threads exit once nothing refers to it."""
    with _POOL_LOCK:
        if _POOL[1] < size:
            if not _AT_FORK and hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_forget_pool)  # (a child inherits it)
                _AT_FORK.append(True)
            _POOL[:] = [ThreadPoolExecutor(size, thread_name_prefix="bodybatch-decode"), size]
        return _POOL[0]


def _forget_pool():
    _POOL[:] = [None, 0]


class Workers:
    """``n`` threads for one decode: the caller's and ``n - 1`` threads of the shared
    pool (none when ``n == 1``). :meth:`run` returns the parts' results."""

    def __init__(self, n):
        self.n = max(1, int(n))
        self._pool = _shared_pool(self.n - 1) if self.n > 1 else None

    def run(self, parts):
        """Call every function of ``parts``: the first in this thread, the others in
        the pool; wait for all (also when one raises) and return their results."""
        futures = [self._pool.submit(part) for part in parts[1:]] if len(parts) > 1 else []
        try:
            results = [parts[0]()] if parts else []
        finally:
            for future in futures:
                future.exception()  # wait: the parts write into arrays the caller owns
        return results + [future.result() for future in futures]

    def run_bins(self, items, sizes, work):
        """``work(list of items)`` on each thread, the items shared out in bins of about
        equal total ``sizes`` (one call with all of them on one thread)."""
        if self.n == 1:
            work(list(items))
            return
        self.run([lambda b=b: work([items[i] for i in b]) for b in balanced_bins(sizes, self.n)])

    def ranges(self, n):
        """``[(a, b)]``: ``0..n`` in at most one non-empty range per thread."""
        cuts = np.linspace(0, n, min(self.n, max(n, 1)) + 1).astype(np.int64)
        return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]

    def for_rows(self, n_rows):
        """These workers for a prediction of ``n_rows`` rows, or one thread when the
        barriers would cost more than they save (``SPLIT_MIN_ROWS``)."""
        return self if n_rows >= SPLIT_MIN_ROWS else Workers(1)


def balanced_bins(sizes, n):
    """Indices of ``sizes`` in ``n`` bins of about equal total (largest first, each
    into the lightest bin)."""
    bins, totals = [[] for _ in range(n)], [0] * n
    for i in np.argsort(np.asarray(sizes), kind="stable")[::-1]:
        b = totals.index(min(totals))
        bins[b].append(int(i))
        totals[b] += int(sizes[i])
    return bins


def split_steps(rows, levels, n, tile):
    """Steps of a level-by-level decode on ``n`` threads, in order (a barrier after
    each): ``[[rows of each thread's part], ...]``.

    ``rows``: (R, C) int64, columns 0 and 1 a range of point positions ``[lo, hi)``
    (the other columns go with it when a range is cut); ``levels``: (R,) the level of
    each row, non-decreasing. Consecutive levels of fewer than ``SPLIT_MIN_POINTS``
    points form one step for one thread; each larger level a step of ``n`` parts of
    about equal points, cut at multiples of ``tile`` points (``n == 1``: one step,
    all rows)."""
    if n == 1:
        return [[rows]]
    steps, small = [], []
    bounds = np.flatnonzero(np.diff(levels)) + 1
    for part in np.split(rows, bounds) if len(rows) else []:
        if int((part[:, 1] - part[:, 0]).sum()) < SPLIT_MIN_POINTS:
            small.append(part)
            continue
        if small:
            steps.append([np.concatenate(small)])
            small = []
        steps.append(_cut(part, n, tile))
    if small:
        steps.append([np.concatenate(small)])
    return steps


def _cut(part, n, tile):
    """The rows of one level in ``n`` parts of about equal points (see :func:`split_steps`)."""
    total = int((part[:, 1] - part[:, 0]).sum())
    per = -(-total // (n * tile)) * tile
    out, current, filled = [], [], 0
    for row in part:
        lo, hi = int(row[0]), int(row[1])
        while lo < hi:
            take = min(hi - lo, per - filled)
            piece = row.copy()
            piece[0], piece[1] = lo, lo + take
            current.append(piece)
            lo, filled = lo + take, filled + take
            if filled == per:
                out.append(np.array(current, np.int64))
                current, filled = [], 0
    if current:
        out.append(np.array(current, np.int64))
    return out
