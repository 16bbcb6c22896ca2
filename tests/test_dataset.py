"""Reading a converted dataset back: fields=, find_frames/read_frames, Dataset
(windows, gaps, pickling, worker processes, typed errors) and `bodybatch export`."""

import json
import multiprocessing
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import bodybatch
from bodybatch.cli import main
from bodybatch.errors import ConfigError, DatasetError, FormatError

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "preds_np"
FIELDS = ("vertices", "joints", "vertex_uncertainties", "joint_uncertainties", "boxes", "camera")


def _convert(root, codec):
    config = root / "config.yaml"
    config.write_text(f"input:\n  root: {SAMPLE}\noutput:\n  root: {root / 'out'}\ntracks:\n  min_length: 8\n"
                      f"codec:\n{codec}pool:\n  n_jobs: 1\n  progress: false\n")  # fmt: skip
    assert main(["run", str(config), "-q", "--no-progress"]) == 0
    return root / "out"


_CODECS = {"bodybatch": "  name: bodybatch\n  chunk_size: 8\n",
           "bodycompress": "  name: bodycompress\n  compression: zstd\n"}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(_CODECS))
def converted(request, tmp_path_factory):
    """The committed sample converted with each codec (bodybatch: 8-row chunks, so
    windows and ranges cross chunk boundaries)."""
    return _convert(tmp_path_factory.mktemp(request.param), _CODECS[request.param])


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """The sample in bodybatch track files of 8-row chunks (the chunk-level tests:
    a bodycompress file is one stream)."""
    return _convert(tmp_path_factory.mktemp("chunked"), _CODECS["bodybatch"])


def _equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], dict):
            _equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _tracks(root):
    return sorted(p for p in root.rglob("track_*.xz"))


def test_fields_equal_full_decode(converted):
    for path in _tracks(converted):
        with bodybatch.open_track(path) as reader:
            full = reader.to_arrays()
            for fields in (["joints"], ["vertices"], ["joint_uncertainties", "boxes"], ["camera"], FIELDS):
                part = reader.to_arrays(fields=fields)
                assert sorted(part) == sorted(set(fields) | {"frame_index"})
                _equal(part, {k: full[k] for k in part})
                _equal(reader.read(slice(3, 11), fields), {k: reader[3:11][k] for k in part})
                for j, row in enumerate(reader.iter_rows(fields)):
                    assert sorted(row) == sorted(part)
                    np.testing.assert_array_equal(row[fields[0]] if fields[0] != "camera" else row["camera"]["intr"],
                                                  (full[fields[0]] if fields[0] != "camera" else full["camera"]["intr"])[j])  # fmt: skip
        with bodybatch.open_track(path, fields="joints") as reader:
            assert sorted(reader[0]) == ["frame_index", "joints"]
            assert sorted(reader[2:5]) == ["frame_index", "joints"]
            assert all(sorted(r) == ["frame_index", "joints"] for r in reader)


def test_fields_errors(converted):
    with bodybatch.open_track(_tracks(converted)[0]) as reader, pytest.raises(ConfigError, match="unknown field"):
        reader.to_arrays(fields=["verts"])


def test_joints_only_does_not_decode_vertices(chunked, monkeypatch):
    path = _tracks(chunked)[0]
    with bodybatch.open_track(path) as reader:
        assert reader.format_name == "bodybatch"
        from bodybatch.codec import group1

        seen = []
        real = group1.decode_group
        monkeypatch.setattr(group1, "decode_group", lambda e, s, *a: seen.append(s.n_points) or real(e, s, *a))
        reader.to_arrays(fields="joints")
        assert seen and all(n == 25 for n in seen)  # 25 joints, never 13,718 vertices


