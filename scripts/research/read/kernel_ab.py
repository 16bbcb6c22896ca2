"""A/B of the compiled decode kernels of two bodybatch checkouts on one real chunk.

    python scripts/research/read/kernel_ab.py OLD_CHECKOUT NEW_CHECKOUT TRACK.xz [--chunk 1]

Reads chunk ``--chunk`` of ``TRACK.xz`` with this checkout's bodybatch and records the
arguments of every kernel call (format 1.0: ``decode_v1``, ``gather_dequantize``;
format 3.x: ``predict_v3``, ``values_v3``). Then, for the largest point group, builds
each kernel from the OLD and the NEW checkout's kernel module (``_kernels1.py``,
``_kernels3.py``, loaded from their files), checks that both write the same arrays,
and times them alternately in this process (best and median of 9; outputs written
into arrays already touched). Compare the ratios of one run: the VM is noisy. E.g.
``git worktree add /tmp/old <commit>``.
"""

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

#: kernel name -> (module file, factory, number of leading constant arguments)
KERNELS = {
    "decode_v1": ("_kernels1.py", "make_decode_v1", 2),
    "gather_dequantize": ("_kernels1.py", "make_gather_dequantize", 1),
    "predict_v3": ("_kernels3.py", "make_predict_v3", 4),
    "values_v3": ("_kernels3.py", "make_values_v3", 1),
}


def capture(track, chunk):
    """``{kernel: (args, outputs after the call)}`` of the largest call of each kernel."""
    import bodybatch
    from bodybatch.codec import _kernels

    compiled = _kernels.kernels()
    if compiled is None:
        raise SystemExit("needs numba (the fast extra)")
    calls = {}

    def recorder(name, kernel):
        def call(*args):
            before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            result = kernel(*args)
            size = sum(a.size for a in args if isinstance(a, np.ndarray))
            if name not in calls or size > calls[name][2]:
                calls[name] = (before, [a.copy() if isinstance(a, np.ndarray) else a for a in args], size)
            return result

        return call

    for name in KERNELS:
        setattr(compiled, name, recorder(name, getattr(compiled, name)))
    try:
        with bodybatch.open_track(track) as reader:
            lo, hi = int(reader._starts[chunk]), int(reader._starts[chunk + 1])
            reader.read(slice(lo, hi))
    finally:
        _kernels._STATE.pop("kernels", None)
    return {name: (before, after) for name, (before, after, _) in calls.items()}


def load(checkout, filename, tag):
    spec = importlib.util.spec_from_file_location(f"kernels_{tag}_{filename[:-3]}",
                                                  Path(checkout) / "bodybatch" / "codec" / filename)  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("track")
    ap.add_argument("--chunk", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    import numba

    calls = capture(args.track, args.chunk)
    if not calls:
        raise SystemExit(f"{args.track}: no compiled kernel ran for chunk {args.chunk}")
    for name, (before, after) in calls.items():
        filename, factory, n_keys = KERNELS[name]
        key, arrays = before[:n_keys], before[n_keys:]
        kernels = {tag: getattr(load(path, filename, tag), factory)(numba, *key)
                   for tag, path in (("old", args.old), ("new", args.new))}  # fmt: skip
        outputs = [i for i, a in enumerate(arrays) if isinstance(a, np.ndarray) and a.flags.writeable
                   and not np.array_equal(a, after[n_keys + i])]  # fmt: skip
        times = {tag: [] for tag in kernels}
        for r in range(args.repeats + 1):
            for tag, kernel in kernels.items():
                call = [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]
                t0 = time.perf_counter()
                kernel(*call)
                if r:  # the first call compiles
                    times[tag].append(time.perf_counter() - t0)
                for i in outputs:
                    if not np.array_equal(call[i], after[n_keys + i]):
                        raise SystemExit(f"{name}: the {tag} kernel wrote other values into argument {n_keys + i}")
        best = {tag: min(t) for tag, t in times.items()}
        median = {tag: sorted(t)[len(t) // 2] for tag, t in times.items()}
        shape = next(a.shape for a in arrays if isinstance(a, np.ndarray) and a.ndim == 3)
        print(f"{name:18s} {str(shape):18s} old {best['old'] * 1e3:7.2f} ms (median {median['old'] * 1e3:7.2f})   "
              f"new {best['new'] * 1e3:7.2f} ms (median {median['new'] * 1e3:7.2f})   "
              f"old/new {best['old'] / best['new']:.2f}x (medians {median['old'] / median['new']:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
