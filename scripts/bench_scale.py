#!/usr/bin/env python3
"""Dataset-scale benchmark: the manifest, planning, auditing and sharded runs at
10^5-10^6 rows, side by side with the whole-file manifest writer bodybatch used
before the journal (rewrite every row every 10 s).

    python scripts/bench_scale.py [--work DIR] [--plan-videos 100000] [--audit-rows 1000000]
                                  [--shard-videos 200] [--skip manifest plan audit shards]

Datasets are built cheaply: inputs and outputs are hard links of one small real
prediction file and one real track file, and manifest rows are copies of one real
row with their video, path and sizes changed. Each measured command runs as its own
process; peak RSS is that process's (ru_maxrss of the child).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = REPO / "sample" / "preds_np"
sys.path.insert(0, str(HERE))

from compare_outputs import manifest_rows, track_files  # noqa: E402


#: Runs the CLI in this child and reports the child's own peak RSS (KiB) last on stderr:
#: VmHWM of /proc/self/status (ru_maxrss would carry the parent's peak across fork+exec).
_MEASURED = ("import re, sys; from bodybatch.cli import main; code = main(sys.argv[1:]); "
             "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
             "print('maxrss', hwm, file=sys.stderr); sys.exit(code)")


def cli(*args, env=None):
    """Run ``bodybatch ARGS`` as a child; returns (seconds, peak RSS MiB of that
    process, exit code, stdout)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED, *map(str, args)], capture_output=True, text=True,
                          env=env)  # fmt: skip
    seconds = time.perf_counter() - start
    if "Traceback" in proc.stderr:
        sys.exit(proc.stderr)
    peak = int(proc.stderr.strip().splitlines()[-1].split()[1])
    return seconds, peak / 1024, proc.returncode, proc.stdout


def write_config(path, data, out):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"input": {"root": str(data)}, "output": {"root": str(out)},
                                    "tracks": {"min_length": 8}, "pool": {"n_jobs": 2, "progress": False}}))
    return path


def template(work):
    """One real conversion: (prediction file, its first ok row, its track file)."""
    data, out = work / "template" / "data", work / "template" / "out"
    if not (out / "manifest.jsonl").exists():
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / "clip_a.xz", data / "clip_a.xz")
        cli("run", write_config(work / "template" / "config.yaml", data, out))
    row = next(json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()
               if json.loads(line)["status"] == "ok")  # fmt: skip
    return data / "clip_a.xz", row, out / row["path"]


def fake_dataset(work, name, n, with_inputs=True, slim=False):
    """n videos v/NNN/NNNNNN.xz: inputs (hard links), one track each (hard link), and
    the manifest of a finished run over them (sorted, as a clean run writes it)."""
    from bodybatch.config import load_config

    root = work / name
    data, out = root / "data", root / "out"
    source, row, track = template(work)
    cfg = write_config(root / "config.yaml", data, out)
    if (out / "manifest.jsonl").exists():
        return cfg, out
    config = load_config(cfg)
    row = dict(row, config_hash=config.config_hash(), settings=config.decisive())
    if slim:
        row["metadata"] = {}
    stat = source.stat()
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    out.mkdir(parents=True)
    with open(out / ".manifest.tmp", "w") as manifest:  # written as generated: the bench's own memory stays small
        _write_rows(manifest, n, data, out, root, source, track, row, stat, with_inputs)
    os.replace(out / ".manifest.tmp", out / "manifest.jsonl")
    return cfg, out


def _write_rows(manifest, n, data, out, root, source, track, row, stat, with_inputs):
    from bodybatch.plan import output_dir_for

    for i in range(n):
        video = f"v{i // 1000:03d}/{i:07d}.xz"
        rel = f"{output_dir_for(video)}/track_0000.xz"
        if i % 50_000 == 0:  # a file system allows ~65,000 links per inode: fresh copies, same size and mtime
            source, track = _copy_same(source, root / f"src{i}.xz"), _copy_same(track, root / f"trk{i}.xz")
        if with_inputs:
            (data / video).parent.mkdir(parents=True, exist_ok=True)
            os.link(source, data / video)
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(track, out / rel)
        r = dict(row, video=video, path=rel)
        r["input"] = dict(row["input"], path=video, bytes=stat.st_size, mtime_ns=stat.st_mtime_ns)
        manifest.write(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n")


def _copy_same(source, target):
    shutil.copyfile(source, target)
    st = os.stat(source)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    return target


def bench_manifest(work):
    """Cost of recording results as the manifest grows: the journal's append vs the
    whole-file rewrite (which happened every 10 s of a run)."""
    from bodybatch.manifest import Journal, ManifestRow, compact_manifest

    _, row, _ = template(work)
    print("\n## manifest: cost of recording one video's rows")
    print(f"{'rows in manifest':>17} {'whole-file rewrite s':>21} {'journal append us':>18} {'compaction s':>13}")
    for size in (1_000, 10_000, 100_000):
        folder = work / f"manifest_{size}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rows = [ManifestRow(dict(row, video=f"v/{i:07d}.xz", path=f"v/{i:07d}/track_0000.xz")) for i in range(size)]
        manifest = folder / "manifest.jsonl"
        start = time.perf_counter()  # the old writer: every row serialized and rewritten per flush
        data = "".join(r.to_json() + "\n" for r in sorted(rows, key=ManifestRow.sort_key)).encode()
        tmp = folder / ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, manifest)
        rewrite = time.perf_counter() - start
        with Journal(manifest) as journal:
            start = time.perf_counter()
            for r in rows:
                journal.append(r.video, [r])
            append = (time.perf_counter() - start) / size * 1e6
        start = time.perf_counter()
        compact_manifest(manifest)
        compaction = time.perf_counter() - start
        print(f"{size:17,} {rewrite:21.2f} {append:18.1f} {compaction:13.2f}")


