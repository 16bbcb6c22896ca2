"""The bodybatch track codec and container on real corpus tracks and edge cases."""

import os
import struct

import numpy as np
import pytest

import bodybatch
from bodybatch._rows import DETECTION_FIELDS
from bodybatch.codec import get_codec
from bodybatch.codec.predict import decode_residuals, encode_residuals
from bodybatch.codec.structure import build_structure, structure_from_arrays, structure_to_arrays
from bodybatch.errors import FormatError, TrackError

from _helpers import check_track_roundtrip


@pytest.fixture(scope="session")
def track(corpus_tracks):
    return corpus_tracks["nlf_xz_0000/p0"]


CODEC_OPTIONS = [
    {},
    {"quantization_mm": 1.0},
    {"quantization_mm": 0.1},
    {"chunk_size": 7, "window": 1},
    {"chunk_size": 16, "window": 3, "n_parents": 1},
    {"n_parents": 6, "level": 2},
    {"codec": "bodycompress"},
    {"codec": "bodycompress", "compression": "zstd", "quantization_mm": 1.0},
]


@pytest.mark.parametrize("options", CODEC_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_roundtrip_every_codec(tmp_path, track, options):
    meta = {"video": "clip.mp4", "fps": 30.0, "nested": {"ids": [1, 2]}}
    check_track_roundtrip(tmp_path / "t.xz", track, meta, **options)


def test_roundtrip_all_corpus_tracks(tmp_path, corpus_tracks):
    for name, track in corpus_tracks.items():
        check_track_roundtrip(tmp_path / "t.xz", track, {"name": name})


def test_smaller_than_bodycompress_layout(tmp_path, track):
    """The default codec must beat the bodycompress layout on the same grid; the
    benchmark script measures against bodycompress itself."""
    a = bodybatch.write_track(tmp_path / "a.xz", track)
    b = bodybatch.write_track(tmp_path / "b.xz", track, codec="bodycompress")
    assert a.bytes * 1.5 < b.bytes
    assert a.ratio > 10


def test_single_frame_and_tiny_tracks(tmp_path):
    rng = np.random.default_rng(0)
    for n_frames, n_points in [(1, 1), (1, 5), (2, 1), (3, 2), (5, 3), (9, 30)]:
        track = {
            "vertices": rng.normal(0, 300, (n_frames, n_points, 3)).astype(np.float32),
            "vertex_uncertainties": rng.uniform(0.01, 0.1, (n_frames, n_points)).astype(np.float32),
        }
        check_track_roundtrip(tmp_path / "t.xz", track, chunk_size=2)


def test_joints_only_and_no_extras(tmp_path, track):
    check_track_roundtrip(tmp_path / "j.xz", {"joints": track["joints"]})
    check_track_roundtrip(tmp_path / "v.xz", {"vertices": track["vertices"][:10]})


def test_streaming_writer_equals_whole_track(tmp_path, track):
    info = bodybatch.write_track(tmp_path / "whole.xz", track, {"m": 1}, chunk_size=8)
    with bodybatch.TrackWriter(tmp_path / "rows.xz", {"m": 1}, chunk_size=8) as w:
        for i in range(len(track["vertices"])):
            w.append({k: (v[i] if k != "camera" else v[i]) for k, v in track.items()})
    assert (tmp_path / "whole.xz").read_bytes() == (tmp_path / "rows.xz").read_bytes()
    assert w.info.bytes == info.bytes


def test_deterministic_bytes(tmp_path, track):
    bodybatch.write_track(tmp_path / "a.xz", track)
    bodybatch.write_track(tmp_path / "b.xz", track)
    assert (tmp_path / "a.xz").read_bytes() == (tmp_path / "b.xz").read_bytes()


def test_random_access_decodes_one_chunk(tmp_path, track, monkeypatch):
    from bodybatch.formats.bodybatch import BodybatchTrackReader

    bodybatch.write_track(tmp_path / "t.xz", track, chunk_size=8)
    calls = []
    original = BodybatchTrackReader._read_chunk
    monkeypatch.setattr(BodybatchTrackReader, "_read_chunk", lambda self, i: calls.append(i) or original(self, i))
    with bodybatch.open_track(tmp_path / "t.xz") as reader:
        row = reader[len(reader) - 3]
    assert calls == [(len(track["vertices"]) - 3) // 8]
    assert row["vertices"].shape == track["vertices"].shape[1:]


def test_integer_predictor_is_exact_and_integer_only():
    rng = np.random.default_rng(1)
    for n, t, d in [(1, 4, 3), (7, 1, 4), (300, 9, 4), (2000, 6, 3)]:
        x = rng.integers(-2**20, 2**20, (t, n, d))  # frame-major
        for m, k in [(1, 1), (4, 2), (3, 3)]:
            s = build_structure(x[0, :, :3], m)
            s2 = structure_from_arrays(*structure_to_arrays(s), m)
            np.testing.assert_array_equal(s.parents, s2.parents)
            res = encode_residuals(x, s, k)
            assert res.dtype.kind == "i"
            out = decode_residuals(res, s2, k, int(np.abs(x).max()))
            np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("name, options", [("bodybatch", {"quantization_mm": 1.0, "window": 3}),
                                           ("bodycompress", {"compression": "zstd"})])  # fmt: skip
def test_codec_config_roundtrip(name, options):
    import json

    codec = get_codec(name, **options)
    config = json.loads(json.dumps(codec.get_config()))  # JSON-safe
    assert config["id"] == name and all(config[k] == v for k, v in options.items())
    assert get_codec(config).get_config() == config
    assert type(codec).from_config(config).get_config() == config
    assert type(codec).from_config(dict(config, format_version=[1, 0])).get_config() == config
    with pytest.raises(TrackError, match=f"bad options for codec '{name}'.*bogus"):
        type(codec).from_config(dict(config, bogus=1))
    other = "bodycompress" if name == "bodybatch" else "bodybatch"
    with pytest.raises(TrackError, match=f"not for codec '{name}'"):
        type(codec).from_config(dict(config, id=other))


def test_codec_ids_and_option_errors():
    with pytest.raises(TrackError, match="allowed: bodybatch, bodycompress"):
        get_codec("gzip")
    with pytest.raises(TrackError, match="chunk_size"):
        get_codec("bodybatch", chunk_size=0)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda t: t["vertices"].__setitem__((3, 10, 1), np.nan), "NaN or inf"),
        (lambda t: t["vertex_uncertainties"].__setitem__((0, 0), np.inf), "NaN or inf"),
        (lambda t: t["vertices"].__setitem__((2, 0, 0), 1e12), "too large"),
        (lambda t: t.__setitem__("vertices", t["vertices"][:, :, :2]), "shape"),
        (lambda t: t.__setitem__("joints", t["joints"][:-1]), "rows"),
        (lambda t: t.__setitem__("vertex_uncertainties", t["vertex_uncertainties"][:, :-1]), "points"),
        (lambda t: t.__setitem__("frame_index", t["frame_index"][::-1].copy()), "strictly increasing"),
        (lambda t: t.__setitem__("vertices", t["vertices"].astype(object)), "dtype"),
        (lambda t: t.__setitem__("colour", np.zeros(3)), "unknown track fields"),
        (lambda t: t.__setitem__("camera", {"loc": np.zeros(3)}), "missing"),
    ],
)
def test_bad_track_input_is_rejected_and_leaves_no_file(tmp_path, track, mutate, match):
    bad = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in track.items()}
    mutate(bad)
    with pytest.raises(TrackError, match=match):
        bodybatch.write_track(tmp_path / "bad.xz", bad)
    assert os.listdir(tmp_path) == []


