"""Fixtures reaching the shared material (../shared next to the repository).

CI always has ../shared; there (CI=true) a missing folder fails the run instead of
skipping tests.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/_helpers.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # scripts/_groundtruth.py, shared with the benchmarks

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    """Path of ../shared (corpus, synth generator, body model)."""
    if not (SHARED / "corpus").is_dir():
        message = f"shared material not found at {SHARED}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir):
    """Path of ../shared/corpus (real bodycompress prediction files + ground truth)."""
    return shared_dir / "corpus"


@pytest.fixture(scope="session")
def corpus_tracks(corpus_dir):
    """Person tracks (first 40 frames) of a real 3-person xz file and a zstd file."""
    from _groundtruth import gt_tracks

    tracks = {}
    for name in ("nlf_xz_0000", "nlf_zstd_0000"):
        for pid, track in gt_tracks(corpus_dir / f"{name}.xz", min_length=5, max_frames=40).items():
            tracks[f"{name}/p{pid}"] = track
    assert len(tracks) >= 4
    return tracks
