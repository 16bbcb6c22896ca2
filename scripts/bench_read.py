#!/usr/bin/env python3
"""Read benchmark: getting data back out of a converted dataset (track files, the
Dataset class) vs out of the per-video bodycompress files it was converted from, side
by side in one process (two worker processes for the windows).

    python scripts/bench_read.py [--data-dir DIR] [--repeats 5] [--windows 400] [--chunk-size 64] [--no-10min]
                                 [--codec v1|v2] [--threads 2]

Data (generated once into ``--data-dir`` with ../shared/bench/synth.py, zstd): 20
videos of 100-200 frames with 1-2 people, one 1,500-frame and one 18,000-frame
(10 minutes at 30 fps; about 1 GB, several minutes to generate) single-person video,
and one 222-frame video of a denser 15,830-vertex body (zstd and xz); all converted
with ``bodybatch run`` (bodybatch codec, default settings but ``--chunk-size``:
reading row k of a chunk decodes the chunk's rows 0..k).

The compiled decoder (numba, ``pip install bodybatch[fast]``) is used when installed;
section 4 also times the numpy decoder (``BODYBATCH_KERNELS=numpy``) in the same run.

Prints, fastest of ``--repeats``:

1. one frame from the middle of a track, file opened each time: bodybatch (part of
   one chunk; also with ``threads=N``, which splits that chunk's decode) vs
   bodycompress zstd (decodes from the start), for the 10-minute track, the
   1,500-frame track and a ~100-frame one;
2. joints-only decode of the long track vs its full decode (bodybatch; target >= 20x);
3. random windows of 16 frames over the 20-video dataset through ``bodybatch.Dataset``
   in 2 worker processes (windows/s; all fields and joints only) vs extracting the
   same frame ranges from the per-video bodycompress files in 2 worker processes;
4. full decode, person-frames/s, bodybatch (compiled and numpy decoders) vs
   bodycompress: zstd (the 20 videos, ../shared/corpus nlf_zstd_*, the 15,830-vertex
   video) and xz (../shared/corpus nlf_xz_*, the 15,830-vertex video), each against
   its own bodybatch conversion.
"""

import argparse
import glob
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
sys.path.insert(0, str(HERE.parent))