def test_vertex_count_change_mid_track(tmp_path, track):
    w = bodybatch.TrackWriter(tmp_path / "t.xz")
    w.append(vertices=track["vertices"][0])
    with pytest.raises(TrackError, match="point counts cannot change"):
        w.append(vertices=track["vertices"][1][:-5])
    assert os.listdir(tmp_path) == []


# -- corrupt files ---------------------------------------------------------------------


@pytest.fixture()
def good_file(tmp_path, track):
    path = tmp_path / "good.xz"
    bodybatch.write_track(path, track, chunk_size=8)
    return path


def _read_all(path):
    with bodybatch.open_track(path) as r:
        return r.to_arrays()


def test_flipped_byte_anywhere_is_detected(good_file):
    data = bytearray(good_file.read_bytes())
    rng = np.random.default_rng(0)
    for pos in list(rng.integers(0, len(data), 40)) + [0, 9, 20, len(data) - 1, len(data) - 20]:
        bad = bytearray(data)
        bad[pos] ^= 0x5A
        good_file.write_bytes(bytes(bad))
        with pytest.raises(FormatError) as info:
            _read_all(good_file)
        assert str(good_file) in str(info.value)


def test_truncated_file_is_detected(good_file):
    data = good_file.read_bytes()
    for cut in (0, 5, 30, len(data) // 2, len(data) - 1):
        good_file.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="good.xz"):
            _read_all(good_file)


