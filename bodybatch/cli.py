"""The ``bodybatch`` command: plan, run, audit, inspect, export, sweep, recover.

Exit codes: 0 success; 1 some jobs failed / audit found problems; 2 usage or
configuration errors; 3 unreadable or invalid files; 4 output errors (disk full,
permissions); 5 another run holds the output root. User mistakes print one line,
never a traceback.
"""

import argparse
import json
import logging
import sys

from bodybatch.errors import BodybatchError, OutputError

__all__ = ["main"]


def _print(*args):
    print(*args, flush=True)


def cmd_plan(args):
    from bodybatch.config import load_config
    from bodybatch.plan import parse_shard
    from bodybatch.manifest import iter_manifest
    from bodybatch.plan import plan_jobs

    config = load_config(args.config)
    shard = parse_shard(args.shard) if args.shard else None
    rows = iter_manifest(config.manifest_path)
    plan = plan_jobs(config, rows, args.force, args.only, args.exclude, args.skip_failed, shard, persist=False)
    if args.summary:
        counts = {}
        for job in plan.jobs:
            counts[job.action] = counts.get(job.action, 0) + 1
        for action, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            _print(f"{action:<11} {n}")
        if plan.orphans:
            _print(f"{'orphan':<11} {len(plan.orphans)}")
    else:
        width = max([len(j.video) for j in plan.jobs] + [5])
        for job in plan.jobs:
            _print(f"{job.action:<11} {job.video:<{width}}  {job.reason}")
        for video in plan.orphans:
            _print(f"{'orphan':<11} {video:<{width}}  in the manifest, input file gone (rows kept)")
    for note in plan.notes:
        _print(f"note: {note}")
    todo = len(plan.todo)
    skipped = sum(j.action == "skipped" for j in plan.jobs)
    _print(f"{len(plan.jobs)} video(s): {todo} to convert, {len(plan.jobs) - todo - skipped} up to date"
           + (f", {skipped} skipped (failed before, input unchanged)" if skipped else ""))  # fmt: skip
    return 0


def cmd_run(args):
    from bodybatch.batch import run_batch
    from bodybatch.config import load_config
    from bodybatch.plan import parse_shard

    overrides = {"pool.n_jobs": args.jobs, "pool.backend": args.backend, "pool.scheduler": args.scheduler}
    config = load_config(args.config, overrides=overrides)
    progress = False if args.no_progress or args.quiet else None
    shard = parse_shard(args.shard) if args.shard else None
    summary = run_batch(config, args.force, progress, args.only, args.exclude, args.skip_failed, shard)
    _print(summary.table())
    _print(f"manifest: {config.manifest_path}")
    return summary.exit_code


def cmd_manifest(args):
    from bodybatch._lock import OutputLock
    from bodybatch.config import load_config
    from bodybatch.manifest import compact_manifest

    config = load_config(args.config)
    with OutputLock(config.output_root):
        merged = compact_manifest(config.manifest_path)
    _print(f"{config.manifest_path}: merged {merged} journal(s)" if merged else f"{config.manifest_path}: nothing to merge")
    return 0


def cmd_audit(args):
    from bodybatch.audit import audit_manifest

    report = audit_manifest(args.manifest, root=args.root, quick=args.quick)
    _print(report.text())
    return report.exit_code


def cmd_inspect(args):
    from bodybatch._json import to_jsonable
    from bodybatch.formats import open_file

    with open_file(args.file) as reader:
        info = reader.summary()
        info["metadata"] = reader.metadata
    _print(json.dumps(to_jsonable(info), indent=2, sort_keys=True))
    return 0


def cmd_recover(args):
    from bodybatch.errors import FormatError
    from bodybatch.formats._journal import find_partials, recover_track

    failed = 0
    for given in args.paths:
        partials = find_partials(given)
        if not partials:
            _print(f"{given}: no partial track files")
        for path in partials:
            try:
                r = recover_track(path)
            except FormatError as exc:
                if len(partials) == 1 and len(args.paths) == 1:
                    raise
                logging.getLogger("bodybatch").error(f"bodybatch recover: error: {exc}")
                failed += 1
                continue
            _print(f"recovered {r['path']}: {r['n_frames']} frames in {r['chunks']} complete chunks, "
                   f"{r['bytes']} bytes ({r['dropped_bytes']} incomplete bytes dropped)")
    return 3 if failed else 0


