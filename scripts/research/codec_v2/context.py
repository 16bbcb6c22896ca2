"""Context classes for the residual streams: split each big block's residuals (frames 1..)
by a context every decoder knows before decoding the value, one pcodec stream per class.

Contexts (all from residuals already decoded, integer only, fixed log2 thresholds: no side
information):
- ``P``  parents' residual magnitude at the same frame: sum_j sum_c |r[p_j, t, c]|
- ``T``  the point's own residual magnitude at the previous frame: sum_c |r[v, t-1, c]|
- ``X``  inter-component: for y the |r_x| of the same value, for z |r_x| + |r_y| (x uses P)
- ``PT`` P + T summed before binning;  ``PTX``: P + T + 2*X-part

class = min(nbins - 1, bit_length(ctx >> shift)).

The uncertainty component uses the same kind of context from the uncertainty residuals.

    taskset -c 1 python scripts/research/codec_v2/context.py [--sources corpus,synth]
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness as h  # noqa: E402
from bodybatch.codec import predict  # noqa: E402
from bodybatch.codec.streams import _CLASSED_POINTS, _blocks, activity_classes  # noqa: E402


def bit_class(s, nbins, shift=0):
    s = np.asarray(s, np.int64) >> shift
    b = np.zeros(s.shape, np.int64)
    v = s.copy()
    while np.any(v > 0):
        b += v > 0
        v >>= 1
    return np.minimum(b, nbins - 1)


def contexts(res, parents, kind, comp):
    """(n, T-1) or (n, T-1, c) context values of frames 1.. for all points."""
    n, t, d = res.shape
    a = np.abs(res.astype(np.int64))
    pad = np.concatenate([a, np.zeros((1, t, d), np.int64)])
    c0, c1 = comp
    own = a[:, :, c0:c1]
    out = 0
    if "P" in kind:
        p = sum(pad[parents[:, j]][:, 1:, c0:c1].sum(-1) for j in range(parents.shape[1]))
        out = out + p
    if "T" in kind:
        out = out + own[:, :-1].sum(-1)
    out = np.broadcast_to(np.asarray(out)[..., None] if np.ndim(out) else out, (n, t - 1, c1 - c0)).copy()
    if "X" in kind and c1 - c0 == 3:
        cum = np.cumsum(own[:, 1:], axis=-1)  # |x|, |x|+|y|, ...
        x = np.concatenate([np.zeros((n, t - 1, 1), np.int64), cum[..., :2]], axis=-1)
        out = out + 2 * x
    return out


def ctx_scheme(x, st, tally, group, kind="P", nbins=8, shift=0, keep_classes=False, window=2,
               with_entropy=False, unc_kind=None, **_):
    res = predict.encode_residuals(x, st, window)
    n, t, d = res.shape
    comps = [(0, 3)] + ([(3, d)] if d > 3 else [])
    # frame 0 as today
    for lo, hi in _blocks(n):
        for comp in comps:
            tally.add(h.family(group, comp), res[lo:hi, 0, comp[0]:comp[1]], with_entropy=with_entropy)
    if t < 2:
        return
    classes = activity_classes(res) if keep_classes else np.zeros(n, np.uint8)
    if keep_classes:
        tally.add("side", classes, nbytes=h.code(classes.astype(np.uint16)))
    ctx = {}
    for comp in comps:
        k = kind if comp[0] == 0 else (unc_kind or kind.replace("X", ""))
        ctx[comp] = bit_class(contexts(res, st.parents, k, comp), nbins, shift) if k else None
    for lo, hi in _blocks(n):
        big = hi - lo >= _CLASSED_POINTS
        for comp in comps:
            r = res[lo:hi, 1:, comp[0]:comp[1]]
            if not big or ctx[comp] is None:
                keys = np.zeros(r.shape, np.int64) if not big else np.broadcast_to(classes[lo:hi, None, None].astype(np.int64), r.shape)
            else:
                keys = ctx[comp][lo:hi]
                if keep_classes:
                    keys = keys * 8 + classes[lo:hi, None, None]
            order = np.argsort(keys.ravel(), kind="stable")
            kv, vals = keys.ravel()[order], r.ravel()[order]
            cuts = np.flatnonzero(np.diff(kv)) + 1
            for part in np.split(vals, cuts):
                tally.add(h.family(group, comp), part, with_entropy=with_entropy)


if __name__ == "__main__":
    import data

    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default="corpus,synth")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    tracks = data.load(sources=tuple(a.sources.split(",")))
    base = h.run_scheme(tracks, h.today, with_entropy=True)
    print(h.report(base, "today"), flush=True)
    configs = {
        "ctx none (1 stream/block)": dict(kind="", unc_kind=""),
        "ctx P": dict(kind="P"),
        "ctx T": dict(kind="T"),
        "ctx X": dict(kind="X", unc_kind=""),
        "ctx PT": dict(kind="PT"),
        "ctx PX": dict(kind="PX"),
        "ctx PTX": dict(kind="PTX"),
        "ctx PTX 12 bins": dict(kind="PTX", nbins=12),
        "ctx PTX + activity classes": dict(kind="PTX", keep_classes=True),
        "ctx PT + activity classes": dict(kind="PT", keep_classes=True),
    }
    for label, kw in configs.items():
        if a.only and label not in a.only.split(";"):
            continue
        r = h.run_scheme(tracks, ctx_scheme, with_entropy=True, **kw)
        print(h.report(r, label, base), flush=True)
