"""Decoding the chunks of one multi-chunk read in threads (:attr:`TrackReader.threads`).

The format reads each chunk in the calling thread (:meth:`TrackReader._chunk_job`:
file access is not shared between threads) and the pool decodes it: the compiled
bodybatch decoder and pcodec release the GIL.
"""

import collections
from concurrent.futures import ThreadPoolExecutor

from bodybatch._rows import slice_block

__all__ = ["parallel_blocks"]


def parallel_blocks(reader, first_chunk, last_chunk, start, stop, fields, target=None):
    """The blocks of rows ``start:stop`` (chunks ``first_chunk..last_chunk``), in order,
    decoded by ``reader.threads`` threads at most ``threads + 1`` chunks ahead of the
    consumer (memory stays ~ the result). A generator. Once ``target["out"]`` holds
    the read's output (:func:`bodybatch._rows.stack_blocks`), the whole chunks after
    decode straight into their rows of it."""
    threads = reader.threads
    pending = collections.deque()
    with ThreadPoolExecutor(threads) as pool:
        try:
            for i in range(first_chunk, last_chunk + 1):
                lo, hi = int(reader._starts[i]), int(reader._starts[i + 1])
                a, b = max(start, lo) - lo, min(stop, hi) - lo
                whole = a == 0 and b == hi - lo
                out = (target or {}).get("out") if whole else None
                into = None if out is None else slice_block(out, lo - start, hi - start)
                job = reader._chunk_job(i, fields, None if whole else slice(a, b), into)
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
