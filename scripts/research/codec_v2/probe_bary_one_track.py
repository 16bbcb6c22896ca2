import sys; import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data, harness as h, lsq, bary
tr = data.load(sources=("corpus",))[6:7]
base = h.run_scheme(tr, h.today)
print(h.report(base, "today"))
r = h.run_scheme(tr, lsq.lsq_scheme, lags=8, motion=False); print(h.report(r, "lsq8", base))
for kw in [dict(), dict(lam=0.2), dict(lam=0.01), dict(n_parents=4), dict(n_parents=4, lam=0.2)]:
    bary._W.clear()
    r = h.run_scheme(tr, bary.bary_scheme, **kw)
    print(h.report(r, str(kw), base))
