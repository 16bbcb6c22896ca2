"""Today's codec pieces with other parameters: temporal window K, parents m, parent
candidates, chunk size, activity classes. Point streams only (see harness.py).

    taskset -c 1 python scripts/research/codec_v2/sweep_params.py [--sources corpus,synth]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402

a, tracks, base = h.setup("today K=2 m=3 c=8 chunk=64", "corpus,synth")
configs = {
    "K=1": dict(window=1), "K=3": dict(window=3), "K=4": dict(window=4), "K=8": dict(window=8),
    "m=4": dict(n_parents=4), "m=6": dict(n_parents=6, n_candidates=10),
    "m=2": dict(n_parents=2),
    "chunk=32": dict(chunk_size=32), "chunk=128": dict(chunk_size=128), "chunk=256": dict(chunk_size=256),
    "classes=8": dict(n_classes=8), "classes=1": dict(n_classes=1),
}
for label, kw in configs.items():
    if a.only and label not in a.only.split(","):
        continue
    r = h.run_scheme(tracks, h.today, **kw)
    print(h.report(r, label, base), flush=True)