def cmd_export(args):
    from pathlib import Path

    import numpy as np

    from bodybatch._files import write_atomically
    from bodybatch.errors import ConfigError
    from bodybatch.export import export_dataset, export_track
    from bodybatch.formats import open_file
    from bodybatch._rows import flat_arrays

    source, out = Path(args.source), Path(args.out)
    if source.is_dir() or source.suffix == ".jsonl":  # a converted dataset
        progress = False if args.no_progress or args.quiet else None
        written = export_dataset(source, out, args.format, args.fields, args.only, progress)
        _print(f"wrote {len(written)} track(s) ({args.format}) under {out}")
        return 0
    if args.only:
        raise ConfigError("--only selects tracks of a dataset (an output root or manifest), not of one file")
    with open_file(source) as reader:
        is_track = reader.summary()["kind"] == "track"
        if (args.format == "frames" or args.fields) and not is_track:
            raise ConfigError(f"{source}: --format frames and --fields apply to track files and datasets")
        if args.format == "frames":
            export_track(reader, out, "frames", args.fields)
            _print(f"wrote {out}/ ({len(reader)} frames)")
            return 0
        arrays = flat_arrays(reader.to_arrays(args.fields), reader.metadata, source) if is_track else reader.export_arrays()
    write_atomically(out, lambda f: np.savez(f, **arrays), what="export")
    _print(f"wrote {out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(arrays.items())))
    return 0


def cmd_sweep(args):
    from bodybatch import sweep
    from bodybatch.codec import codec_ids
    from bodybatch.errors import ConfigError

    if args.codec is not None and args.codec not in codec_ids():
        raise ConfigError(f"--codec must be one of {', '.join(codec_ids())}; got {args.codec!r}")
    if args.plot:
        from bodybatch._plot import require_matplotlib

        require_matplotlib()  # before any work
    tracks, sources, codec = sweep.collect_tracks(args.inputs, videos=args.videos, max_frames=args.frames)
    progress = False if args.no_progress or args.quiet else None
    result = sweep.run_sweep(tracks, args.steps, codec=args.codec or codec or "bodybatch", fields=args.fields,
                             uncertainty_step=args.uncertainty_step, reference=not args.no_reference,
                             progress=progress, sources=sources)  # fmt: skip
    if args.plot:
        from bodybatch._plot import plot_sweep

        try:
            plot_sweep(result, args.plot)
        except OSError as exc:
            raise OutputError(f"{args.plot}: cannot write plot ({exc.strerror or exc})") from None
    if args.json:
        _print(json.dumps(result.to_json(), indent=2))
    else:
        _print(result.table())
    if args.plot:
        logging.getLogger("bodybatch").info(f"wrote {args.plot}")
    return 0


def _step(text):
    """argparse type: a grid step in mm within the codecs' range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1e-6 <= value <= 1e3:
        raise argparse.ArgumentTypeError(f"a step must be within [1e-6, 1000] mm, got {text}")
    return value


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser():
    p = argparse.ArgumentParser(
        prog="bodybatch",
        description="Turn per-video 3D human predictions into compact per-person track files.",
    )
    from bodybatch._version import __version__
    from bodybatch.pool import BACKENDS

    p.add_argument("--version", action="version", version=f"bodybatch {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="more messages (failure tracebacks too)")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    common.add_argument("--log", metavar="FILE", help="append every message, with failure tracebacks, to FILE")
    select = argparse.ArgumentParser(add_help=False)
    select.add_argument("config", help="YAML config file")
    select.add_argument("--only", action="append", default=[], metavar="GLOB",
                        help="only videos whose path (relative to input.root) matches GLOB; repeatable")
    select.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="skip videos whose path matches GLOB; repeatable")
    select.add_argument("--skip-failed", action="store_true",
                        help="do not retry videos that failed before and whose input is unchanged")
    select.add_argument("--shard", metavar="I/N|slurm",
                        help="only shard I of N (0-based; 'slurm': from SLURM_ARRAY_TASK_*); shards run together")  # fmt: skip

    s = sub.add_parser("plan", parents=[common, select], help="show what a run would do, and why, without writing anything")
    s.add_argument("--force", action="store_true", help="plan to redo every video")
    s.add_argument("--summary", action="store_true", help="counts per action instead of one line per video")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("run", parents=[common, select], help="convert every video that is not up to date")
    s.add_argument("--jobs", type=int, metavar="N", help="worker processes (overrides pool.n_jobs)")
    s.add_argument("--backend", choices=BACKENDS, help="overrides pool.backend")
    s.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (overrides pool.scheduler)")
    s.add_argument("--force", action="store_true", help="redo every video")
    s.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("manifest", parents=[common], help="manifest maintenance: 'compact' merges the journals")
    s.add_argument("action", choices=["compact"], help="compact: merge the journals into the sorted manifest")
    s.add_argument("config", help="YAML config file")
    s.set_defaults(func=cmd_manifest)

    s = sub.add_parser("audit", parents=[common], help="check every file listed in a manifest")
    s.add_argument("manifest", help="manifest.jsonl")
    s.add_argument("--root", help="output root of the rows' paths (default: the manifest's folder)")
    s.add_argument("--quick", action="store_true", help="existence and size only")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("inspect", parents=[common], help="describe a prediction or track file (JSON): kind, format, frames, "
                                       "people per frame, fields, metadata")
    s.add_argument("file", help="prediction file or track file (.xz)")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("recover", parents=[common], help="publish the complete chunks of track files a killed live "
                                       "writer left (*.partial + journal), checking every CRC")
    s.add_argument("paths", nargs="+", help="a track.xz.partial, its final name, or a folder (every *.partial below)")
    s.set_defaults(func=cmd_recover)

    from bodybatch.export import FORMATS as EXPORT_FORMATS
    from bodybatch._rows import READ_FIELDS

    s = sub.add_parser("export", parents=[common], help="write decoded arrays: of a prediction or track file to .npz, "
                                      "or of a converted dataset (output root or manifest) to a folder")  # fmt: skip
    s.add_argument("source", metavar="SOURCE", help="prediction file, track file, output root or manifest.jsonl")
    s.add_argument("out", metavar="OUT", help="output .npz (one file) or folder (dataset, or --format frames)")
    s.add_argument("--format", choices=EXPORT_FORMATS, default="npz",
                   help="npz: one .npz per track; frames: <video>/<track>/<field>/<frame:06d>.npy + track.json")
    s.add_argument("--fields", nargs="+", choices=READ_FIELDS, metavar="FIELD",
                   help=f"track fields to decode and write ({', '.join(READ_FIELDS)}; default: all)")
    s.add_argument("--only", action="append", default=[], metavar="GLOB",
                   help="dataset: only tracks of videos whose path (relative to input.root) matches GLOB; repeatable")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_export)

    from bodybatch.sweep import FIELDS

    s = sub.add_parser("sweep", parents=[common], help="size against error for several quantization steps",
                       description="Encode tracks at several grid steps and report size and error per field "
                                   "(errors in mm; uncertainties converted to mm).")  # fmt: skip
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="prediction files (split with the default tracks.* settings), track files, "
                        "or one YAML config (a sample of its videos, split as it says)")  # fmt: skip
    s.add_argument("--steps", nargs="+", type=_step, default=[0.25, 0.5, 1.0, 2.0, 4.0], metavar="MM",
                   help="grid steps of vertices and joints, mm (default: 0.25 0.5 1 2 4)")
    s.add_argument("--uncertainty-step", type=_step, metavar="MM",
                   help="fixed grid step of the uncertainties, mm (default: each step)")
    s.add_argument("--fields", nargs="+", choices=list(FIELDS), metavar="FIELD",
                   help=f"quantized fields to encode and measure ({', '.join(FIELDS)}; default: all present)")
    s.add_argument("--codec", metavar="NAME", help="bodybatch or bodycompress (default: the config's, else bodybatch)")
    s.add_argument("--videos", type=_positive, default=5, metavar="N",
                   help="with a config: videos sampled evenly from its inputs (default 5)")
    s.add_argument("--frames", type=_positive, metavar="N", help="read only the first N frames of each video")
    s.add_argument("--plot", metavar="FILE.png", help="write a PNG of size against RMS error (needs matplotlib)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table (schema in the README)")
    s.add_argument("--no-reference", action="store_true", help="skip the bodycompress reference point")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sweep)
    return p


def _setup_logging(args):
    """The ``bodybatch`` logger: messages on stderr (-q: warnings and errors, -v:
    everything), every message with timestamps in ``--log FILE``."""
    logger = logging.getLogger("bodybatch")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    logger.addHandler(console)
    if args.log:
        try:
            handler = logging.FileHandler(args.log, encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{args.log}: cannot open log file ({exc.strerror})") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logger = logging.getLogger("bodybatch")
    try:
        logger = _setup_logging(args)
        logger.debug(f"bodybatch {' '.join(sys.argv[1:] if argv is None else argv)}")
        return args.func(args)
    except BodybatchError as exc:
        logger.error(f"bodybatch {args.command}: error: {exc}")
        return exc.exit_code
    except FileNotFoundError as exc:
        logger.error(f"bodybatch {args.command}: error: {exc.filename}: no such file")
        return 3
    except KeyboardInterrupt:
        logger.error(f"bodybatch {args.command}: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
