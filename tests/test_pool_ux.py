"""The dask backend's failure modes as a user meets them (issue 12, points 3 and 4):
an unreachable scheduler and Ctrl-C give one line and an exit code, never a
traceback, and leave the output root as the next run needs it."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bodybatch.cli import main as cli
from bodybatch.config import config_from_dict
from bodybatch.errors import ConfigError
from bodybatch.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "preds_np"


def write_config(tmp_path, data, **pool):
    """A config converting ``data`` into ``tmp_path/out`` (pool keys overridable)."""
    cfg = {"input": {"root": str(data)}, "output": {"root": str(tmp_path / "out")},
           "tracks": {"min_length": 8}, "pool": {"n_jobs": 1, "progress": False, **pool}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def copies(folder, n):
    """``n`` copies of each committed sample video in ``folder`` (2 n videos)."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy(SAMPLE / "clip_a.xz", folder / f"a{i:02d}.xz")
        shutil.copy(SAMPLE / "street" / "clip_b.xz", folder / "sub" / f"b{i:02d}.xz")
    return folder


def bodybatch_cli(*args, **popen):
    """Popen of the ``bodybatch`` command of this checkout, in its own session."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "bodybatch.cli", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **popen)


@pytest.fixture()
def dead_address():
    """A tcp address nobody listens on (bound, never listening: connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("value", [0, -1.5, "ten", float("inf"), float("nan")])
def test_connect_timeout_is_validated(value):
    with pytest.raises(ConfigError, match="pool.connect_timeout must be"):
        config_from_dict({"input": {"root": "a"}, "output": {"root": "b"}, "pool": {"connect_timeout": value}})


def test_connect_timeout_default_and_int():
    base = {"input": {"root": "a"}, "output": {"root": "b"}}
    assert config_from_dict(base)["pool.connect_timeout"] == 10.0
    assert config_from_dict(dict(base, pool={"connect_timeout": 3}))["pool.connect_timeout"] == 3.0


def test_dead_scheduler_is_one_line_exit_2(tmp_path, dead_address):
    data = copies(tmp_path / "data", 1)
    config = write_config(tmp_path, data, connect_timeout=1.0)
    # A first run (loky) leaves a manifest; a new video then gives the dask run work.
    assert cli(["run", str(config)]) == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    before = manifest.read_bytes(), manifest.stat().st_mtime_ns
    shutil.copy(SAMPLE / "clip_a.xz", data / "new.xz")
    start = time.perf_counter()
    proc = bodybatch_cli("run", config, "--no-progress", "--backend", "dask", "--scheduler", dead_address)
    _, err = proc.communicate(timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("bodybatch run: error: ") and dead_address in err and "connect_timeout" in err, err
    assert elapsed < 10, f"{elapsed:.1f} s with pool.connect_timeout 1"  # was 30 s whatever the config
    assert (manifest.read_bytes(), manifest.stat().st_mtime_ns) == before  # untouched
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".bodybatch.lock", "a00", "manifest.jsonl", "sub"]
    assert list((tmp_path / "out").rglob(".*.tmp")) == []
    assert cli(["run", str(config)]) == 0  # the lock is free; the new video converts
    assert "new.xz" in {row["video"] for row in read_manifest(manifest)}


def test_dead_scheduler_on_a_fresh_root_writes_no_manifest(tmp_path, dead_address):
    from bodybatch.batch import run_batch
    from bodybatch.config import load_config

    path = write_config(tmp_path, copies(tmp_path / "data", 1), connect_timeout=0.5)
    config = load_config(path, overrides={"pool.backend": "dask", "pool.scheduler": dead_address})
    with pytest.raises(ConfigError, match=dead_address):
        run_batch(config)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".bodybatch.lock"]
    assert cli(["run", str(path), "--backend", "dask", "--scheduler", "127.0.0.1"]) == 2  # no port: bad address


def _interrupt_when_busy(proc, out, after=0.3, limit=120):
    """SIGINT to ``proc``'s process group (a terminal's Ctrl-C) once a worker writes a
    track file (a temporary in ``out``); False when the run ended first."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline and not any(out.rglob(".*.tmp")):
        time.sleep(0.02)
    time.sleep(after)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGINT)
    return True


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 1.0])
def test_ctrl_c_on_local_dask_cluster_is_one_line(tmp_path, after):
    config = write_config(tmp_path, copies(tmp_path / "data", 12), n_jobs=2)
    out = tmp_path / "out"
    proc = bodybatch_cli("run", config, "--no-progress", "--backend", "dask")
    assert _interrupt_when_busy(proc, out, after), "the run ended before Ctrl-C"
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.splitlines()[-1:] == ["bodybatch run: interrupted"], err
    assert err.count("\n") <= 2, err
    manifest = out / "manifest.jsonl"
    done = len(read_manifest(manifest)) if manifest.exists() else 0
    if done:  # what the interrupted run listed is complete
        assert cli(["audit", str(manifest)]) == 0
    assert cli(["run", str(config)]) == 0  # the lock is free; the rest converts
    rows = read_manifest(manifest)
    assert len({row["video"] for row in rows}) == 24 and done < len(rows)
    assert all(row["status"] == "ok" for row in rows)
    assert cli(["audit", str(manifest)]) == 0
    assert list(out.rglob(".*.tmp")) == []
