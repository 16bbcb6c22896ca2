"""What a new user tripped over (issue 12): each case runs the command line as a user
would, as a subprocess where stderr matters, and checks the one-line errors, the
manifest and the files."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bodybatch.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "preds_np"


def setup(tmp_path, **sections):
    """A copy of the committed sample (clip_a.xz, street/clip_b.xz) and a config."""
    data = tmp_path / "data"
    if not data.exists():
        shutil.copytree(SAMPLE, data)
    cfg = {"input": {"root": "data"}, "output": {"root": "out"}, "tracks": {"min_length": 8},
           "pool": {"n_jobs": 1, "progress": False}}  # fmt: skip
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def bodybatch(*args, cwd=None):
    """Run the CLI as a subprocess; returns (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "bodybatch.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def rows(tmp_path):
    return read_manifest(tmp_path / "out" / "manifest.jsonl")


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def truncate(path, keep_fraction=0.9):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep_fraction)])


# -- crashes and tracebacks ----------------------------------------------------------------


def test_output_root_that_is_a_file(tmp_path):
    cfg = setup(tmp_path)
    (tmp_path / "out").write_text("not a folder")
    code, _, err = bodybatch("run", cfg)
    assert code == 4 and len(err.strip().splitlines()) == 1
    assert "out" in err and "not a folder" in err
    assert (tmp_path / "out").read_text() == "not a folder"


# -- nothing lost ----------------------------------------------------------------------------


def test_failed_redo_keeps_the_last_complete_result(tmp_path):
    cfg = setup(tmp_path)
    assert bodybatch("run", cfg)[0] == 0
    before = [r for r in rows(tmp_path) if r["video"] == "street/clip_b.xz"]
    files = {r["path"]: sha(tmp_path / "out" / r["path"]) for r in before}
    truncate(tmp_path / "data" / "street" / "clip_b.xz")
    code, out, _ = bodybatch("run", cfg, "--force")
    assert code == 1
    after = [r for r in rows(tmp_path) if r["video"] == "street/clip_b.xz"]
    assert [r.data for r in after if r["status"] == "ok"] == [r.data for r in before]
    failed = [r for r in after if r["status"] == "failed"]
    assert len(failed) == 1 and "clip_b.xz" in failed[0]["error"]
    assert {p: sha(tmp_path / "out" / p) for p in files} == files  # files untouched
    code, out, _ = bodybatch("audit", tmp_path / "out" / "manifest.jsonl")
    assert "not in the manifest" not in out and "conversion failed" in out and code == 1
    code, out, _ = bodybatch("plan", cfg)
    assert any(line.startswith("retry") and "street/clip_b.xz" in line for line in out.splitlines())
    assert list((tmp_path / "out").rglob(".staging-*")) == []


@pytest.mark.parametrize("policy", ["fail", "keep"])
def test_truncated_input(tmp_path, policy):
    cfg = setup(tmp_path, input={"on_truncated": policy})
    truncate(tmp_path / "data" / "clip_a.xz", 0.8)
    code, _, err = bodybatch("run", cfg)
    got = [r for r in rows(tmp_path) if r["video"] == "clip_a.xz"]
    if policy == "fail":
        assert code == 1 and [r["status"] for r in got] == ["failed"]
        return
    assert code == 0 and got and all(r["status"] in ("ok", "no_tracks") for r in got)
    assert all(r["truncated"] is True and 0 < r["frames_read"] < r["frames_expected"] for r in got)
    assert "truncated input" in err
    assert all("truncated" not in r for r in rows(tmp_path) if r["video"] != "clip_a.xz")


# -- everyday options --------------------------------------------------------------------------


def test_choose_videos(tmp_path):
    cfg = setup(tmp_path)
    code, out, _ = bodybatch("plan", cfg, "--only", "street/*")
    assert code == 0 and "street/clip_b.xz" in out and "clip_a.xz" not in out.replace("street/clip_b.xz", "")
    assert bodybatch("run", cfg, "--exclude", "street/*")[0] == 0
    assert {r["video"] for r in rows(tmp_path)} == {"clip_a.xz"}
    (tmp_path / "list.txt").write_text("# videos to do\nstreet/clip_b.xz\nmissing.xz\n")
    cfg = setup(tmp_path, input={"paths_file": "list.txt"})
    code, out, _ = bodybatch("plan", cfg)
    assert "street/clip_b.xz" in out and "1 input(s) listed" in out and "orphan" not in out
    assert bodybatch("run", cfg)[0] == 0
    assert {r["video"] for r in rows(tmp_path)} == {"clip_a.xz", "street/clip_b.xz"}  # clip_a's rows kept
    (tmp_path / "skip.txt").write_text("street/clip_b.xz\n")
    cfg = setup(tmp_path, input={"paths_file": None, "exclude_file": "skip.txt"})
    code, out, _ = bodybatch("plan", cfg)
    assert "clip_a.xz" in out and "street/clip_b.xz" not in out
    code, _, err = bodybatch("plan", cfg, "--only", "nothing/*")
    assert code == 2 and "--only nothing/*" in err


