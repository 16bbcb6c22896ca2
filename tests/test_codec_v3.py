"""Codec v2.1 (``predictor=3``, format 3.0): exact round trips, edge cases, versioning."""

import os
import struct

import numpy as np
import pytest

import bodybatch
from bodybatch.codec import get_codec
from bodybatch.codec.bodybatch_codec import V2_0_OPTIONS, V2_OPTIONS
from bodybatch.errors import FormatError

from _helpers import check_track_roundtrip, one_chunk_decoding, require

V3 = dict(V2_OPTIONS)


def test_v2_options_select_format_3():
    assert V3["predictor"] == 3 and get_codec("bodybatch", **V3).format_major == 3


def test_roundtrip_corpus_tracks(tmp_path, corpus_tracks):
    for name, track in corpus_tracks.items():
        check_track_roundtrip(tmp_path / "t.xz", track, {"name": name}, **V3)


@pytest.mark.parametrize("options", [
    {"chunk_size": 7, "window": 1},
    {"chunk_size": 16, "window": 8, "n_parents": 1},
    {"chunk_size": 13, "window": 3, "n_parents": 4, "quantization_mm": 0.1},
    {"chunk_size": 40, "uncertainty_quantization_mm": 0.25},
], ids=str)  # fmt: skip
def test_roundtrip_options_and_chunk_boundaries(tmp_path, corpus_tracks, options):
    track = corpus_tracks["nlf_xz_0000/p0"]
    check_track_roundtrip(tmp_path / "t.xz", track, {}, **{**V3, **options})


def test_tiny_tracks_and_odd_point_counts(tmp_path):
    rng = np.random.default_rng(0)
    for n_frames, n_points in [(1, 1), (1, 5), (2, 1), (3, 2), (5, 3), (9, 30), (130, 1), (12, 8192 + 100)]:
        track = {
            "vertices": rng.normal(0, 300, (n_frames, n_points, 3)).astype(np.float32),
            "vertex_uncertainties": rng.uniform(0.01, 0.1, (n_frames, n_points)).astype(np.float32),
        }
        check_track_roundtrip(tmp_path / "t.xz", track, **{**V3, "chunk_size": 2})
        check_track_roundtrip(tmp_path / "t.xz", track, **V3)


def test_huge_values_use_exact_wide_arithmetic(tmp_path):
    """Values near the grid limit (2**30 steps) decode exactly (int64 throughout)."""
    rng = np.random.default_rng(1)
    n_frames, n_points = 20, 300
    v = rng.uniform(-2**29, 2**29, (n_frames, n_points, 3)) * 0.5
    v[:, ::7] *= -1
    v[5:9] = -v[5:9]  # large jumps between frames
    track = {"vertices": v.astype(np.float32), "joints": (v[:, :24] * 0.9).astype(np.float32)}
    bodybatch.write_track(tmp_path / "t.xz", track, **{**V3, "chunk_size": 8})
    with bodybatch.open_track(tmp_path / "t.xz") as reader:
        arrays = reader.to_arrays()
    for key in track:
        expected = np.round(track[key].astype(np.float64) * 2) / 2
        np.testing.assert_array_equal(arrays[key].astype(np.float64), expected)


@pytest.mark.parametrize("kernels", ["", "numpy"])
def test_single_rows_decode_only_a_prefix(corpus_tracks, monkeypatch, kernels):
    monkeypatch.setenv("BODYBATCH_KERNELS", kernels)
    codec, layout, encoded, n, full, decoded = one_chunk_decoding(corpus_tracks["nlf_xz_0000/p0"], monkeypatch, **V3)
    for start, stop in ((0, 1), (0, 2), (8, 9), (3, n), (0, n)):
        decoded.clear()
        part = codec.decode_chunk(encoded, layout, n, rows=slice(start, stop))
        for key, value in part.items():
            np.testing.assert_array_equal(value, full[key][start:stop])
        # the frame-major streams of rows 1.. are decoded up to row stop - 1 only
        values = sum(g["n_points"] * g["n_dims"] for g in layout.values())
        classes = sum(g["n_points"] for g in layout.values())
        assert values * stop <= sum(decoded) <= values * stop + classes + 1_000  # (+ the temporal weights)


