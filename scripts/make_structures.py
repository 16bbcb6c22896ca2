#!/usr/bin/env python3
"""Build the bundled structures (bodybatch/data/structure_<name>.msgpack) from template
meshes; ``--check`` verifies the committed files instead of writing them.

    python scripts/make_structures.py [--check] [--model ../shared/data/body_model.npz]

``anny13718``: the Anny body model's 13,718-vertex topology (shape 0's rest pose, in
mm on the 0.5 mm grid), 4 parents with format 3.0's parent choice. Anny is
Copyright (C) 2025 NAVER Corp., Apache License 2.0 (bodybatch/data/NOTICE_anny.txt).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bodybatch import _msgpack  # noqa: E402
from bodybatch.codec import bundled, group3  # noqa: E402
from bodybatch.codec.structure import build_structure  # noqa: E402

STEP_MM = 0.5


def build_anny(model):
    points_mm = np.asarray(np.load(model)["rest_vertices"][0], np.float64) * 1000.0
    grid = np.round(points_mm / STEP_MM).astype(np.int64)
    n_points, n_parents = bundled.BUNDLED["anny13718"]
    assert grid.shape == (n_points, 3), grid.shape
    structure = group3.sorted_parents(build_structure(grid, n_parents, step_cost=group3.STEP_COST))
    curve, steps = group3.encode_structure(structure)
    miss = round(bundled.median_miss_mm(grid * STEP_MM, structure), 4)
    return _msgpack.packb({"name": "anny13718", "n_points": n_points, "n_parents": n_parents,
                           "curve": curve, "steps": steps, "miss_mm": miss})  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT.parent / "shared" / "data" / "body_model.npz"))
    ap.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = ap.parse_args()
    data = build_anny(args.model)
    path = bundled.DATA / "structure_anny13718.msgpack"
    if args.check:
        same = path.read_bytes() == data
        print(f"{path}: {'same' if same else 'DIFFERS'}")
        sys.exit(0 if same else 1)
    path.write_bytes(data)
    print(f"wrote {path} ({len(data):,} bytes)")


if __name__ == "__main__":
    main()
