#!/usr/bin/env python3
"""Replay synthetic frames at a fixed frame rate through live writers and measure
what the capture loop sees.

    python scripts/bench_live.py [--seconds 60] [--fps 30] [--people 4] [--writers bodybatch xz zstd]

Frames come from /work/shared/bench/synth.py (13,718-vertex people; the middle
third of a generated video, where every person is present, replayed forwards and
backwards). For each writer: ``append`` latency p50/p99/max (ms), frames behind real
time when the last frame was appended, the time ``close`` took, CPU seconds of the
process (all threads), output bytes. With ``bodybatch`` in the list and ``xz`` too,
the xz file is also converted by the batch job's path (read predictions -> a
synchronous VideoWriter) to compare output bytes.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYNTH = os.environ.get("BODYBATCH_SYNTH", "/work/shared/bench")


def clip_frames(people, n_clip, seed):
    """``n_clip`` frames of ``people`` people (dicts as BodyCompressor.append takes)."""
    sys.path.insert(0, SYNTH)
    import synth

    rng = np.random.default_rng([seed, people])
    frames, _ = synth.make_video(synth.Body(), rng, 3 * n_clip, people)
    return frames[n_clip : 2 * n_clip]


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def open_writer(kind, out, args):
    if kind == "bodybatch":
        import bodybatch

        return bodybatch.VideoWriter(out, {"bench": True}, tracks={"mode": "associate", "min_length": 8},
                                     max_queue=args.queue)  # fmt: skip
    from bodycompress import BodyCompressor

    os.makedirs(out, exist_ok=True)
    return BodyCompressor(os.path.join(out, "video.xz"), {"bench": True}, compression=kind)


def replay(kind, frames, args, out):
    n = int(args.seconds * args.fps)
    order = [i for i in range(len(frames))] + [i for i in range(len(frames) - 2, 0, -1)]
    lat = np.zeros(n)
    cpu0 = cpu_seconds()
    writer = open_writer(kind, out, args)
    start = time.perf_counter()
    for i in range(n):
        due = start + i / args.fps
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        frame = frames[order[i % len(order)]]
        t0 = time.perf_counter()
        writer.append(**frame)
        lat[i] = time.perf_counter() - t0
    end = time.perf_counter()
    behind = max(0, int((end - start) * args.fps) - n)
    writer.close()
    close_s = time.perf_counter() - end
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    ms = lat * 1000
    return {"writer": kind, "frames": n, "append_ms_p50": round(float(np.percentile(ms, 50)), 3),
            "append_ms_p99": round(float(np.percentile(ms, 99)), 3), "append_ms_max": round(float(ms.max()), 3),
            "frames_behind": behind, "close_s": round(close_s, 3), "cpu_s": round(cpu_seconds() - cpu0, 2),
            "bytes": size}  # fmt: skip


def batch_bytes(xz_file, out):
    """Bytes the batch job's path writes for the frames of the prediction file."""
    import bodybatch
    from bodybatch.codec import get_codec

    codec = get_codec("bodybatch")
    reader = bodybatch.read_predictions(xz_file, keep_grid=codec.grid_fields)
    with bodybatch.VideoWriter(out, reader.metadata, tracks={"mode": "associate", "min_length": 8},
                               codec=codec, recoverable=False, background=False) as w:  # fmt: skip
        for frame in reader:
            w.append(**frame)
    return sum(info.bytes for info in w.tracks.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--people", type=int, nargs="+", default=[4])
    ap.add_argument("--clip", type=int, default=100, help="distinct frames replayed (memory: ~0.9 MB each at 4 people)")
    ap.add_argument("--writers", nargs="+", default=["bodybatch", "xz", "zstd"])
    ap.add_argument("--queue", type=int, default=32, help="VideoWriter max_queue (frames)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_live_"))
    results = []
    try:
        for people in args.people:
            frames = clip_frames(people, args.clip, args.seed)
            for kind in args.writers:
                out = tmp / f"{kind}-{people}"
                r = replay(kind, frames, args, out)
                r["people"] = people
                r["load_avg_1m"] = round(os.getloadavg()[0], 2)
                if kind == "xz" and "bodybatch" in args.writers:
                    r["batch_job_bytes"] = batch_bytes(out / "video.xz", tmp / f"batch-{people}")
                results.append(r)
                print(json.dumps(r) if args.json else "  ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    live = {r["people"]: r["bytes"] for r in results if r["writer"] == "bodybatch"}
    for r in results:
        if "batch_job_bytes" in r and r["people"] in live:
            diff = 100 * (live[r["people"]] / r["batch_job_bytes"] - 1)
            print(f"people={r['people']}: live {live[r['people']]} bytes vs batch job {r['batch_job_bytes']} ({diff:+.2f}%)")


if __name__ == "__main__":
    main()
