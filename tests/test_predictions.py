"""bodybatch.formats.bodycompress (prediction files) and bodybatch._msgpack against the real bodycompress package."""

import lzma
import pickle
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import bodycompress
import msgpack
import msgpack_numpy
import numpy as np
import pytest
import zstandard

from bodybatch import _msgpack
from bodybatch.errors import BodybatchError, FormatError
from bodybatch.formats.bodycompress import (
    PredictionHeader,
    PredictionReader,
    load_vertex_order,
    read_predictions,
)

CORPUS_FILES = ["nlf_xz_0000", "nlf_xz_0001", "nlf_xz_0002", "nlf_zstd_0000", "legacy_v02_0000"]
BODYCOMPRESS_DATA = Path(bodycompress.__file__).parent / "data"


# --------------------------------------------------------------------------- helpers


def assert_same(ours, theirs, where="frame"):
    """Recursive equality: same keys, same types, arrays equal with the same dtype."""
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), where
        assert ours.dtype == theirs.dtype, (where, ours.dtype, theirs.dtype)
        assert ours.shape == theirs.shape, (where, ours.shape, theirs.shape)
        assert np.array_equal(ours, theirs, equal_nan=ours.dtype.kind in "fc"), where
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), (where, list(ours), list(theirs))
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(ours) is type(theirs) and ours == theirs, (where, ours, theirs)


def assert_matches_bodycompress(path, **kwargs):
    reader = read_predictions(path, **kwargs)
    reference = bodycompress.BodyDecompressor(str(path))
    assert_same(reader.metadata, reference.metadata, "metadata")
    assert len(reader) == len(reference)
    ours = list(reader)
    theirs = list(reference)
    assert len(ours) == len(theirs) == len(reader)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert_same(a, b, f"frame {t}")
    return reader, ours


