import sys; import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data, harness as h, lsq, affine
tr = data.load(sources=("corpus",))[6:7]
base = h.run_scheme(tr, h.today)
print(h.report(base, "today"))
r = h.run_scheme(tr, lsq.lsq_scheme, lags=8, motion=False); print(h.report(r, "lsq8", base))
r = h.run_scheme(tr, affine.affine_scheme, lags=8); print(h.report(r, "affine", base))
