"""Measurement harness of the codec v2 research: code the point streams of cached
quantized tracks (data.py) with today's codec pieces or with a variant, and report
bytes and bits/value per stream family:

- ``Vxyz``  vertex coordinates        - ``Vunc``  vertex uncertainties
- ``Jxyz``  joint coordinates         - ``Junc``  joint uncertainties
- ``side``  per-chunk side information (activity classes, model parameters)

Only the point streams are measured (the bulk of a file); the structure header, boxes and
cameras are identical between variants (their bytes come from a real file in
``baseline_file_bytes``). Everything goes through pcodec exactly as bodybatch.codec.entropy
codes it (level 8, classic mode), so bytes are real coded bytes.
"""

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bodybatch.codec import entropy, predict  # noqa: E402
from bodybatch.codec.bodybatch_codec import N_CLASSES, _blocks, _rest_blocks, activity_classes  # noqa: E402
from bodybatch.codec.structure import build_structure  # noqa: E402

FAMILIES = ("Vxyz", "Vunc", "Jxyz", "Junc", "side")


def code(values):
    """pcodec bytes of an int array (int16 when it fits, as bodybatch)."""
    v = np.ascontiguousarray(values).ravel()
    if v.size == 0:
        return 0
    a = max(int(v.max()), -int(v.min()))
    v = v.astype(np.int16 if a < 2**15 else np.int32)
    return len(entropy.encode_numbers(v))


def entropy0(values):
    """Order-0 empirical entropy in bits of all values (a lower bound for static coders)."""
    v = np.ascontiguousarray(values).ravel().astype(np.int64)
    if v.size == 0:
        return 0.0
    _, c = np.unique(v, return_counts=True)
    p = c / v.size
    return float(-(c * np.log2(p)).sum())


_STRUCTURES = {}


def structure_for(x_first, key, n_parents=3, n_candidates=8):
    """Structure from the first frame's coordinates (cached per track and options)."""
    k = (key, n_parents, n_candidates)
    if k not in _STRUCTURES:
        _STRUCTURES[k] = build_structure(x_first[:, :3].astype(np.int64), n_parents, n_candidates)
    return _STRUCTURES[k]


def chunks(n_frames, size):
    return [(a, min(n_frames, a + size)) for a in range(0, n_frames, size)]


def baseline_streams(res, classes):
    """Today's stream split of (N, T, D) residuals: [(component slice, array)] per stream,
    as bodybatch_codec._encode_residual_streams cuts them."""
    n, n_frames, d = res.shape
    comps = [(0, 3)] + ([(3, d)] if d > 3 else [])
    out = []
    for lo, hi in _blocks(n):
        for c0, c1 in comps:
            out.append(((c0, c1), res[lo:hi, 0, c0:c1]))
    if n_frames < 2:
        return out
    for lo, hi, perm, bounds in _rest_blocks(n, classes):
        for c0, c1 in comps:
            part = res[lo:hi, 1:, c0:c1] if perm is None else res[lo:hi, 1:, c0:c1][perm]
            for a, b in zip(bounds[:-1], bounds[1:]):
                out.append(((c0, c1), part[a:b]))
    return out


def family(group, comp):
    return group + ("xyz" if comp[0] == 0 else "unc")


class Tally:
    def __init__(self):
        self.bytes = dict.fromkeys(FAMILIES, 0)
        self.values = dict.fromkeys(FAMILIES, 0)
        self.h0 = dict.fromkeys(FAMILIES, 0.0)

    def add(self, fam, arr, nbytes=None, with_entropy=False):
        self.bytes[fam] += code(arr) if nbytes is None else nbytes
        self.values[fam] += int(np.asarray(arr).size)
        if with_entropy:
            self.h0[fam] += entropy0(arr)

    def merge(self, other):
        for f in FAMILIES:
            self.bytes[f] += other.bytes[f]
            self.values[f] += other.values[f]
            self.h0[f] += other.h0[f]

    @property
    def total(self):
        return sum(self.bytes.values())

    def row(self, label):
        cells = []
        for f in FAMILIES:
            if self.values[f] and f != "side":
                cells.append(f"{f} {8 * self.bytes[f] / self.values[f]:.3f}")
        cells.append(f"side {self.bytes['side']}")
        return f"{label:28} total {self.total:11d} B | " + " | ".join(cells) + " (bits/value)"


def run_scheme(tracks, scheme, chunk_size=64, label="", with_entropy=False, **kw):
    """Apply ``scheme(x, structure, tally, group, **kw)`` to every chunk of every track's
    groups; return {source: Tally}."""
    out = {}
    t0 = time.perf_counter()
    for source, name, arrs in tracks:
        tally = out.setdefault(source, Tally())
        for group in ("V", "J"):
            x = arrs[group]
            st = structure_for(x[0], (name, group), kw.get("n_parents", 3), kw.get("n_candidates", 8))
            for a, b in chunks(len(x), chunk_size):
                scheme(x[a:b], st, tally, group, with_entropy=with_entropy, **kw)
    out["_time"] = time.perf_counter() - t0
    return out


def today(x, st, tally, group, window=2, with_entropy=False, n_classes=N_CLASSES, **_):
    """bodybatch 0.1 as it is: predictor (m=3, K=2), 4 activity classes per big level."""
    res = predict.encode_residuals(x, st, window)
    classes = activity_classes(res) if n_classes == N_CLASSES else activity_classes(res, n_classes)
    tally.add("side", classes.astype(np.uint16), nbytes=code(classes.astype(np.uint16)))
    for comp, arr in baseline_streams(res, classes):
        tally.add(family(group, comp), arr, with_entropy=with_entropy)


def report(results, label, base=None):
    lines = []
    for source in sorted(k for k in results if not k.startswith("_")):
        t = results[source]
        line = t.row(f"{label} [{source}]")
        if base is not None and source in base:
            line += f" | vs today {t.total / base[source].total - 1:+.1%}"
        lines.append(line)
    return "\n".join(lines)


def setup(label, sources="corpus,synth"):
    """Parse ``--sources``/``--only``, load the tracks, run and print today's codec as
    the baseline. Returns (args, tracks, baseline)."""
    import argparse

    import data

    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", default=sources)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    tracks = data.load(sources=tuple(args.sources.split(",")))
    base = run_scheme(tracks, today)
    print(report(base, label), flush=True)
    return args, tracks, base
