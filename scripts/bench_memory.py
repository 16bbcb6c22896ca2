#!/usr/bin/env python3
"""Peak memory of converting one long video: bodybatch vs bodycompress decoding it.

Makes a 1-minute synthetic video (30 fps, 1 person; ../shared/bench/synth.py) and a
10-minute one (the same minute repeated ten times, written with bodycompress zstd),
then measures, each in a fresh process: the peak RSS of `bodybatch run` converting it
(one job, in-process) and of bodycompress merely decoding it. Memory must not grow
with the video's length.

    python scripts/bench_memory.py [--data DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchdata as bd  # noqa: E402

MEASURE = textwrap.dedent("""
    import resource, sys, time
    t0 = time.perf_counter()
    if sys.argv[1] == "bodycompress":
        import bodycompress
        n = sum(1 for _ in bodycompress.BodyDecompressor(sys.argv[2]))
    else:
        from bodybatch.cli import main
        n = main(["run", sys.argv[2], "--no-progress", "--jobs", "1"])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(peak_kb, time.perf_counter() - t0, n)
""")


def make_videos(data):
    import bodycompress
    import numpy as np

    one = data / "one_minute"
    files = bd.synth_dataset(one, 1, (1800, 1800), (1, 1), compression="zstd", parallel=1)
    src = Path(files[0])
    ten = data / "ten_minutes" / "ten_minutes.xz"
    if not ten.exists():
        ten.parent.mkdir(parents=True, exist_ok=True)
        reader = bodycompress.BodyDecompressor(str(src))
        meta = dict(reader.metadata, n_frames=len(reader) * 10)
        with bodycompress.BodyCompressor(str(ten), meta, compression="zstd") as writer:
            for _ in range(10):
                for frame in bodycompress.BodyDecompressor(str(src)):
                    writer.append(**{k: (np.array(v) if not isinstance(v, dict) else v) for k, v in frame.items()})
    return {"1 minute": src, "10 minutes": ten}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "bodybatch_bench_memory"))
    args = ap.parse_args()
    data = Path(args.data)
    videos = make_videos(data)
    print(f"# {bd.cpu_env_note()}; peak RSS of one process, MB")
    print(f"{'video':12} {'frames':>7} | {'bodycompress decode':>20} | {'bodybatch run':>14} {'seconds':>8}")
    for name, path in videos.items():
        import bodycompress

        frames = len(bodycompress.BodyDecompressor(str(path)))
        out = Path(tempfile.mkdtemp(prefix="bodybatch_mem_"))
        config = out / "config.yaml"
        config.write_text(json.dumps({
            "input": {"root": str(path.parent), "pattern": path.name},
            "output": {"root": str(out / "tracks")},
            "pool": {"n_jobs": 1, "progress": False},
        }))
        res = {}
        for tool, arg in (("bodycompress", str(path)), ("bodybatch", str(config))):
            proc = subprocess.run([sys.executable, "-c", MEASURE, tool, arg], capture_output=True, text=True)
            if proc.returncode not in (0,):
                raise SystemExit(proc.stderr)
            peak_kb, seconds, _ = proc.stdout.split()[-3:]
            res[tool] = (int(peak_kb) / 1024, float(seconds))
        print(f"{name:12} {frames:7d} | {res['bodycompress'][0]:20.0f} | {res['bodybatch'][0]:14.0f} {res['bodybatch'][1]:8.1f}")


if __name__ == "__main__":
    main()
