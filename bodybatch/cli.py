"""The ``bodybatch`` command: plan, run, audit, inspect, export.

Exit codes: 0 success; 1 some jobs failed / audit found problems; 2 usage or
configuration errors; 3 unreadable or invalid files; 4 output errors (disk full,
permissions); 5 another run holds the output root. User mistakes print one line,
never a traceback.
"""

import argparse
import json
import sys

from bodybatch.errors import BodybatchError

__all__ = ["main"]


def _print(*args):
    print(*args, flush=True)


def cmd_plan(args):
    from bodybatch.config import load_config
    from bodybatch.manifest import read_manifest
    from bodybatch.plan import plan_jobs

    config = load_config(args.config)
    jobs, orphans = plan_jobs(config, read_manifest(config.manifest_path), force=args.force)
    width = max([len(j.video) for j in jobs] + [5])
    for job in jobs:
        _print(f"{job.action:<11} {job.video:<{width}}  {job.reason}")
    for video in orphans:
        _print(f"{'orphan':<11} {video:<{width}}  in the manifest, input file gone (rows kept)")
    todo = sum(j.todo for j in jobs)
    _print(f"{len(jobs)} video(s): {todo} to convert, {len(jobs) - todo} up to date")
    return 0


def cmd_run(args):
    from bodybatch.batch import run_batch
    from bodybatch.config import load_config

    overrides = {"pool.n_jobs": args.jobs, "pool.backend": args.backend, "pool.scheduler": args.scheduler}
    config = load_config(args.config, overrides=overrides)
    summary = run_batch(config, force=args.force, progress=False if args.no_progress else None)
    _print(summary.table())
    _print(f"manifest: {config.manifest_path}")
    return summary.exit_code


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


def cmd_export(args):
    from pathlib import Path

    import numpy as np

    from bodybatch._files import write_atomically
    from bodybatch.formats import open_file

    with open_file(args.file) as reader:
        arrays = reader.export_arrays()
    out = Path(args.out)
    write_atomically(out, lambda f: np.savez(f, **arrays), what="export")
    _print(f"wrote {out}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in sorted(arrays.items())))
    return 0


def build_parser():
    p = argparse.ArgumentParser(
        prog="bodybatch",
        description="Turn per-video 3D human predictions into compact per-person track files.",
    )
    from bodybatch._version import __version__
    from bodybatch.pool import BACKENDS

    p.add_argument("--version", action="version", version=f"bodybatch {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("plan", help="show what a run would do, and why, without writing anything")
    s.add_argument("config", help="YAML config file")
    s.add_argument("--force", action="store_true", help="plan to redo every video")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("run", help="convert every video that is not up to date")
    s.add_argument("config", help="YAML config file")
    s.add_argument("--jobs", type=int, metavar="N", help="worker processes (overrides pool.n_jobs)")
    s.add_argument("--backend", choices=BACKENDS, help="overrides pool.backend")
    s.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (overrides pool.scheduler)")
    s.add_argument("--force", action="store_true", help="redo every video")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("audit", help="check every file listed in a manifest")
    s.add_argument("manifest", help="manifest.jsonl")
    s.add_argument("--root", help="output root of the rows' paths (default: the manifest's folder)")
    s.add_argument("--quick", action="store_true", help="existence and size only")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("inspect", help="describe a prediction or track file (JSON): kind, format, frames, "
                                       "people per frame, fields, metadata")
    s.add_argument("file", help="prediction file or track file (.xz)")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("export", help="write a prediction or track file's decoded arrays to .npz "
                                      "(predictions: detections concatenated over frames, plus counts)")
    s.add_argument("file", help="prediction file or track file (.xz)")
    s.add_argument("out", help="output .npz")
    s.set_defaults(func=cmd_export)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BodybatchError as exc:
        print(f"bodybatch {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except FileNotFoundError as exc:
        print(f"bodybatch {args.command}: error: {exc.filename}: no such file", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"bodybatch {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
