"""Quality sweeps (``bodybatch sweep``) and per-field quantization steps
(``codec.uncertainty_quantization_mm``) in both codecs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bodybatch
from _helpers import grid, require
from bodybatch.cli import main as cli
from bodybatch.codec import get_codec
from bodybatch.sweep import FIELDS, run_sweep
from test_batch import SAMPLE, make_config

STEPS = (0.25, 0.5, 1.0, 2.0, 4.0)


def synthetic_track(n_frames=24, n_vertices=120, n_joints=25, seed=0):
    """A smooth, off-grid person track: mm coordinates, m uncertainties."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 300, (1, n_vertices, 3)) + [0, 0, 3000]
    drift = np.cumsum(rng.normal(0, 5, (n_frames, 1, 3)), axis=0)
    vertices = (base + drift + rng.normal(0, 2, (n_frames, n_vertices, 3))).astype(np.float32)
    joints = (vertices[:, :n_joints] + rng.normal(0, 1, (n_frames, n_joints, 3))).astype(np.float32)
    return {
        "vertices": vertices,
        "joints": joints,
        "vertex_uncertainties": rng.uniform(0.005, 0.08, (n_frames, n_vertices)).astype(np.float32),
        "joint_uncertainties": rng.uniform(0.005, 0.08, (n_frames, n_joints)).astype(np.float32),
        "boxes": rng.uniform(0, 500, (n_frames, 5)).astype(np.float32),
        "frame_index": np.arange(n_frames) * 2,
    }


