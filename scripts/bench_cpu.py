#!/usr/bin/env python3
"""Warm CPU per stage, one process, no start-up costs: bodycompress decoding the inputs
(the floor), bodybatch's reader alone, and the whole bodybatch job (read, track,
encode, write), on the same synthetic videos as bench_batch.py.

    python scripts/bench_cpu.py [--data DIR] [--videos 20] [--repeat 2]

CPU seconds (time.process_time), the mean over the repeats; compare the ratios.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchdata as bd  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "bodybatch_bench_batch"))
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--frames", type=int, nargs=2, default=(60, 150))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as in the pool's workers

    import bodycompress

    from bodybatch.config import config_from_dict
    from bodybatch.job import run_job
    from bodybatch.plan import plan_jobs
    from bodybatch import read_predictions

    files = bd.synth_dataset(Path(args.data) / "preds", args.videos, args.frames, (1, 4), compression="xz")
    with tempfile.TemporaryDirectory() as out:
        config = config_from_dict({"input": {"root": str(Path(args.data) / "preds")}, "output": {"root": out},
                                   "tracks": {"mode": "associate", "min_length": 10}})  # fmt: skip
        jobs, _ = plan_jobs(config, [], force=True)
        person_frames = 0

        def floor():
            nonlocal person_frames
            person_frames = sum(len(f["vertices"]) for path in files for f in bodycompress.BodyDecompressor(path))

        def reader():
            for path in files:
                for _ in read_predictions(path, keep_grid=("vertices", "vertex_uncertainties")):
                    pass

        def job():
            for j in jobs:
                run_job(j)

        stages = {"floor: bodycompress decode": floor, "bodybatch reader alone": reader,
                  "bodybatch job (read+track+encode+write)": job}  # fmt: skip
        seconds = dict.fromkeys(stages, 0.0)
        for _ in range(args.repeat):  # interleaved
            for name, func in stages.items():
                t0 = time.process_time()
                func()
                seconds[name] += (time.process_time() - t0) / args.repeat
    print(f"# {bd.cpu_env_note()}; {len(files)} videos, {person_frames} person-frames, warm, one process")
    floor_s = seconds["floor: bodycompress decode"]
    print(f"{'':42} {'CPU s':>7} {'vs floor':>9} {'ms/person-frame':>16}")
    for name, s in seconds.items():
        print(f"{name:42} {s:7.2f} {s / floor_s:9.2f} {1e3 * s / person_frames:16.2f}")


if __name__ == "__main__":
    main()