def test_writes_format_3_and_mismatches_are_rejected(tmp_path, corpus_tracks):
    track = corpus_tracks["nlf_xz_0000/p0"]
    path = tmp_path / "v3.xz"
    bodybatch.write_track(path, track, **V3, structure="own")
    data = path.read_bytes()
    assert struct.unpack("<HH", data[8:12]) == (3, 0)
    with bodybatch.open_track(path) as reader:
        assert reader.codec["predictor"] == 3
    bad = bytearray(data)
    bad[8:10] = struct.pack("<H", 2)
    path.write_bytes(bytes(bad))
    with pytest.raises(FormatError, match="does not match"):
        bodybatch.open_track(path).close()


def test_reader_without_major_3_rejects_it_cleanly(tmp_path, corpus_tracks, monkeypatch):
    from bodybatch.formats import bodybatch as fmt

    path = tmp_path / "v3.xz"
    bodybatch.write_track(path, corpus_tracks["nlf_xz_0000/p0"], **V3)
    monkeypatch.setattr(fmt, "READ_MAJORS", (1, 2))
    with pytest.raises(FormatError, match=r"format version 3\.1 is not supported"):
        bodybatch.open_track(path).close()


def test_smaller_than_format_2(tmp_path, corpus_tracks):
    total = {2: 0, 3: 0}
    for track in corpus_tracks.values():
        total[2] += bodybatch.write_track(tmp_path / "a.xz", track, **V2_0_OPTIONS).bytes
        total[3] += bodybatch.write_track(tmp_path / "b.xz", track, **V3).bytes
    assert total[3] < 0.98 * total[2]


def test_ridge_weights_are_exact_integers():
    from bodybatch.codec.predict2 import SPATIAL_ONE
    from bodybatch.codec.spatial3 import ridge_weights

    rng = np.random.default_rng(3)
    x0 = np.concatenate([rng.integers(-3000, 3000, (50, 3)), np.zeros((1, 3), np.int64)])
    parents = np.stack([rng.choice(50, 3, replace=False) for _ in range(50)])
    parents[0] = 50  # the virtual zero point: even weights
    parents[1] = [3, 3, 3]  # coincident parents: even weights
    x0[5] = (x0[parents[5, 0]] * 32 + x0[parents[5, 1]] * 16 + x0[parents[5, 2]] * 16) // 64  # inside: ~barycentric
    w = ridge_weights(x0, parents)
    assert w.dtype == np.int64 and (w.sum(axis=1) == SPATIAL_ONE).all()
    assert list(w[0]) == [22, 21, 21] and list(w[1]) == [22, 21, 21]
    assert abs(w[5, 0] - 32) <= 3 and abs(w[5, 1] - 16) <= 3
    assert (ridge_weights(x0 * (2**17), parents).sum(axis=1) == SPATIAL_ONE).all()  # no overflow


def test_structure_header_is_validated():
    from bodybatch.codec import entropy, group3
    from bodybatch.codec.structure import build_structure

    rng = np.random.default_rng(4)
    structure = group3.sorted_parents(build_structure(rng.integers(0, 2000, (600, 3)), 3))
    curve, steps = group3.encode_structure(structure)
    back = group3.decode_structure(curve, steps, 600, 3, "")
    np.testing.assert_array_equal(back.order, structure.order)
    np.testing.assert_array_equal(back.parents, structure.parents)
    with pytest.raises(FormatError, match="parent columns"):
        group3.decode_structure(curve, steps[:2], 600, 3, "")
    negative = entropy.encode_numbers(np.full(600, -1, np.int32))  # a negative gap: unsorted parents
    with pytest.raises(ValueError, match="sorted"):
        group3.decode_structure(curve, [steps[0], negative, steps[2]], 600, 3, "")
    with pytest.raises(ValueError, match="sorted"):
        group3.decode_structure(curve, [steps[0], steps[1], negative], 600, 3, "")
    with pytest.raises(ValueError, match="permutation"):
        group3.decode_structure(entropy.encode_numbers(np.zeros(600, np.int32), delta=True), steps, 600, 3, "")


