#!/usr/bin/env python3
"""Codec benchmark: bodybatch vs bodycompress 0.3.0 (xz level 5, its defaults), side by
side in one process on one core, on person tracks cut from ../shared/corpus and from
synthetic videos (../shared/bench/synth.py).

    python scripts/bench_codec.py [--synth-dir DIR] [--synth-videos 8] [--min-frames 3000]

Prints bytes, ratio against float32 raw, encode and decode person-frames/s and the max
abs error of both codecs, per data source and in total.
"""

import argparse
import glob
import os
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

import _benchdata as bd


def off_grid(track, step, name):
    """Move every value by up to 0.45 grid steps (deterministically): the files hold
    values already on the 0.5 mm grid, real estimator output does not. Both codecs
    round them back to the same grid points, so sizes are unchanged and the reported
    max error is a real one."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = dict(track)
    for key, unit in (("vertices", 1.0), ("joints", 1.0), ("vertex_uncertainties", 1e-3), ("joint_uncertainties", 1e-3)):
        a = np.asarray(track[key], np.float64)
        out[key] = (a + rng.uniform(-0.45, 0.45, a.shape) * step * unit).astype(np.float32)
    return out


def bench_bodycompress(track, path):
    import bodycompress

    rows = len(track["vertices"])
    t0 = time.perf_counter()
    with bodycompress.BodyCompressor(str(path), {"bench": True}, n_threads=1) as bc:
        for i in range(rows):
            frame = {k: track[k][i] for k in bd.FIELDS if k in track}
            if "camera" in track:
                frame["camera"] = track["camera"][i]
            bc.append(**frame)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = list(bodycompress.BodyDecompressor(str(path)))
    t_dec = time.perf_counter() - t0
    decoded = {k: np.stack([f[k] for f in frames]) for k in bd.FIELDS if k in frames[0]}
    return os.path.getsize(path), t_enc, t_dec, bd.max_abs_error(decoded, track)


def bench_bodybatch(track, path, options):
    import bodybatch

    t0 = time.perf_counter()
    bodybatch.write_track(path, track, {"bench": True}, **options)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    with bodybatch.open_track(path) as reader:
        decoded = reader.to_arrays()
    t_dec = time.perf_counter() - t0
    return os.path.getsize(path), t_enc, t_dec, bd.max_abs_error(decoded, track)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(bd.SHARED / "corpus"))
    ap.add_argument("--synth-dir", default=os.path.join(tempfile.gettempdir(), "bodybatch_bench_synth"))
    ap.add_argument("--synth-videos", type=int, default=4)
    ap.add_argument("--min-frames", type=int, default=3000, help="person-frames at least")
    ap.add_argument("--quantization-mm", type=float, default=0.5)
    args = ap.parse_args()

    import bodybatch

    # Warm up imports so that neither side pays them inside the timings.
    import bodycompress  # noqa: F401
    import pykdtree.kdtree  # noqa: F401  (warm imports)

    sources = {"corpus": sorted(glob.glob(os.path.join(args.corpus, "*.xz")))}
    sources["synth"] = bd.synth_dataset(args.synth_dir, args.synth_videos, (150, 600), (1, 3))
    options = {"quantization_mm": args.quantization_mm}
    totals = {}
    print(f"# {bd.cpu_env_note()}, bodybatch {bodybatch.__version__}, step {args.quantization_mm} mm")
    head = f"{'source':8} {'tracks':>6} {'frames':>7} | {'codec':12} {'bytes':>11} {'ratio':>6} {'enc pf/s':>9} {'dec pf/s':>9} {'max err mm':>10}"
    print(head)
    with tempfile.TemporaryDirectory() as tmp:
        for source, files in sources.items():
            acc = {"bodycompress": np.zeros(4), "bodybatch": np.zeros(4)}
            n_tracks = frames = raw = 0
            errs = {"bodycompress": 0.0, "bodybatch": 0.0}
            for f in files:
                for name, track in bd.gt_tracks(f):
                    track = off_grid(track, args.quantization_mm, name)
                    n_tracks += 1
                    frames += len(track["vertices"])
                    raw += bd.raw_float32_bytes(track)
                    size, te, td, err = bench_bodycompress(track, Path(tmp) / "bc.xz")
                    acc["bodycompress"] += [size, te, td, 0]
                    errs["bodycompress"] = max(errs["bodycompress"], err)
                    size, te, td, err = bench_bodybatch(track, Path(tmp) / "bb.xz", options)
                    acc["bodybatch"] += [size, te, td, 0]
                    errs["bodybatch"] = max(errs["bodybatch"], err)
            for codec in ("bodycompress", "bodybatch"):
                size, te, td, _ = acc[codec]
                print(
                    f"{source:8} {n_tracks:6d} {frames:7d} | {codec:12} {int(size):11d} {raw / size:6.2f} "
                    f"{frames / te:9.1f} {frames / td:9.1f} {errs[codec]:10.4f}"
                )
                t = totals.setdefault(codec, np.zeros(6))
                t += [size, te, td, frames, raw, 0]
                t[5] = max(t[5], errs[codec])
    bc, bb = totals["bodycompress"], totals["bodybatch"]
    frames, raw = bc[3], bc[4]
    print(f"{'total':8} {'':6} {int(frames):7d} | {'bodycompress':12} {int(bc[0]):11d} {raw / bc[0]:6.2f} {frames / bc[1]:9.1f} {frames / bc[2]:9.1f} {bc[5]:10.4f}")
    print(f"{'total':8} {'':6} {int(frames):7d} | {'bodybatch':12} {int(bb[0]):11d} {raw / bb[0]:6.2f} {frames / bb[1]:9.1f} {frames / bb[2]:9.1f} {bb[5]:10.4f}")
    print(
        f"bodybatch vs bodycompress: files {bc[0] / bb[0]:.2f}x smaller, encode {bc[1] / bb[1]:.1f}x faster, "
        f"decode {bc[2] / bb[2]:.2f}x faster, max error {bb[5]:.4f} mm (step/2 = {args.quantization_mm / 2} mm)"
    )
    if frames < args.min_frames:
        print(f"WARNING: only {int(frames)} person-frames (< {args.min_frames}); add --synth-videos")


if __name__ == "__main__":
    main()
