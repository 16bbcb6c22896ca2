"""The compiled decoder (numba, the ``fast`` extra) against the numpy reference decoder:
the same integers from the same streams, whole chunks and row prefixes."""

import numpy as np
import pytest

import bodybatch
from bodybatch.codec import _kernels, predict
from bodybatch.codec.streams import (
    _decode_residual_streams, _encode_residual_streams, activity_classes, decode_residual_parts,
)  # fmt: skip
from bodybatch.codec.structure import build_structure

from _helpers import one_chunk_decoding, require

numba = require("numba")


def _walk(rng, n_frames, n, d, scale, step):
    """(T, N, D) integer random walk around a random point cloud (a moving body)."""
    base = rng.integers(-scale, scale, (n, d))
    moves = rng.integers(-step, step + 1, (n_frames, n, d)).cumsum(axis=0)
    drift = rng.integers(-4 * step, 4 * step + 1, (n_frames, 1, d)).cumsum(axis=0)
    return base[None] + moves + drift


def _decode_with_and_without_kernels(path, monkeypatch, rows=()):
    """(compiled decode, numpy decode, compiled rows ``rows``) of a track file."""
    monkeypatch.delenv(_kernels.KERNELS_ENV, raising=False)
    assert _kernels.kernels() is not None
    with bodybatch.open_track(path) as reader:
        compiled = reader.to_arrays()
        picked = [reader[k] for k in rows]
    monkeypatch.setenv(_kernels.KERNELS_ENV, "numpy")
    assert _kernels.kernels() is None
    with bodybatch.open_track(path) as reader:
        reference = reader.to_arrays()
    assert set(compiled) == set(reference)
    for key, value in reference.items():
        if key == "camera":
            for k, v in value.items():
                np.testing.assert_array_equal(compiled[key][k], v)
        else:
            assert compiled[key].dtype == value.dtype
            np.testing.assert_array_equal(compiled[key], value)
    return compiled, reference, picked


