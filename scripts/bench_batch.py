#!/usr/bin/env python3
"""Batch benchmark: a whole `bodybatch run` against its peers, in one run.

On a synthetic dataset (../shared/bench/synth.py, bodycompress xz files as NLF writes
them; >= 20 videos with 1-4 people), all with the same number of worker processes:

- floor:      bodycompress alone decoding every input file (nothing else);
- loop:       a plain loop re-encoding each person track with bodycompress
              (decode, split by ground-truth ids, BodyCompressor per track);
- bodybatch:  `bodybatch run` (decode, associate tracks, encode, manifest);
- rerun:      `bodybatch run` again on the unchanged config (must encode nothing);
- dask:       `bodybatch run --backend dask` (LocalCluster), outputs compared
              byte for byte with the loky run.

    python scripts/bench_batch.py [--data DIR] [--videos 20] [--frames 60 150] [--jobs 2]
                                  [--repeat 3] [--skip-loop]

The machine may be noisy: the floor and the bodybatch run are repeated, interleaved,
and the fastest of each is compared. Both are fresh commands whose workers start
cold; the start-up (import) time of each side's workers is printed too, with the
ratio against the floor minus bodycompress's start-up (the stricter reading).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchdata as bd  # noqa: E402


def decode_only(path):
    import bodycompress

    n = 0
    for frame in bodycompress.BodyDecompressor(path):
        n += len(frame["vertices"])
    return n


def reencode_loop(path, out_dir):
    """Decode a video, split it by ground truth, re-encode each track with bodycompress."""
    import bodycompress

    from _groundtruth import gt_path

    gt = np.load(gt_path(path))
    offsets = np.concatenate([[0], np.cumsum(gt["counts"])])
    writers = {}
    stem = Path(path).stem
    try:
        for t, frame in enumerate(bodycompress.BodyDecompressor(path)):
            for j, pid in enumerate(gt["ids"][offsets[t] : offsets[t + 1]]):
                if pid < 0:
                    continue
                if pid not in writers:
                    writers[pid] = bodycompress.BodyCompressor(os.path.join(out_dir, f"{stem}_{pid}.xz"), {}, n_threads=1)
                writers[pid].append(
                    vertices=frame["vertices"][j], joints=frame["joints"][j],
                    vertex_uncertainties=frame["vertex_uncertainties"][j],
                    joint_uncertainties=frame["joint_uncertainties"][j],
                    boxes=frame["boxes"][j], camera=frame["camera"], frame_index=t,
                )
    finally:
        for w in writers.values():
            w.close()
    return 0


def timed(label, func):
    t0 = time.perf_counter()
    value = func()
    dt = time.perf_counter() - t0
    print(f"  {label}: {dt:.1f} s", flush=True)
    return dt, value


def startup_seconds(modules, repeat=3):
    """Import time of ``modules`` in a fresh process (numpy and joblib, which every
    worker imports on both sides, excluded): the cold start each worker pays."""
    code = (f"import numpy, joblib, time; t = time.perf_counter(); import {modules}; "
            "print(time.perf_counter() - t)")  # fmt: skip
    return min(float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout) for _ in range(repeat))  # fmt: skip


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "bodybatch.cli", *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bodybatch {' '.join(args)} failed: {proc.stderr}")
    return proc


def floor_only(n_jobs, files):
    """The floor as its own command: decode every file with bodycompress, print counts."""
    from joblib import Parallel, delayed

    print(json.dumps(Parallel(n_jobs=n_jobs)(delayed(decode_only)(f) for f in files)))


def main():
    if sys.argv[1:2] == ["--floor-only"]:
        return floor_only(int(sys.argv[2]), sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "bodybatch_bench_batch"))
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--frames", type=int, nargs=2, default=(60, 150))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-loop", action="store_true", help="skip the slow bodycompress re-encode loop")
    ap.add_argument("--repeat", type=int, default=5,
                    help="runs of the floor and of bodybatch, interleaved; the fastest of each counts")
    args = ap.parse_args()

    from joblib import Parallel, delayed

    data = Path(args.data)
    files = bd.synth_dataset(data / "preds", args.videos, args.frames, (1, 4), compression="xz")
    in_bytes = sum(os.path.getsize(f) for f in files)
    print(f"# {bd.cpu_env_note()}; {len(files)} videos, {in_bytes / 1e6:.1f} MB of bodycompress xz input, {args.jobs} jobs")
    work = Path(tempfile.mkdtemp(prefix="bodybatch_bench_"))
    try:
        def floor():
            # A fresh process each time, like `bodybatch run`: cold workers on both sides.
            proc = subprocess.run([sys.executable, __file__, "--floor-only", str(args.jobs), *files],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            return json.loads(proc.stdout)

        t_floor, counts = timed("floor (bodycompress decode only)", floor)
        person_frames = sum(counts)
        t_loop = None
        if not args.skip_loop:
            (work / "loop").mkdir()
            t_loop, _ = timed("loop (bodycompress re-encode per track)", lambda: Parallel(n_jobs=args.jobs)(
                delayed(reencode_loop)(f, str(work / "loop")) for f in files))
        config = work / "config.yaml"
        config.write_text(json.dumps({
            "input": {"root": str(data / "preds")}, "output": {"root": str(work / "out")},
            "tracks": {"mode": "associate", "min_length": 10},
            "pool": {"n_jobs": args.jobs, "progress": False},
        }))
        t_run, _ = timed("bodybatch run (loky)", lambda: run_cli("run", str(config)))
        for _ in range(args.repeat - 1):  # interleaved repeats; the minimum of each counts
            t_floor = min(t_floor, timed("floor again", floor)[0])
            t_run = min(t_run, timed("bodybatch run --force again", lambda: run_cli("run", str(config), "--force"))[0])
        rows = [json.loads(line) for line in (work / "out" / "manifest.jsonl").read_text().splitlines()]
        ok = [r for r in rows if r["status"] == "ok"]
        out_bytes = sum(r["bytes"] for r in ok)
        t_rerun, proc = timed("bodybatch run again (unchanged config)", lambda: run_cli("run", str(config)))
        rows2 = [json.loads(line) for line in (work / "out" / "manifest.jsonl").read_text().splitlines()]
        loky = {r["path"]: r["sha256"] for r in ok}
        shutil.rmtree(work / "out")
        t_dask, _ = timed("bodybatch run (dask LocalCluster)", lambda: run_cli("run", str(config), "--backend", "dask"))
        dask_rows = [json.loads(line) for line in (work / "out" / "manifest.jsonl").read_text().splitlines()]
        dask = {r["path"]: r["sha256"] for r in dask_rows if r["status"] == "ok"}
        identical = dask == loky and all(
            (work / "out" / p).exists() for p in dask
        )
        loop_bytes = sum(f.stat().st_size for f in (work / "loop").glob("*.xz")) if t_loop else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)

    start_bc = startup_seconds("bodycompress")
    start_bb = startup_seconds("bodybatch.job, bodybatch.formats.bodycompress, bodybatch.splitting, bodybatch.track_writer, "
                               "bodybatch.codec.bodybatch_codec, pcodec, lzma_mt, pykdtree.kdtree")  # fmt: skip
    print()
    print(f"{'':34} {'seconds':>8} {'vs floor':>9} {'person-frames/s':>16} {'output MB':>10}")
    print(f"{'floor: bodycompress decode':34} {t_floor:8.1f} {1.0:9.2f} {person_frames / t_floor:16.0f} {'-':>10}")
    if t_loop:
        print(f"{'loop: bodycompress re-encode':34} {t_loop:8.1f} {t_loop / t_floor:9.2f} {person_frames / t_loop:16.0f} {loop_bytes / 1e6:10.1f}")
    print(f"{'bodybatch run (loky)':34} {t_run:8.1f} {t_run / t_floor:9.2f} {person_frames / t_run:16.0f} {out_bytes / 1e6:10.1f}")
    print(f"{'bodybatch run (dask)':34} {t_dask:8.1f} {t_dask / t_floor:9.2f} {person_frames / t_dask:16.0f} {'':>10}")
    print(f"{'bodybatch rerun, unchanged':34} {t_rerun:8.1f} {t_rerun / t_floor:9.2f} {'':>16} {'':>10}")
    # Every worker starts cold on both sides; bodycompress's import alone (it pulls in
    # deltacamera, numba and scipy) is a large part of the floor. Stricter reading:
    # the floor without that start-up (its workers import in parallel: once per run),
    # against the whole bodybatch run, start-up included.
    strict = t_floor - start_bc
    print(f"worker start-up (imports): bodycompress {start_bc:.2f} s, bodybatch {start_bb:.2f} s; "
          f"floor without bodycompress's start-up {strict:.1f} s: bodybatch run {t_run / strict:.2f}x that")  # fmt: skip
    print(f"tracks: {len(ok)}, person-frames in tracks: {sum(r['n_frames'] for r in ok)} of {person_frames} detections")
    print(f"rerun re-encoded nothing: {rows2 == rows}; dask outputs byte-identical to loky: {identical}")


if __name__ == "__main__":
    main()
