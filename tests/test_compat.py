"""Compatibility mode: files that the real bodycompress 0.3.0 reads, and back."""

import os

import bodycompress
import numpy as np
import pytest

import bodybatch
from bodybatch.errors import TrackError

from _helpers import grid, gt_tracks


@pytest.fixture(scope="module")
def person(corpus_dir):
    tracks = gt_tracks(corpus_dir / "nlf_xz_0000.xz", min_length=10, max_frames=30)
    return tracks[0]


@pytest.mark.parametrize("compression", ["xz", "zstd"])
@pytest.mark.parametrize("step", [0.5, 1.0])
def test_bodycompress_reads_our_files(tmp_path, person, compression, step):
    path = tmp_path / "track.xz"
    meta = {"video": "clip.mp4", "person": 0}
    info = bodybatch.write_track(path, person, meta, codec="bodycompress", compression=compression, quantization_mm=step)
    assert info.max_abs_error_mm <= step / 2
    reader = bodycompress.BodyDecompressor(str(path))
    assert len(reader) == len(person["vertices"])
    assert reader.metadata["video"] == "clip.mp4" and reader.metadata["bodybatch"]["codec"]["id"] == "bodycompress"
    theirs = list(reader)
    with bodybatch.open_track(path) as ours:
        assert ours.metadata == meta
        np.testing.assert_array_equal(ours.frame_index, person["frame_index"])
        mine = list(ours)
    for t, (a, b) in enumerate(zip(theirs, mine)):
        assert a["frame_index"] == b["frame_index"] == person["frame_index"][t]
        for key, scale in (("vertices", 1), ("joints", 1), ("vertex_uncertainties", 1000), ("joint_uncertainties", 1000)):
            np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(a[key], grid(person[key][t], step, scale))
            assert np.max(np.abs(a[key].astype(np.float64) - person[key][t])) * scale <= step / 2 + 1e-3 * (scale > 1)
        np.testing.assert_array_equal(a["boxes"], person["boxes"][t])
        for key, value in person["camera"][t].items():
            np.testing.assert_array_equal(a["camera"][key], value)


def test_we_read_files_bodycompress_wrote(tmp_path, person):
    path = tmp_path / "theirs.xz"
    with bodycompress.BodyCompressor(str(path), {"m": 1}, n_threads=1) as w:
        for t in range(len(person["vertices"])):
            w.append(vertices=person["vertices"][t], joints=person["joints"][t], frame_index=int(person["frame_index"][t]))
    with bodybatch.open_track(path) as reader:
        assert reader.codec == {"id": "bodycompress"} and reader.metadata == {"m": 1}
        np.testing.assert_array_equal(reader.frame_index, person["frame_index"])
        np.testing.assert_array_equal(reader.to_arrays()["vertices"], grid(person["vertices"], 0.5))
        assert reader[-1]["vertices"].shape == person["vertices"].shape[1:]


def test_bad_rows_leave_nothing_behind(tmp_path, person):
    bad = dict(person, vertices=person["vertices"].copy())
    bad["vertices"][5, 3, 0] = np.nan
    with pytest.raises(TrackError, match="NaN"):
        bodybatch.write_track(tmp_path / "bad.xz", bad, codec="bodycompress")
    assert os.listdir(tmp_path) == []
    with pytest.raises(TrackError, match="compression must be one of xz, zstd"):
        bodybatch.write_track(tmp_path / "bad.xz", person, codec="bodycompress", compression="gzip")
