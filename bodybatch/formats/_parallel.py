"""Decoding the chunks of one multi-chunk read in threads (:attr:`TrackReader.threads`).

The format reads each chunk in the calling thread (:meth:`TrackReader._chunk_job`:
file access is not shared between threads) and the pool decodes it: the compiled
bodybatch decoder and pcodec release the GIL.
"""

import collections
from concurrent.futures import ThreadPoolExecutor

__all__ = ["parallel_blocks"]


def parallel_blocks(reader, first_chunk, last_chunk, start, stop, fields):
    """The blocks of rows ``start:stop`` (chunks ``first_chunk..last_chunk``), in order,
    decoded by ``reader.threads`` threads at most ``threads + 1`` chunks ahead of the
    consumer (memory stays ~ the result). A generator."""
    threads = reader.threads
    pending = collections.deque()
    with ThreadPoolExecutor(threads) as pool:
        try:
            for i in range(first_chunk, last_chunk + 1):
                lo, hi = int(reader._starts[i]), int(reader._starts[i + 1])
                a, b = max(start, lo) - lo, min(stop, hi) - lo
                job = reader._chunk_job(i, fields, None if a == 0 and b == hi - lo else slice(a, b))
                pending.append((pool.submit(job), lo + a, lo + b))
                while len(pending) > threads:
                    yield _finish(reader.frame_index, *pending.popleft())
            while pending:
                yield _finish(reader.frame_index, *pending.popleft())
        finally:
            for future, _, _ in pending:
                future.cancel()


def _finish(frame_index, future, first_row, stop_row):
    """A decoded block with its rows' ``frame_index``."""
    arrays = future.result()
    arrays["frame_index"] = frame_index[first_row:stop_row]
    return arrays