def test_future_version_and_absurd_header(good_file):
    data = bytearray(good_file.read_bytes())
    future = bytearray(data)
    future[8:10] = struct.pack("<H", 9)
    good_file.write_bytes(bytes(future))
    with pytest.raises(FormatError, match="version 9"):
        _read_all(good_file)
    huge = bytearray(data)
    huge[12:16] = struct.pack("<I", 2**31)
    good_file.write_bytes(bytes(huge))
    with pytest.raises(FormatError, match="header length"):
        _read_all(good_file)
    good_file.write_bytes(b"")
    with pytest.raises(FormatError, match="empty"):
        _read_all(good_file)


def test_camera_objects_in_and_out(tmp_path, track):
    """deltacamera Camera objects are accepted and, on request, given back."""
    import deltacamera

    from bodybatch.cameras import matrix_to_rotvec, rotvec_to_matrix

    n = 12
    rng = np.random.default_rng(3)
    cams = []
    for i in range(n):
        rotvec = rng.normal(0, 0.7, 3)
        if i == 0:
            rotvec = rotvec / np.linalg.norm(rotvec) * (np.pi - 1e-6)  # near pi: axis sign matters
        cams.append(deltacamera.Camera(
            rot_world_to_cam=rotvec_to_matrix(rotvec), optical_center=rng.normal(0, 1000, 3),
            intrinsic_matrix=np.array([[1000.0 + i, 0, 960], [0, 1000, 540], [0, 0, 1]]), world_up=(0, -1, 0),
        ))
    part = {k: v[:n] for k, v in track.items() if k in ("vertices", "joints")}
    part["camera"] = cams
    bodybatch.write_track(tmp_path / "c.xz", part)
    with bodybatch.open_track(tmp_path / "c.xz", decode_camera=True) as reader:
        for i, cam in enumerate(cams):
            got = reader[i]["camera"]
            assert isinstance(got, deltacamera.Camera)
            np.testing.assert_allclose(got.R, cam.R, atol=2e-6)
            np.testing.assert_allclose(got.t, cam.t, rtol=1e-6)
            np.testing.assert_allclose(got.intrinsic_matrix, cam.intrinsic_matrix, rtol=1e-6)
    with bodybatch.open_track(tmp_path / "c.xz") as reader:
        assert set(reader[0]["camera"]) == {"rotvec_w2c", "loc", "intr", "up"}
    for _ in range(100):
        r = rng.normal(0, 2, 3)
        np.testing.assert_allclose(rotvec_to_matrix(matrix_to_rotvec(rotvec_to_matrix(r))), rotvec_to_matrix(r), atol=1e-9)


def test_quantize_into_matches_quantize_blockwise():
    """The blocked, in-place quantizer gives the grid, bound and error of the plain
    one (float32/float64, power-of-2 and other factors, strided int32 output), and
    names the right row of a NaN in a later block."""
    from bodybatch._grid import quantize, quantize_into

    rng = np.random.default_rng(5)
    for dtype, factor in [(np.float32, 2.0), (np.float64, 2.0), (np.float32, 2000.0), (np.float64, 3.0)]:
        values = (rng.normal(0, 400, (70, 3000, 3)) / (factor / 2)).astype(dtype)
        out = np.zeros((70, 3000, 4), np.int32)
        max_abs, err = quantize_into(values, factor, "v", out[:, :, :3])
        q, err_ref = quantize(values, factor, "v", with_error=True)
        np.testing.assert_array_equal(out[:, :, :3], q)
        assert not out[:, :, 3].any()
        assert max_abs == int(np.abs(q).max())
        assert err == pytest.approx(err_ref, rel=1e-6)
    values[61, 7, 2] = np.nan
    with pytest.raises(TrackError, match=r"index \(61, 7, 2\)"):
        quantize_into(values, 3.0, "v", out[:, :, :3])


def test_grid_values_encode_to_the_same_bytes(tmp_path, corpus_dir):
    """Rows handed over as the reader's grid integers (the batch fast path) and as
    floats give byte-identical track files, with 0.5 mm and (falling back to floats)
    with 1 mm steps."""
    path = corpus_dir / "nlf_xz_0000.xz"
    for step in (0.5, 1.0):
        sizes = []
        for keep in ((), ("vertices", "vertex_uncertainties")):
            out = tmp_path / f"t{step}{len(keep)}.xz"
            with bodybatch.TrackWriter(out, {"k": 1}, quantization_mm=step, chunk_size=16) as writer:
                for t, frame in enumerate(bodybatch.read_predictions(path, keep_grid=keep)):
                    if len(frame["joints"]):
                        writer.append({k: frame[k][0] for k in DETECTION_FIELDS}, frame_index=t)
            sizes.append(out.read_bytes())
        assert sizes[0] == sizes[1] and len(sizes[0]) > 1000