def test_inconsistent_chunk_entries_are_format_errors(corpus_tracks):
    from bodybatch.codec import entropy

    track = corpus_tracks["nlf_xz_0000/p0"]
    chunk = {k: np.asarray(track[k])[:20] for k in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties")}
    codec = get_codec("bodybatch", **V3)
    layout = codec.make_layout(chunk)
    encoded, _ = codec.encode_chunk(chunk, layout)
    codec.decode_chunk(encoded, layout, 20)

    def broken(**change):
        entry = dict(encoded["points"]["vertices"], **change)
        return {**encoded, "points": {**encoded["points"], "vertices": entry}}

    vertices = encoded["points"]["vertices"]
    n_weights = len(vertices["streams"])  # anything but blocks x groups x lags
    for change, match in [
        ({"weights": entropy.encode_numbers(np.zeros(3, np.int16))}, "weights"),
        ({"weights": entropy.encode_numbers(np.full(n_weights * 40, 8000, np.int16))}, "weights"),
        ({"max_abs": 1}, "exceed"),
        ({"dtype": "float64"}, "dtype"),
        ({"streams": vertices["streams"][:-1]}, "residual streams"),
    ]:
        with pytest.raises(FormatError, match=match):
            codec.decode_chunk(broken(**change), layout, 20)


@pytest.mark.parametrize("n_parents, window", [(4, 8), (3, 2), (1, 1), (5, 3)])
def test_compiled_decoder_gives_the_numpy_integers(tmp_path, corpus_tracks, monkeypatch, n_parents, window):
    require("numba")
    track = {k: v[:30] for k, v in corpus_tracks["nlf_zstd_0000/p0"].items() if k != "camera"}
    path = tmp_path / "t.xz"
    bodybatch.write_track(path, track, **{**V3, "n_parents": n_parents, "window": window, "chunk_size": 16})
    decoded = {}
    for env in ("numpy", ""):
        monkeypatch.setenv("BODYBATCH_KERNELS", env)
        with bodybatch.open_track(path) as reader:
            decoded[env] = (reader.to_arrays(), reader[20], reader[3:9])
    for a, b in zip(decoded["numpy"], decoded[""]):
        for key in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties"):
            np.testing.assert_array_equal(a[key], b[key])


def test_compiled_encoder_writes_the_same_bytes(tmp_path, corpus_tracks, monkeypatch):
    require("numba")
    track = {k: v[:30] for k, v in corpus_tracks["nlf_xz_0000/p1"].items() if k != "camera"}
    data = {}
    for env in ("numpy", ""):
        monkeypatch.setenv("BODYBATCH_KERNELS", env)
        bodybatch.write_track(tmp_path / f"t{env}.xz", track, **{**V3, "chunk_size": 16})
        data[env] = (tmp_path / f"t{env}.xz").read_bytes()
    assert data["numpy"] == data[""]


def test_one_openmp_thread_is_restored_and_keeps_the_neighbours():
    from pykdtree.kdtree import KDTree

    from bodybatch.codec import _openmp

    pts = np.random.default_rng(3).integers(0, 40, (3000, 3)).astype(np.float64)  # many ties
    tree = KDTree(pts[:1000])
    plain = tree.query(pts[1000:], k=8)
    with _openmp.one_thread():
        single = tree.query(pts[1000:], k=8)
    for a, b in zip(plain, single):
        np.testing.assert_array_equal(a, b)
    runtimes = _openmp._STATE["runtimes"]  # pykdtree's OpenMP runtime (Linux wheels: libgomp)
    saved = [get() for get, _ in runtimes]
    try:
        for _, set_ in runtimes:
            set_(3)
        with _openmp.one_thread():
            assert [get() for get, _ in runtimes] == [1] * len(runtimes)
        assert [get() for get, _ in runtimes] == [3] * len(runtimes)
    finally:
        for (_, set_), n in zip(runtimes, saved):
            set_(n)


def test_parents_do_not_depend_on_blas_threads(tmp_path, corpus_tracks):
    """Format 3.0's parent choice (the step-cost trade-off) is integer arithmetic: the
    same parents, hence the same bytes, with 1 or 2 OpenBLAS threads (a float32 matrix
    product there once followed OpenBLAS's thread split on a corpus track)."""
    import subprocess
    import sys

    from bodybatch.codec import group3

    points = np.concatenate([np.round(t["vertices"][0].astype(np.float64) * 2) for t in corpus_tracks.values()])
    np.save(tmp_path / "points.npy", points.astype(np.int64))
    script = (
        "import sys, hashlib, numpy as np\n"
        "from bodybatch.codec.structure import build_structure\n"
        f"pts = np.load(sys.argv[1]); n = {len(next(iter(corpus_tracks.values()))['vertices'][0])}\n"
        "h = hashlib.sha256()\n"
        "for a in range(0, len(pts), n):\n"
        f"    h.update(build_structure(pts[a:a + n], 4, step_cost={group3.STEP_COST}).parents.tobytes())\n"
        "print(h.hexdigest())\n"
    )
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "points.npy")], env=env,
                             capture_output=True, text=True, check=True)  # fmt: skip
        digests.add(out.stdout.strip())
    assert len(digests) == 1
