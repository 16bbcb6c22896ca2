"""Test helpers shared by the test modules (imported, not collected)."""

import hashlib
import os
from pathlib import Path

import numpy as np

import bodybatch
from _groundtruth import gt_tracks  # noqa: F401  (for the test modules)


def require(module):
    """Import an optional test dependency: skipped when missing, but under CI=true
    (where the test extra installs it) a missing module fails the run."""
    import pytest

    if os.environ.get("CI") == "true":
        try:
            return __import__(module)
        except ImportError as exc:
            pytest.fail(f"{module} is required under CI=true ({exc})")
    return pytest.importorskip(module)


def grid(values, step_mm, unit_scale=1.0):
    """The grid values bodybatch must decode to: round(x * factor) / factor, float32."""
    factor = unit_scale / step_mm
    return (np.round(np.multiply(values, factor, dtype=np.float64)) / factor).astype(np.float32)


def check_track_roundtrip(path, track, metadata=None, **options):
    """Write ``track`` with ``options``, read it back every way and check it.

    Shared by every codec (numcodecs style): coordinates decode exactly to the grid
    (|error| <= step/2), boxes, cameras and frame indices losslessly, metadata as
    given; random access, slices and iteration agree with ``to_arrays``.
    Returns the reader's arrays and the writer's TrackInfo.
    """
    step = options.get("quantization_mm", 0.5)
    info = bodybatch.write_track(path, track, metadata, **options)
    n = len(track["vertices"] if "vertices" in track else track["joints"])
    assert info.n_frames == n
    assert info.bytes == os.path.getsize(path)
    if info.sha256 is not None:  # hashed while writing: must be the file's
        assert info.sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with bodybatch.open_track(path) as reader:
        assert len(reader) == n
        arrays = reader.to_arrays()
        if metadata is not None:
            assert reader.metadata == metadata
        expected_fi = track.get("frame_index", np.arange(n))
        np.testing.assert_array_equal(reader.frame_index, expected_fi)
        for name, scale in (("vertices", 1), ("joints", 1), ("vertex_uncertainties", 1000), ("joint_uncertainties", 1000)):
            if name not in track:
                continue
            got = arrays[name]
            assert got.dtype == np.float32 and got.shape == np.shape(track[name])
            np.testing.assert_array_equal(got, grid(track[name], step, scale))
            err = np.max(np.abs(got.astype(np.float64) - track[name])) * scale
            assert err <= step / 2 + 1e-3 * (scale > 1), (name, err)
        if "boxes" in track:
            np.testing.assert_array_equal(arrays["boxes"], track["boxes"])
        if track.get("camera") is not None:
            cams = track["camera"]
            first = cams[0] if isinstance(cams, list) else cams
            for key, value in first.items():
                np.testing.assert_array_equal(arrays["camera"][key][0], value)
        # Random access and slicing agree with to_arrays.
        key = "vertices" if "vertices" in track else "joints"
        for k in sorted({0, n // 2, n - 1, -1}):
            row = reader[k]
            np.testing.assert_array_equal(row[key], arrays[key][k])
            assert row["frame_index"] == int(expected_fi[k])
        part = reader[1 : n - 1 : 2]
        np.testing.assert_array_equal(part[key], arrays[key][1 : n - 1 : 2])
        rows = list(reader)
        assert len(rows) == n
        np.testing.assert_array_equal(rows[-1][key], arrays[key][-1])
    return arrays, info


def one_chunk_decoding(track, monkeypatch, **options):
    """A whole track's point fields encoded as one chunk by the ``bodybatch`` codec
    (``options``), with a spy on the entropy decoder: ``(codec, layout, encoded, n rows,
    full decode, decoded)``, ``decoded`` the count of values each later
    ``entropy.decode_numbers`` call decoded (cleared by the caller)."""
    from bodybatch.codec import entropy, get_codec

    chunk = {k: np.asarray(track[k]) for k in ("vertices", "vertex_uncertainties", "joints", "joint_uncertainties")}
    codec = get_codec("bodybatch", **options)
    layout = codec.make_layout(chunk)
    encoded, _ = codec.encode_chunk(chunk, layout)
    n = len(chunk["vertices"])
    full = codec.decode_chunk(encoded, layout, n)
    decoded = []
    real = entropy.decode_numbers
    monkeypatch.setattr(entropy, "decode_numbers", lambda *a, **k: decoded.append(a[2]) or real(*a, **k))
    return codec, layout, encoded, n, full, decoded
