"""bodybatch.VideoWriter: live = batch bytes, crash recovery, backpressure, errors."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bodybatch
from bodybatch.errors import FormatError, WriterError
from bodybatch.formats._journal import journal_path, recover_track

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample" / "preds_np"


def frames(n, people=2, n_vertices=60, seed=0):
    """Synthetic frames (order mode: detection i is person i), smooth in time."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(people, n_vertices, 3)) * 300
    out = []
    for t in range(n):
        v = (base + 5 * t + rng.normal(size=base.shape)).astype(np.float32)
        out.append({
            "boxes": np.tile(np.float32([10, 20, 30, 40, 0.9]), (people, 1)),
            "vertices": v,
            "joints": v[:, :5].copy(),
            "camera": {"rotvec_w2c": np.zeros(3, np.float32), "loc": np.zeros(3, np.float32),
                       "intr": np.eye(3, dtype=np.float32)[:2]},
        })  # fmt: skip
    return out


def write_live(out, frame_list, **options):
    with bodybatch.VideoWriter(out, {"v": 1}, video="cam0", tracks={"mode": "order", "min_length": 1}, chunk_size=8,
                               **options) as w:
        for f in frame_list:
            w.append(**f)
    return w.tracks


def test_live_output_is_byte_identical_to_the_batch_job(tmp_path):
    from bodybatch._json import to_jsonable
    from bodybatch.cli import main

    (tmp_path / "in").mkdir()
    shutil.copy(SAMPLE / "clip_a.xz", tmp_path / "in" / "clip_a.xz")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input: {root: in}\noutput: {root: out}\nmanifest: out/manifest.jsonl\n"
                   "tracks: {mode: associate, min_length: 8}\npool: {n_jobs: 1}\n")  # fmt: skip
    assert main(["run", str(cfg), "--no-progress", "-q"]) == 0
    batch = sorted((tmp_path / "out" / "clip_a").glob("*.xz"))
    assert batch
    reader = bodybatch.read_predictions(SAMPLE / "clip_a.xz")  # float arrays, as a live estimator gives
    with bodybatch.VideoWriter(tmp_path / "live", to_jsonable(reader.metadata), video="clip_a.xz",
                               tracks={"mode": "associate", "min_length": 8}, max_queue=2) as w:  # fmt: skip
        for frame in reader:
            w.append(**frame)
    live = sorted((tmp_path / "live").iterdir())
    assert [p.name for p in live] == [p.name for p in batch]
    for a, b in zip(batch, live):
        assert a.read_bytes() == b.read_bytes()
    assert {k: i.sha256 for k, i in w.tracks.items()} == {int(p.name[6:10]): bodybatch._files.file_sha256(p) for p in live}


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import bodybatch
    from test_live import frames
    w = bodybatch.VideoWriter({out!r}, {{"v": 1}}, video="cam0", tracks={{"mode": "order", "min_length": 1}}, chunk_size=8)
    for f in frames({n}):
        w.append(**f)
    while not w._queue.empty():
        time.sleep(0.01)
    time.sleep(0.3)
    print("ready", flush=True)
    time.sleep(60)