@pytest.mark.parametrize(
    "n, n_frames, d, m, window, scale",
    [(1, 1, 3, 1, 1, 50), (5, 3, 4, 2, 2, 50), (700, 17, 4, 3, 2, 3000), (2500, 64, 4, 3, 2, 3000),
     (2500, 40, 3, 4, 3, 3000), (1500, 30, 4, 1, 8, 3000), (1300, 12, 4, 5, 1, 3000),
     (1100, 9, 4, 3, 2, 2**28)],  # the last one needs int64 work arrays
)  # fmt: skip
def test_kernel_decodes_the_numpy_decoders_integers(n, n_frames, d, m, window, scale):
    rng = np.random.default_rng(n + n_frames)
    x = _walk(rng, n_frames, n, d, scale, max(1, scale // 200))
    max_abs = int(np.abs(x).max())
    structure = build_structure(x[0, :, :3], m)
    res = predict.encode_residuals(x, structure, window, max_abs)
    res_abs = int(np.abs(res).max())
    classes = activity_classes(res, res_abs=res_abs)
    stream_dtype = np.int16 if res_abs < 2**15 else res.dtype
    streams = _encode_residual_streams(res, classes, 2, stream_dtype)
    rdtype = predict.work_dtype(max_abs, m, window)
    reference = predict.decode_residuals(
        _decode_residual_streams(streams, classes, (n, n_frames, d), rdtype, stream_dtype, ""), structure, window, max_abs
    )
    np.testing.assert_array_equal(reference, x)
    compiled = _kernels._compile(numba)  # whatever BODYBATCH_KERNELS says
    first, rest_xyz, rest_unc, sorted_pos = decode_residual_parts(streams, classes, (n, n_frames, d), stream_dtype, "")
    levels = np.array(predict.level_windows(n, window), np.int64).reshape(-1, 3)
    for first_row, n_rows in sorted({(0, n_frames), (0, 1), (n_frames // 2, max(1, n_frames // 2 + 1)), (n_frames - 1, n_frames)}):
        xe = np.full((n + 1, n_frames, d), 12345, rdtype)  # only row n (the zero point) need be set
        xe[n] = 0
        xs = np.empty((n_rows - first_row, n, d), rdtype)
        top = compiled.decode_v1(m, d, first, rest_xyz, rest_unc, sorted_pos, structure.parents, structure.is_parent,
                                 levels, first_row, n_rows, xe, xs)  # fmt: skip
        np.testing.assert_array_equal(xs[:, structure.inverse], x[first_row:n_rows])
        assert top == np.abs(x[:n_rows]).max()  # every decoded row, before it is stored


@pytest.mark.parametrize("options, drop", [
    ({}, ()),
    ({"quantization_mm": 0.3, "uncertainty_quantization_mm": 0.7}, ()),  # grid factors not powers of two
    ({"quantization_mm": 2.0}, ("vertex_uncertainties", "joint_uncertainties")),  # D = 3
])  # fmt: skip
def test_track_decodes_the_same_with_and_without_the_kernel(tmp_path, corpus_tracks, monkeypatch, options, drop):
    track = {k: v for k, v in corpus_tracks["nlf_xz_0000/p0"].items() if k not in drop}
    bodybatch.write_track(tmp_path / "t.xz", track, chunk_size=16, **options)
    _decode_with_and_without_kernels(tmp_path / "t.xz", monkeypatch)


def test_rows_read_one_at_a_time_equal_the_whole_track(tmp_path, corpus_tracks):
    """Reading row k decodes the chunk's rows 0..k only; later rows of the same chunk
    extend the cached prefix. Every way of reading gives the same values."""
    track = corpus_tracks["nlf_zstd_0000/p0"]
    bodybatch.write_track(tmp_path / "t.xz", track, chunk_size=16)
    with bodybatch.open_track(tmp_path / "t.xz") as reader:
        whole = reader.to_arrays()
        n = len(reader)
    rows = [5, 2, 9, 15, 16, 0, n - 1, 17]
    with bodybatch.open_track(tmp_path / "t.xz") as reader:
        for k in rows:
            row = reader[k]
            np.testing.assert_array_equal(row["vertices"], whole["vertices"][k])
            np.testing.assert_array_equal(row["vertex_uncertainties"], whole["vertex_uncertainties"][k])
            np.testing.assert_array_equal(row["boxes"], whole["boxes"][k])
            assert row["frame_index"] == whole["frame_index"][k]
        part = reader[3:7]  # after a prefix of chunk 0 was cached
        np.testing.assert_array_equal(part["vertices"], whole["vertices"][3:7])
        picked = reader.read(np.array([1, 20, 4]), fields="joints")
        np.testing.assert_array_equal(picked["joints"], whole["joints"][[1, 20, 4]])


def test_first_row_of_a_chunk_decodes_no_later_frames(corpus_tracks, monkeypatch):
    """Format 1.0's streams of frames 1.. are point-major (no prefix to stop at): the
    compiled path leaves them undecoded when frame 0 is all a read needs."""
    monkeypatch.delenv(_kernels.KERNELS_ENV, raising=False)
    codec, layout, encoded, n, full, decoded = one_chunk_decoding(corpus_tracks["nlf_xz_0000/p0"], monkeypatch)
    values = sum(g["n_points"] * g["n_dims"] for g in layout.values())
    classes = sum(g["n_points"] for g in layout.values())
    for stop, expected in ((1, values), (2, values * n), (n, values * n)):
        decoded.clear()
        part = codec.decode_chunk(encoded, layout, n, rows=slice(stop - 1, stop))
        for key, value in part.items():
            np.testing.assert_array_equal(value, full[key][stop - 1 : stop])
        assert expected <= sum(decoded) - classes <= expected + 1_000  # (+ boxes, camera)


@pytest.mark.parametrize("predictor", [1, 3])
def test_a_chunk_decoded_on_threads_gives_the_same_values(tmp_path, corpus_tracks, monkeypatch, predictor):
    """threads > 1 on a one-chunk read splits the chunk's decode (streams, levels of
    >= 1024 points, the dequantization): the same values for every row range, and the
    work really ran on two threads."""
    import threading

    from bodybatch.codec import _threads
    from bodybatch.codec.bodybatch_codec import V2_OPTIONS

    monkeypatch.delenv(_kernels.KERNELS_ENV, raising=False)
    track = corpus_tracks["nlf_xz_0000/p0"]
    bodybatch.write_track(tmp_path / "t.xz", track, **{**(V2_OPTIONS if predictor == 3 else {}), "chunk_size": 32})
    ran_on = set()
    real_run = _threads.Workers.run

    def run(self, parts):
        ran_on.add(len(parts))
        return real_run(self, [lambda part=part: ran_on.add(threading.current_thread().name) or part()
                               for part in parts])  # fmt: skip

    monkeypatch.setattr(_threads.Workers, "run", run)
    with bodybatch.open_track(tmp_path / "t.xz") as serial:
        whole = serial.to_arrays()
        n = len(serial)
    assert n > 32
    for key in [0, 1, 2, 3, 5, 20, 31, 32, n - 1, slice(0, 32), slice(10, 30), slice(32, n), slice(0, n)]:
        with bodybatch.open_track(tmp_path / "t.xz", threads=2) as reader:
            got = reader[key]
        for field in ("vertices", "vertex_uncertainties", "joints", "boxes"):
            np.testing.assert_array_equal(got[field], whole[field][key])
    assert 2 in ran_on and any(name.startswith("bodybatch-decode") for name in ran_on if isinstance(name, str))

# -- codec v2 -----------------------------------------------------------------------------


def _v2_chunk(n, n_frames, d, m, n_lags, scale, seed=0):
    """(x, structure, blocks, residuals, weights, s_abs, work dtype) of a random walk."""
    from bodybatch.codec import predict2
    from bodybatch.codec.streams import _blocks, _components

    rng = np.random.default_rng(seed)
    x = _walk(rng, n_frames, n, d, scale, max(1, scale // 200))
    max_abs = int(np.abs(x).max())
    structure = build_structure(x[0, :, :3], m)
    blocks = _blocks(n)
    res, weights, s_abs = predict2.encode_residuals(x, structure, blocks, _components(d), n_lags, max_abs)
    return x, structure, blocks, res, weights, s_abs, predict2.decode_dtype(s_abs, n_lags, max_abs, m)


def _v2_decode(structure, blocks, res, weights, s_abs, dtype, kernels, n_rows=None):
    from bodybatch.codec import predict2

    n_frames, n, d = res.shape
    xe = np.zeros((n_frames, n + 1, d), dtype)
    xe[:, :n] = res
    inverse = np.empty(n, np.intp)
    inverse[structure.order] = np.arange(n)
    return predict2.decode_residuals(xe, inverse, structure.parents, blocks, weights, s_abs, kernels, n_rows)


@pytest.mark.parametrize(
    "n, n_frames, d, m, n_lags, scale",
    [(1, 2, 3, 1, 1, 50), (5, 5, 4, 3, 4, 50), (600, 1, 4, 3, 4, 3000), (600, 2, 3, 3, 4, 3000),
     (600, 130, 4, 4, 8, 3000), (2500, 5, 4, 3, 1, 3000), (2500, 130, 4, 3, 4, 3000), (2500, 130, 3, 1, 8, 3000),
     (700, 17, 4, 3, 4, 2**28), (600, 130, 3, 4, 8, 2**27)],  # the last two need int64 work arrays
)  # fmt: skip
def test_v2_kernels_decode_the_numpy_decoders_integers(n, n_frames, d, m, n_lags, scale):
    x, structure, blocks, res, weights, s_abs, dtype = _v2_chunk(n, n_frames, d, m, n_lags, scale, n + n_frames)
    assert (dtype == np.int64) == (scale > 2**20)
    np.testing.assert_array_equal(_v2_decode(structure, blocks, res, weights, s_abs, dtype, None), x)
    compiled = _kernels._compile(numba)  # whatever BODYBATCH_KERNELS says
    for n_rows in sorted({n_frames, 1, 2, max(1, n_frames // 2)}):
        out = _v2_decode(structure, blocks, res, weights, s_abs, dtype, compiled, n_rows)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, x[:n_rows])


@pytest.mark.parametrize("m", [2, 4, 6])
def test_v2_kernels_take_any_spatial_weights(monkeypatch, m):
    """The kernels take the per-point weights as an array: other interpolation weights
    (here random ones within the bounds, for any number of parents) decode the same."""
    from bodybatch.codec import predict2

    rng = np.random.default_rng(m)

    def random_weights(x0, parents):
        w = rng.integers(-predict2.MIN_SPATIAL, predict2.MAX_SPATIAL // 2, parents.shape)
        w[:, -1] = predict2.SPATIAL_ONE - w[:, :-1].sum(axis=1)
        return np.clip(w, -predict2.MIN_SPATIAL, predict2.MAX_SPATIAL)  # rows need not sum to 64

    monkeypatch.setattr(predict2, "spatial_weights", random_weights)
    x, structure, blocks, res, weights, s_abs, dtype = _v2_chunk(900, 33, 4, m, 3, 3000)
    compiled = _kernels._compile(numba)
    for kernels in (None, compiled):
        rng = np.random.default_rng(m)  # the same weights for both decoders
        np.testing.assert_array_equal(_v2_decode(structure, blocks, res, weights, s_abs, dtype, kernels), x)


@pytest.mark.parametrize("frame, value", [(1, 10**6), (7, -(2**31) + 5), (32, 2**31 - 3), (20, 5)])
def test_v2_kernels_refuse_what_the_numpy_decoder_refuses(frame, value):
    """A corrupt residual beyond the bound (or a too small bound): both decoders return
    None, also when int32 sums would wrap around."""
    x, structure, blocks, res, weights, s_abs, dtype = _v2_chunk(600, 33, 4, 3, 4, 3000)
    assert dtype == np.int32
    res = res.astype(np.int64)
    res[frame, 100, 1] = value
    res = res.astype(dtype)  # (wrapping like a corrupt int32 stream would)
    bound = s_abs if value != 5 else s_abs // 2
    compiled = _kernels._compile(numba)
    assert _v2_decode(structure, blocks, res, weights, bound, dtype, None) is None
    assert _v2_decode(structure, blocks, res, weights, bound, dtype, compiled) is None


@pytest.mark.parametrize("options", ["V2_0_OPTIONS", "V2_OPTIONS"])  # formats 2.0 and 3.0
def test_v2_track_decodes_the_same_with_and_without_the_kernel(tmp_path, corpus_tracks, monkeypatch, options):
    from bodybatch.codec import bodybatch_codec

    track = corpus_tracks["nlf_xz_0000/p0"]
    bodybatch.write_track(tmp_path / "t.xz", track, **{**getattr(bodybatch_codec, options), "chunk_size": 16})
    _, reference, rows = _decode_with_and_without_kernels(tmp_path / "t.xz", monkeypatch, (5, 2, 9, 15, 16, 0, 17))
    for k, row in zip((5, 2, 9, 15, 16, 0, 17), rows):
        for key in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties"):
            np.testing.assert_array_equal(row[key], reference[key][k])



@pytest.mark.parametrize("value", [10**4, 10**6, 2**40])
def test_v1_kernel_bound_sees_values_its_storage_cannot_hold(value):
    """A corrupt residual pushes decoded values past the chunk's bound, also past the
    compiled decoder's int16 storage: the bound it returns is the true max |x| (the
    numpy decoder's, in int64), so the caller's check refuses the chunk."""
    rng = np.random.default_rng(7)
    n, n_frames, d, m, window = 1100, 12, 4, 3, 2
    x = _walk(rng, n_frames, n, d, 3000, 15)
    structure = build_structure(x[0, :, :3], m)
    res = predict.encode_residuals(x, structure, window, int(np.abs(x).max())).astype(np.int64)
    res[700, 5, 1] += value  # (stored position, frame, component)
    classes = activity_classes(res)
    streams = _encode_residual_streams(res, classes, 2, np.int64)
    reference = predict.decode_residuals(
        _decode_residual_streams(streams, classes, (n, n_frames, d), np.int64, np.int64, ""), structure, window, 2**62
    )
    assert np.abs(reference).max() > np.abs(x).max()  # past the bound (past int16 for the larger values)
    compiled = _kernels._compile(numba)
    first, rest_xyz, rest_unc, sorted_pos = decode_residual_parts(streams, classes, (n, n_frames, d), np.int64, "")
    levels = np.array(predict.level_windows(n, window), np.int64).reshape(-1, 3)
    xe = np.zeros((n + 1, n_frames, d), np.int16)
    xs = np.empty((n_frames, n, d), np.int16)
    top = compiled.decode_v1(m, d, first, rest_xyz, rest_unc, sorted_pos, structure.parents, structure.is_parent,
                             levels, 0, n_frames, xe, xs)  # fmt: skip
    assert top == np.abs(reference).max()


@pytest.mark.parametrize(
    "n, n_frames, d, m, n_lags, scale",
    [(1, 2, 3, 1, 1, 50), (5, 5, 4, 3, 4, 50), (600, 1, 4, 3, 4, 3000), (1500, 2, 3, 3, 4, 3000),
     (1500, 9, 4, 4, 8, 3000), (2500, 130, 4, 4, 8, 3000), (2500, 40, 3, 1, 2, 3000),
     (1300, 20, 4, 3, 8, 2**29)],  # the last one: Gram sums beyond 2**52 (the numpy/BLAS fit)
)  # fmt: skip
def test_v3_encoder_kernels_give_the_numpy_encoders_integers(monkeypatch, n, n_frames, d, m, n_lags, scale):
    from bodybatch.codec import predict3
    from bodybatch.codec.streams import _CLASSED_POINTS, N_CLASSES, _blocks, _components

    rng = np.random.default_rng(n + n_frames)
    x = _walk(rng, n_frames, n, d, scale, max(1, scale // 200))
    if scale > 2**20:
        x[n_frames // 2 :] = -x[n_frames // 2 :]  # large jumps
    structure = build_structure(x[0, :, :3], m, step_cost=0.15)
    out = {}
    for env in ("numpy", ""):
        monkeypatch.setenv(_kernels.KERNELS_ENV, env)
        blocks, groups = _blocks(n), _components(d)
        out[env] = predict3.encode_residuals(x, structure, blocks, groups, n_lags, N_CLASSES, _CLASSED_POINTS)
    for a, b in zip(out["numpy"], out[""]):
        np.testing.assert_array_equal(a, b)


def test_v3_gram_kernel_is_exact_and_bounded():
    from bodybatch.codec import predict3

    rng = np.random.default_rng(5)
    compiled = _kernels._compile(numba)
    cases = [(2, 1, 1, 9), (5, 7, 8, 3000), (9, 70, 8, 3000), (10, 33, 8, 5), (130, 300, 4, 3000)]
    for n_frames, k, n_lags, scale in cases:
        off = rng.integers(-scale, scale + 1, (n_frames, k, 4)).cumsum(axis=0)
        points = np.arange(0, k, 2)
        grams, bound = np.empty((4, n_lags + 2, n_lags + 2)), np.empty(4)
        compiled.gram_v3(n_lags, 4, off.reshape(n_frames, -1), points, grams, bound)
        for c0, c1 in ((0, 3), (3, 4)):
            sub = off[:, points, c0:c1]
            assert bound[c0:c1].sum() == (np.abs(sub).max(axis=0).astype(np.float64) ** 2).sum()
            rows = [np.maximum(np.arange(1, n_frames) - lag, 0) for lag in range(1, n_lags + 1)]
            design = np.stack([sub[r] for r in rows] + [predict3._mean_feature(sub), sub[1:]]).astype(np.float64)
            design = design.reshape(n_lags + 2, -1)
            np.testing.assert_array_equal(grams[c0:c1].sum(axis=0), design @ design.T)


# -- format 3.0: the values kernel (bodybatch.codec._kernels3) ---------------------------------


def _v3_entry(n, n_frames, d, m, n_lags, scale, seed=0):
    """(x, structure, chunk entry) of a random walk, as format 3.0 writes it."""
    from bodybatch.codec import group3

    rng = np.random.default_rng(seed)
    x = _walk(rng, n_frames, n, d, scale, max(1, scale // 200)).astype(np.int32)
    structure = group3.sorted_parents(build_structure(x[0, :, :3], m, step_cost=group3.STEP_COST))
    return x, structure, group3.encode_group(x, structure, n_lags, 2, int(np.abs(x).max()))


def _values(x, scales):
    """What the dequantizer makes of (T, N, D) integers (float32 xyz and uncertainties)."""
    (scale, divide), (unc_scale, unc_divide) = scales[:2], scales[2:]
    xyz = (x[:, :, :3] / scale).astype(np.float32) if divide else x[:, :, :3].astype(np.float32) * np.float32(scale)
    if x.shape[2] == 3:
        return xyz, None
    unc = x[:, :, 3] / unc_scale if unc_divide else x[:, :, 3].astype(np.float32) * np.float32(unc_scale)
    return xyz, unc.astype(np.float32)


@pytest.mark.parametrize(
    "n, n_frames, d, m, n_lags, scale",
    [(1, 1, 4, 4, 8, 50), (1, 3, 3, 4, 8, 50), (2, 2, 4, 4, 8, 50), (5, 3, 3, 3, 2, 50), (40, 2, 4, 4, 8, 3000),
     (1500, 20, 4, 4, 8, 3000), (1300, 9, 3, 4, 3, 3000), (1100, 12, 4, 4, 8, 2**20), (700, 6, 4, 2, 1, 3000),
     (600, 5, 4, 5, 4, 3000), (1030, 40, 4, 3, 5, 30000)],
)  # fmt: skip
def test_v3_values_kernel_decodes_the_numpy_decoders_values(monkeypatch, n, n_frames, d, m, n_lags, scale):
    """The compiled format 3.0 path (frame 0, ridge weights, float64 prediction,
    dequantization and reordering in one call) against the numpy reference decoder:
    the same values for whole chunks and row ranges, int16 and int32 work arrays."""
    from bodybatch.codec import group3

    x, structure, entry = _v3_entry(n, n_frames, d, m, n_lags, scale, n + n_frames)
    max_abs = int(np.abs(x).max())
    monkeypatch.setenv(_kernels.KERNELS_ENV, "numpy")
    np.testing.assert_array_equal(group3.decode_group(entry, structure, d, n_frames, n_lags, ""), x)
    compiled = _kernels._compile(numba)
    for scales in [(0.5, False, 2000.0, True), (3.0, True, 1 / 1024, False)]:
        rows_list = [None, slice(0, 1), slice(0, n_frames), slice(n_frames - 1, n_frames), slice(n_frames // 2, n_frames + 5),
                     slice(1, max(2, n_frames // 2))]  # fmt: skip
        for rows in rows_list:
            got = group3.decode_group_values(entry, structure, d, n_frames, n_lags, "", rows, max_abs, scales, compiled)
            assert got is not None
            want = _values(x if rows is None else x[rows], scales)
            np.testing.assert_array_equal(got[0], want[0])
            if d == 4:
                np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("n_frames", [1, 7])
def test_v3_values_kernel_declines_values_beyond_the_bound(n_frames):
    """A decoded value beyond ``max_abs`` (a corrupt chunk or a too small bound): the
    kernel returns None and the caller takes the int64 decoders (which refuse it)."""
    from bodybatch.codec import group3

    x, structure, entry = _v3_entry(1200, n_frames, 4, 4, 8, 3000)
    max_abs = int(np.abs(x).max())
    compiled = _kernels._compile(numba)
    scales = (0.5, False, 2000.0, True)
    assert group3.decode_group_values(entry, structure, 4, n_frames, 8, "", None, max_abs, scales, compiled) is not None
    assert group3.decode_group_values(entry, structure, 4, n_frames, 8, "", None, max_abs - 1, scales, compiled) is None
    weights = np.full((1, 4, 2, 9), 2**15 - 1, np.int16)  # every float64 sum exact up to 2**24 (the fast path)
    assert group3.float_exact(2**24, 4, weights, 128) and not group3.float_exact(2**29, 4, weights, 128)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_v3_ridge_kernel_gives_the_numpy_weights(m):
    from bodybatch.codec import spatial3

    rng = np.random.default_rng(m)
    n = 3000
    pts = rng.integers(-2000, 2000, (n + 1, 3))
    pts[n] = 0
    pts[10:20] = pts[0]  # coincident points (det <= 0)
    pts[20:40, 2] = 0  # and flat ones
    pts[40:50] *= 2**18  # large coordinates (shifted)
    parents = rng.integers(0, n, (n, m))
    parents[::7, -1] = n  # the zero point: even weights
    parents[50:60] = np.arange(m)  # shared parents
    want = spatial3.ridge_weights(pts, parents)
    got = np.empty((n, m), np.int64)
    _kernels._compile(numba).ridge_v3(m, pts.astype(np.int64), parents, got)
    np.testing.assert_array_equal(got, want)


_KERNEL_CELLS = r"""
import hashlib, sys
import numba
import numpy as np
from numba.core.serialize import dumps
from bodybatch.codec import _kernels, _kernels1, _kernels3, _kernels3_encode

kernels = [_kernels3.make_ridge_v3(numba, 4), _kernels3.make_decode_v3(numba, 4, 4),
           _kernels3.make_predict_v3(numba, 4, 4, 8, True), _kernels3.make_values_v3(numba, 4),
           _kernels1.make_decode_v1(numba, 3, 4), _kernels1.make_gather_dequantize(numba, 4),
           _kernels3_encode.make_offsets_v3(numba, 4, 4), _kernels3_encode.make_residuals_v3(numba, 4),
           _kernels3_encode.make_gram_v3(numba, 8, 4),
           _kernels._make_temporal_v2(numba, 4, 4, np.int64), _kernels._make_spatial_v2(numba, 3, 4, np.int64),
           _kernels._make_dequantize(numba, 4)]
for fn in kernels:
    cells = tuple(c.cell_contents for c in fn.py_func.__closure__ or ())
    print(fn.py_func.__qualname__, hashlib.sha256(dumps(cells)).hexdigest())
"""


def test_kernels_close_over_what_pickles_the_same_in_every_process():
    """numba's disk cache keys a closure by its pickled cells; a compiled function or an
    intrinsic in a cell pickles differently in every process, so such a kernel would be
    compiled again in every process (seconds) and add a cache file each time. Every
    kernel's cells pickle to the same bytes in two processes."""
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _KERNEL_CELLS], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]  # fmt: skip
    assert runs[0].count("\n") == 12
    assert runs[0] == runs[1]


def test_prefetch_changes_no_value():
    """The kernels' software prefetch (and its no-op stand-in) reads nothing a kernel
    sees and never faults, past the end of an array included."""
    from bodybatch.codec import _prefetch

    def summed(prefetch):
        @numba.njit
        def total(a):
            s = 0
            for i in range(a.size):
                prefetch(a, i + 64)  # ahead, and past the end at the last ones
                s += a[i]
            prefetch(a, a.size + 10**6)
            return s

        return total

    a = np.arange(-500, 1500, dtype=np.int16)
    assert summed(_prefetch.prefetch)(a) == int(a.astype(np.int64).sum())
    assert summed(numba.njit(inline="always")(_prefetch._no_prefetch))(a) == int(a.astype(np.int64).sum())
    assert _prefetch.prefetch is _prefetch._candidate  # this numba's LLVM builds it


def _read_on_threads(path):
    with bodybatch.open_track(path, threads=2) as reader:
        return reader[20]["vertices"]


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_worker_gets_decode_threads_of_its_own(tmp_path, corpus_tracks, monkeypatch):
    """The decode threads' pool is per process: a worker forked after the parent
    used it (a DataLoader worker, a multiprocessing pool) starts its own instead of
    queueing work for threads it does not have."""
    import multiprocessing

    monkeypatch.delenv(_kernels.KERNELS_ENV, raising=False)
    bodybatch.write_track(tmp_path / "t.xz", corpus_tracks["nlf_xz_0000/p0"], chunk_size=32)
    expected = _read_on_threads(tmp_path / "t.xz")  # the parent's pool now exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_read_on_threads, (tmp_path / "t.xz",)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)


def test_decode_threads_survive_a_larger_pool_replacing_theirs():
    """Readers with different ``threads`` share one pool, grown on demand: a decode
    holding the smaller pool finishes on it (the pool is replaced, not shut down)."""
    from bodybatch.codec._threads import Workers, split_steps

    two = Workers(2)
    three = Workers(3)  # replaces the shared pool
    assert two.run([lambda: 1, lambda: 2]) == [1, 2]
    assert three.run([lambda: 1, lambda: 2, lambda: 3]) == [1, 2, 3]
    with pytest.raises(ZeroDivisionError):
        two.run([lambda: 1 / 0, lambda: 2])
    rows = np.array([[0, 1, 7], [1, 2, 7], [2, 4, 7], [4, 3000, 7]], np.int64)
    steps = split_steps(rows, np.arange(4), 3, 32)
    assert [len(step) for step in steps] == [1, 3]  # the small levels together, the big one in 3 parts
    parts = np.concatenate(steps[1])
    assert parts[0, 0] == 4 and parts[-1, 1] == 3000  # the level covered, in order, contiguous, extra columns kept
    assert (parts[1:, 0] == parts[:-1, 1]).all() and (parts[:, 2] == 7).all()
