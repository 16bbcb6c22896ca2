"""The ideas measured on corpus and synthetic tracks side by side (point streams only):
today, K=4, least-squares temporal offset predictor (lsq.py), interpolating parents
(bary.py), context classes on top (context.py), chunk size.

    taskset -c 1 python scripts/research/codec_v2/combos.py [--sources corpus,synth] [--only LABEL;LABEL]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bary  # noqa: E402
import data  # noqa: E402
import harness as h  # noqa: E402
import lsq  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--sources", default="corpus,synth")
ap.add_argument("--only", default="")
a = ap.parse_args()
tracks = data.load(sources=tuple(a.sources.split(",")))
base = h.run_scheme(tracks, h.today)
print(h.report(base, "A today (K=2,m=3,chunk 64)"), f"[{base['_time']:.0f} s]", flush=True)
configs = [
    ("B K=4", h.today, dict(window=4)),
    ("C lsq L=4", lsq.lsq_scheme, dict(lags=4, motion=False)),
    ("D lsq L=8", lsq.lsq_scheme, dict(lags=8, motion=False)),
    ("E lsq L=8 chunk 128", lsq.lsq_scheme, dict(lags=8, motion=False, chunk_size=128)),
    ("F bary m=3 lsq L=8", bary.bary_scheme, dict(lam=0.2)),
    ("G bary m=4 lsq L=8", bary.bary_scheme, dict(lam=0.2, n_parents=4)),
    ("H bary m=4 lsq L=8 chunk 128", bary.bary_scheme, dict(lam=0.2, n_parents=4, chunk_size=128)),
]
for label, scheme, kw in configs:
    if a.only and label.split()[0] not in a.only.split(";"):
        continue
    bary._W.clear()
    kw = dict(kw)
    cs = kw.pop("chunk_size", 64)
    r = h.run_scheme(tracks, scheme, chunk_size=cs, **kw)
    print(h.report(r, label, base), f"[{r['_time']:.0f} s]", flush=True)
