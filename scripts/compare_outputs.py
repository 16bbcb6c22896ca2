#!/usr/bin/env python3
"""Compare two bodybatch output roots: the same track files with the same bytes, and
the same manifest rows except the fields that record when and how fast a run was.

    python scripts/compare_outputs.py BEFORE_ROOT AFTER_ROOT [--ignore created encode_seconds]

Used to show that a refactoring changes no output byte. Exit 0 when identical, 1 with
the differences listed otherwise.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

VOLATILE = ("created", "encode_seconds")


def track_files(root):
    """``{relative path: sha256}`` of every visible file except the manifest."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(p.startswith(".") for p in Path(rel).parts) and not rel.endswith(".jsonl"):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def manifest_rows(root, ignore):
    rows = []
    for line in (Path(root) / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.append({k: v for k, v in row.items() if k not in ignore})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--ignore", nargs="*", default=list(VOLATILE), help="manifest fields not compared")
    args = ap.parse_args()
    problems = []
    a, b = track_files(args.before), track_files(args.after)
    for rel in sorted(set(a) | set(b)):
        if a.get(rel) != b.get(rel):
            problems.append(f"{rel}: " + ("missing after" if rel not in b else "new" if rel not in a else "bytes differ"))
    ra, rb = manifest_rows(args.before, args.ignore), manifest_rows(args.after, args.ignore)
    if len(ra) != len(rb):
        problems.append(f"manifest: {len(ra)} rows before, {len(rb)} after")
    for i, (x, y) in enumerate(zip(ra, rb)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            problems.append(f"manifest row {i + 1}: differs in {', '.join(keys)}")
    for p in problems:
        print(p)
    print(f"{len(a)} files, {len(ra)} manifest rows compared (ignoring {', '.join(args.ignore)}): "
          + ("identical" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