def body_frames(n_frames, n_vertices, n_people=2, seed=0, n_joints=24):
    """Frames of plausible magnitude (mm, camera frame) as BodyCompressor.append kwargs."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 300, (n_people, n_vertices, 3)) + [0, 0, 4000]
    for t in range(n_frames):
        vertices = (base + rng.normal(0, 2, base.shape) + 5 * t).astype(np.float32)
        yield dict(
            boxes=rng.uniform(0, 1000, (n_people, 5)).astype(np.float32),
            vertices=vertices,
            joints=vertices[:, :n_joints] + 1,
            vertex_uncertainties=rng.uniform(0, 0.2, (n_people, n_vertices)).astype(np.float32),
            joint_uncertainties=rng.uniform(0, 0.2, (n_people, n_joints)).astype(np.float32),
            camera=dict(
                rotvec_w2c=np.array([0.1, -0.2, 0.05], np.float32),
                loc=np.array([10.0, 20.0, -30.0], np.float32),
                intr=np.array([[1500, 0, 960], [0, 1500, 540]], np.float32),
                up=np.array([0, -1, 0], np.float32),
            ),
            frame_info={"index": t, "name": f"f{t}", "tags": [1, 2.5, None, True]},
        )


def write_bodycompress(path, frames, **kwargs):
    kwargs.setdefault("n_threads", 1)
    if kwargs.get("compression", "xz") == "xz":
        kwargs.setdefault("compression_level", 1)
    with bodycompress.BodyCompressor(str(path), metadata={"fps": 30.0}, **kwargs) as writer:
        for frame in frames:
            writer.append(**frame)
    return path


def compress(data, compression):
    if compression == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    return zstandard.ZstdCompressor().compress(data)


def craft(path, frames=(), *, payload=None, compression="xz", metadata=None, data=None,
          header=None):  # fmt: skip
    """Write a 0.3-layout file by hand; entries of ``header`` override the defaults."""
    meta = compress(_msgpack.packb(metadata), compression)
    if payload is None:
        payload = b"".join(_msgpack.packb(frame) for frame in frames)
    if data is None:
        data = compress(payload, compression)
    fields = dict(
        __bodycompress_version__=(0, 3, 0),
        compression=compression,
        length=len(frames),
        metadata_start=512,
        data_start=512 + len(meta),
        vertex_order=None,
    )
    fields.update(header or {})
    head = compress(_msgpack.packb(fields), compression)
    assert len(head) <= 512
    path.write_bytes(head + bytes(512 - len(head)) + meta + data)
    return path


def qd(values, axis, factor=2.0):
    """Quantize + diff like the writer: [int32 diffs along axis, factor]."""
    rounded = np.round(np.asarray(values, np.float64) * factor)
    return [np.diff(rounded, prepend=0, axis=axis).astype(np.int32), factor]


def simple_frame(n_vertices=10, seed=0):
    rng = np.random.default_rng(seed)
    vertices = rng.normal(0, 500, (1, n_vertices, 3))
    return {"qd_vertices": qd(vertices, -2), "boxes": np.ones((1, 5), np.float32)}


def iterate(path, **kwargs):
    return list(read_predictions(path, **kwargs))


# --------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_matches_bodycompress(corpus_dir, name):
    path = corpus_dir / f"{name}.xz"
    reader, frames = assert_matches_bodycompress(path)
    assert reader.path == path
    assert isinstance(reader.header, PredictionHeader)
    assert reader.header.compression == ("zstd" if "zstd" in name else "xz")
    assert reader.header.version == ((0, 2, 1) if "legacy" in name else (0, 3, 0))
    assert reader.header.vertex_order == (None if "legacy" in name else "auto")
    assert len(frames) == reader.metadata["n_frames"]
    vertices = frames[0]["vertices"]
    assert vertices.dtype == np.float32 and vertices.shape[1:] == (13718, 3)
    assert vertices.flags.writeable


def test_corpus_is_reiterable_and_lazy(corpus_dir):
    reader = read_predictions(corpus_dir / "nlf_xz_0001.xz")
    first = next(iter(reader))
    again = next(iter(reader))
    assert_same(first, again)
    with reader:
        frames = iter(reader)
        next(frames)
    with pytest.raises(StopIteration):  # close() stopped the running iteration
        next(frames)
    with pytest.raises(ValueError, match="closed"):
        iter(reader)


def test_bundled_vertex_orders_are_bodycompress_orders():
    for name, size in [("smpl", 6890), ("smplx", 10475)]:
        ours = load_vertex_order(name)
        theirs = np.load(BODYCOMPRESS_DATA / f"{name}_vertex_order.npy")
        assert ours.shape == (size,) and not ours.flags.writeable
        assert np.array_equal(ours, theirs)
    with pytest.raises(ValueError):
        load_vertex_order("mano")


@pytest.mark.parametrize("compression", ["xz", "zstd"])
@pytest.mark.parametrize(
    "n_vertices, vertex_order, expected",
    [
        (6890, "auto", "auto"),
        (10475, "auto", "auto"),
        (6890, "smpl", "smpl"),
        (10475, None, None),
        (500, "auto", "auto"),  # auto with an unknown vertex count: no permutation
        (500, "custom", "custom"),
    ],
)
def test_bodycompress_written_files(tmp_path, compression, n_vertices, vertex_order, expected):
    if vertex_order == "custom":
        vertex_order = np.random.default_rng(1).permutation(n_vertices)
    frames = list(body_frames(3, n_vertices))
    path = write_bodycompress(
        tmp_path / "p.xz", frames, compression=compression, vertex_order=vertex_order
    )
    reader, decoded = assert_matches_bodycompress(path)
    assert reader.header.compression == compression
    if expected == "custom":
        assert np.array_equal(reader.header.vertex_order, vertex_order)
    else:
        assert reader.header.vertex_order == expected
    for original, frame in zip(frames, decoded):
        # quantization step 0.5 mm (vertices, joints) and 0.5 mm in metres (uncertainties)
        assert np.abs(frame["vertices"] - original["vertices"]).max() <= 0.25 + 1e-3
        assert np.abs(frame["joints"] - original["joints"]).max() <= 0.25 + 1e-3
        diff = frame["vertex_uncertainties"] - original["vertex_uncertainties"]
        assert np.abs(diff).max() <= 0.00025 + 1e-6


@pytest.mark.parametrize("vertex_order", ["auto", "custom", None])
def test_keep_grid_gives_the_same_values(tmp_path, corpus_dir, vertex_order):
    """keep_grid hands out the stored integers (GridValues) that stand for exactly the
    floats the plain reader returns, vertex orders applied."""
    from bodybatch._grid import GridValues

    if vertex_order == "custom":
        vertex_order = np.random.default_rng(2).permutation(6890)
    path = write_bodycompress(tmp_path / "p.xz", list(body_frames(3, 6890)), vertex_order=vertex_order)
    fields = ("vertices", "vertex_uncertainties")
    for source in (path, corpus_dir / "nlf_xz_0000.xz"):
        plain = read_predictions(source)
        grid = read_predictions(source, keep_grid=fields)
        for a, b in zip(plain, grid):
            for name in fields:
                assert isinstance(b[name], GridValues)
                values = np.asarray(b[name])
                assert values.dtype == a[name].dtype and np.array_equal(values, a[name])
                assert np.array_equal(np.asarray(b[name][0]), a[name][0])
            assert np.array_equal(b["joints"], a["joints"])  # not asked for: floats


def test_decode_camera(tmp_path):
    path = write_bodycompress(tmp_path / "p.xz", body_frames(2, 50), compression="zstd")
    ours = iterate(path, decode_camera=True)
    theirs = list(bodycompress.BodyDecompressor(str(path), decode_camera=True))
    for a, b in zip(ours, theirs):
        cam, ref = a["camera"], b["camera"]
        assert type(cam) is type(ref)
        np.testing.assert_allclose(cam.R, ref.R, atol=1e-6)
        np.testing.assert_allclose(cam.t, ref.t, atol=1e-4)
        np.testing.assert_allclose(cam.intrinsic_matrix, ref.intrinsic_matrix)
        np.testing.assert_allclose(cam.world_up, ref.world_up)


def test_decode_camera_without_deltacamera(tmp_path, monkeypatch):
    path = write_bodycompress(tmp_path / "p.xz", body_frames(1, 50), compression="zstd")
    monkeypatch.setitem(sys.modules, "deltacamera", None)  # import now raises ImportError
    with pytest.raises(BodybatchError, match="deltacamera"):
        read_predictions(path, decode_camera=True)


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_iteration_memory_is_bounded(tmp_path, compression):
    frames = body_frames(300, 6890)
    # xz level 0: the same frames, compressed in ~60% of level 1's time (12 s).
    level = {"compression_level": 0} if compression == "xz" else {}
    path = write_bodycompress(tmp_path / "long.xz", frames, compression=compression, **level)
    reader = read_predictions(path)
    total = 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for frame in reader:
            total += sum(v.nbytes for v in frame.values() if isinstance(v, np.ndarray))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # decoded: 300 frames x 2 people x 6890 vertices x 16 bytes = 66 MB; measured peak:
    # ~3.5 MB (zstd), ~9 MB (xz: 1 MiB compressed + 1 MiB decompressed + msgpack buffer)
    assert total > 60e6
    assert peak < total / 5, (peak, total)


# --------------------------------------------------------------------------- bad files


def assert_format_error(path, match, *, during_iteration=False, **kwargs):
    if during_iteration:
        reader = read_predictions(path, **kwargs)
        with pytest.raises(FormatError, match=match) as info:
            list(reader)
    else:
        with pytest.raises(FormatError, match=match) as info:
            read_predictions(path, **kwargs)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def test_empty_and_foreign_files(tmp_path):
    (tmp_path / "empty.xz").write_bytes(b"")
    assert_format_error(tmp_path / "empty.xz", "empty file")
    (tmp_path / "random.xz").write_bytes(np.random.default_rng(0).bytes(5000))
    assert_format_error(tmp_path / "random.xz", "unknown magic")
    (tmp_path / "xzjunk.xz").write_bytes(b"\xfd7zXZ\x00" + bytes(range(256)) * 4)
    assert_format_error(tmp_path / "xzjunk.xz", "corrupt xz data")
    (tmp_path / "list.xz").write_bytes(compress(_msgpack.packb([1, 2, 3]), "xz"))
    assert_format_error(tmp_path / "list.xz", "not a bodycompress prediction file")
    with pytest.raises(FileNotFoundError):
        read_predictions(tmp_path / "missing.xz")


@pytest.mark.parametrize("name", ["nlf_xz_0001", "nlf_zstd_0000"])
def test_truncated_files(corpus_dir, tmp_path, name):
    source = corpus_dir / f"{name}.xz"
    blob = source.read_bytes()
    reference = list(bodycompress.BodyDecompressor(str(source)))
    header = read_predictions(source).header
    cuts = [1, 5, 60, header.metadata_start - 1, header.metadata_start + 20]
    cuts += [header.data_start, header.data_start + 100, len(blob) // 3, len(blob) // 2]
    cuts += [len(blob) - 100, len(blob) - 1]
    for cut in cuts:
        path = tmp_path / f"cut{cut}.xz"
        path.write_bytes(blob[:cut])
        if cut < header.data_start:
            assert_format_error(path, "truncated|too long|beyond|outside")
            continue
        reader = read_predictions(path)
        frames = []
        with pytest.raises(FormatError, match=rf"truncated .* after frame \d+ of {len(reader)}"):
            for frame in reader:
                frames.append(frame)
        assert len(frames) <= len(reference)
        for t, frame in enumerate(frames):  # what came before the error is the real data
            assert_same(frame, reference[t], f"{cut}: frame {t}")


def test_incomplete_file_from_killed_writer(tmp_path):
    path = tmp_path / "killed.xz"
    script = f"""
        import os, numpy as np, bodycompress
        writer = bodycompress.BodyCompressor({str(path)!r}, compression="zstd", n_threads=1)
        writer.append(vertices=np.arange(30.0).reshape(1, 10, 3) * 100)
        writer.f.flush()
        os._exit(0)  # killed: never closed
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True)
    assert path.stat().st_size > 0
    assert_format_error(path, "incomplete")


