#!/usr/bin/env python3
"""Codec benchmark: bodybatch vs bodycompress 0.3.0 (xz level 5, its defaults), side by
side in one process on one core, on person tracks cut from ../shared/corpus and from
synthetic videos (../shared/bench/synth.py).

    python scripts/bench_codec.py [--synth-dir DIR] [--synth-videos 8] [--min-frames 3000]
                                  [--peers bc,bc-order] [--smpl-vertices 6890]
                                  [--bodybatch bodybatch,bb-v2]

Prints bytes, ratio against float32 raw, encode and decode person-frames/s and the max
abs error of bodybatch and of each bodycompress peer, per data source and in total:

- ``bc``        bodycompress as users run it today (``vertex_order="auto"``: no order for
                the 13,718-vertex corpus topology, its bundled SMPL order for 6,890).
- ``bc-order``  bodycompress given a good vertex order: a greedy nearest-neighbour chain
                over the track's first frame, improved by 2-opt (neighbour lists), passed
                as bodycompress 0.3's custom ``vertex_order`` permutation (stored in its
                header, so its bytes count). The order's computation time is printed but
                not charged to bodycompress's encode time (an order is made once per
                topology in practice).
- ``bc-none``   bodycompress with ``vertex_order=None`` (index order; differs from ``bc``
                only for SMPL/SMPL-X vertex counts).
- ``bc-zstd``, ``bc-order-zstd``: the same with bodycompress's zstd backend (faster
                decode, larger files), when asked for with ``--peers``.

bodybatch variants (``--bodybatch``): ``bodybatch`` (the default codec options),
``bb-v2`` (codec v2 as tuned today: ``BodybatchCodec`` with ``V2_OPTIONS``, format 3.0) and
``bb-v2.0`` (the format 2.0 options of bodybatch 0.2, ``V2_0_OPTIONS``).

``--smpl-vertices N`` adds a source ``smplN``: the synthetic tracks cut to a fixed random
subset of N of their 13,718 vertices (seeded, kept in index order). With N = 6890 that
exercises bodycompress's ``vertex_order="auto"`` path, which applies its bundled SMPL TSP
order; for a random subset of another topology that order is meaningless (effectively a
scrambled order), so ``bc`` there is a worst case and ``bc-order`` the fair peer.
"""

import argparse
import glob
import os
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

import _benchdata as bd


