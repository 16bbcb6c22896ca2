"""The batch service end to end: config, planner, run, manifest, audit, CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import bodybatch
from bodybatch.cli import main as cli
from bodybatch.config import SCHEMA, config_from_dict, load_config
from bodybatch.errors import ConfigError
from bodybatch.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "preds_np"


def make_config(tmp_path, **sections):
    """A config file in tmp_path converting a copy of the committed sample."""
    data = tmp_path / "data"
    if not data.exists():
        shutil.copytree(SAMPLE, data)
    cfg = {
        "input": {"root": "data"},
        "output": {"root": "out"},
        "tracks": {"mode": "associate", "min_length": 8},
        "pool": {"n_jobs": 1, "progress": False},
    }
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def rows_of(tmp_path):
    return read_manifest(tmp_path / "out" / "manifest.jsonl")


def test_example_config_and_readme_document_every_key():
    config = load_config(REPO / "configs" / "example.yaml")
    assert config.input_root == REPO / "sample" / "preds_np"
    readme = (REPO / "README.md").read_text()
    missing = [key for key in SCHEMA if f"`{key}`" not in readme]
    assert not missing, f"README does not document {missing}"


@pytest.mark.parametrize(
    "text, match",
    [
        ("input: {root: a, colour: red}\noutput: {root: b}", r"unknown key 'input.colour'; allowed keys: input.root"),
        ("input: {root: a}\noutput: {root: b}\ntracks: {mode: kalman}", r"tracks.mode must be one of associate, ids, order; got 'kalman'"),
        ("input: {root: a}\noutput: {root: b}\npool: {n_jobs: two}", r"pool.n_jobs must be int"),
        ("input: {root: a}\noutput: {root: b}\nmanifest: ../elsewhere.jsonl", r"manifest must be a file inside output.root"),
        ("input: {root: a}\noutput: {root: b}\ncodec: {quantization_mm: -1}", r"quantization_mm"),
        ("input: !!python/object/apply:os.system ['echo pwned']\noutput: {root: b}", r"tags that build objects"),
        ("output: {root: b}", r"missing required key input.root"),
        ("- just\n- a list", r"must be a mapping"),
    ],
)
def test_bad_config_is_rejected_before_work(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)
    assert cli(["run", str(path)]) == 2
    assert not (tmp_path / "b").exists()


def test_relative_paths_and_overrides(tmp_path):
    config = config_from_dict(
        {"input": {"root": "in"}, "output": {"root": "out"}}, base_dir=tmp_path, overrides={"pool.n_jobs": 5}
    )
    assert config.input_root == tmp_path / "in"
    assert config.manifest_path == tmp_path / "out" / "manifest.jsonl"
    assert config["pool.n_jobs"] == 5


def test_run_plan_rerun_cycle(tmp_path, capsys):
    cfg = make_config(tmp_path)
    assert cli(["plan", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "new" in out and "clip_a.xz" in out and "street/clip_b.xz" in out
    assert not (tmp_path / "out").exists(), "plan must not write anything"

    assert cli(["run", str(cfg)]) == 0
    rows = rows_of(tmp_path)
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3  # clip_a: 2 people (a 3-frame person and spurious dropped), clip_b: 1
    for row in ok:
        for key in ("path", "sha256", "bytes", "raw_bytes", "ratio", "video", "track", "n_frames",
                    "first_frame", "last_frame", "input", "codec", "config_hash", "bodybatch_version",
                    "created", "encode_seconds", "max_abs_error_mm", "metadata"):
            assert key in row, key
        assert (tmp_path / "out" / row["path"]).stat().st_size == row["bytes"]
        assert row["ratio"] > 8 and row["max_abs_error_mm"] <= 0.25
        assert row["input"]["sha256"] and row["input"]["bytes"] > 0
        assert row["metadata"]["video_path"]
    text = (tmp_path / "out" / "manifest.jsonl").read_text()
    lines = text.splitlines()
    assert lines == sorted(lines, key=lambda l: (json.loads(l)["video"], json.loads(l)["track"]))
    assert all(list(json.loads(l)) == sorted(json.loads(l)) for l in lines)

    # Second run: nothing to do, no file rewritten, same rows.
    mtimes = {r["path"]: os.stat(tmp_path / "out" / r["path"]).st_mtime_ns for r in ok}
    capsys.readouterr()
    assert cli(["plan", str(cfg)]) == 0
    assert "0 to convert" in capsys.readouterr().out
    assert cli(["run", str(cfg)]) == 0
    assert {r["path"]: os.stat(tmp_path / "out" / r["path"]).st_mtime_ns for r in ok} == mtimes
    assert rows_of(tmp_path) == rows

    # Touching an input (same content) keeps it up to date; changing it does not.
    os.utime(tmp_path / "data" / "clip_a.xz")
    capsys.readouterr()
    cli(["plan", str(cfg)])
    assert "0 to convert" in capsys.readouterr().out

    # A deleted output makes its video incomplete, and only that video is redone.
    victim = next(r for r in ok if r["video"] == "street/clip_b.xz")
    (tmp_path / "out" / victim["path"]).unlink()
    cli(["plan", str(cfg)])
    out = capsys.readouterr().out
    assert "incomplete  street/clip_b.xz" in out and "output missing" in out
    assert cli(["run", str(cfg)]) == 0
    assert (tmp_path / "out" / victim["path"]).exists()
    assert os.stat(tmp_path / "out" / ok[0]["path"]).st_mtime_ns == mtimes[ok[0]["path"]]

    # A codec change redoes everything with the new settings.
    cfg2 = make_config(tmp_path, codec={"quantization_mm": 1.0})
    cli(["plan", str(cfg2)])
    assert "changed: codec.quantization_mm 0.5 -> 1.0" in capsys.readouterr().out
    assert cli(["run", str(cfg2)]) == 0
    assert all(r["codec"]["quantization_mm"] == 1.0 for r in rows_of(tmp_path) if r["status"] == "ok")

    # --force redoes everything.
    cli(["plan", str(cfg2), "--force"])
    assert "0 to convert" not in capsys.readouterr().out


def test_failed_video_is_isolated(tmp_path, capsys):
    cfg = make_config(tmp_path)
    (tmp_path / "data" / "broken.xz").write_bytes(b"\xfd7zXZ\x00" + os.urandom(500))
    assert cli(["run", str(cfg)]) == 1
    rows = rows_of(tmp_path)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["video"] == "broken.xz"
    assert "broken.xz" in failed[0]["error"]
    assert sum(r["status"] == "ok" for r in rows) == 3
    assert "failed" in capsys.readouterr().out
    # The failure is retried next time, the good videos are not.
    cli(["plan", str(cfg)])
    out = capsys.readouterr().out
    assert "retry" in out and "1 to convert" in out


@pytest.mark.parametrize("codec", [{"name": "bodybatch"}, {"name": "bodycompress", "compression": "zstd"}],
                         ids=["bodybatch", "bodycompress"])  # fmt: skip
def test_audit_inspect_export(tmp_path, capsys, codec):
    cfg = make_config(tmp_path, codec=codec)
    assert cli(["run", str(cfg)]) == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    assert cli(["audit", str(manifest)]) == 0
    assert "3 ok, 0 problem(s)" in capsys.readouterr().out
    row = next(r for r in rows_of(tmp_path) if r["status"] == "ok")
    track = tmp_path / "out" / row["path"]
    assert cli(["inspect", str(track)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == row["n_frames"] and info["metadata"]["video"] == row["video"]
    assert info["frames"] == f"{row['first_frame']}..{row['last_frame']}"
    assert info["format"] == codec["name"] and info["codec"]["id"] == codec["name"]
    assert info["codec"] == row["codec"]
    assert cli(["export", str(track), str(tmp_path / "t.npz")]) == 0
    arrays = np.load(tmp_path / "t.npz")
    assert arrays["vertices"].shape == (row["n_frames"], 13718, 3)
    for key in ("joints", "vertex_uncertainties", "joint_uncertainties", "boxes", "frame_index"):
        assert len(arrays[key]) == row["n_frames"]
    with bodybatch.open_track(track) as reader:
        decoded = reader.to_arrays()
    np.testing.assert_array_equal(arrays["vertices"], decoded["vertices"])
    np.testing.assert_array_equal(arrays["frame_index"], decoded["frame_index"])
    assert (arrays["frame_index"][0], arrays["frame_index"][-1]) == (row["first_frame"], row["last_frame"])


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bodybatch.cli", "inspect", str(tmp_path / "missing.xz")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "junk.xz").write_bytes(b"junk")
    proc = subprocess.run(
        [sys.executable, "-m", "bodybatch.cli", "inspect", str(tmp_path / "junk.xz")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 3 and "junk.xz" in proc.stderr and "Traceback" not in proc.stderr
    for command in ("plan", "run", "audit", "inspect", "export"):
        proc = subprocess.run([sys.executable, "-m", "bodybatch.cli", command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: bodybatch" in proc.stdout


def test_second_run_refused_while_locked(tmp_path, capsys):
    from bodybatch._lock import OutputLock

    cfg = make_config(tmp_path)
    with OutputLock(tmp_path / "out"):
        proc = subprocess.run(
            [sys.executable, "-m", "bodybatch.cli", "run", str(cfg), "--no-progress"],
            capture_output=True, text=True,
        )
    assert proc.returncode == 5
    assert "another bodybatch run holds the output root" in proc.stderr
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
    assert cli(["run", str(cfg)]) == 0  # the lock is gone with its holder


@pytest.mark.slow
def test_dask_backend_gives_identical_outputs(tmp_path):
    cfg = make_config(tmp_path, pool={"n_jobs": 2})
    assert cli(["run", str(cfg), "--backend", "loky"]) == 0
    loky = {r["path"]: r["sha256"] for r in rows_of(tmp_path) if r["status"] == "ok"}
    shutil.rmtree(tmp_path / "out")
    assert cli(["run", str(cfg), "--backend", "dask"]) == 0
    dask = {r["path"]: r["sha256"] for r in rows_of(tmp_path) if r["status"] == "ok"}
    assert dask == loky and len(dask) == 3