def test_skip_failed(tmp_path):
    cfg = setup(tmp_path)
    (tmp_path / "data" / "bad.xz").write_bytes(b"\xfd7zXZ\x00 junk")
    assert bodybatch("run", cfg)[0] == 1
    assert bodybatch("run", cfg)[0] == 1  # retried: fails again
    code, out, _ = bodybatch("plan", cfg, "--skip-failed")
    assert "skipped" in out and "failed before; input unchanged" in out
    code, out, _ = bodybatch("run", cfg, "--skip-failed")
    assert code == 0 and "1 skipped (failed before, input unchanged)" in out
    (tmp_path / "data" / "bad.xz").write_bytes(b"\xfd7zXZ\x00 other junk")  # changed: tried again
    assert bodybatch("run", cfg, "--skip-failed")[0] == 1


def test_log_file_and_no_progress_frames_off_a_terminal(tmp_path):
    cfg = setup(tmp_path, pool={"progress": True})
    (tmp_path / "data" / "bad.xz").write_bytes(b"\xfd7zXZ\x00 junk")
    code, out, err = bodybatch("run", cfg, "--log", tmp_path / "run.log")
    assert code == 1 and "\r" not in err and "failed: " in err and "bad.xz" in err
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" in log and "bad.xz" in log  # the full traceback is kept in the log
    failed = [r for r in rows(tmp_path) if r["status"] == "failed"]
    assert len(failed) == 1 and "\n" not in failed[0]["error"]
    code, _, err = bodybatch("run", cfg, "-q")
    assert code == 1 and "failed: " in err and "bad.xz" in err
    code, _, err = bodybatch("run", cfg, "--log", tmp_path / "no" / "such" / "dir.log")
    assert code == 4 and "cannot open log file" in err


# -- truthful output ---------------------------------------------------------------------------


def test_summary_says_what_this_run_did(tmp_path):
    cfg = setup(tmp_path)
    (tmp_path / "data" / "bad.xz").write_bytes(b"\xfd7zXZ\x00 junk")
    code, out, _ = bodybatch("run", cfg)
    assert code == 1 and "2 converted, 1 failed, 0 up to date" in out
    assert " MB" not in out and " KB" not in out and ("MiB" in out or "KiB" in out)
    code, out, _ = bodybatch("run", cfg, "--exclude", "bad.xz")
    assert code == 0 and "nothing to convert" in out and "person-frames/s" not in out and "2 up to date" in out
    assert "dataset" in out and "1 video(s) failed" in out
    code, out, _ = bodybatch("audit", tmp_path / "out" / "manifest.jsonl")
    assert "MiB" in out or "KiB" in out


def test_start_errors(tmp_path):
    cfg = setup(tmp_path, input={"pattern": "**/*.json"})
    code, _, err = bodybatch("run", cfg)
    assert code == 2 and "'**/*.json'" in err and "data" in err and "matches no file" in err
    assert not (tmp_path / "out").exists()  # nothing left behind
    cfg = setup(tmp_path, input={"root": "nowhere", "pattern": "**/*.xz"})
    code, _, err = bodybatch("run", cfg)
    assert code == 2 and "nowhere" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "broken.yaml").write_text("input:\n  root: data\noutput: {root: out\n")
    code, _, err = bodybatch("plan", tmp_path / "broken.yaml")
    assert code == 2 and "broken.yaml:4:1" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad.yaml").write_text("input: {root: data, colour: red}\noutput: {root: out}\n"
                                       "tracks: {mode: kalman}\npool: {n_jobs: two}\n")  # fmt: skip
    code, _, err = bodybatch("plan", tmp_path / "bad.yaml")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "input.colour" in err and "tracks.mode" in err and "pool.n_jobs" in err
