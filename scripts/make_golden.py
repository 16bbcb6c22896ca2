#!/usr/bin/env python3
"""Write the golden files of the current track format version into tests/golden/v<major>/.

Run once per new format version (old versions' files stay as they are): a small real
track cut from ../shared/corpus is encoded with the current writer, and the arrays it
decodes to are stored beside it. tests/test_golden.py checks that every version's
files still decode to exactly those arrays.

    python scripts/make_golden.py [--major 2]

``--major 2`` writes the format 2.0 file (the v2 predictor, ``predictor=2``), ``--major 3``
the format 3.0 file (its fixed-point form, ``predictor=3``), ``--major 3 --bundled`` the
format 3.1 file (the whole 13,718-vertex mesh, which names its bundled structure).
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _benchdata as bd  # noqa: E402

import bodybatch  # noqa: E402
from bodybatch.formats import TRACK_FORMAT_VERSION  # noqa: E402

#: Writer options per format major (2: the v2 predictor), small chunks to cross chunk
#: boundaries, and the vertex subsampling (2: enough points for activity classes).
MAJOR_OPTIONS = {
    TRACK_FORMAT_VERSION[0]: ({"chunk_size": 8}, 8),
    2: ({"chunk_size": 8, "predictor": 2, "n_parents": 3, "window": 4}, 4),
    3: ({"chunk_size": 8, "predictor": 3, "n_parents": 4, "window": 8, "level": 12}, 4),
}
#: Format 3.1 (a bundled structure): every vertex of the Anny topology, fewer rows.
BUNDLED_OPTIONS = ({"chunk_size": 4, "predictor": 3, "n_parents": 4, "window": 8, "level": 12}, 1)
BUNDLED_ROWS = 6


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--major", type=int, default=TRACK_FORMAT_VERSION[0], choices=sorted(MAJOR_OPTIONS))
    ap.add_argument("--bundled", action="store_true", help="format 3.1: the whole mesh, its bundled structure")
    args = ap.parse_args()
    options, stride = BUNDLED_OPTIONS if args.bundled else MAJOR_OPTIONS[args.major]
    _, track = next(bd.gt_tracks(bd.SHARED / "corpus" / "nlf_xz_0001.xz"))
    rows = slice(0, BUNDLED_ROWS if args.bundled else 21)
    small = {
        "vertices": track["vertices"][rows, ::stride],
        "vertex_uncertainties": track["vertex_uncertainties"][rows, ::stride],
        "joints": track["joints"][rows],
        "joint_uncertainties": track["joint_uncertainties"][rows],
        "boxes": track["boxes"][rows],
        "camera": track["camera"][rows],
        "frame_index": track["frame_index"][rows] * 2 + 3,
    }
    metadata = {"video_path": "golden.mp4", "fps": 30.0, "track": 0, "note": "golden file"}
    tmp = Path(__file__).resolve().parents[1] / "tests" / "golden" / ".new.xz"
    bodybatch.write_track(tmp, small, metadata, **options)
    major, minor = struct.unpack("<HH", tmp.read_bytes()[8:12])
    out = tmp.parent / f"v{major}"
    out.mkdir(parents=True, exist_ok=True)
    name = f"track_v{major}_{minor}"
    tmp.replace(out / f"{name}.xz")
    with bodybatch.open_track(out / f"{name}.xz") as reader:
        arrays = reader.to_arrays()
    flat = {k: v for k, v in arrays.items() if k != "camera"}
    flat.update({f"camera.{k}": v for k, v in arrays["camera"].items()})
    np.savez_compressed(out / f"{name}.expected.npz", **flat)
    (out / f"{name}.metadata.json").write_text(json.dumps(metadata, sort_keys=True, indent=1) + "\n")
    print(f"wrote {out / name}.*")


if __name__ == "__main__":
    main()