def bench_plan(work, n):
    cfg, out = fake_dataset(work, f"plan_{n}", n)
    seconds, rss, code, stdout = cli("plan", cfg, "--summary")
    print(f"\n## plan --summary over {n:,} up-to-date videos (one stat per input and output)")
    print(f"{seconds:.1f} s, peak RSS {rss:.0f} MiB, exit {code}: {stdout.strip()}")


def bench_audit(work, n):
    cfg, out = fake_dataset(work, f"audit_{n}", n, with_inputs=False, slim=True)
    size = (out / "manifest.jsonl").stat().st_size
    seconds, rss, code, stdout = cli("audit", out / "manifest.jsonl", "--quick")
    print(f"\n## audit --quick over a {n:,}-row manifest ({size / 2**20:.0f} MiB)")
    print(f"{seconds:.1f} s, peak RSS {rss:.0f} MiB, exit {code}: {stdout.strip().splitlines()[-1]}")


def bench_shards(work, n):
    root = work / f"shards_{n}"
    shutil.rmtree(root, ignore_errors=True)
    data = root / "data"
    data.mkdir(parents=True)
    for i in range(n):  # copies (not links): mtimes differ, as real files' do
        shutil.copy(SAMPLE / ("clip_a.xz" if i % 2 else "street/clip_b.xz"), data / f"{i:04d}.xz")
    one = write_config(root / "one.yaml", data, root / "one")
    t_one = cli("run", one)[0]
    print(f"\n(one run converts {n} small videos in {t_one:.1f} s: {t_one / n * 1e3:.0f} ms of driver wall time "
          f"per video, against the manifest's per-video cost above)")

    def slurm(task):
        return dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX="3")

    sharded = write_config(root / "sharded.yaml", data, root / "sharded")
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "bodybatch.cli", "run", str(sharded), "--shard", "slurm", "--jobs", "1"],
                              env=slurm(i), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(4)]  # fmt: skip
    codes = [p.wait() for p in procs]
    t_sharded = time.perf_counter() - start
    killed = write_config(root / "killed.yaml", data, root / "killed")
    victim = subprocess.Popen([sys.executable, "-m", "bodybatch.cli", "run", str(killed), "--shard", "2/4"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    journal = root / "killed" / "manifest.jsonl.journal" / "shard-0002-of-0004.jsonl"
    while victim.poll() is None and not (journal.exists() and journal.stat().st_size > 0):
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rows_before = sum(1 for _ in open(journal)) if journal.exists() else 0
    for i in (0, 1, 3, 2):
        cli("run", killed, "--shard", f"{i}/4")
    same = {}
    for name in ("sharded", "killed"):
        same[name] = (track_files(root / "one") == track_files(root / name)
                      and manifest_rows(root / "one", ("created", "encode_seconds"))
                      == manifest_rows(root / name, ("created", "encode_seconds")))  # fmt: skip
    table = json.loads((root / "sharded" / ".bodybatch.shards-4.json").read_text())
    sizes = [sum(size for shard, size in table.values() if shard == k) for k in range(4)]
    print(f"\n## {n} videos: one run vs 4 concurrent shards (SLURM_ARRAY_* set), and a shard SIGKILLed")
    print(f"one run {t_one:.1f} s; 4 shards together {t_sharded:.1f} s (exit codes {codes}); "
          f"input bytes per shard {[round(s / 2**20, 1) for s in sizes]} MiB")
    print(f"identical to one run (files and compacted manifest, minus created/encode_seconds): "
          f"shards {same['sharded']}; killed after {rows_before} journal record(s) and rerun {same['killed']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bodybatch_bench_scale"))
    ap.add_argument("--plan-videos", type=int, default=100_000)
    ap.add_argument("--audit-rows", type=int, default=1_000_000)
    ap.add_argument("--shard-videos", type=int, default=200)
    ap.add_argument("--skip", nargs="*", default=[], choices=["manifest", "plan", "audit", "shards"])
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench_scale: {os.cpu_count()} cores, work folder {work}")
    if "manifest" not in args.skip:
        bench_manifest(work)
    if "plan" not in args.skip:
        bench_plan(work, args.plan_videos)
    if "audit" not in args.skip:
        bench_audit(work, args.audit_rows)
    if "shards" not in args.skip:
        bench_shards(work, args.shard_videos)


if __name__ == "__main__":
    main()
