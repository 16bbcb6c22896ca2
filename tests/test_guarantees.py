"""Reliability and security guarantees of the batch service (docs/reliability.md)."""

import errno
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lzma
import numpy as np
import pytest
import yaml

import bodybatch
from bodybatch import _msgpack
from bodybatch.cli import main as cli
from bodybatch.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "preds_np"


def write_config(tmp_path, data, out="out", **sections):
    cfg = {"input": {"root": str(data)}, "output": {"root": str(tmp_path / out)},
           "tracks": {"min_length": 8}, "pool": {"n_jobs": 1, "progress": False}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value)
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def check_invariants(root):
    """No partial file at a final path; every manifest row matches its file."""
    from bodybatch.plan import file_sha256

    for path in Path(root).rglob("*.xz"):
        if path.name.startswith("."):
            continue  # a temporary file
        with bodybatch.open_track(path) as reader:
            assert sum(1 for _ in reader) == len(reader)
    rows = read_manifest(Path(root) / "manifest.jsonl")
    for row in rows:
        if row["status"] == "ok":
            path = Path(root) / row["path"]
            assert path.stat().st_size == row["bytes"]
            assert file_sha256(path) == row["sha256"]
    return rows


def hashes(root):
    return {r["path"]: r["sha256"] for r in read_manifest(Path(root) / "manifest.jsonl") if r["status"] == "ok"}


