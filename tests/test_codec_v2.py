"""Codec v2 (``predictor=2``, format 2.0): exact round trips, edge cases, versioning."""

import struct

import numpy as np
import pytest

import bodybatch
from bodybatch.codec import get_codec
from bodybatch.errors import FormatError

from _helpers import check_track_roundtrip

V2 = {"predictor": 2, "chunk_size": 128, "n_parents": 3, "window": 4}


def test_roundtrip_corpus_tracks(tmp_path, corpus_tracks):
    for name, track in corpus_tracks.items():
        check_track_roundtrip(tmp_path / "t.xz", track, {"name": name}, **V2)


@pytest.mark.parametrize("options", [
    {"chunk_size": 7, "window": 1},
    {"chunk_size": 16, "window": 8, "n_parents": 1},
    {"chunk_size": 13, "window": 3, "quantization_mm": 0.1},
], ids=str)  # fmt: skip
def test_roundtrip_options_and_chunk_boundaries(tmp_path, corpus_tracks, options):
    track = corpus_tracks["nlf_xz_0000/p0"]
    check_track_roundtrip(tmp_path / "t.xz", track, {}, **{**V2, **options})


def test_tiny_tracks(tmp_path):
    rng = np.random.default_rng(0)
    for n_frames, n_points in [(1, 1), (1, 5), (2, 1), (3, 2), (5, 3), (9, 30), (130, 1)]:
        track = {
            "vertices": rng.normal(0, 300, (n_frames, n_points, 3)).astype(np.float32),
            "vertex_uncertainties": rng.uniform(0.01, 0.1, (n_frames, n_points)).astype(np.float32),
        }
        check_track_roundtrip(tmp_path / "t.xz", track, **{**V2, "chunk_size": 2})
        check_track_roundtrip(tmp_path / "t.xz", track, **V2)


def test_huge_values_use_exact_wide_arithmetic(tmp_path):
    """Values near the grid limit (2**30 steps): int64 work arrays, same results."""
    rng = np.random.default_rng(1)
    n_frames, n_points = 20, 300
    v = rng.uniform(-2**29, 2**29, (n_frames, n_points, 3)) * 0.5
    v[:, ::7] *= -1
    v[5:9] = -v[5:9]  # large jumps between frames
    track = {"vertices": v.astype(np.float32), "joints": (v[:, :24] * 0.9).astype(np.float32)}
    for options in ({**V2, "chunk_size": 8}, {}):
        bodybatch.write_track(tmp_path / "t.xz", track, **options)
        with bodybatch.open_track(tmp_path / "t.xz") as reader:
            arrays = reader.to_arrays()
        for key in track:  # |q| > 2**24 decodes to float64 (docs/format.md)
            expected = np.round(track[key].astype(np.float64) * 2) / 2
            np.testing.assert_array_equal(arrays[key].astype(np.float64), expected)


def test_writes_format_2_and_other_majors_are_rejected(tmp_path, corpus_tracks):
    track = corpus_tracks["nlf_xz_0000/p0"]
    path = tmp_path / "v2.xz"
    bodybatch.write_track(path, track, **V2)
    data = path.read_bytes()
    assert struct.unpack("<HH", data[8:12]) == (2, 0)
    with bodybatch.open_track(path) as reader:
        assert reader.codec["predictor"] == 2
    # A v2 codec config under a 1.x preamble (or the reverse) is a corrupt file.
    bad = bytearray(data)
    bad[8:10] = struct.pack("<H", 1)
    path.write_bytes(bytes(bad))
    with pytest.raises(FormatError, match="does not match"):
        bodybatch.open_track(path).close()
    v1 = tmp_path / "v1.xz"
    bodybatch.write_track(v1, track)
    assert struct.unpack("<HH", v1.read_bytes()[8:12]) == (1, 0)
    assert "predictor" not in get_codec("bodybatch").get_config()  # v1 config hashes unchanged


def test_v2_smaller_than_v1(tmp_path, corpus_tracks):
    total = {1: 0, 2: 0}
    for track in corpus_tracks.values():
        total[1] += bodybatch.write_track(tmp_path / "a.xz", track).bytes
        total[2] += bodybatch.write_track(tmp_path / "b.xz", track, **V2).bytes
    assert total[2] < total[1]