def test_appended_rows_are_buffered_into_the_same_bytes_and_bad_rows_named(tmp_path, track):
    """TrackWriter.append hands rows to the encoder a block at a time: the same file as
    one extend of the whole track, with floats or grid values; appended arrays are
    copied (changing them afterwards changes nothing); a row of a new shape is checked
    at once, bad values when their block is written."""
    from bodybatch._grid import GridValues

    n = len(track["vertices"])
    whole = dict(track, frame_index=2 * np.arange(n))
    bodybatch.write_track(tmp_path / "whole.xz", whole, {"m": 1}, chunk_size=8)
    rows = [{k: v[i] for k, v in track.items()} for i in range(n)]
    for name, as_grid in (("floats", False), ("grid", True)):
        with bodybatch.TrackWriter(tmp_path / f"{name}.xz", {"m": 1}, chunk_size=8) as w:
            scratch = np.empty_like(track["vertices"][0])
            for i, row in enumerate(rows):
                scratch[...] = row["vertices"]
                if as_grid:  # the values are on the 0.5 mm grid already
                    row = dict(row, vertices=GridValues(np.round(scratch * 2).astype(np.int32), 2.0))
                else:
                    row = dict(row, vertices=scratch, camera={k: v.copy() for k, v in row["camera"].items()})
                w.append(row, frame_index=2 * i)
                scratch[...] = np.nan  # a caller reusing its buffers
                for v in row["camera"].values() if not as_grid else ():
                    v[...] = 0
                assert len(w) == i + 1
        assert (tmp_path / f"{name}.xz").read_bytes() == (tmp_path / "whole.xz").read_bytes(), name
    with bodybatch.TrackWriter(tmp_path / "blocks.xz", {"m": 1}, chunk_size=8) as w:  # extend too
        scratch = {k: np.empty_like(v[:5]) for k, v in whole.items() if k != "camera"}
        for a in range(0, n, 5):
            part = {k: scratch[k][: len(v[a : a + 5])] for k, v in whole.items() if k != "camera"}
            for k, v in part.items():
                v[...] = whole[k][a : a + 5]
            w.extend(dict(part, camera=track["camera"][a : a + 5]))
            for k in ("vertices", "joints"):
                scratch[k][...] = np.nan
    assert (tmp_path / "blocks.xz").read_bytes() == (tmp_path / "whole.xz").read_bytes()
    os.remove(tmp_path / "blocks.xz")
    w = bodybatch.TrackWriter(tmp_path / "shape.xz")
    for i in range(3):
        w.append(vertices=track["vertices"][i])
    with pytest.raises(TrackError, match="point counts cannot change"):
        w.append(vertices=track["vertices"][3][:90])
    assert not (tmp_path / "shape.xz").exists()
    w = bodybatch.TrackWriter(tmp_path / "nan.xz")
    for i in range(3):
        w.append(vertices=track["vertices"][i] * (np.nan if i == 2 else 1))
    with pytest.raises(TrackError, match="NaN"):
        w.close()
    assert sorted(os.listdir(tmp_path)) == ["floats.xz", "grid.xz", "whole.xz"]


@pytest.mark.parametrize("n_points", [600, 1100, 8300])
def test_point_counts_with_a_small_last_level_round_trip(tmp_path, track, n_points):
    """A last hierarchy level under 256 points after a larger one (600 = 512 + 88
    points) has its residual streams like every other level (bodybatch 0.1.0 lost them)."""
    sub = dict(track)
    for name in ("vertices", "vertex_uncertainties"):
        sub[name] = np.ascontiguousarray(track[name][:, :n_points])
    check_track_roundtrip(tmp_path / "t.xz", sub, {"n": n_points}, chunk_size=16)


def test_files_that_0_1_0_wrote_without_a_small_last_level_are_refused(tmp_path, track, monkeypatch):
    import bodybatch.formats.bodybatch as container

    sub = dict(track, vertices=track["vertices"][:, :600], vertex_uncertainties=track["vertex_uncertainties"][:, :600])
    monkeypatch.setattr(container, "__version__", "0.1.0")
    bodybatch.write_track(tmp_path / "old.xz", sub)
    bodybatch.write_track(tmp_path / "fine.xz", track)  # 13,718 vertices: never affected
    monkeypatch.undo()
    with pytest.raises(FormatError, match=r"old\.xz: written by bodybatch 0\.1\.0.*last 88 of the 600 vertices.*reconvert"):
        bodybatch.open_track(tmp_path / "old.xz")
    with bodybatch.open_track(tmp_path / "fine.xz") as reader:
        assert len(reader) == len(track["vertices"])
