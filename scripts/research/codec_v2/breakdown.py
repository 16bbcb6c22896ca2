"""Where the bits go: coded bits/value of the vertex streams by frame position in the chunk
(frame 0 = spatial only; frames 1..L-1; frames >= L) and by level size, for today's
predictor and the least-squares one (lsq.py, L=8).

    taskset -c 1 python scripts/research/codec_v2/breakdown.py [--sources corpus]
"""
import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import harness as h  # noqa: E402
import lsq  # noqa: E402
from bodybatch.codec import predict  # noqa: E402
from bodybatch.codec.bodybatch_codec import _blocks  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--sources", default="corpus")
ap.add_argument("--chunk", type=int, default=64)
a = ap.parse_args()
tracks = data.load(sources=tuple(a.sources.split(",")))
for label, fn in (("today", lambda x, st: predict.encode_residuals(x, st, 2)),
                  ("lsq L=8", lambda x, st: lsq.lsq_residuals(x, st, lags=8, motion=False))):
    acc = {}
    for source, name, arrs in tracks:
        x = arrs["V"]
        st = h.structure_for(x[0], (name, "V"))
        for c0, c1 in h.chunks(len(x), a.chunk):
            res = fn(x[c0:c1], st)
            for lo, hi in _blocks(st.n_points):
                for comp, (d0, d1) in (("xyz", (0, 3)), ("unc", (3, 4))):
                    for fl, (f0, f1) in (("f0", (0, 1)), ("f1-7", (1, 8)), ("f8+", (8, None))):
                        r = res[lo:hi, f0:f1, d0:d1]
                        if r.size:
                            k = (comp, fl, f"{hi - lo if lo else 'coarse'}")
                            b, v = acc.get(k, (0, 0))
                            acc[k] = (b + h.code(r), v + r.size)
    tot = {}
    for (comp, fl, lev), (b, v) in sorted(acc.items()):
        tb, tv = tot.get((comp, fl), (0, 0))
        tot[(comp, fl)] = (tb + b, tv + v)
    allb = sum(b for b, _ in tot.values())
    for (comp, fl), (b, v) in sorted(tot.items()):
        print(f"{label:8} V{comp} {fl:5} {8 * b / v:6.3f} bits/value  {b:10d} B ({b / allb:5.1%} of vertex bytes)")
    for (comp, fl, lev), (b, v) in sorted(acc.items()):
        if fl == "f8+":
            print(f"{label:8}   V{comp} {fl} level {lev:>6}: {8 * b / v:6.3f} bits/value")