def off_grid(track, step, name):
    """Move every value by up to 0.45 grid steps (deterministically): the files hold
    values already on the 0.5 mm grid, real estimator output does not. Both codecs
    round them back to the same grid points, so sizes are unchanged and the reported
    max error is a real one."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = dict(track)
    for key, unit in (("vertices", 1.0), ("joints", 1.0), ("vertex_uncertainties", 1e-3), ("joint_uncertainties", 1e-3)):
        a = np.asarray(track[key], np.float64)
        out[key] = (a + rng.uniform(-0.45, 0.45, a.shape) * step * unit).astype(np.float32)
    return out


#: peer name -> BodyCompressor options (the vertex order is filled in per track)
PEERS = {
    "bc": {"compression": "xz", "vertex_order": "auto"},
    "bc-order": {"compression": "xz", "vertex_order": "chain"},
    "bc-none": {"compression": "xz", "vertex_order": None},
    "bc-zstd": {"compression": "zstd", "vertex_order": "auto"},
    "bc-order-zstd": {"compression": "zstd", "vertex_order": "chain"},
}


def bodybatch_variants():
    """bodybatch variant name -> write_track options."""
    from bodybatch.codec.bodybatch_codec import V2_0_OPTIONS, V2_OPTIONS

    return {"bodybatch": {}, "bb-v2": dict(V2_OPTIONS), "bb-v2.0": dict(V2_0_OPTIONS)}


def _numba_jit():
    try:
        import numba
    except ImportError:  # plain Python loops: same result, much slower
        return lambda f: f
    return numba.njit(cache=False)


_jit = _numba_jit()


@_jit
def _greedy_chain(p, start):
    """Greedy nearest-neighbour chain over points p (N, 3) from ``start`` (brute force)."""
    n = p.shape[0]
    used = np.zeros(n, np.bool_)
    order = np.empty(n, np.int64)
    cur = start
    for i in range(n):
        order[i] = cur
        used[cur] = True
        best, best_d = -1, np.inf
        for j in range(n):
            if not used[j]:
                d = (p[j, 0] - p[cur, 0]) ** 2 + (p[j, 1] - p[cur, 1]) ** 2 + (p[j, 2] - p[cur, 2]) ** 2
                if d < best_d:
                    best_d, best = d, j
        cur = best
    return order


@_jit
def _dist(p, a, b):
    return np.sqrt((p[a, 0] - p[b, 0]) ** 2 + (p[a, 1] - p[b, 1]) ** 2 + (p[a, 2] - p[b, 2]) ** 2)


@_jit
def _two_opt(p, order, neighbours, max_passes):
    """2-opt on an open path with neighbour lists: reverse ``order[l..r]`` whenever that
    shortens the path (edges at the path's ends count zero)."""
    n = order.shape[0]
    pos = np.empty(n, np.int64)
    for i in range(n):
        pos[order[i]] = i
    for _ in range(max_passes):
        improved = 0
        for a in range(n):
            for c in neighbours[a]:
                i, j = pos[a], pos[c]
                if i == j:
                    continue
                # make c adjacent to a: reverse [i+1, j] if j > i, else [j, i-1]
                if j > i + 1:
                    lo, hi = i + 1, j
                elif j < i - 1:
                    lo, hi = j, i - 1
                else:
                    continue
                old = 0.0
                new = 0.0
                if lo > 0:
                    old += _dist(p, order[lo - 1], order[lo])
                    new += _dist(p, order[lo - 1], order[hi])
                if hi < n - 1:
                    old += _dist(p, order[hi], order[hi + 1])
                    new += _dist(p, order[lo], order[hi + 1])
                if new < old - 1e-9:
                    while lo < hi:
                        order[lo], order[hi] = order[hi], order[lo]
                        pos[order[lo]] = lo
                        pos[order[hi]] = hi
                        lo += 1
                        hi -= 1
                    improved += 1
        if improved == 0:
            break
    return order


def good_vertex_order(points, two_opt_passes=20, n_neighbours=10):
    """A short path through the points (N, 3): greedy nearest-neighbour chain from the
    lowest point, then 2-opt over each point's nearest neighbours. Returns int64 (N,)."""
    from pykdtree.kdtree import KDTree

    p = np.ascontiguousarray(points, np.float64)
    order = _greedy_chain(p, int(np.argmax(p[:, 1])))  # y down: start at the feet
    if two_opt_passes:
        _, nb = KDTree(p).query(p, k=n_neighbours + 1)
        order = _two_opt(p, order, np.ascontiguousarray(np.asarray(nb, np.int64)[:, 1:]), two_opt_passes)
    return order


def path_length_stats(points, order):
    """Median and mean distance between consecutive points of the order (mm)."""
    d = np.linalg.norm(np.diff(np.asarray(points, np.float64)[order], axis=0), axis=1)
    return float(np.median(d)), float(np.mean(d))


def bench_bodycompress(track, path, compression="xz", vertex_order="auto"):
    import bodycompress

    rows = len(track["vertices"])
    t0 = time.perf_counter()
    with bodycompress.BodyCompressor(str(path), {"bench": True}, n_threads=1,
                                     compression=compression, vertex_order=vertex_order) as bc:
        for i in range(rows):
            frame = {k: track[k][i] for k in bd.FIELDS if k in track}
            if "camera" in track:
                frame["camera"] = track["camera"][i]
            bc.append(**frame)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = list(bodycompress.BodyDecompressor(str(path)))
    t_dec = time.perf_counter() - t0
    decoded = {k: np.stack([f[k] for f in frames]) for k in bd.FIELDS if k in frames[0]}
    return os.path.getsize(path), t_enc, t_dec, bd.max_abs_error(decoded, track)


def compiled_signatures():
    """How many argument-type signatures bodybatch's compiled kernels have so far (0
    without numba): a call that adds one compiled it, or loaded it from numba's cache."""
    from bodybatch.codec import _kernels

    compiled = _kernels.kernels()
    if compiled is None:
        return 0
    return sum(len(fn.signatures) for spec in vars(compiled).values() if isinstance(spec, _kernels._Specialized)
               for fn in spec._compiled.values())  # fmt: skip


def bench_bodybatch(track, path, options):
    """(bytes, encode s, decode s, max error) of one track. An encode or decode that
    compiled a kernel for argument types the warm-up did not cover (e.g. a body far
    from the camera with small residuals: int16 streams, int32 work arrays) is timed
    again: one-time compilation (1-2 s) is not the codec's speed."""
    import bodybatch

    for _ in range(2):
        before = compiled_signatures()
        t0 = time.perf_counter()
        bodybatch.write_track(path, track, {"bench": True}, **options)
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        with bodybatch.open_track(path) as reader:
            decoded = reader.to_arrays()
        t_dec = time.perf_counter() - t0
        if compiled_signatures() == before:
            break
    return os.path.getsize(path), t_enc, t_dec, bd.max_abs_error(decoded, track)


def warmup_track(n_frames=3, n_vertices=300, n_joints=24, offset_mm=0.0):
    """A tiny smooth random track with every point field: the compiled kernels' argument
    types (small residuals: int16 streams; ``offset_mm`` 20,000: grid values past
    int16, the kernels' wider work arrays, as a person 10 m or more from the camera)."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 300, (1, n_vertices + n_joints, 3)) + offset_mm
    points = (base + rng.normal(0, 2, (n_frames, n_vertices + n_joints, 3)).cumsum(axis=0)).astype(np.float32)
    return {
        "vertices": points[:, :n_vertices],
        "vertex_uncertainties": rng.uniform(0.01, 0.1, (n_frames, n_vertices)).astype(np.float32),
        "joints": points[:, n_vertices:],
        "joint_uncertainties": rng.uniform(0.01, 0.1, (n_frames, n_joints)).astype(np.float32),
    }


def subset_tracks(files, n_vertices, max_frames, seed=6890):
    """(name, track) of the synthetic tracks cut to a fixed random subset of
    ``n_vertices`` vertices (kept in index order), up to ``max_frames`` person-frames."""
    idx = None
    total = 0
    for f in files:
        for name, track in bd.gt_tracks(f):
            if total >= max_frames:
                return
            if idx is None:
                n = track["vertices"].shape[1]
                idx = np.sort(np.random.default_rng(seed).choice(n, n_vertices, replace=False))
            rows = min(len(track["vertices"]), max_frames - total)
            out = {k: (v[:rows] if k != "camera" else v[:rows]) for k, v in track.items()}
            out["vertices"] = np.ascontiguousarray(out["vertices"][:, idx])
            out["vertex_uncertainties"] = np.ascontiguousarray(out["vertex_uncertainties"][:, idx])
            total += rows
            yield f"{name}/sub{n_vertices}", out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(bd.SHARED / "corpus"))
    ap.add_argument("--synth-dir", default=os.path.join(tempfile.gettempdir(), "bodybatch_bench_synth"))
    ap.add_argument("--synth-videos", type=int, default=4)
    ap.add_argument("--min-frames", type=int, default=3000, help="person-frames at least")
    ap.add_argument("--quantization-mm", type=float, default=0.5)
    ap.add_argument("--peers", default="bc,bc-order",
                    help=f"comma-separated bodycompress peers among {', '.join(PEERS)}")
    ap.add_argument("--smpl-vertices", type=int, default=6890,
                    help="add a source of synthetic tracks cut to this many vertices (0: none)")
    ap.add_argument("--smpl-max-frames", type=int, default=1000, help="person-frames of that source")
    ap.add_argument("--two-opt-passes", type=int, default=20, help="2-opt passes of the bc-order chain (0: greedy only)")
    ap.add_argument("--sources", default="corpus,synth,smpl", help="comma-separated subset of corpus,synth,smpl")
    ap.add_argument("--bodybatch", default="bodybatch,bb-v2", help="comma-separated bodybatch variants: bodybatch, bb-v2, bb-v2.0")
    args = ap.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    wanted = set(args.sources.split(","))
    if not wanted or wanted - {"corpus", "synth", "smpl"}:
        raise SystemExit(f"--sources {args.sources!r}: expected a comma-separated subset of corpus,synth,smpl")
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peers {sorted(unknown)}; choose among {', '.join(PEERS)}")
    variants = bodybatch_variants()
    ours = [v for v in args.bodybatch.split(",") if v]
    if not ours or set(ours) - set(variants):
        raise SystemExit(f"--bodybatch: choose among {', '.join(variants)}")
    codecs = peers + ours

    import bodybatch

    # Warm up imports (and the order's JIT) so that no side pays them inside the timings.
    import bodycompress  # noqa: F401
    import pykdtree.kdtree  # noqa: F401  (warm imports)

    good_vertex_order(np.random.default_rng(0).normal(size=(64, 3)), 2)
    with tempfile.TemporaryDirectory() as tmp:  # and bodybatch's compiled decoders (numba's cache)
        for codec in ours:
            for offset in (0.0, 20_000.0):
                bench_bodybatch(warmup_track(offset_mm=offset), Path(tmp) / "warm.xz", variants[codec])

    sources = {}
    if "corpus" in wanted:
        corpus = sorted(glob.glob(os.path.join(args.corpus, "*.xz")))
        if not corpus:
            raise SystemExit(f"no prediction files (*.xz) in --corpus {args.corpus}")
        sources["corpus"] = lambda: (t for f in corpus for t in bd.gt_tracks(f))
    synth = None
    if wanted & {"synth", "smpl"}:
        bd.require_shared("bench", "synth.py")
        synth = bd.synth_dataset(args.synth_dir, args.synth_videos, (150, 600), (1, 3))
    if "synth" in wanted:
        sources["synth"] = lambda: (t for f in synth for t in bd.gt_tracks(f))
    if "smpl" in wanted and args.smpl_vertices:
        sources[f"smpl{args.smpl_vertices}"] = lambda: subset_tracks(synth, args.smpl_vertices, args.smpl_max_frames)
    options = {"quantization_mm": args.quantization_mm}
    totals = {c: np.zeros(6) for c in codecs}
    print(f"# {bd.cpu_env_note()}, bodybatch {bodybatch.__version__}, step {args.quantization_mm} mm, "
          f"bodycompress {bodycompress.__version__ if hasattr(bodycompress, '__version__') else '?'}")
    print("# bc-order: greedy NN chain + 2-opt on each track's first frame, as bodycompress's vertex_order")
    head = (f"{'source':9} {'tracks':>6} {'frames':>7} | {'codec':13} {'bytes':>11} {'ratio':>6} "
            f"{'enc pf/s':>9} {'dec pf/s':>9} {'max err mm':>10}")
    print(head)

    def row(source, n_tracks, frames, codec, size, te, td, err, raw):
        print(f"{source:9} {n_tracks:>6} {int(frames):7d} | {codec:13} {int(size):11d} {raw / size:6.2f} "
              f"{frames / te:9.1f} {frames / td:9.1f} {err:10.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for source, make_tracks in sources.items():
            acc = {c: np.zeros(4) for c in codecs}
            n_tracks = frames = raw = 0
            order_time, order_stats = 0.0, []
            for name, track in make_tracks():
                track = off_grid(track, args.quantization_mm, name)
                n_tracks += 1
                frames += len(track["vertices"])
                raw += bd.raw_float32_bytes(track)
                order = None
                if any(PEERS[p]["vertex_order"] == "chain" for p in peers):
                    first = np.asarray(track["vertices"][0], np.float64)
                    t0 = time.perf_counter()
                    order = good_vertex_order(first, args.two_opt_passes)
                    order_time += time.perf_counter() - t0
                    order_stats.append(path_length_stats(first, order) + path_length_stats(first, np.arange(len(first))))
                for codec in codecs:
                    if codec in variants:
                        size, te, td, err = bench_bodybatch(track, Path(tmp) / "bb.xz", {**options, **variants[codec]})
                    else:
                        opts = dict(PEERS[codec])
                        if opts["vertex_order"] == "chain":
                            opts["vertex_order"] = order
                        size, te, td, err = bench_bodycompress(track, Path(tmp) / f"{codec}.xz", **opts)
                    acc[codec] += [size, te, td, 0]
                    acc[codec][3] = max(acc[codec][3], err)
            if order_stats:
                st = np.mean(order_stats, axis=0)
                print(f"# {source}: vertex order {order_time / n_tracks:.2f} s/track; consecutive vertices "
                      f"median {st[0]:.1f} mm, mean {st[1]:.1f} mm (index order: median {st[2]:.1f}, mean {st[3]:.1f})")
            for codec in codecs:
                size, te, td, err = acc[codec]
                row(source, n_tracks, frames, codec, size, te, td, err, raw)
                totals[codec] += [size, te, td, frames, raw, 0]
                totals[codec][5] = max(totals[codec][5], err)
    frames, raw = totals[ours[0]][3], totals[ours[0]][4]
    for codec in codecs:
        t = totals[codec]
        row("total", "", frames, codec, t[0], t[1], t[2], t[5], raw)
    for name in ours:
        bb = totals[name]
        for peer in peers:
            p = totals[peer]
            print(
                f"{name} vs {peer}: files {p[0] / bb[0]:.2f}x smaller, encode {p[1] / bb[1]:.1f}x faster, "
                f"decode {p[2] / bb[2]:.2f}x faster, max error {bb[5]:.4f} mm (step/2 = {args.quantization_mm / 2} mm)"
            )
    if frames < args.min_frames:
        print(f"WARNING: only {int(frames)} person-frames (< {args.min_frames}); add --synth-videos")


if __name__ == "__main__":
    main()