def test_incomplete_file_crafted(tmp_path):
    unset = dict(metadata_start=None, data_start=None)
    path = craft(tmp_path / "p.xz", [simple_frame()], header=unset)
    assert_format_error(path, "incomplete")


@pytest.mark.parametrize(
    "header, match",
    [
        (dict(length=10**9), "'length'=1000000000 is outside"),
        (dict(length=-1), "'length'=-1 is outside"),
        (dict(length="1"), "'length' is '1', not an integer"),
        (dict(length=True), "not an integer"),
        (dict(data_start=10**12), "truncated"),
        (dict(metadata_start=10**12), "outside"),
        (dict(metadata_start=3), "inside the header"),
        (dict(compression="zstd"), "says compression 'zstd'"),
        (dict(compression=None), "says compression None"),
        (dict(__bodycompress_version__=(0, 4, 0)), "unsupported bodycompress version"),
        (dict(__bodycompress_version__="0.3"), "invalid __bodycompress_version__"),
        (dict(vertex_order="mano"), "unknown vertex_order"),
        (dict(vertex_order=np.array([0, 0, 1])), "not a permutation"),
        (dict(vertex_order=np.array([0.0, 1.0])), "not a 1-D integer array"),
    ],
)
def test_bad_headers(tmp_path, header, match):
    path = craft(tmp_path / "p.xz", [simple_frame()], header=header)
    assert_format_error(path, match)


