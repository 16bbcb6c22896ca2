"""Full-decode A/B of two bodybatch checkouts on the same track files, in one run.

    python scripts/research/read/ab_full_decode.py OLD_CHECKOUT NEW_CHECKOUT TRACK.xz...

Each round runs both checkouts in turn, each in its own subprocess (its
``bodybatch`` first on ``sys.path``): one warm-up ``to_arrays()`` per file, then the
best of 3 passes over all files, in person-frames/s. Prints both series and the ratio
NEW/OLD per round: compare the ratios of one run (this VM is noisy), not absolute
rates across runs. E.g. an old commit in a worktree:
``git worktree add /tmp/old <commit>``.
"""

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import bodybatch
files = sys.argv[2:]
for f in files:
    with bodybatch.open_track(f) as r:
        r.to_arrays()
best = 0.0
for _ in range(3):
    n, t = 0, time.perf_counter()
    for f in files:
        with bodybatch.open_track(f) as r:
            n += len(r.to_arrays()["frame_index"])
    best = max(best, n / (time.perf_counter() - t))
print(json.dumps({"pfs": best, "module": bodybatch.__file__}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("tracks", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rates = {args.old: [], args.new: []}
    for _ in range(args.rounds):
        for root in (args.old, args.new):
            run = subprocess.run([sys.executable, "-c", _CHILD, root, *args.tracks], capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"{root}: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else 'failed'}")
            rates[root].append(json.loads(run.stdout)["pfs"])
    for root, values in rates.items():
        print(f"{root}: {[round(v) for v in values]} person-frames/s")
    print("ratio new/old per round:", [round(b / a, 3) for a, b in zip(rates[args.old], rates[args.new])])


if __name__ == "__main__":
    main()