def test_range_decodes_only_its_chunks(chunked, monkeypatch):
    path = _tracks(chunked)[0]
    with bodybatch.open_track(path) as reader:
        assert reader.format_name == "bodybatch"
        decoded = []
        real = reader._decode_chunk
        monkeypatch.setattr(reader, "_decode_chunk",
                            lambda i, f=None, rows=None, into=None: decoded.append(i) or real(i, f, rows, into))
        reader[9:15]
        assert decoded == [1]
        reader.read(slice(7, 17), "joints")
        assert decoded == [1, 0, 1, 2]


@pytest.mark.parametrize("predictor", [1, 3])
@pytest.mark.parametrize("threads", [1, 2])
def test_whole_chunks_decode_into_the_output(tmp_path, corpus_tracks, monkeypatch, predictor, threads):
    """A read over several chunks decodes its whole chunks, the first included, straight
    into the caller's output (no copy of the point arrays): the rows equal a row-by-row
    read, and the output is the caller's own (changing it changes no later read); a
    one-chunk read too, and a read that starts and ends inside chunks."""
    from bodybatch import _rows
    from bodybatch.codec import _kernels
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS

    track = corpus_tracks["nlf_xz_0000/p0"]
    path = tmp_path / "t.xz"
    bodybatch.write_track(path, track, **{**(V2_OPTIONS if predictor == 3 else {}), "chunk_size": 8})
    with bodybatch.open_track(path, threads=threads) as reader:
        n = len(reader)
        by_row = [reader[k] for k in range(n)]
        into = []
        real = reader._chunk_job

        def spy(i, fields=None, rows=None, target=None, *rest):
            into.append((i, target is not None))
            return real(i, fields, rows, target, *rest)

        reader._chunk_job = spy
        in_place, is_view = [], _rows._is_view

        def watch(part, whole, row):
            in_place.append((part.shape[1:] == whole.shape[1:] and part.ndim == 3, is_view(part, whole, row)))
            return in_place[-1][1]

        monkeypatch.setattr(_rows, "_is_view", watch)
        arrays = reader.to_arrays()
        monkeypatch.undo()
        whole = [i for i, given in into if given]
        if _kernels.kernels() is not None:  # the compiled decoders write float32 in place
            assert whole == list(range(n // 8 + (n % 8 > 0)))  # every chunk
            assert all(view for points, view in in_place if points) and sum(p for p, _ in in_place) == 2 * len(whole)
        for k in (0, 8, 9, n - 1):
            for field in ("vertices", "vertex_uncertainties", "joints", "boxes"):
                np.testing.assert_array_equal(arrays[field][k], by_row[k][field], err_msg=f"{field} row {k}")
        expected = {k: v.copy() for k, v in arrays.items() if k != "camera"}
        for v in arrays.values():
            if not isinstance(v, dict):
                v[...] = 0
        again = reader.to_arrays()
        for k, v in expected.items():
            np.testing.assert_array_equal(again[k], v, err_msg=k)
        one = reader.read(slice(8, 16))  # exactly one whole chunk, not cached
        expected = {k: v.copy() for k, v in one.items() if k != "camera"}
        for v in one.values():
            if not isinstance(v, dict):
                v[...] = 0
        for k, v in reader.read(slice(8, 16)).items():
            if k != "camera":
                np.testing.assert_array_equal(v, expected[k], err_msg=k)
        assert reader.frame_index[8] == expected["frame_index"][0]
        inside = reader.read(slice(3, 21))  # a partial first and last chunk around a whole one
        for k in range(3, 21):
            for field in ("vertices", "vertex_uncertainties", "joints", "boxes"):
                np.testing.assert_array_equal(inside[field][k - 3], by_row[k][field], err_msg=f"{field} row {k}")


@pytest.mark.parametrize("predictor", [1, 3])
def test_threads_decode_the_same_rows(tmp_path, corpus_tracks, predictor):
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS

    track = corpus_tracks["nlf_xz_0000/p0"]
    path = tmp_path / "t.xz"
    bodybatch.write_track(path, track, **{**(V2_OPTIONS if predictor == 3 else {}), "chunk_size": 8})
    with bodybatch.open_track(path) as serial, bodybatch.open_track(path, threads=3) as parallel:
        assert len(serial) > 4 * 8 and parallel.threads == 3
        decoded = []
        real = parallel._chunk_job

        def spy(i, fields=None, rows=None, into=None):
            decoded.append((i, rows))
            return real(i, fields, rows, into)

        parallel._chunk_job = spy
        _equal(parallel.to_arrays(), serial.to_arrays())
        assert [i for i, _ in decoded] == list(range(len(serial) // 8 + (len(serial) % 8 > 0)))
        decoded.clear()
        _equal(parallel.read(slice(5, 30), "joints"), serial.read(slice(5, 30), "joints"))
        assert decoded == [(0, slice(5, 8)), (1, None), (2, None), (3, slice(0, 6))]
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ConfigError, match="threads must be a positive int"):
            bodybatch.open_track(path, threads=bad)


def test_rows_returned_are_not_views_of_the_readers_cache(converted):
    path = _tracks(converted)[0]
    with bodybatch.open_track(path) as reader:
        expected = reader.read(slice(0, 8))["vertices"].copy()
        row = reader[3]
        row["vertices"][:] = -1
        np.testing.assert_array_equal(reader[3]["vertices"], expected[3])
        for k, frame in zip(range(8), reader):
            frame["vertices"][:] = -2
        np.testing.assert_array_equal(reader[5]["vertices"], expected[5])
        np.testing.assert_array_equal(reader.read(slice(0, 8))["vertices"], expected)


def test_find_frames_and_read_frames(converted):
    for path in _tracks(converted):
        with bodybatch.open_track(path) as reader:
            fi = np.asarray(reader.frame_index)
            frames = np.arange(fi[0] - 3, fi[-1] + 4)
            rows = reader.find_frames(frames)
            for frame, row in zip(frames, rows):
                assert (row == -1) if frame not in fi else fi[row] == frame
            pick = fi[[4, 1, 4, len(fi) - 1]]
            got = reader.read_frames(pick, fields=["joints", "camera"])
            full = reader.to_arrays()
            np.testing.assert_array_equal(got["frame_index"], pick)
            np.testing.assert_array_equal(got["joints"], full["joints"][[4, 1, 4, len(fi) - 1]])
            with pytest.raises(KeyError, match="not in the track"):
                reader.read_frames([fi[0], fi[-1] + 1])


def _windows_match(ds):
    n = 0
    for i in range(len(ds)):
        s = ds[i]
        with bodybatch.open_track(ds.path(int(ds._track[i]))) as reader:
            full = reader.to_arrays(fields=ds.fields)
        w = ds.window or len(full["frame_index"])
        _equal({k: v for k, v in s.items() if k not in ("video", "track", "start", "contiguous")},
               {k: (v[s["start"]:s["start"] + w] if not isinstance(v, dict)
                    else {ck: cv[s["start"]:s["start"] + w] for ck, cv in v.items()}) for k, v in full.items()})  # fmt: skip
        fi = s["frame_index"]
        assert s["contiguous"] == (fi[-1] - fi[0] == len(fi) - 1)
        n += 1
    return n


def test_dataset_windows_equal_to_arrays(converted):
    whole = bodybatch.Dataset(converted)
    assert len(whole) == 3 and _windows_match(whole) == 3
    assert [whole[i]["video"] for i in range(3)] == ["clip_a.xz", "clip_a.xz", "street/clip_b.xz"]
    ds = bodybatch.Dataset(converted, fields=["joints", "vertices"], window=5, stride=3)
    lengths = [t["n_frames"] for t in ds.tracks]
    assert len(ds) == sum((n - 5) // 3 + 1 for n in lengths)
    assert _windows_match(ds) == len(ds)
    assert ds[-1]["joints"].shape == (5, 25, 3)
    assert sorted(ds[0]) == ["contiguous", "frame_index", "joints", "start", "track", "vertices", "video"]
    # street/clip_b skips a frame: flagged, or excluded
    flagged = [i for i in range(len(ds)) if not ds[i]["contiguous"]]
    assert flagged
    ex = bodybatch.Dataset(converted / "manifest.jsonl", fields="joints", window=5, stride=3, gaps="exclude")
    assert len(ex) == len(ds) - len(flagged) and all(ex[i]["contiguous"] for i in range(len(ex)))
    assert len(bodybatch.Dataset(converted, window=5, min_frames=16)) == sum((n - 5) // 5 + 1 for n in lengths if n >= 16)


def _sample_joints(args):
    ds, i = args
    return ds[i]["joints"]


def test_dataset_pickles_and_works_in_a_pool(converted):
    ds = bodybatch.Dataset(converted, fields="joints", window=4, cache_size=1)
    ds[0]  # an open reader: must not travel in the pickle
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._readers and len(clone) == len(ds)
    expected = [ds[i]["joints"] for i in range(len(ds))]
    for method in ("fork", "spawn"):
        if method not in multiprocessing.get_all_start_methods():
            continue
        with multiprocessing.get_context(method).Pool(2) as pool:
            got = pool.map(_sample_joints, [(ds, i) for i in range(len(ds))], chunksize=2)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def test_dataset_typed_errors(converted, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(converted, root)
    ds = bodybatch.Dataset(root, window=4)
    paths = [ds.path(t) for t in range(len(ds.tracks))]
    paths[0].unlink()
    data = bytearray(paths[1].read_bytes())
    data[len(data) // 3 : 2 * len(data) // 3] = bytes(len(data) // 3)  # same size, corrupt (bodycompress
    paths[1].write_bytes(bytes(data))  # files have no checksum: a flipped bit may go unnoticed there)
    with pytest.raises(DatasetError, match="track_0000.xz: track file missing"):
        ds[0]
    with pytest.raises(FormatError, match=str(paths[1].name)):
        for i in range(len(ds)):
            if ds._track[i] == 1:
                ds[i]
    with pytest.raises(DatasetError, match="track_0000.xz"):
        bodybatch.Dataset(root, verify=True)
    paths[0].write_bytes(b"x" * ds.tracks[0]["bytes"])  # right size, wrong content
    bodybatch.Dataset(root, verify=True)
    with pytest.raises(DatasetError, match="sha256"):
        bodybatch.Dataset(root, verify="sha256")
    with pytest.raises(DatasetError, match="no such manifest"):
        bodybatch.Dataset(tmp_path / "nothing")


def test_export_round_trips(converted, tmp_path):
    out = tmp_path / "npz"
    assert main(["export", str(converted), str(out), "-q", "--no-progress"]) == 0
    ds = bodybatch.Dataset(converted)
    for t in range(len(ds.tracks)):
        with bodybatch.open_track(ds.path(t)) as reader:
            full = reader.to_arrays()
            meta = reader.metadata
        rel = Path(ds.tracks[t]["path"]).with_suffix(".npz")
        with np.load(out / rel) as npz:
            assert json.loads(str(npz["metadata"])) == json.loads(json.dumps(meta))
            assert json.loads(str(npz["manifest"]))["path"] == ds.tracks[t]["path"]
            for k, v in full.items():
                if k == "camera":
                    for ck, cv in v.items():
                        np.testing.assert_array_equal(npz[f"camera_{ck}"], cv)
                else:
                    np.testing.assert_array_equal(npz[k], v)
    frames = tmp_path / "frames"
    assert main(["export", str(converted), str(frames), "--format", "frames", "--fields", "joints", "vertices",
                 "--only", "street/*", "-q"]) == 0  # fmt: skip
    (track,) = [t for t in range(len(ds.tracks)) if ds.tracks[t]["video"].startswith("street/")]
    folder = frames / "street" / "clip_b" / "track_0000"
    assert sorted(p.name for p in folder.iterdir()) == ["joints", "track.json", "vertices"]
    assert not (frames / "clip_a").exists()
    with bodybatch.open_track(ds.path(track)) as reader:
        full = reader.to_arrays()
    doc = json.loads((folder / "track.json").read_text())
    np.testing.assert_array_equal(doc["frame_index"], full["frame_index"])
    for j, frame in enumerate(full["frame_index"]):
        np.testing.assert_array_equal(np.load(folder / "joints" / f"{frame:06d}.npy"), full["joints"][j])
        np.testing.assert_array_equal(np.load(folder / "vertices" / f"{frame:06d}.npy"), full["vertices"][j])
        for k, v in full["camera"].items():
            np.testing.assert_array_equal(np.asarray(doc["camera"][j][k], v.dtype), v[j])
    assert not list(frames.rglob("*.tmp"))
    # one track file, and the single-file export of old
    assert main(["export", str(ds.path(track)), str(tmp_path / "one.npz"), "--fields", "boxes", "-q"]) == 0
    with np.load(tmp_path / "one.npz") as npz:
        assert sorted(npz.files) == ["boxes", "frame_index", "metadata"]
        np.testing.assert_array_equal(npz["boxes"], full["boxes"])
    assert main(["export", str(SAMPLE / "clip_a.xz"), str(tmp_path / "p.npz"), "--format", "frames", "-q"]) == 2


def test_dataset_opens_no_file_at_construction(converted, monkeypatch):
    import bodybatch.formats

    opened = []
    real = bodybatch.formats.open_track
    monkeypatch.setattr(bodybatch.formats, "open_track", lambda p, **kw: opened.append(Path(p).name) or real(p, **kw))
    ds = bodybatch.Dataset(converted, window=4, stride=2)
    assert opened == [] and len(ds) > 0
    bodybatch.Dataset(converted, window=4, gaps="exclude")
    assert len(opened) == 1  # only street/clip_b, whose manifest row shows a gap
    ds[0]
    assert len(opened) == 2


def test_whole_track_read_holds_one_chunk_beside_the_result(tmp_path, corpus_tracks):
    """to_arrays of a many-chunk track stacks a chunk at a time: the peak of numpy's
    allocations (tracemalloc sees them) stays near the result, not twice it (a list of
    chunks concatenated at the end); every row equals a row-by-row read."""
    import tracemalloc

    source = corpus_tracks["nlf_xz_0000/p0"]
    track = {k: np.concatenate([source[k]] * 4) for k in ("vertices", "vertex_uncertainties")}  # 20+ chunks
    bodybatch.write_track(tmp_path / "t.xz", track, chunk_size=8)
    with bodybatch.open_track(tmp_path / "t.xz") as reader:
        reader[0]  # imports, compiled kernels and caches before measuring
        tracemalloc.start()
        try:
            arrays = reader.to_arrays(fields=("vertices", "vertex_uncertainties"))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        result = sum(v.nbytes for v in arrays.values())
        assert len(reader) >= 8 * 20 and peak < 1.5 * result, (peak, result)
        for k in (0, 7, 8, len(reader) - 1):
            np.testing.assert_array_equal(arrays["vertices"][k], reader[k]["vertices"])


def test_chunks_of_other_dtypes_stack_as_concatenation(tmp_path):
    """A chunk whose grid values exceed float32's exact range decodes to float64 (the
    others to float32): the stacked result is float64 and exact, as concatenation."""
    rng = np.random.default_rng(3)
    v = rng.normal(0, 300, (24, 50, 3))
    v[8:16] += 2**26  # the middle chunk: |grid| > 2**24 at 0.5 mm
    track = {"vertices": v.astype(np.float32), "joints": v[:, :5].astype(np.float32)}
    bodybatch.write_track(tmp_path / "t.xz", track, chunk_size=8)
    with bodybatch.open_track(tmp_path / "t.xz") as reader:
        arrays = reader.to_arrays()
        assert reader[0]["vertices"].dtype == np.float32 and reader[8]["vertices"].dtype == np.float64
    assert arrays["vertices"].dtype == np.float64
    np.testing.assert_array_equal(arrays["vertices"], np.round(track["vertices"].astype(np.float64) * 2) / 2)
