"""Where a full decode's time goes, per person-frame, beside bodycompress's zstd files
(the peer of the dataset-reading issue's "full decode >= 2x bodycompress zstd"), in one
process, CPU time, best of ``--repeats``.

    python scripts/research/codec_v2/decode_floor.py [--repeats 5] [--variants v1,v3]

Per variant: the whole ``to_arrays`` (file opened each time), then its stages, timed by
wrapping the functions that run them: the entropy decoder (pcodec, every number
stream), the prediction kernel, the gather/dequantize kernel and the rest (file,
msgpack, structure, boxes, camera, Python). Stage columns are ms per person-frame; the
last column is the share of bodycompress zstd's whole decode time that the stage
alone takes. pcodec alone taking a quarter of bodycompress zstd's time means a decoder
with any prediction at all has half of bodycompress zstd's time left for the rest.
"""

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np

import _benchdata as bd


class Stage:
    """Accumulates the CPU time of calls to a wrapped function."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args, **kwargs):
        t0 = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.process_time() - t0


def decode_bodycompress(path):
    import bodycompress

    return list(bodycompress.BodyDecompressor(str(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(bd.SHARED / "corpus"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--variants", default="v1,v3", help="comma-separated: v1 (default codec), v3 (V2_OPTIONS, format 3.0)")
    args = ap.parse_args()

    import bodycompress

    import bodybatch
    from bodybatch.codec import _kernels
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS

    compiled = _kernels.kernels()
    if compiled is None:
        raise SystemExit("numba is needed (pip install 'bodybatch[fast]')")
    options = {"v1": {}, "v3": dict(V2_OPTIONS)}
    variants = [v for v in args.variants.split(",") if v]
    tracks = [t for f in sorted(glob.glob(os.path.join(args.corpus, "nlf_*.xz"))) for _, t in bd.gt_tracks(f)]
    frames = sum(len(t["vertices"]) for t in tracks)
    tmp = Path(tempfile.mkdtemp())
    files = {"bc-zstd": [], **{v: [] for v in variants}}
    for i, track in enumerate(tracks):
        path = tmp / f"bc{i}.xz"
        with bodycompress.BodyCompressor(str(path), {}, n_threads=1, compression="zstd") as bc:
            for k in range(len(track["vertices"])):
                bc.append(**{key: track[key][k] for key in bd.FIELDS if key in track})
        files["bc-zstd"].append(path)
        for v in variants:
            path = tmp / f"{v}_{i}.xz"
            bodybatch.write_track(path, track, {}, **options[v])
            files[v].append(path)

    def read_all(v):
        for path in files[v]:
            if v == "bc-zstd":
                decode_bodycompress(path)
            else:
                with bodybatch.open_track(path) as reader:
                    reader.to_arrays()

    # wrapped: pcodec's decoder (entropy.decode_numbers looks it up per call) and the
    # compiled kernels (looked up on the namespace per call)
    from pcodec import standalone

    pcodec_stage = Stage(standalone.simple_decompress_into)
    kernel_names = [n for n in vars(compiled) if not n.startswith("_") and callable(getattr(compiled, n))]
    kernel_stages = {n: Stage(getattr(compiled, n)) for n in kernel_names}
    best = {}
    for v in ["bc-zstd"] + variants:
        read_all(v)  # warm (compiled kernels, caches)
        rows = []
        for _ in range(args.repeats):
            pcodec_stage.seconds = 0.0
            for s in kernel_stages.values():
                s.seconds = 0.0
            standalone.simple_decompress_into = pcodec_stage
            for n, s in kernel_stages.items():
                setattr(compiled, n, s)
            t0 = time.process_time()
            read_all(v)
            total = time.process_time() - t0
            standalone.simple_decompress_into = pcodec_stage.fn
            for n, s in kernel_stages.items():
                setattr(compiled, n, s.fn)
            rows.append((total, pcodec_stage.seconds, {n: s.seconds for n, s in kernel_stages.items() if s.seconds}))
        best[v] = min(rows, key=lambda r: r[0])
    ref = best["bc-zstd"][0]
    print(f"# {bd.cpu_env_note()}, corpus: {len(tracks)} tracks, {frames} person-frames; CPU time, best of {args.repeats}")
    print(f"{'variant':8} {'stage':22} {'ms/pf':>7} {'of bc-zstd':>10}")
    for v in ["bc-zstd"] + variants:
        total, pco, kern = best[v]
        print(f"{v:8} {'whole decode':22} {1e3 * total / frames:7.3f} {total / ref:9.2f}x")
        if v == "bc-zstd":
            continue
        rest = total - pco - sum(kern.values())
        for name, sec in [("pcodec", pco)] + sorted(kern.items()) + [("rest", rest)]:
            print(f"{'':8} {name:22} {1e3 * sec / frames:7.3f} {sec / ref:9.2f}x")
    for v in variants:
        print(f"{v}: decode {ref / best[v][0]:.2f}x bodycompress zstd's speed")


if __name__ == "__main__":
    main()
