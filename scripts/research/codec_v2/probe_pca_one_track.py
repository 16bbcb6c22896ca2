import sys; import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data, harness as h, pca_residual as p
tr = data.load(sources=("corpus",))[6:7]
base = h.run_scheme(tr, h.today)
print(h.report(base, "today"))
for kw in [dict(rank=1), dict(rank=4), dict(rank=8), dict(rank=18)]:
    p._BASIS.clear(); r = h.run_scheme(tr, p.pca_scheme, **kw); print(h.report(r, str(kw), base))
