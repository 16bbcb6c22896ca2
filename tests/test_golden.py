"""Golden files: every format version ever written must keep decoding bit-exactly."""

import json
from pathlib import Path

import numpy as np
import pytest

import bodybatch

GOLDEN = Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.glob("v*/*.xz"))


def test_golden_files_exist_for_current_version():
    from bodybatch.formats import TRACK_FORMAT_VERSION

    assert any(p.parent.name == f"v{TRACK_FORMAT_VERSION[0]}" for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_file_decodes_exactly(path):
    stem = path.name[: -len(".xz")]
    expected = dict(np.load(path.with_name(stem + ".expected.npz")))
    metadata = json.loads(path.with_name(stem + ".metadata.json").read_text())
    major, minor = int(path.parent.name[1:]), int(stem.rsplit("_", 1)[1])
    assert path.read_bytes()[8:12] == major.to_bytes(2, "little") + minor.to_bytes(2, "little")
    with bodybatch.open_track(path) as reader:
        assert reader.metadata == metadata
        arrays = reader.to_arrays()
        np.testing.assert_array_equal(reader.frame_index, expected["frame_index"])
        assert len(reader) == len(expected["frame_index"])
    for key, value in expected.items():
        if key.startswith("camera."):
            got = arrays["camera"][key[len("camera."):]]
        else:
            got = arrays[key]
        assert got.dtype == value.dtype, key
        np.testing.assert_array_equal(got, value, err_msg=key)