def test_reader_without_major_2_rejects_it_cleanly(tmp_path, corpus_tracks, monkeypatch):
    """What a bodybatch release before v2 does with a 2.0 file: a clear error."""
    from bodybatch.formats import bodybatch as fmt

    path = tmp_path / "v2.xz"
    bodybatch.write_track(path, corpus_tracks["nlf_xz_0000/p0"], **V2)
    monkeypatch.setattr(fmt, "READ_MAJORS", (1,))
    with pytest.raises(FormatError, match=r"format version 2\.0 is not supported"):
        bodybatch.open_track(path).close()


def test_spatial_weights_are_exact_integers():
    from bodybatch.codec.predict2 import SPATIAL_ONE, spatial_weights

    rng = np.random.default_rng(3)
    x0 = np.concatenate([rng.integers(-3000, 3000, (50, 3)), np.zeros((1, 3), np.int64)])
    parents = np.stack([rng.choice(50, 3, replace=False) for _ in range(50)])
    parents[0] = 50  # the virtual zero point: even weights
    parents[1] = [3, 3, 4]  # repeated parents: even weights
    # a point exactly inside its parents' triangle gets its barycentric weights
    x0[5] = (x0[parents[5, 0]] * 32 + x0[parents[5, 1]] * 16 + x0[parents[5, 2]] * 16) // 64
    w = spatial_weights(x0, parents)
    assert w.dtype == np.int64 and (w.sum(axis=1) == SPATIAL_ONE).all()
    assert list(w[0]) == [22, 21, 21] and list(w[1]) == [22, 21, 21]
    assert abs(w[5, 0] - 32) <= 1 and abs(w[5, 1] - 16) <= 1
    # huge coordinates: shifted before the solve, no overflow
    w2 = spatial_weights(x0 * (2**17), parents)
    assert (w2.sum(axis=1) == SPATIAL_ONE).all()


def test_inconsistent_chunk_entries_are_format_errors(corpus_tracks):
    from bodybatch.codec import entropy

    track = corpus_tracks["nlf_xz_0000/p0"]
    chunk = {k: np.asarray(track[k])[:20] for k in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties")}
    codec = get_codec("bodybatch", **V2)
    layout = codec.make_layout(chunk)
    encoded, _ = codec.encode_chunk(chunk, layout)
    codec.decode_chunk(encoded, layout, 20)

    def broken(**change):
        entry = dict(encoded["points"]["vertices"], **change)
        return {**encoded, "points": {**encoded["points"], "vertices": entry}}

    vertices = encoded["points"]["vertices"]
    from bodybatch.codec.bodybatch_codec import _blocks

    n_weights = len(_blocks(chunk["vertices"].shape[1])) * 2 * V2["window"]  # blocks x (xyz, unc) x lags
    for change, match in [
        ({"s_abs": 0}, "exceed"),
        ({"s_abs": 10 * (vertices["max_abs"] + 1) ** 2}, "implausible residual bound"),
        ({"weights": entropy.encode_numbers(np.zeros(3, np.int16))}, "weights"),
        ({"weights": entropy.encode_numbers(np.full(n_weights, 8000, np.int16))}, "exceed"),
        ({"dtype": "float64"}, "dtype"),
        ({"streams": vertices["streams"][:-1]}, "residual streams"),
    ]:
        with pytest.raises(FormatError, match=match):
            codec.decode_chunk(broken(**change), layout, 20)


@pytest.mark.parametrize("n_points", [4096 + 200, 8192 + 100])
def test_small_last_level_joined_to_a_classed_block(tmp_path, n_points):
    """A last level below 256 points shares a classed block with the level before: the
    decoder must not run the spatial step in the block's class-sorted layout (bodybatch
    0.2 did, and decoded such point counts wrongly; the files themselves are fine)."""
    rng = np.random.default_rng(n_points)
    track = {
        "vertices": rng.normal(0, 300, (12, n_points, 3)).astype(np.float32),
        "vertex_uncertainties": rng.uniform(0.01, 0.1, (12, n_points)).astype(np.float32),
    }
    check_track_roundtrip(tmp_path / "t.xz", track, **V2)