def test_header_missing_keys_and_bad_metadata(tmp_path):
    for key in ["length", "data_start", "metadata_start", "compression"]:
        head = {
            "__bodycompress_version__": (0, 3, 0),
            "compression": "xz",
            "length": 0,
            "metadata_start": 256,
            "data_start": 300,
        }
        del head[key]
        path = tmp_path / f"no_{key}.xz"
        blob = compress(_msgpack.packb(head), "xz")
        path.write_bytes(blob + bytes(400))
        assert_format_error(path, f"lacks '{key}'")
    assert_format_error(craft(tmp_path / "m.xz", metadata=[1, 2]), "metadata is a list")
    assert read_predictions(craft(tmp_path / "none.xz")).metadata is None


def test_crafted_file_is_valid_for_both_readers(tmp_path):
    frames = [simple_frame(seed=i) for i in range(3)]
    frames[1]["extra"] = {"n": np.int64(7), "z": 1 + 2j, "s": "text", "flag": np.bool_(True)}
    path = craft(tmp_path / "p.xz", frames, metadata={"fps": 25.0})
    assert_matches_bodycompress(path)


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_concatenated_streams_with_padding(tmp_path, compression):
    frames = [simple_frame(seed=i) for i in range(4)]
    parts = [compress(_msgpack.packb(f), compression) for f in frames]
    data = parts[0] + parts[1] + bytes(8) + parts[2] + parts[3] + bytes(4)
    path = craft(tmp_path / "p.xz", frames, data=data, compression=compression)
    decoded = iterate(path)
    assert len(decoded) == 4
    reference = iterate(craft(tmp_path / "q.xz", frames, compression=compression))
    for a, b in zip(decoded, reference):
        assert_same(a, b)


