import sys; import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data, harness as h, lsq, numpy as np
tr = data.load(sources=("corpus",))[6:7]
base = h.run_scheme(tr, h.today)
print(h.report(base, "today"))
for kw in [dict(lags=4, motion=False, blend=True), dict(lags=8, motion=False, blend=True)]:
    r = h.run_scheme(tr, lsq.lsq_scheme, **kw)
    print(h.report(r, str(kw), base))
# noise analysis on big level
s, n, a = tr[0]; x = a["V"]; st = h.structure_for(x[0], (n, "V"))
xe, c = lsq.stored(x, st); N = st.n_points; m = 3
o = (m * xe[:N] - c[:N]).astype(float) / m
lo = N // 2
oo = o[lo:, :, :3]
print("var O diff1", np.var(np.diff(oo, axis=1)), "var 2nd centered", np.var(oo[:, 1:-1] - 0.5 * (oo[:, :-2] + oo[:, 2:])))
xx = xe[lo:N, :, :3].astype(float)
print("var x temporal diff", np.var(np.diff(xx, axis=1)))
res = lsq.lsq_residuals(x, st, lags=8, motion=False)
print("var lsq res (big level)", np.var(res[lo:, 8:, :3]))
# temporal autocorrelation of O deviations from mean per point
dev = oo - oo.mean(axis=1, keepdims=True)
for lag in (1, 2, 4, 8):
    print("autocorr lag", lag, np.mean(dev[:, lag:] * dev[:, :-lag]) / np.mean(dev * dev))
