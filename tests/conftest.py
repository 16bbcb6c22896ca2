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