def best(fn, repeats):
    """Fastest wall time of ``repeats`` calls (s), and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def best_alternating(fn_a, fn_b, repeats):
    """``best`` of two functions called in turn (a, b, a, b, ...): on a noisy machine
    both see the same spells of load, so their ratio is steadier than from two runs."""
    times, out = ([], []), [None, None]
    for _ in range(repeats):
        for i, fn in enumerate((fn_a, fn_b)):
            t0 = time.perf_counter()
            out[i] = fn()
            times[i].append(time.perf_counter() - t0)
    return (min(times[0]), out[0]), (min(times[1]), out[1])


def synth(out_dir, *args):
    if not glob.glob(str(out_dir / "*.xz")):
        subprocess.run([sys.executable, str(SHARED / "bench" / "synth.py"), str(out_dir), *args,
                        "--compression", "zstd"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return sorted(glob.glob(str(out_dir / "*.xz")))


#: --codec: the codec options of the conversion (v2: format 3.x, ``V2_OPTIONS``)
CODECS = ("v1", "v2")


def convert(inputs_root, out_root, pattern="*.xz", chunk_size=64, codec="v1"):
    from bodybatch.cli import main
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS

    options = {"chunk_size": chunk_size} if codec == "v1" else {**V2_OPTIONS, "chunk_size": chunk_size}
    out_root = out_root.with_name(out_root.name + ("" if chunk_size == 64 else f"_c{chunk_size}")
                                  + ("" if codec == "v1" else f"_{codec}"))  # fmt: skip
    if (out_root / "manifest.jsonl").exists():
        return out_root
    config = out_root.parent / f"{out_root.name}.yaml"
    lines = "".join(f"  {k}: {v}\n" for k, v in options.items())
    config.write_text(f"input:\n  root: {inputs_root}\n  pattern: '{pattern}'\noutput:\n  root: {out_root}\n"
                      f"codec:\n{lines}pool:\n  n_jobs: 2\n  progress: false\n")  # fmt: skip
    assert main(["run", str(config), "-q", "--no-progress"]) == 0
    return out_root


def bc_frame(path, k):
    import bodycompress

    for i, frame in enumerate(bodycompress.BodyDecompressor(str(path))):
        if i == k:
            return frame


def bb_frame(path, k, threads=1):
    import bodybatch

    with bodybatch.open_track(path, threads=threads) as reader:
        return reader[k]


# -- worker functions (module level: picklable) -------------------------------------------
_DS = None


def _init(ds):
    global _DS
    _DS = ds


def _bb_windows(indices):
    return sum(len(_DS[int(i)]["frame_index"]) for i in indices)


def _bc_windows(jobs):
    """(video file, first frame, last frame) -> the detections of those frames."""
    import bodycompress

    n = 0
    for path, first, last in jobs:
        for t, frame in enumerate(bodycompress.BodyDecompressor(path)):
            if t >= first:
                n += 1
            if t >= last:
                break
    return n


def windows_per_s(pool, fn, tasks, repeats):
    pool.map(fn, tasks[:2])  # warm the workers
    seconds, _ = best(lambda: pool.map(fn, tasks, chunksize=1), repeats)
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "bodybatch_bench_read")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--windows", type=int, default=400)
    ap.add_argument("--chunk-size", type=int, default=None,
                    help="codec.chunk_size of the conversion (default: 64 for v1, 128 for v2)")
    ap.add_argument("--codec", choices=CODECS, default="v1",
                    help="v1: the default codec options (format 1.0); v2: V2_OPTIONS (format 3.x, smallest files)")
    ap.add_argument("--threads", type=int, default=2, help="sections 1 and 4 also read with open_track(threads=N)")
    ap.add_argument("--no-10min", action="store_true", help="leave out the 18,000-frame track (1 GB to generate)")
    args = ap.parse_args()
    from _benchdata import dense_body_model, require_shared

    require_shared("corpus")
    require_shared("bench", "synth.py")
    import bodycompress

    import bodybatch

    data = args.data_dir
    videos = synth(data / "synth20", "--videos", "20", "--frames", "100", "200", "--people", "1", "2", "--seed", "14")
    synth(data / "long", "--videos", "1", "--frames", "1500", "1500", "--people", "1", "1", "--seed", "15",
          "--prefix", "long")  # fmt: skip
    if not args.no_10min:
        synth(data / "long10min", "--videos", "1", "--frames", "18000", "18000", "--people", "1", "1", "--seed", "16",
              "--fps", "30", "--prefix", "long10")  # fmt: skip
    model = dense_body_model(data / "model15830.npz")
    dense = {}
    for comp in ("zstd", "xz"):
        folder = data / f"dense15k_{comp}"
        if not glob.glob(str(folder / "*.xz")):
            subprocess.run([sys.executable, str(SHARED / "bench" / "synth.py"), str(folder), "--videos", "1", "--frames",
                            "222", "222", "--people", "1", "1", "--seed", "17", "--prefix", "dense", "--model",
                            str(model), "--compression", comp], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        dense[comp] = sorted(glob.glob(str(folder / "*.xz")))
    c = args.chunk_size or (64 if args.codec == "v1" else 128)
    cv = args.codec
    ds_root = convert(data / "synth20", data / "tracks20", chunk_size=c, codec=cv)
    long_root = convert(data / "long", data / "tracks_long", chunk_size=c, codec=cv)
    long10_root = None if args.no_10min else convert(data / "long10min", data / "tracks_long10min", chunk_size=c, codec=cv)
    corpus_root = convert(SHARED / "corpus", data / "tracks_corpus", "nlf_xz_*.xz", chunk_size=c, codec=cv)
    corpus_zstd_root = convert(SHARED / "corpus", data / "tracks_corpus_zstd", "nlf_zstd_*.xz", chunk_size=c, codec=cv)
    dense_root = convert(data / "dense15k_zstd", data / "tracks_dense15k", chunk_size=c, codec=cv)
    r = args.repeats
    size = sum(p.stat().st_size for p in ds_root.rglob("track_*.xz"))
    from bodybatch.codec import _kernels

    compiled = _kernels.kernels()
    decoder = f"compiled decoder (numba {compiled.numba_version})" if compiled else "numpy decoder (numba not installed)"
    print(f"bodybatch {bodybatch.__version__}, bodycompress 0.3.0; fastest of {r}; data in {data}; "
          f"codec {cv}, chunk_size {c} (20-video tracks: {size / 2**20:.1f} MiB); {decoder}\n")

    # 1. one frame from the middle of a track
    print("1. one frame from the middle, file opened each time")
    long_track = min(long_root.rglob("track_*.xz"))
    short_video = min((v for v in videos), key=lambda v: len(bodybatch.read_predictions(v)))
    ds_all = bodybatch.Dataset(ds_root)
    short = [t for t in range(len(ds_all.tracks)) if ds_all.tracks[t]["video"] == Path(short_video).name]
    short_t = max(short, key=lambda t: ds_all.tracks[t]["n_frames"])
    cases = [("1,500-frame track", long_track, glob.glob(str(data / "long" / "*.xz"))[0]),
             (f"{ds_all.tracks[short_t]['n_frames']}-frame track", ds_all.path(short_t), short_video)]  # fmt: skip
    if long10_root is not None:
        cases.insert(0, ("10-minute track", min(long10_root.rglob("track_*.xz")), glob.glob(str(data / "long10min" / "*.xz"))[0]))
    for name, track, video in cases:
        with bodybatch.open_track(track) as reader:
            k = len(reader) // 2
            frame = int(reader.frame_index[k])
        t_bb, _ = best(lambda track=track, k=k: bb_frame(track, k), r)
        t_bt, _ = best(lambda track=track, k=k: bb_frame(track, k, args.threads), r)
        t_bc, _ = best(lambda video=video, frame=frame: bc_frame(video, frame), r if frame < 2000 else 1)
        print(f"   {name:18s} (row {k}, video frame {frame}): bodybatch {t_bb * 1e3:7.1f} ms   "
              f"bodycompress zstd {t_bc * 1e3:8.1f} ms   {t_bc / t_bb:6.1f}x   "
              f"threads={args.threads}: {t_bt * 1e3:5.1f} ms ({t_bc / t_bt:.1f}x; bodycompress: one thread)")

    # 2. joints only vs full decode
    with bodybatch.open_track(long_track) as reader:
        n = len(reader)
        t_full, _ = best(lambda: reader.to_arrays(), max(1, r // 2))
        t_joints, _ = best(lambda: reader.to_arrays(fields="joints"), r)
    print(f"\n2. whole {n}-row track: full decode {t_full:.3f} s ({n / t_full:,.0f} person-frames/s), "
          f"joints only {t_joints * 1e3:.1f} ms ({n / t_joints:,.0f} person-frames/s): {t_full / t_joints:.0f}x faster")

    # 3. random windows of 16 frames, 2 worker processes
    print(f"\n3. {args.windows} random windows of 16 frames over {len(videos)} videos, 2 worker processes")
    rng = np.random.default_rng(0)
    for fields in (None, "joints"):
        ds = bodybatch.Dataset(ds_root, fields=fields, window=16, stride=1, gaps="exclude")
        pick = rng.choice(len(ds), size=min(args.windows, len(ds)), replace=False)
        jobs = []
        for i in pick:
            t, s = int(ds._track[i]), int(ds._start[i])
            fi = ds.reader(t).frame_index
            jobs.append((str(data / "synth20" / ds.tracks[t]["video"]), int(fi[s]), int(fi[s + 15])))
        ds.close()
        tasks_bb = [pick[a : a + 8] for a in range(0, len(pick), 8)]
        tasks_bc = [jobs[a : a + 8] for a in range(0, len(jobs), 8)]
        with multiprocessing.get_context("spawn").Pool(2, _init, (ds,)) as pool:
            t_bb = windows_per_s(pool, _bb_windows, tasks_bb, r)
            t_bc = windows_per_s(pool, _bc_windows, tasks_bc, max(1, r // 2)) if fields is None else t_bc
        label = "all fields " if fields is None else "joints only"
        print(f"   Dataset ({label}): {len(pick) / t_bb:8,.0f} windows/s   bodycompress zstd (all fields): "
              f"{len(pick) / t_bc:6,.1f} windows/s   {t_bc / t_bb:6.1f}x")

    # 4. full decode, person-frames/s
    print("\n4. full decode, person-frames/s (one process); bodybatch compiled / numpy decoder")
    corpus = sorted(SHARED.glob("corpus/nlf_*.xz"))
    rows = (("20 videos, zstd", ds_root, videos),
            ("corpus nlf_zstd_*, zstd", corpus_zstd_root, [str(p) for p in corpus if "zstd" in p.name]),
            ("15,830 vertices, zstd", dense_root, dense["zstd"]),
            ("corpus nlf_xz_*, xz", corpus_root, [str(p) for p in corpus if "nlf_xz" in p.name]),
            ("15,830 vertices, xz", dense_root, dense["xz"]))  # fmt: skip
    for name, root, inputs in rows:
        tracks = sorted(root.rglob("track_*.xz"))

        def bb(tracks=tracks, threads=1):
            n = 0
            for p in tracks:
                with bodybatch.open_track(p, threads=threads) as reader:
                    n += len(reader.to_arrays()["frame_index"])
            return n

        def bc(inputs=inputs):
            return sum(len(f["vertices"]) for v in inputs for f in bodycompress.BodyDecompressor(v))

        (t_bb, n_bb), (t_bc, n_bc) = best_alternating(bb, bc, r)
        os.environ[_kernels.KERNELS_ENV] = "numpy"
        t_np, _ = best(bb, max(1, r // 2))
        del os.environ[_kernels.KERNELS_ENV]
        t_th, _ = best(lambda: bb(threads=args.threads), r)
        print(f"   {name:24s} bodybatch {n_bb / t_bb:7,.0f} / {n_bb / t_np:7,.0f} ({n_bb} tracked)   bodycompress "
              f"{n_bc / t_bc:7,.0f} ({n_bc} detections)   {n_bb / t_bb / (n_bc / t_bc):4.2f}x / {n_bb / t_np / (n_bc / t_bc):4.2f}x"
              f"   threads={args.threads}: {n_bb / t_th:7,.0f} ({n_bb / t_th / (n_bc / t_bc):4.2f}x; bodycompress: one thread)")


if __name__ == "__main__":
    main()
