"""The first touch of a whole read's output pages, measured on format 3.x's
dequantizing kernel (``values_v3``).

    python scripts/research/read/first_touch.py TRACK_V3.xz [--rows 1456]

Captures the kernel's arguments while reading the track's first chunk, then writes
that chunk's values into consecutive row ranges of a fresh ``(rows, N, 3)`` output, as
a whole-track read does: with numpy's default (``madvise`` huge pages for large
arrays) and with 4 KiB pages, twice each, then again into pages already touched.
Prints the total per case (ms). Needs numba (the compiled decoder).
"""

import argparse
import time

import numpy as np

import bodybatch
from bodybatch.codec import _kernels

try:
    from numpy._core.multiarray import _set_madvise_hugepage
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _set_madvise_hugepage


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("track", help="a format 3.x track (written with V2_OPTIONS)")
    ap.add_argument("--rows", type=int, default=1456, help="rows of the fresh output")
    args = ap.parse_args()
    kernels = _kernels.kernels()
    if kernels is None:
        raise SystemExit("first_touch.py: needs numba (the compiled decoder)")
    captured = []
    real = kernels.values_v3
    kernels.values_v3 = lambda *a: captured.append(a) or real(*a)
    with bodybatch.open_track(args.track) as reader:
        reader.read(slice(0, reader._starts[1]))
    kernels.values_v3 = real
    if not captured:
        raise SystemExit(f"first_touch.py: {args.track} did not take the format 3.x compiled path")
    d, *kargs = captured[0]
    kernel = kernels.values_v3._compiled[(d,)]
    xyz, unc = kargs[-2], kargs[-1]
    n = len(xyz)
    previous = _set_madvise_hugepage(True)

    def fill(out, out_unc):
        t = time.perf_counter()
        for k in range(args.rows // n):
            kernel(*kargs[:-2], out[k * n : (k + 1) * n], out_unc[k * n : (k + 1) * n])
        return (time.perf_counter() - t) * 1e3

    try:
        for huge in (True, False, True, False):
            _set_madvise_hugepage(huge)
            out = np.empty((args.rows,) + xyz.shape[1:], np.float32)
            out_unc = np.empty((args.rows,) + unc.shape[1:], np.float32)
            first = fill(out, out_unc)
            print(f"{'huge pages (numpy default)' if huge else '4 KiB pages':27s} fresh output {first:7.0f} ms, "
                  f"pages already touched {fill(out, out_unc):7.0f} ms")  # fmt: skip
            del out, out_unc
    finally:
        _set_madvise_hugepage(previous)


if __name__ == "__main__":
    main()