def test_frame_count_mismatches(tmp_path):
    frames = [simple_frame(seed=i) for i in range(2)]
    path = craft(tmp_path / "more.xz", frames, header=dict(length=1))
    reader = read_predictions(path)
    got = []
    with pytest.raises(FormatError, match="holds more than 1 frames"):
        got.extend(reader)
    assert len(got) == 1
    path = craft(tmp_path / "fewer.xz", frames, header=dict(length=3))
    assert_format_error(path, "ends after frame 2 of 3", during_iteration=True)
    packed = _msgpack.packb(frames[0])
    path = craft(tmp_path / "partial.xz", frames[:1], payload=packed + packed[:40])
    assert_format_error(path, "ends inside a frame after frame 1 of 1", during_iteration=True)


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_trailing_garbage_after_data(tmp_path, compression):
    frames = [simple_frame()]
    data = compress(_msgpack.packb(frames[0]), compression) + b"garbage!" * 8
    path = craft(tmp_path / "p.xz", frames, data=data, compression=compression)
    assert_format_error(path, f"corrupt {compression} data", during_iteration=True)


@pytest.mark.parametrize(
    "frame, match",
    [
        (5, "frame 0: is a int, not a map"),
        ({"qd_vertices": "abc"}, "qd_vertices is not a \\[diffs, factor\\] pair"),
        ({"qd_vertices": [np.zeros((1, 4, 3), np.float32), 2.0]}, "must be an int32 array"),
        ({"qd_joints": [np.zeros((4,), np.int32), 2.0]}, "of >= 2 dims"),
        ({"qd_vertices": [np.zeros((1, 4, 3), np.int64), 2.0]}, "must be an int32 array"),
        ({"qd_vertices": [np.zeros((1, 4, 3), np.int32), 0.0]}, "invalid quantization factor"),
        ({"qd_vertices": [np.zeros((1, 4, 3), np.int32), float("nan")]}, "factor"),
        ({"qd_vertex_uncertainties": [np.zeros((1, 4), np.int32), "2"]}, "factor"),
        ({"camera": [1, 2]}, "camera is a list"),
        ({"camera": {"loc": np.zeros(3)}}, "invalid camera dict"),
    ],
)
def test_bad_frames(tmp_path, frame, match):
    path = craft(tmp_path / "p.xz", [frame])
    assert_format_error(path, match, during_iteration=True, decode_camera=True)


def test_vertex_count_must_match_vertex_order(tmp_path):
    frame = simple_frame(n_vertices=100)
    path = craft(tmp_path / "p.xz", [frame], header=dict(vertex_order="smpl"))
    assert_format_error(path, "vertex_order has 6890 vertices, 'vertices' has 100",
                        during_iteration=True)  # fmt: skip
    custom = np.arange(10)[::-1].copy()
    frame = simple_frame(n_vertices=10)
    frame["qd_vertex_uncertainties"] = qd(np.ones((1, 9)), -1, 2000.0)
    path = craft(tmp_path / "q.xz", [frame], header=dict(vertex_order=custom))
    assert_format_error(path, "'vertex_uncertainties' has 9", during_iteration=True)


@pytest.mark.parametrize("dtype", [np.int16, np.uint64, np.int64])
def test_custom_vertex_order_dtypes(tmp_path, dtype):
    order = np.random.default_rng(2).permutation(40).astype(dtype)
    path = write_bodycompress(tmp_path / "p.xz", body_frames(2, 40), vertex_order=order)
    reader, _ = assert_matches_bodycompress(path)
    assert np.array_equal(reader.header.vertex_order, order)


def test_frame_size_is_capped(tmp_path, monkeypatch):
    path = craft(tmp_path / "p.xz", [simple_frame(n_vertices=200)] * 2)
    assert len(iterate(path)) == 2
    monkeypatch.setattr(_msgpack, "MAX_BUFFER_SIZE", 1000)  # a frame here is ~2.5 kB
    assert_format_error(path, "a frame exceeds 1000 bytes after frame 0", during_iteration=True)


