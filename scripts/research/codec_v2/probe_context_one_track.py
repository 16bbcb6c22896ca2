import sys; import os; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data, harness as h, context as c
tr = data.load(sources=("corpus",))[6:7]
base = h.run_scheme(tr, h.today, with_entropy=True)
print(h.report(base, "today"))
for kw in [dict(kind="", unc_kind=""), dict(kind="P"), dict(kind="PTX"), dict(kind="PTX", keep_classes=True)]:
    r = h.run_scheme(tr, c.ctx_scheme, with_entropy=True, **kw)
    print(h.report(r, str(kw), base))
