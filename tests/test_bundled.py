"""Bundled structures (format 3.1): a known topology names its structure instead of
storing it; another mesh of the same size falls back to its own (format 3.0)."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import bodybatch
from bodybatch.codec import bundled, get_codec
from bodybatch.codec.bodybatch_codec import V2_OPTIONS
from bodybatch.errors import FormatError, TrackError

from _helpers import check_track_roundtrip

ROOT = Path(__file__).resolve().parents[1]


def _version(path):
    return struct.unpack("<HH", Path(path).read_bytes()[8:12])


def _header(path):
    from bodybatch import _msgpack

    data = Path(path).read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    return _msgpack.unpackb(data[20 : 20 + n])


def test_bundled_file_is_what_the_template_builds(shared_dir):
    model = shared_dir / "data" / "body_model.npz"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_structures.py"), "--check", "--model", str(model)],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_corpus_tracks_name_the_bundled_structure_and_decode_exactly(tmp_path, corpus_tracks):
    for name, track in list(corpus_tracks.items())[:3]:
        named, own = tmp_path / "named.xz", tmp_path / "own.xz"
        check_track_roundtrip(named, track, {"name": name}, **V2_OPTIONS)
        bodybatch.write_track(own, track, **V2_OPTIONS, structure="own")
        assert _version(named) == (3, 1) and _version(own) == (3, 0)
        vertices = _header(named)["layout"]["vertices"]
        assert vertices["structure"] == "anny13718" and "curve" not in vertices
        assert "structure" not in _header(named)["codec"]  # the default is not written
        assert named.stat().st_size < own.stat().st_size - 30_000  # the ~45 KB structure is not stored
        with bodybatch.open_track(named) as a, bodybatch.open_track(own) as b:
            for key, value in b.to_arrays().items():
                if key != "camera":
                    np.testing.assert_array_equal(a.to_arrays()[key], value, err_msg=key)
            np.testing.assert_array_equal(a[len(a) // 2]["vertices"], b[len(b) // 2]["vertices"])


def test_another_topology_of_the_same_size_gets_its_own_structure(tmp_path, corpus_tracks):
    track = dict(corpus_tracks["nlf_xz_0000/p0"])
    shuffle = np.random.default_rng(0).permutation(track["vertices"].shape[1])
    track["vertices"] = track["vertices"][:, shuffle]
    track["vertex_uncertainties"] = track["vertex_uncertainties"][:, shuffle]
    path = tmp_path / "t.xz"
    check_track_roundtrip(path, track, **V2_OPTIONS)
    assert _version(path) == (3, 0)
    assert "curve" in _header(path)["layout"]["vertices"]


def test_fit_check_separates_the_topology_from_a_shuffled_one(corpus_tracks):
    structure = bundled.bundled_structure("anny13718", 13718, 4)
    points = np.asarray(corpus_tracks["nlf_zstd_0000/p1"]["vertices"][0], np.float64)
    miss = bundled.median_miss_mm(points, structure)
    shuffled = bundled.median_miss_mm(points[np.random.default_rng(1).permutation(len(points))], structure)
    template = bundled._load("anny13718")[1]
    assert miss < 2 * template < bundled.MISS_FACTOR * template < shuffled / 10


def test_other_sizes_and_formats_never_use_it(tmp_path, corpus_tracks):
    track = corpus_tracks["nlf_xz_0000/p0"]
    small = {k: track[k][:, ::2] for k in ("vertices", "vertex_uncertainties")}
    bodybatch.write_track(tmp_path / "a.xz", small, **V2_OPTIONS)
    assert _version(tmp_path / "a.xz") == (3, 0)
    bodybatch.write_track(tmp_path / "b.xz", track)  # format 1.0
    assert _version(tmp_path / "b.xz") == (1, 0)
    bodybatch.write_track(tmp_path / "c.xz", track, **{**V2_OPTIONS, "n_parents": 3})
    assert _version(tmp_path / "c.xz") == (3, 0)


def _rename_structure(path, new):
    data = bytearray(Path(path).read_bytes())
    n = struct.unpack("<I", data[12:16])[0]
    header = bytes(data[20 : 20 + n]).replace(b"anny13718", new)
    data[20 : 20 + n] = header
    data[16:20] = struct.pack("<I", zlib.crc32(header))
    Path(path).write_bytes(bytes(data))


def test_unknown_bundled_structure_is_a_format_error_naming_the_file(tmp_path, corpus_tracks):
    path = tmp_path / "t.xz"
    bodybatch.write_track(path, corpus_tracks["nlf_xz_0000/p0"], **V2_OPTIONS)
    _rename_structure(path, b"anny99999")
    with bodybatch.open_track(path) as reader:
        with pytest.raises(FormatError, match=r"t\.xz: vertices: no bundled structure 'anny99999'.*anny13718"):
            reader.to_arrays()
        joints = reader.to_arrays(fields=["joints"])["joints"]  # the other group still reads
    assert joints.shape == np.shape(corpus_tracks["nlf_xz_0000/p0"]["joints"])


def test_structure_option_is_checked_and_round_trips():
    with pytest.raises(TrackError, match="structure must be one of bundled, own"):
        get_codec("bodybatch", **V2_OPTIONS, structure="mine")
    codec = get_codec("bodybatch", **V2_OPTIONS, structure="own")
    assert codec.get_config()["structure"] == "own"
    assert get_codec("bodybatch", **V2_OPTIONS, structure="bundled").get_config() == get_codec("bodybatch", **V2_OPTIONS).get_config()