@pytest.mark.parametrize("factor", [2.0, 1 / 0.3, 1000 / 0.7, 3, 7.77e5])
@pytest.mark.parametrize("scale", [2**10, 2**20])  # cumsum within / beyond 2**24
def test_unquantize_is_bit_identical(tmp_path, factor, scale):
    from bodycompress.bodycompress import unquantize_diff

    rng = np.random.default_rng(int(scale))
    diffs = rng.integers(-scale, scale, (2, 3000, 3)).astype(np.int32)
    frame = {"qd_joints": [diffs, factor], "qd_joint_uncertainties": [diffs[..., 0], factor]}
    decoded = iterate(craft(tmp_path / "p.xz", [frame]))[0]
    assert_same(decoded["joints"], unquantize_diff((diffs, factor), axis=-2))
    assert_same(decoded["joint_uncertainties"], unquantize_diff((diffs[..., 0], factor), axis=-1))


@pytest.mark.parametrize("shape", [(1, 500, 3), (3, 25, 3), (1, 1, 3), (2, 5, 1), (0, 25, 3), (2, 4, 6, 3)])
def test_cumsum_along_points_matches_numpy(shape):
    from bodybatch.formats.bodycompress._frames import _cumsum_int32

    diffs = np.random.default_rng(len(shape)).integers(-999, 999, shape).astype(np.int32)
    diffs.flags.writeable = False  # as msgpack hands them out
    for axis in range(-diffs.ndim, diffs.ndim):
        assert_same(_cumsum_int32(diffs, axis), np.cumsum(diffs, axis=axis, dtype=np.int32))


def test_float64_result_beyond_float32_range(tmp_path):
    far = np.full((1, 4, 3), 1e7)  # 2e7 quantization steps > 2**24: kept in float64
    path = craft(tmp_path / "p.xz", [{"qd_vertices": qd(far, -2)}])
    assert_matches_bodycompress(path)
    assert iterate(path)[0]["vertices"].dtype == np.float64


def test_pickled_object_array_is_refused_unless_allowed(tmp_path, monkeypatch):
    frames = list(body_frames(2, 20))
    frames[1]["objects"] = np.array([{"a": 1}, None, "x"], dtype=object)
    path = write_bodycompress(tmp_path / "p.xz", frames, compression="zstd")

    def no_unpickling(*args, **kwargs):
        raise AssertionError("pickle.loads called without allow_pickle")

    with monkeypatch.context() as patch:
        patch.setattr(pickle, "loads", no_unpickling)
        error = assert_format_error(
            path, r"frame 1: refusing pickled object array \(allow_pickle=True to opt in\)",
            during_iteration=True,
        )  # fmt: skip
        assert "AssertionError" not in str(error)
    assert_matches_bodycompress(path, allow_pickle=True)


def test_file_changed_after_opening(tmp_path):
    path = craft(tmp_path / "p.xz", [simple_frame()])
    reader = read_predictions(path)
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(FormatError, match="changed since it was opened"):
        list(reader)


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_random_corruption_raises_only_format_error(tmp_path, compression):
    frames = list(body_frames(3, 40, seed=3))
    path = write_bodycompress(tmp_path / "p.xz", frames, compression=compression)
    blob = path.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"ok": 0, "error": 0}
    for i in range(150):
        damaged = bytearray(blob)
        for pos in rng.integers(0, len(blob), rng.integers(1, 4)):
            damaged[pos] ^= int(rng.integers(1, 256))
        target = tmp_path / f"d{i}.xz"
        target.write_bytes(bytes(damaged))
        try:
            for _ in read_predictions(target):
                pass
            outcomes["ok"] += 1
        except FormatError as exc:
            assert str(exc).startswith(f"{target}: ")
            outcomes["error"] += 1
        target.unlink()
    assert outcomes["error"] > 0


# --------------------------------------------------------------------------- _msgpack