@pytest.fixture()
def dataset(tmp_path):
    """Twenty-four videos: the committed sample videos under several names."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i in range(12):
        shutil.copy(SAMPLE / "clip_a.xz", data / f"a{i:02d}.xz")
        shutil.copy(SAMPLE / "street" / "clip_b.xz", data / "sub" / f"b{i:02d}.xz")
    return data


def _start_run(config, *extra):
    return subprocess.Popen([sys.executable, "-m", "bodybatch.cli", "run", str(config), "--no-progress", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, dataset):
    reference = write_config(tmp_path, dataset, out="ref", pool={"n_jobs": 2})
    start = time.perf_counter()
    assert _start_run(reference).wait() == 0
    duration = time.perf_counter() - start
    expected = hashes(tmp_path / "ref")
    assert len(expected) == 36

    config = write_config(tmp_path, dataset, out="out", pool={"n_jobs": 2})
    rng = random.Random(7)
    landed = attempts = 0
    while landed < 10 and attempts < 30:
        attempts += 1
        # Once an earlier run got through, --force keeps later kills landing mid-run.
        proc = _start_run(config, *(["--force"] if (tmp_path / "out" / "manifest.jsonl").exists() else []))
        time.sleep(rng.uniform(0.2, 0.95) * duration)
        if proc.poll() is None:
            landed += 1
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its loky workers
        proc.wait()
        check_invariants(tmp_path / "out")
    print(f"kills landed mid-run: {landed} of {attempts} attempts")
    assert landed >= 10, f"only {landed} of {attempts} kills landed mid-run"
    assert cli(["run", str(config)]) == 0
    check_invariants(tmp_path / "out")
    assert hashes(tmp_path / "out") == expected
    assert list((tmp_path / "out").rglob(".*.tmp")) == []


def _bodycompress_file(path, frames, header_overrides=None, compression="xz", raw_frames=None):
    """Write a bodycompress 0.3-layout file by hand (for hostile variants)."""
    comp = (lambda b: lzma.compress(b, format=lzma.FORMAT_XZ)) if compression == "xz" else None
    if comp is None:
        import zstandard

        comp = zstandard.ZstdCompressor().compress
    meta = comp(_msgpack.packb({"video_path": "x.mp4"}))
    body = b"".join(_msgpack.packb(f) if raw_frames is None else f for f in (raw_frames or frames))
    data = comp(body)
    header = {"__bodycompress_version__": (0, 3, 0), "compression": compression, "length": len(raw_frames or frames),
              "metadata_start": 0, "data_start": 0, "vertex_order": None}
    first = comp(_msgpack.packb(header))
    start = len(first) + 128
    header.update(metadata_start=start, data_start=start + len(meta))
    header.update(header_overrides or {})
    hdr = comp(_msgpack.packb(header))
    path.write_bytes(hdr + b"\0" * (start - len(hdr)) + meta + data)


def _frame(n=1, v=30, j=25, rng=np.random.default_rng(0), offset=0.0):
    verts = rng.normal(0, 200, (n, v, 3)) + [0, 0, 4000 + offset]
    q = np.round(verts * 2)
    joints = np.round((rng.normal(0, 200, (n, j, 3)) + [0, 0, 4000 + offset]) * 2)
    return {
        "qd_vertices": (np.diff(q, prepend=0, axis=-2).astype(np.int32), 2.0),
        "qd_joints": (np.diff(joints, prepend=0, axis=-2).astype(np.int32), 2.0),
        "boxes": np.ones((n, 5), np.float32),
    }


def test_hostile_inputs_each_fail_alone(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    good = (SAMPLE / "clip_a.xz").read_bytes()
    zgood = (SAMPLE / "street" / "clip_b.xz").read_bytes()
    (data / "truncated_xz.xz").write_bytes(good[: len(good) // 2])
    (data / "truncated_zstd.xz").write_bytes(zgood[: len(zgood) // 3])
    (data / "random.xz").write_bytes(os.urandom(4096))
    (data / "wrong_magic.xz").write_bytes(b"PK\x03\x04" + good[4:])
    (data / "empty.xz").write_bytes(b"")
    _bodycompress_file(data / "huge_length.xz", [_frame()] * 3, {"length": 10**15})
    _bodycompress_file(data / "huge_offset.xz", [_frame()] * 3, {"data_start": 2**62})
    _bodycompress_file(data / "frame_is_list.xz", None, raw_frames=[_msgpack.packb([1, 2, 3])] * 3)
    _bodycompress_file(data / "vertices_string.xz", None, raw_frames=[_msgpack.packb({"qd_vertices": "oops"})] * 3)
    nan = [_frame() for _ in range(12)]
    nan[5]["qd_vertices"] = (nan[5]["qd_vertices"][0], float("nan"))
    _bodycompress_file(data / "nan_vertices.xz", nan)
    shapes = [_frame() for _ in range(12)] + [_frame(v=31) for _ in range(12)]
    _bodycompress_file(data / "shape_change.xz", [dict(f, qd_joints=_frame()["qd_joints"]) for f in shapes])
    _bodycompress_file(data / "no_detections.xz", [_frame(n=0) for _ in range(20)])
    _bodycompress_file(data / "only_short.xz", [_frame(offset=3000.0 * (t // 4)) for t in range(16)])
    config = write_config(tmp_path, data)
    assert cli(["run", str(config)]) == 1
    rows = {r["video"]: r for r in read_manifest(tmp_path / "out" / "manifest.jsonl")}
    failing = ["truncated_xz.xz", "truncated_zstd.xz", "random.xz", "wrong_magic.xz", "empty.xz", "huge_length.xz",
               "huge_offset.xz", "frame_is_list.xz", "vertices_string.xz", "nan_vertices.xz", "shape_change.xz"]
    for video in failing:
        assert rows[video]["status"] == "failed", video
        assert video in rows[video]["error"], rows[video]["error"]
    for video in ("no_detections.xz", "only_short.xz"):
        assert rows[video]["status"] == "no_tracks", (video, rows[video])
    ok = [r for r in read_manifest(tmp_path / "out" / "manifest.jsonl") if r["status"] == "ok"]
    assert {r["video"] for r in ok} == {"clip_a.xz", "street/clip_b.xz"} and len(ok) == 3
    check_invariants(tmp_path / "out")


def test_memory_bounded_on_hostile_inputs(tmp_path):
    """The hostile set converts under a 1.5 GiB address-space limit."""
    data = tmp_path / "data"
    data.mkdir()
    _bodycompress_file(data / "huge_length.xz", [_frame()] * 3, {"length": 10**15})
    # The bytes preset 9 writes (64 MiB dictionary), in a third of its time.
    bomb = lzma.compress(b"\0" * (600 << 20), format=lzma.FORMAT_XZ,
                         filters=[{"id": lzma.FILTER_LZMA2, "preset": 1, "dict_size": 64 << 20}])
    header = _msgpack.packb({"__bodycompress_version__": (0, 3, 0), "compression": "xz", "length": 5,
                             "metadata_start": 0, "data_start": 0, "vertex_order": None})
    (data / "zero_bomb.xz").write_bytes(lzma.compress(header, format=lzma.FORMAT_XZ) + bomb)
    config = write_config(tmp_path, data)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29));"
            "from bodybatch.cli import main; sys.exit(main(['run', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert sorted(r["status"] for r in rows) == ["failed", "failed"]


def test_pickle_needs_opt_in(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    obj = np.empty(1, dtype=object)
    obj[0] = Evil()
    evil = {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": pickle.dumps(obj)}
    frames = [dict(_frame(), extra=evil) for _ in range(10)]
    data = tmp_path / "data"
    data.mkdir()
    import msgpack

    raw = [msgpack.packb({k: (v if k == "extra" else v) for k, v in f.items()},
                         default=lambda o: _msgpack._encode_default(o), use_bin_type=True) for f in frames]
    _bodycompress_file(data / "evil.xz", None, raw_frames=raw)
    assert cli(["run", str(write_config(tmp_path, data))]) == 1
    row = read_manifest(tmp_path / "out" / "manifest.jsonl")[0]
    assert row["status"] == "failed" and "allow_pickle" in row["error"]
    assert not marker.exists()


def test_odd_names_and_symlinks_stay_inside(tmp_path):
    data = tmp_path / "data"
    (data / "we ird" / "..x").mkdir(parents=True)
    shutil.copy(SAMPLE / "clip_a.xz", data / "we ird" / "..x" / "ünïcode $(rm -rf) ..xz")
    shutil.copy(SAMPLE / "clip_a.xz", data / ("long" * 40 + ".xz"))
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(SAMPLE / "clip_a.xz", outside / "secret.xz")
    os.symlink(outside / "secret.xz", data / "link.xz")
    config = write_config(tmp_path, data)
    assert cli(["run", str(config)]) == 0
    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert {r["video"] for r in rows} == {"we ird/..x/ünïcode $(rm -rf) ..xz", "long" * 40 + ".xz"}
    root = os.path.realpath(tmp_path / "out")
    for path in (tmp_path / "out").rglob("*"):
        assert os.path.realpath(path).startswith(root + os.sep)
    for row in rows:
        assert not row["path"].startswith(("/", "..")) and "/../" not in row["path"]
    followed = write_config(tmp_path, data, out="out2", input={"follow_symlinks": True})
    assert cli(["run", str(followed)]) == 0
    assert "link.xz" in {r["video"] for r in read_manifest(tmp_path / "out2" / "manifest.jsonl")}


def test_output_symlink_escape_is_refused(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "street")
    assert cli(["run", str(write_config(tmp_path, data))]) == 1
    rows = {r["video"]: r for r in read_manifest(tmp_path / "out" / "manifest.jsonl")}
    assert rows["street/clip_b.xz"]["status"] == "failed"
    assert "leaves the output root" in rows["street/clip_b.xz"]["error"]
    assert list(elsewhere.iterdir()) == []


def test_killed_lock_holder_does_not_block(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from bodybatch._lock import OutputLock\n"
                               "with OutputLock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)",
                               str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    config = write_config(tmp_path, data)
    proc = subprocess.run([sys.executable, "-m", "bodybatch.cli", "run", str(config)], capture_output=True, text=True)
    assert proc.returncode == 5 and "another bodybatch run" in proc.stderr
    holder.kill()
    holder.wait()
    assert cli(["run", str(config)]) == 0


def test_disk_full_and_permission_denied(tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    config = write_config(tmp_path, data)
    from bodybatch.formats.bodybatch import TrackFileWriter

    real_write = TrackFileWriter._write

    def full(self, payload):
        if "street" in str(self.path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, payload)

    monkeypatch.setattr(TrackFileWriter, "_write", full)
    assert cli(["run", str(config)]) == 1
    rows = {r["video"]: r for r in read_manifest(tmp_path / "out" / "manifest.jsonl")}
    assert rows["street/clip_b.xz"]["status"] == "failed"
    assert "No space left on device" in rows["street/clip_b.xz"]["error"]
    assert rows["clip_a.xz"]["status"] == "ok"
    check_invariants(tmp_path / "out")
    assert list((tmp_path / "out").rglob("street/**/*.xz")) == []
    monkeypatch.undo()

    # Permission denied when creating an output (root ignores mode bits, so the error
    # is injected where the writer opens its temporary file).
    real_open = open

    def denied(path, *args, **kwargs):
        if str(path).endswith(".tmp") and "street" in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", denied)
    assert cli(["run", str(config), "--force"]) == 1
    monkeypatch.undo()
    rows = {r["video"]: r for r in read_manifest(tmp_path / "out" / "manifest.jsonl")}
    assert rows["street/clip_b.xz"]["status"] == "failed"
    assert "Permission denied" in rows["street/clip_b.xz"]["error"]
    assert rows["clip_a.xz"]["status"] == "ok"
    check_invariants(tmp_path / "out")


def test_audit_catches_tampering(tmp_path, capsys):
    data = tmp_path / "data"
    for i in range(2):
        data.mkdir(exist_ok=True)
        shutil.copy(SAMPLE / "clip_a.xz", data / f"a{i}.xz")
    config = write_config(tmp_path, data)
    assert cli(["run", str(config)]) == 0
    out = tmp_path / "out"
    manifest = out / "manifest.jsonl"
    rows = [r for r in read_manifest(manifest) if r["status"] == "ok"]
    assert len(rows) == 4
    flipped, truncated, deleted, edited = (out / r["path"] for r in rows)
    blob = bytearray(flipped.read_bytes())
    blob[len(blob) // 2] ^= 1
    flipped.write_bytes(bytes(blob))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    deleted.unlink()
    lines = manifest.read_text().splitlines()
    for i, line in enumerate(lines):
        row = json.loads(line)
        if row.get("path") == rows[3]["path"]:
            row["n_frames"] += 1
            lines[i] = json.dumps(row, sort_keys=True)
    manifest.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert cli(["audit", str(manifest)]) == 1
    report = capsys.readouterr().out
    assert f"{rows[0]['path']}: sha256 differs" in report
    assert f"{rows[1]['path']}: size" in report
    assert f"{rows[2]['path']}: file missing" in report
    assert f"{rows[3]['path']}: holds" in report
    assert cli(["audit", str(manifest), "--quick"]) == 1
    quick = capsys.readouterr().out
    assert "file missing" in quick and f"{rows[1]['path']}: size" in quick and "sha256" not in quick