""")


def test_sigkill_then_recover_yields_exactly_the_complete_chunks(tmp_path):
    n = 45  # 5 complete chunks of 8 rows per track, 5 rows lost
    out = tmp_path / "live"
    code = CHILD.format(tests=str(Path(__file__).parent), out=str(out), n=n)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert child.stdout.readline().strip() == b"ready"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    partials = sorted(out.glob("*.partial"))
    assert [p.name for p in partials] == ["track_0000.xz.partial", "track_0001.xz.partial"]
    ref = write_live(tmp_path / "ref", frames(n)[:40], recoverable=False)
    for p in partials:
        r = recover_track(p)
        assert r["n_frames"] == 40 and r["chunks"] == 5
        assert Path(r["path"]).read_bytes() == Path(ref[int(p.name[6:10])].path).read_bytes()
    assert sorted(x.name for x in out.iterdir()) == ["track_0000.xz", "track_0001.xz"]


def _killed_track(tmp_path, n=21):
    """A partial file and journal as a killed writer leaves them (3 chunks of 6 rows)."""
    path = tmp_path / "t.xz"
    w = bodybatch.TrackWriter(path, {"v": 1}, recoverable=True, chunk_size=6)
    for t, f in enumerate(frames(n, people=1, n_vertices=20)):
        w.append(vertices=f["vertices"][0], frame_index=3 * t)
    w._file._f.flush()
    return Path(str(path) + ".partial"), journal_path(str(path) + ".partial")


def test_a_file_cut_at_any_byte_recovers_a_prefix_or_fails_typed(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 1,800 recoveries: durability is not what is tested
    partial, journal = _killed_track(tmp_path)
    data, jdata = partial.read_bytes(), journal.read_bytes()
    full = bodybatch.open_track(recover_track(partial)["path"]).to_arrays()
    work = tmp_path / "w"
    work.mkdir()
    seen = {}  # rows recovered -> the recovered file's bytes (decoded and checked once)
    cuts = [(k, len(jdata)) for k in range(len(data) + 1)] + [(len(data), k) for k in range(len(jdata))]
    for cut_data, cut_journal in cuts:
        (work / partial.name).write_bytes(data[:cut_data])
        (work / journal.name).write_bytes(jdata[:cut_journal])
        try:
            r = recover_track(work / partial.name)
        except FormatError:
            seen[0] = None
            continue
        k, got = r["n_frames"], Path(r["path"]).read_bytes()
        os.unlink(r["path"])
        assert k % 6 == 0 and 0 < k <= 18
        if k in seen:
            assert got == seen[k]
            continue
        seen[k] = got
        with bodybatch.open_track(r["path"] if Path(r["path"]).write_bytes(got) else None) as track:
            arrays = track.to_arrays()
        np.testing.assert_array_equal(arrays["vertices"], full["vertices"][:k])
        np.testing.assert_array_equal(arrays["frame_index"], full["frame_index"][:k])
    assert sorted(seen) == [0, 6, 12, 18]


def test_recover_checks_every_crc_and_open_track_recovers(tmp_path):
    partial, journal = _killed_track(tmp_path)
    data = bytearray(partial.read_bytes())
    data[-10] ^= 0xFF  # inside the last complete chunk
    partial.write_bytes(bytes(data))
    with bodybatch.open_track(tmp_path / "t.xz", recover=True) as track:
        assert len(track) == 12
    assert not partial.exists() and not journal.exists()


def test_cli_recover_folder(tmp_path, capsys):
    from bodybatch.cli import main

    _killed_track(tmp_path)
    assert main(["recover", str(tmp_path)]) == 0
    assert "18 frames in 3 complete chunks" in capsys.readouterr().out
    assert main(["recover", str(tmp_path / "nothing.xz")]) == 3


class _Gate:
    """Holds the worker at its first frame until released."""

    def __init__(self, writer):
        self.event, write = threading.Event(), writer._write

        def gated(t, frame):
            self.event.wait(10)
            write(t, frame)

        writer._write = gated


def test_backpressure_blocks_when_the_queue_is_full(tmp_path):
    fs = frames(10)
    w = bodybatch.VideoWriter(tmp_path, tracks={"mode": "order", "min_length": 1}, max_queue=2)
    gate = _Gate(w)
    assert w.append(**fs[0])
    time.sleep(0.2)  # the worker holds frame 0
    for f in fs[1:3]:  # two queued
        assert w.append(**f)
    blocked = threading.Thread(target=w.append, kwargs=fs[3])
    blocked.start()
    time.sleep(0.3)
    assert blocked.is_alive()
    gate.event.set()
    blocked.join(5)
    assert not blocked.is_alive()
    for f in fs[4:]:
        w.append(**f)
    assert [i.n_frames for i in w.close().values()] == [10, 10]


def test_backpressure_drops_when_asked(tmp_path):
    fs = frames(10)
    w = bodybatch.VideoWriter(tmp_path, tracks={"mode": "order", "min_length": 1}, max_queue=2, on_full="drop")
    gate = _Gate(w)
    results = [w.append(**fs[0])]
    time.sleep(0.2)  # the worker holds frame 0
    results += [w.append(**f) for f in fs[1:6]]
    assert results[:3] == [True, True, True]
    assert results[3:] == [False, False, False] and w.frames_dropped == 3
    gate.event.set()
    results += [w.append(**f) for f in fs[6:]]
    tracks = w.close()
    with bodybatch.open_track(tracks[0].path) as track:
        assert list(track.frame_index) == [t for t, ok in enumerate(results) if ok]


def test_shape_change_is_a_typed_error_naming_the_frame(tmp_path):
    fs = frames(20)
    bad = dict(fs[10], vertices=np.zeros((2, 61, 3), np.float32))
    w = bodybatch.VideoWriter(tmp_path, tracks={"mode": "order", "min_length": 1}, chunk_size=8)
    for t, f in enumerate(fs):
        if t == 10:
            with pytest.raises(WriterError, match="frame 10: vertices has per-detection shape") as err:
                w.append(**bad)
            assert err.value.frame == 10
        else:
            w.append(**f)
    tracks = w.close()
    for key in (0, 1):
        with bodybatch.open_track(tracks[key].path) as track:
            assert list(track.frame_index) == [t for t in range(20) if t != 10]


def test_a_failing_track_leaves_the_others(tmp_path):
    fs = frames(20)
    fs[5]["vertices"][1, 0, 0] = np.nan  # person 1's chunk fails when encoded
    w = bodybatch.VideoWriter(tmp_path, tracks={"mode": "order", "min_length": 1}, chunk_size=8)
    with pytest.raises(WriterError) as err:
        for f in fs:
            w.append(**f)
        w.close()
    assert err.value.track == 1
    w.close()
    assert list(w.tracks) == [0] and w.tracks[0].n_frames == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["track_0000.xz"]


def test_stale_partials_are_not_overwritten_and_manifest_rows(tmp_path):
    from bodybatch.errors import OutputError
    from bodybatch.manifest import read_manifest

    _killed_track(tmp_path)
    with pytest.raises(OutputError, match="bodybatch recover"):
        bodybatch.VideoWriter(tmp_path)
    recover_track(tmp_path / "t.xz")
    tracks = write_live(tmp_path / "cam0", frames(12), manifest=tmp_path / "manifest.jsonl")
    rows = list(read_manifest(tmp_path / "manifest.jsonl"))
    assert [(r.video, r.track, r.path, r["sha256"]) for r in rows] == [
        ("cam0", k, f"cam0/track_000{k}.xz", tracks[k].sha256) for k in (0, 1)
    ]
