#!/usr/bin/env python3
"""Cut the committed sample dataset (sample/preds_np) from ../shared/corpus.

Frames are re-written with the real bodycompress package (pip install bodycompress),
as the NLF pipeline writes them, with the matching ground-truth ids beside them.

    python scripts/make_sample.py
"""

from pathlib import Path

import numpy as np

import bodybatch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "corpus"
CUTS = [
    # (source, destination relative to sample/preds_np, frames, compression)
    ("nlf_xz_0000", "clip_a.xz", 20, "xz"),
    ("nlf_xz_0001", "street/clip_b.xz", 16, "zstd"),
]


def main():
    import bodycompress

    out_root = ROOT / "sample" / "preds_np"
    for source, dest, n_frames, compression in CUTS:
        reader = bodybatch.read_predictions(SHARED / f"{source}.xz")
        metadata = dict(reader.metadata, n_frames=n_frames, video_path=Path(dest).with_suffix(".mp4").name)
        out = out_root / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        with bodycompress.BodyCompressor(str(out), metadata, compression=compression) as writer:
            for t, frame in enumerate(reader):
                if t == n_frames:
                    break
                writer.append(**{k: (np.array(v) if not isinstance(v, dict) else v) for k, v in frame.items()})
        gt = np.load(SHARED / f"{source}.gt.npz")
        counts = gt["counts"][:n_frames]
        np.savez_compressed(out.with_suffix(".gt.npz"), counts=counts, ids=gt["ids"][: counts.sum()])
        print(f"{out}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