def run(*args, env=None):
    """The CLI as a subprocess: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "bodybatch.cli", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("codec", ["bodybatch", "bodycompress"])
@pytest.mark.parametrize("uncertainty_step", [None, 3.0])
def test_every_step_keeps_each_field_within_half_its_step(codec, uncertainty_step):
    tracks = [synthetic_track(seed=1), synthetic_track(n_frames=11, seed=2)]
    result = run_sweep(tracks, STEPS, codec=codec, uncertainty_step=uncertainty_step, reference=False)
    assert [p.step_mm for p in result.points] == list(STEPS)
    assert result.person_frames == 35 and result.n_vertices == 120 and result.input_grid_mm is None
    sizes = [p.bytes for p in result.points]
    assert sizes == sorted(sizes, reverse=True), "a coarser grid must not cost more"
    for p in result.points:
        assert p.codec["id"] == codec and p.codec["quantization_mm"] == p.step_mm
        assert p.uncertainty_step_mm == (uncertainty_step or p.step_mm)
        assert p.ratio == pytest.approx(result.raw_bytes / p.bytes)
        assert p.bits_per_vertex_frame == pytest.approx(8 * p.bytes / (35 * 120))
        for field in FIELDS:
            e = p.errors_mm[field]
            step = p.step_mm if field in ("vertices", "joints") else p.uncertainty_step_mm
            assert e["max"] <= step / 2 * (1 + 1e-5), (field, p.step_mm, e)
            assert 0 < e["mean"] <= e["rms"] <= e["max"]
            assert e["rms"] == pytest.approx(step / 12**0.5, rel=0.2)  # uniform rounding error


def test_fields_selects_what_is_encoded_and_reference_is_bodycompress():
    require("bodycompress")
    tracks = [synthetic_track(seed=3)]
    full = run_sweep(tracks, [0.5], reference=False)
    coords = run_sweep(tracks, [0.5], fields=["vertices", "joints"], reference=True)
    assert coords.fields == ["vertices", "joints"]
    assert coords.points[0].bytes < full.points[0].bytes and coords.raw_bytes < full.raw_bytes
    ref = coords.points[-1]
    assert ref.reference and ref.codec["id"] == "bodycompress" and ref.step_mm == 0.5
    assert set(ref.errors_mm) == {"vertices", "joints"} and ref.errors_mm["vertices"]["max"] <= 0.25 + 1e-6
    # bodycompress quantizes as bodybatch does: the same errors, a bigger file.
    assert ref.errors_mm == coords.points[0].errors_mm and ref.bytes > coords.points[0].bytes


@pytest.mark.parametrize("codec", ["bodybatch", "bodycompress"])
def test_uncertainty_step_round_trips_and_is_recorded_only_when_set(tmp_path, codec):
    track = synthetic_track(seed=4)
    plain = bodybatch.write_track(tmp_path / "plain.xz", track, codec=codec, quantization_mm=0.5)
    assert "uncertainty_quantization_mm" not in plain.codec
    info = bodybatch.write_track(tmp_path / "u.xz", track, codec=codec, quantization_mm=0.5,
                                 uncertainty_quantization_mm=2.0)  # fmt: skip
    assert info.codec["uncertainty_quantization_mm"] == 2.0
    assert info.max_abs_error_mm <= 1.0 and info.bytes < plain.bytes
    with bodybatch.open_track(tmp_path / "u.xz") as reader:
        assert reader.codec["uncertainty_quantization_mm"] == 2.0
        arrays = reader.to_arrays()
    for name in ("vertices", "joints"):
        np.testing.assert_array_equal(arrays[name], grid(track[name], 0.5))
    for name in ("vertex_uncertainties", "joint_uncertainties"):
        np.testing.assert_array_equal(arrays[name], grid(track[name], 2.0, 1000.0))
        assert np.abs(arrays[name].astype(np.float64) - track[name]).max() <= 1e-3 + 1e-9
    with bodybatch.open_track(tmp_path / "plain.xz") as reader:
        assert "uncertainty_quantization_mm" not in reader.codec
    if codec == "bodycompress":  # bodycompress itself reads the per-field factors
        bc = require("bodycompress")
        frames = list(bc.BodyDecompressor(str(tmp_path / "u.xz")))
        np.testing.assert_array_equal(np.stack([f["vertex_uncertainties"] for f in frames]),
                                      arrays["vertex_uncertainties"])  # fmt: skip


def test_unset_uncertainty_step_leaves_configs_unchanged():
    for codec in ("bodybatch", "bodycompress"):
        config = get_codec(codec).get_config()
        assert "uncertainty_quantization_mm" not in config
        assert get_codec(codec, uncertainty_quantization_mm=None) == get_codec(codec)
        assert get_codec(codec, uncertainty_quantization_mm=0.5) != get_codec(codec)
    with pytest.raises(bodybatch.TrackError, match="uncertainty_quantization_mm"):
        get_codec("bodybatch", uncertainty_quantization_mm=0.0)


@pytest.mark.parametrize("codec", [{"name": "bodybatch"}, {"name": "bodycompress", "compression": "zstd"}])
def test_plan_names_the_uncertainty_step(tmp_path, capsys, codec):
    cfg = make_config(tmp_path, codec=codec)
    assert cli(["run", str(cfg), "--only", "street/*"]) == 0
    capsys.readouterr()
    cfg = make_config(tmp_path, codec={**codec, "uncertainty_quantization_mm": 2.0})
    assert cli(["plan", str(cfg), "--only", "street/*"]) == 0
    assert "changed: codec.uncertainty_quantization_mm unset -> 2.0" in capsys.readouterr().out
    assert cli(["run", str(cfg), "--only", "street/*"]) == 0
    row = next(r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())
               if r["status"] == "ok")  # fmt: skip
    assert row["codec"]["uncertainty_quantization_mm"] == 2.0
    assert row["settings"]["codec"]["uncertainty_quantization_mm"] == 2.0
    capsys.readouterr()
    assert cli(["plan", str(cfg), "--only", "street/*"]) == 0
    assert "0 to convert" in capsys.readouterr().out


def test_sweep_json_schema_from_track_files(tmp_path):
    for i in range(2):
        bodybatch.write_track(tmp_path / f"t{i}.xz", synthetic_track(seed=i))
    code, out, err = run("sweep", tmp_path / "t0.xz", tmp_path / "t1.xz", "--steps", "0.5", "2", "--json",
                         "--uncertainty-step", "1")  # fmt: skip
    assert code == 0, err
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["version"] == 1 and doc["tracks"] == 2 and doc["person_frames"] == 48 and doc["n_vertices"] == 120
    assert doc["fields"] == list(FIELDS) and doc["raw_bytes"] > 0 and len(doc["sources"]) == 2
    # the inputs were written at 0.5 mm: the sweep says so, and 0.5 mm loses nothing
    assert doc["input_grid_mm"] == 0.5
    steps = [(p["step_mm"], p["uncertainty_step_mm"], p["reference"]) for p in doc["points"]]
    has_bc = any(r for _, _, r in steps)
    assert steps[:2] == [(0.5, 1.0, False), (2.0, 1.0, False)] and len(steps) == 2 + has_bc
    for p in doc["points"]:
        assert set(p) == {"codec", "step_mm", "uncertainty_step_mm", "bytes", "ratio", "bits_per_vertex_frame",
                          "errors_mm", "reference"}  # fmt: skip
        assert isinstance(p["bytes"], int) and p["ratio"] > 1 and p["bits_per_vertex_frame"] > 0
        for field in FIELDS:
            assert set(p["errors_mm"][field]) == {"max", "mean", "rms", "n"}
    assert doc["points"][0]["errors_mm"]["vertices"]["max"] == 0.0


def test_sweep_from_config_samples_its_videos_and_prints_a_table(tmp_path):
    cfg = make_config(tmp_path)
    code, out, err = run("sweep", cfg, "--videos", "1", "--steps", "1", "--no-reference", "--frames", "20")
    assert code == 0 and "Traceback" not in err, err
    assert "vertices" in out and "bits/v/f" in out and "0.5 mm grid" in out
    assert out.splitlines()[-1].split()[:2] == ["bodybatch", "1"]


def test_sweep_errors_are_one_line(tmp_path):
    code, _, err = run("sweep", tmp_path / "missing.xz")
    assert code == 3 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = run("sweep", make_config(tmp_path), SAMPLE / "clip_a.xz")
    assert code == 2 and "only INPUT" in err and "Traceback" not in err
    code, _, err = run("sweep", SAMPLE / "clip_a.xz", "--steps", "0")
    assert code == 2 and "Traceback" not in err


def test_sweep_plot_without_matplotlib_says_how_to_install(tmp_path):
    fake = tmp_path / "fake" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))
    bodybatch.write_track(tmp_path / "t.xz", synthetic_track())
    code, out, err = run("sweep", tmp_path / "t.xz", "--plot", tmp_path / "p.png", env=env)
    assert code == 2 and not out and "pip install" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists()


def test_sweep_plot_is_a_png(tmp_path):
    # matplotlib is in the test extra: CI has it, so there a missing one fails.
    if os.environ.get("CI") != "true":
        require("matplotlib")
    bodybatch.write_track(tmp_path / "t.xz", synthetic_track())
    code, _, err = run("sweep", tmp_path / "t.xz", "--steps", "0.5", "1", "2", "--plot", tmp_path / "p.png",
                       "--no-reference")  # fmt: skip
    assert code == 0 and "Traceback" not in err, err
    data = (tmp_path / "p.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