def test_packb_is_read_by_msgpack_numpy():
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    value = {
        "f4": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        "f8_strided": np.arange(20.0)[::3],
        "i2": np.array([-3, 7], np.int16),
        "u1": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False]),
        "c8": np.array([1 + 2j], np.complex64),
        "scalar0d": np.array(3.5),
        "empty": np.zeros((0, 3), np.float32),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": big_endian,
        "np_scalars": [np.int64(-5), np.float32(1.5), np.bool_(True), np.uint16(9)],
        "plain": [None, True, 1, 2.5, "s", b"b", (1, 2), 3 + 4j],
    }
    packed = _msgpack.packb(value)
    theirs = msgpack_numpy.unpackb(packed, strict_map_key=False)
    ours = _msgpack.unpackb(packed)
    assert_same(ours, theirs)
    for key, array in value.items():
        if isinstance(array, np.ndarray):
            assert np.array_equal(ours[key], array) and ours[key].shape == array.shape
            assert ours[key].dtype.byteorder in "<|="
            assert not ours[key].flags.writeable
    assert ours["big_endian"].dtype.str == "<i4"
    assert ours["np_scalars"][0] == -5 and type(ours["np_scalars"][0]) is np.int64
    assert ours["plain"][-1] == 3 + 4j and ours["plain"][-2] == [1, 2]


@pytest.mark.parametrize(
    "value", [np.array([{}], dtype=object), np.zeros(2, dtype="i4,f4"), np.array(["ab"]), object()]
)
def test_packb_refuses_unsafe_values(value):
    with pytest.raises(TypeError):
        _msgpack.packb({"x": value})


def nd(**fields):
    base = {b"nd": True, b"type": "<f4", b"kind": b"", b"shape": [2], b"data": bytes(8)}
    base.update({k.encode(): v for k, v in fields.items()})
    return msgpack.packb(base, use_bin_type=True)


@pytest.mark.parametrize(
    "packed, match",
    [
        (nd(kind=b"O", data=pickle.dumps(np.array([1], object))), "refusing pickled object"),
        (nd(kind=b"V", type=[["a", "<f4"]]), "structured"),
        (nd(type="O"), "refusing array of dtype 'O'"),
        (nd(type="f4,i4"), "refusing array of dtype"),
        (nd(type="(2,)f4"), "refusing array of dtype"),
        (nd(type="not a dtype"), "invalid dtype"),
        (nd(type=5), "non-string dtype"),
        (nd(shape=[3]), "needs 12 bytes but holds 8"),
        (nd(shape=[-2]), "invalid array shape"),
        (nd(shape=[2**62, 0]), "invalid array shape"),
        (nd(shape="2"), "invalid array shape"),
        (nd(data="text"), "not a binary field"),
        (nd(nd=1), "invalid numpy map marker"),
        (msgpack.packb({b"nd": False, b"type": "<f8", b"data": bytes(4)}), "needs 8 bytes"),
        (msgpack.packb({b"complex": True, b"data": "x" * 200}), "invalid complex"),
        (b"\xc6\xff\xff\xff\xff" + bytes(16), "invalid msgpack data"),  # 4 GiB bin header
        (b"\xdd\xff\xff\xff\xff" + bytes(16), "invalid msgpack data"),  # 4G-entry array
        (b"\xdf\xff\xff\xff\xff" + bytes(16), "invalid msgpack data"),  # 4G-entry map
        (b"\xc1", "invalid msgpack data"),
        (msgpack.packb(1) + b"\x01", "unexpected bytes after"),
    ],
)
def test_unpackb_refuses_hostile_input(packed, match):
    with pytest.raises(FormatError, match=match) as info:
        _msgpack.unpackb(packed, where="x.bin: chunk 3")
    assert str(info.value).startswith("x.bin: chunk 3: ")


def test_unpackb_allow_pickle_opt_in():
    packed = nd(kind=b"O", data=pickle.dumps(np.array([1, "a"], object)))
    value = _msgpack.unpackb(packed, allow_pickle=True)
    assert value.dtype == object and list(value) == [1, "a"]


def test_streaming_unpacker_limits_buffered_bytes():
    unpacker = _msgpack.make_unpacker(max_buffer_size=1 << 16)
    unpacker.feed(b"\xc6\x7f\xff\xff\xff")  # claims a 2 GiB binary field
    assert list(unpacker) == []
    with pytest.raises(msgpack.exceptions.BufferFull):
        for _ in range(4):
            unpacker.feed(bytes(1 << 15))
    assert _msgpack.MAX_BUFFER_SIZE < 1 << 30


def test_public_names():
    import bodybatch

    assert bodybatch.read_predictions is read_predictions
    assert isinstance(bodybatch.read_predictions, type(read_predictions))
    assert PredictionReader.__module__ == "bodybatch.formats.bodycompress.predictions"
