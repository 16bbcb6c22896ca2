"""Dataset scale: the journaled manifest (torn lines, compaction), the shard
partition, and shards of one output root running together, killed and resumed."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from compare_outputs import manifest_rows, track_files
from bodybatch.plan import parse_shard, shard_partition
from bodybatch.errors import ConfigError
from bodybatch.manifest import compact_manifest, journal_files, read_manifest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "preds_np"


def make_data(folder, copies):
    """``2 * copies`` videos: the committed sample files under several names."""
    (folder / "sub").mkdir(parents=True)
    for i in range(copies):
        shutil.copy(SAMPLE / "clip_a.xz", folder / f"a{i:02d}.xz")
        shutil.copy(SAMPLE / "street" / "clip_b.xz", folder / "sub" / f"b{i:02d}.xz")
    return folder


def config(tmp_path, data, out, name="config.yaml", n_jobs=1):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"input": {"root": str(data)}, "output": {"root": str(out)},
                                    "tracks": {"min_length": 8}, "pool": {"n_jobs": n_jobs, "progress": False}}))
    return path


def cli(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "bodybatch.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def run(*args, env=None):
    proc = cli(*args, env=env)
    out, err = proc.communicate(timeout=600)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


def same_outputs(a, b):
    assert track_files(a) == track_files(b)
    assert manifest_rows(a, ("created", "encode_seconds")) == manifest_rows(b, ("created", "encode_seconds"))


def test_torn_last_line_is_ignored_then_cut(tmp_path):
    data = make_data(tmp_path / "data", 2)
    cfg = config(tmp_path, data, tmp_path / "out")
    assert run("run", cfg, "--only", "a*")[0] == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    journal = Path(f"{manifest}.journal") / "run.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"seq": 1, "video": "sub/b00.xz", "keep_ok": false, "rows": [{"video": "sub/b0')  # killed mid-append
    warnings = []
    rows = read_manifest(manifest, warn=warnings.append)
    assert {r.video for r in rows} == {"a00.xz", "a01.xz"} and len(warnings) == 1 and "unfinished" in warnings[0]
    code, out, err = run("plan", cfg)
    assert code == 0 and "unfinished last line" in err and "new         sub/b00.xz" in out
    assert run("run", cfg)[0] == 0  # the writer cuts the torn line, the run completes and compacts
    assert journal_files(manifest) == []
    assert {r.video for r in read_manifest(manifest)} == {"a00.xz", "a01.xz", "sub/b00.xz", "sub/b01.xz"}


def test_corrupt_journal_line_is_an_error(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    journal = Path(f"{manifest}.journal") / "run.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text('not json\n{"seq": 1, "video": "v", "keep_ok": false, "rows": []}\n')
    code, _, err = run("audit", manifest)
    assert code == 1 and "run.jsonl:1" in err + run("audit", manifest)[1]


def test_compaction_equals_one_clean_run(tmp_path):
    data = make_data(tmp_path / "data", 3)
    one = config(tmp_path, data, tmp_path / "one", "one.yaml")
    assert run("run", one)[0] == 0
    parts = config(tmp_path, data, tmp_path / "parts", "parts.yaml", n_jobs=2)
    assert run("run", parts, "--only", "sub/*")[0] == 0  # compacted at the end
    assert run("run", parts)[0] == 0  # the rest, in another order, then compacted again
    same_outputs(tmp_path / "one", tmp_path / "parts")
    text = (tmp_path / "parts" / "manifest.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    assert [(r["video"], r["track"]) for r in rows] == sorted((r["video"], r["track"]) for r in rows)
    assert compact_manifest(tmp_path / "parts" / "manifest.jsonl") == 0  # nothing left to merge


def test_shard_partition_is_stable_and_balanced(tmp_path):
    from bodybatch.config import load_config

    data = tmp_path / "data"
    data.mkdir()
    rng = __import__("random").Random(1)
    for i in range(200):
        (data / f"v{i:03d}.xz").write_bytes(b"x" * rng.randint(1_000, 100_000))
    settings = load_config(config(tmp_path, data, tmp_path / "out"))
    videos = sorted(p.name for p in data.iterdir())
    dry = shard_partition(settings, videos, 4, persist=False)
    assert not (tmp_path / "out").exists()  # plan writes nothing
    (tmp_path / "out").mkdir()
    first = shard_partition(settings, videos, 4)
    assert first == dry and shard_partition(settings, videos, 4) == first
    loads = [sum((data / v).stat().st_size for v in videos if first[v] == k) for k in range(4)]
    assert max(loads) - min(loads) <= 100_000  # within one video's size
    for i in range(200, 260):  # videos added later
        (data / f"v{i:03d}.xz").write_bytes(b"x" * rng.randint(1_000, 100_000))
    more = shard_partition(settings, sorted(p.name for p in data.iterdir()), 4)
    assert all(more[v] == first[v] for v in videos)  # none moved
    loads = [sum((data / v).stat().st_size for v in more if more[v] == k) for k in range(4)]
    assert max(loads) - min(loads) <= 100_000
    assert parse_shard("3/16") == (3, 16)
    assert parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8"}) == (5, 8)
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}
    assert parse_shard("slurm", env) == (2, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_ID"):
        parse_shard("slurm", {})


def slurm_env(task, count):
    return dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_MAX=str(count - 1))


@pytest.mark.slow
def test_concurrent_shards_then_kill_and_resume(tmp_path):
    data = make_data(tmp_path / "data", 8)
    assert run("run", config(tmp_path, data, tmp_path / "one", "one.yaml"))[0] == 0
    cfg = config(tmp_path, data, tmp_path / "sharded", "sharded.yaml")
    procs = [cli("run", cfg, "--shard", "slurm", env=slurm_env(i, 4)) for i in range(4)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    assert all("Traceback" not in err for _, err in results)
    assert journal_files(tmp_path / "sharded" / "manifest.jsonl") == []  # the last shard compacted
    same_outputs(tmp_path / "one", tmp_path / "sharded")

    # Kill one shard with SIGKILL while it converts, run the others, rerun the killed one.
    cfg = config(tmp_path, data, tmp_path / "killed", "killed.yaml")
    victim = cli("run", cfg, "--shard", "0/4")
    journal = tmp_path / "killed" / "manifest.jsonl.journal" / "shard-0000-of-0004.jsonl"
    deadline = time.monotonic() + 120
    while not (journal.exists() and journal.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    for i in (1, 2, 3):
        assert run("run", cfg, "--shard", f"{i}/4")[0] == 0
    # The last of them found no shard running and merged every journal, the killed
    # shard's complete rows included; the plan shows shard 0's videos left to do.
    assert journal_files(tmp_path / "killed" / "manifest.jsonl") == []
    code, out, _ = run("plan", cfg, "--summary")
    assert code == 0 and "up to date" in out and "new" in out
    assert run("run", cfg, "--shard", "0/4")[0] == 0  # resumes, then compacts all
    same_outputs(tmp_path / "one", tmp_path / "killed")
    assert list((tmp_path / "killed").rglob(".*.tmp")) == []
    code, out, _ = run("audit", tmp_path / "killed" / "manifest.jsonl")
    assert code == 0, out


def test_other_shard_count_refused_while_shards_are_unmerged(tmp_path):
    data = make_data(tmp_path / "data", 1)
    cfg = config(tmp_path, data, tmp_path / "out")
    journal = tmp_path / "out" / "manifest.jsonl.journal" / "shard-0002-of-0004.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text("")  # a 4-shard run was killed before merging
    code, _, err = run("run", cfg, "--shard", "0/2")
    assert code == 2 and "4-shard run" in err and "--shard I/4" in err
    assert run("run", cfg, "--shard", "0/4")[0] == 0


def test_shard_and_whole_run_exclude_each_other(tmp_path):
    from bodybatch._lock import OutputLock
    from bodybatch.errors import LockError

    with OutputLock(tmp_path, (0, 2)):
        with OutputLock(tmp_path, (1, 2)):  # shards run together
            with pytest.raises(LockError, match="shard-0001-of-0002 is already running"):
                OutputLock(tmp_path, (1, 2)).__enter__()
            with pytest.raises(LockError, match="another bodybatch run"):
                OutputLock(tmp_path).__enter__()
    with OutputLock(tmp_path):
        with pytest.raises(LockError, match="a whole bodybatch run"):
            OutputLock(tmp_path, (0, 2)).__enter__()
