"""`bodybatch inspect` and `bodybatch export` on every kind of file bodybatch reads:
per-video prediction files (corpus, committed sample) and track files (both codecs,
and a per-track file bodycompress itself wrote)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bodybatch
from bodybatch.errors import FormatError
from bodybatch.formats import open_file

from _helpers import require

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "preds_np"
CORPUS_FILES = ["nlf_xz_0000", "nlf_xz_0001", "nlf_xz_0002", "nlf_zstd_0000", "legacy_v02_0000"]
SAMPLE_FILES = ["clip_a", "street/clip_b"]
PER_DETECTION = ("vertices", "joints", "vertex_uncertainties", "joint_uncertainties", "boxes")


def run_cli(*args):
    """`python -m bodybatch.cli ARGS` -> CompletedProcess; never a traceback."""
    proc = subprocess.run([sys.executable, "-m", "bodybatch.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def prediction_files(corpus_dir):
    files = [corpus_dir / f"{name}.xz" for name in CORPUS_FILES]
    return files + [SAMPLE / f"{name}.xz" for name in SAMPLE_FILES]


def check_inspect(path):
    proc = run_cli("inspect", path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    with bodybatch.read_predictions(path) as reader:
        header, metadata, n_frames = reader.header, reader.metadata, len(reader)
    counts = np.load(path.with_name(path.name[: -len(".xz")] + ".gt.npz"))["counts"]
    assert info["kind"] == "predictions" and info["format"] == "bodycompress"
    assert info["frames"] == n_frames == len(counts)
    assert info["people_per_frame"] == {"min": counts.min(), "median": np.median(counts), "max": counts.max()}
    assert info["detections"] == counts.sum()
    assert info["version"] == ".".join(map(str, header.version))
    assert info["compression"] == header.compression
    assert info["vertex_order"] == header.vertex_order  # None or "auto" in these files
    assert info["bytes"] == path.stat().st_size
    assert info["metadata"] == json.loads(json.dumps(metadata))
    assert info["fields"]["vertices"] == {"shape": [13718, 3], "dtype": "float32"}
    assert info["fields"]["joints"] == {"shape": [25, 3], "dtype": "float32"}
    assert info["fields"]["vertex_uncertainties"] == {"shape": [13718], "dtype": "float32"}
    assert info["fields"]["boxes"] == {"shape": [5], "dtype": "float32"}
    assert info["camera"]["intr"] == {"shape": [2, 3], "dtype": "float32"}
    return info


def test_inspect_every_prediction_file(corpus_dir):
    infos = {path.name: check_inspect(path) for path in prediction_files(corpus_dir)}
    assert infos["legacy_v02_0000.xz"]["version"] == "0.2.1"
    assert infos["nlf_zstd_0000.xz"]["compression"] == "zstd"
    assert infos["nlf_xz_0000.xz"]["vertex_order"] == "auto"


def split_frames(arrays):
    """Exported prediction arrays -> list of frame dicts (the inverse of the layout)."""
    counts = arrays["counts"]
    assert counts.dtype == np.int64
    cuts = np.cumsum(counts)[:-1]
    fields = {k: np.split(arrays[k], cuts) for k in PER_DETECTION}
    cameras = {k[len("camera_"):]: arrays[k] for k in arrays.files if k.startswith("camera_")}
    return [{**{k: v[t] for k, v in fields.items()}, "camera": {k: v[t] for k, v in cameras.items()}}
            for t in range(len(counts))]  # fmt: skip


def check_frames(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e)
        for key in PER_DETECTION:
            assert g[key].dtype == e[key].dtype
            np.testing.assert_array_equal(g[key], e[key])
        assert set(g["camera"]) == set(e["camera"])
        for key, value in e["camera"].items():
            np.testing.assert_array_equal(g["camera"][key], value)


@pytest.mark.parametrize("name", ["corpus/nlf_zstd_0000", "corpus/legacy_v02_0000", "sample/street/clip_b"])
def test_export_prediction_file_round_trip(corpus_dir, tmp_path, name):
    where, stem = name.split("/", 1)
    path = (corpus_dir if where == "corpus" else SAMPLE) / f"{stem}.xz"
    out = tmp_path / "p.npz"
    proc = run_cli("export", path, out)
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in tmp_path.iterdir() if p.name != "p.npz"]  # no temporary left
    with np.load(out, allow_pickle=False) as npz:
        with bodybatch.read_predictions(path) as reader:
            expected, metadata = list(reader), reader.metadata
        counts = np.load(path.with_name(f"{path.name[:-3]}.gt.npz"))["counts"]
        np.testing.assert_array_equal(npz["counts"], counts)
        assert json.loads(str(npz["metadata"])) == json.loads(json.dumps(metadata))
        assert npz["vertices"].shape == (counts.sum(), 13718, 3)
        assert npz["camera_intr"].shape == (len(counts), 2, 3)
        check_frames(split_frames(npz), expected)


def test_export_matches_bodycompress(corpus_dir, tmp_path):
    bodycompress = require("bodycompress")
    path = corpus_dir / "nlf_xz_0002.xz"
    out = tmp_path / "p.npz"
    assert run_cli("export", path, out).returncode == 0
    theirs = bodycompress.BodyDecompressor(str(path))
    with np.load(out) as npz:
        frames = split_frames(npz)
        assert json.loads(str(npz["metadata"])) == json.loads(json.dumps(theirs.metadata))
    expected = list(theirs)
    check_frames(frames, expected)


def test_python_api_on_prediction_file(corpus_dir):
    path = corpus_dir / "nlf_xz_0001.xz"
    with open_file(path) as reader:
        assert isinstance(reader, type(bodybatch.read_predictions(path)))
        assert reader.kind == "predictions"
        arrays = reader.to_arrays()
        expected = list(reader)
    assert len(arrays["counts"]) == len(expected)
    assert [len(f["vertices"]) for f in expected] == arrays["counts"].tolist()
    # open_track refuses a prediction file in one line naming it (was a numpy traceback).
    with pytest.raises(FormatError, match=r"nlf_xz_0001.xz: a per-video prediction file"):
        bodybatch.open_track(path)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory, corpus_dir):
    """One track file per codec, from the corpus's first person; and a per-track file
    written by bodycompress itself (if installed)."""
    out = tmp_path_factory.mktemp("tracks")
    with bodybatch.read_predictions(corpus_dir / "nlf_xz_0001.xz") as reader:
        rows = [(t, f) for t, f in enumerate(reader) if len(f["vertices"])][:12]
    track = {k: np.stack([f[k][0] for _, f in rows]) for k in PER_DETECTION}
    track["camera"] = [f["camera"] for _, f in rows]
    track["frame_index"] = np.array([t for t, _ in rows])
    files = {}
    for codec in ("bodybatch", "bodycompress"):
        files[codec] = out / f"{codec}.xz"
        bodybatch.write_track(files[codec], track, {"video": "v.mp4", "track": 0}, codec=codec)
    try:
        import bodycompress
    except ImportError:
        return files, track
    files["bodycompress itself"] = out / "theirs.xz"
    with bodycompress.BodyCompressor(str(files["bodycompress itself"]), {"video": "v.mp4"}, n_threads=1) as w:
        for t in range(len(rows)):
            w.append(vertices=track["vertices"][t], joints=track["joints"][t], frame_index=int(track["frame_index"][t]))
    return files, track


@pytest.mark.parametrize("which", ["bodybatch", "bodycompress", "bodycompress itself"])
def test_tracks_still_inspect_and_export(tracks, tmp_path, which):
    files, track = tracks
    if which not in files:
        require("bodycompress")  # not installed: skipped, or a failure under CI=true
    path = files[which]
    proc = run_cli("inspect", path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    n = len(track["frame_index"])
    assert info["kind"] == "track" and info["rows"] == n and info["bytes"] == path.stat().st_size
    assert info["frames"] == f"{track['frame_index'][0]}..{track['frame_index'][-1]}"
    assert info["format"] == ("bodybatch" if which == "bodybatch" else "bodycompress")
    assert info["metadata"]["video"] == "v.mp4"
    proc = run_cli("export", path, tmp_path / "t.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "t.npz") as npz, bodybatch.open_track(path) as reader:
        expected = reader.to_arrays()
        assert json.loads(str(npz["metadata"])) == reader.metadata  # track export keeps metadata now
        assert "counts" not in npz.files
        np.testing.assert_array_equal(npz["frame_index"], track["frame_index"])
        np.testing.assert_array_equal(npz["vertices"], expected["vertices"])
        assert npz["vertices"].shape == (n, 13718, 3)
        for key, value in expected.get("camera", {}).items():
            np.testing.assert_array_equal(npz[f"camera_{key}"], value)


def test_inspect_errors_stay_one_line(tmp_path, corpus_dir):
    broken = tmp_path / "cut.xz"
    broken.write_bytes((corpus_dir / "nlf_zstd_0000.xz").read_bytes()[:400_000])
    for command in (["inspect", broken], ["export", broken, tmp_path / "x.npz"]):
        proc = run_cli(*command)
        assert proc.returncode == 3 and "cut.xz" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.npz").exists()


def test_extra_keys_per_detection_and_per_frame(tmp_path):
    """Keys beyond the standard fields: ``ids (N,)`` is per detection (N rows in every
    frame), a per-frame map becomes JSON strings, a per-frame number an array."""
    bodycompress = require("bodycompress")
    rng = np.random.default_rng(0)
    counts = [2, 0, 1, 3]
    path = tmp_path / "extra.xz"
    with bodycompress.BodyCompressor(str(path), {"fps": 30.0}, compression="zstd", n_threads=1) as w:
        for t, n in enumerate(counts):
            w.append(vertices=rng.normal(0, 300, (n, 40, 3)).astype(np.float32),
                     boxes=rng.uniform(0, 100, (n, 5)).astype(np.float32), ids=np.arange(n) + 10 * t,
                     camera={"rotvec_w2c": np.zeros(3, np.float32), "loc": np.zeros(3, np.float32),
                             "intr": np.eye(2, 3, dtype=np.float32) * (t + 1)},
                     info={"t": t, "tags": [1, None]}, score=t * 0.5)  # fmt: skip
    proc = run_cli("inspect", path)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["people_per_frame"] == {"min": 0, "median": 1.5, "max": 3} and info["vertex_order"] == "auto"
    assert info["fields"]["ids"] == {"shape": [], "dtype": "int64"}
    assert info["per_frame"] == {"info": {"type": ["dict"]}, "score": {"shape": [], "dtype": "float64"}}
    assert run_cli("export", path, tmp_path / "e.npz").returncode == 0
    with np.load(tmp_path / "e.npz") as npz:
        np.testing.assert_array_equal(npz["counts"], counts)
        np.testing.assert_array_equal(np.split(npz["ids"], np.cumsum(counts)[:-1])[3], [30, 31, 32])
        assert [json.loads(s) for s in npz["frame_info"]] == [{"t": t, "tags": [1, None]} for t in range(4)]
        np.testing.assert_array_equal(npz["frame_score"], [0, 0.5, 1, 1.5])
        np.testing.assert_array_equal(npz["camera_intr"][:, 0, 0], [1, 2, 3, 4])
        assert json.loads(str(npz["metadata"])) == {"fps": 30.0}
