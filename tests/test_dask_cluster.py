"""The dask backend on a cluster: a bounded number of jobs in flight, and a worker
that dies under a job (its process SIGKILLed): the job is retried once, then comes
back failed, and the run goes on."""

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

from bodybatch.config import load_config
from bodybatch.plan import plan_jobs

from _helpers import require

SAMPLE = Path(__file__).resolve().parents[1] / "sample" / "preds_np"

pytestmark = pytest.mark.slow


@pytest.fixture()
def cluster_client():
    dask = require("dask")
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):  # as bodybatch's local cluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=50)  # fmt: skip
        with cluster, Client(cluster) as client:
            yield client


def make_jobs(tmp_path, names):
    """Jobs of real sample videos, and of FIFOs (discovery skips those: not files) on
    which a reader blocks, so their job hangs until its worker is killed."""
    from bodybatch.plan import output_dir_for
    from bodybatch.job import Job

    data = tmp_path / "data"
    data.mkdir()
    for name in names:
        if name.startswith("fifo"):
            os.mkfifo(data / name)
        else:
            shutil.copy(SAMPLE / "clip_a.xz", data / name)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"input": {"root": str(data)}, "output": {"root": str(tmp_path / "out")},
                                   "tracks": {"min_length": 8}}))  # fmt: skip
    jobs = plan_jobs(load_config(cfg), []).jobs
    fifos = [Job(n, data / n, output_dir_for(n), settings=jobs[0].settings) for n in names if n.startswith("fifo")]
    return data, jobs + fifos


def test_worker_killed_under_a_job(tmp_path, cluster_client):
    from bodybatch.pool import run_on_dask

    data, jobs = make_jobs(tmp_path, ["a.xz", "z.xz", "fifo_recovers.xz", "fifo_dies.xz"])
    jobs = [jobs[0], jobs[2], jobs[3], jobs[1]]  # a, fifo_recovers, fifo_dies, z
    kills = {"fifo_recovers.xz": 0, "fifo_dies.xz": 0}
    wanted = {"fifo_recovers.xz": 1, "fifo_dies.xz": 2}
    stop = threading.Event()

    def killer():
        """SIGKILL the worker whose process reads a FIFO job's input; after one kill,
        'fifo_recovers' becomes a real file, so its retry succeeds; 'fifo_dies' is
        killed on its retry too. A writer end is held open so that the reader's open()
        returns and it blocks in read(), visible in /proc/PID/fd."""
        writers, deadline = {}, time.monotonic() + 240
        while not stop.is_set():
            if time.monotonic() > deadline:  # never hang the suite: end every FIFO read (the asserts then fail)
                _unblock_readers(cluster_client.run(os.getpid).values(), data)
            for video in kills:
                if video not in writers and (data / video).exists() and kills[video] < wanted[video]:
                    try:
                        writers[video] = os.open(data / video, os.O_WRONLY | os.O_NONBLOCK)
                    except OSError:  # no reader yet
                        pass
            for pid in cluster_client.run(os.getpid).values():
                for video in kills:
                    if kills[video] < wanted[video] and _blocked_on(pid, data / video):
                        if video == "fifo_recovers.xz":  # the real file first: the retry must not find the FIFO
                            tmp = data / ".real.tmp"
                            shutil.copy(SAMPLE / "clip_a.xz", tmp)
                            os.replace(tmp, data / video)
                        os.kill(pid, signal.SIGKILL)
                        kills[video] += 1
                        if video == "fifo_recovers.xz":
                            os.close(writers.pop(video))
            time.sleep(0.05)
        for fd in writers.values():
            os.close(fd)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        # One job in flight: a kill hits only the FIFO job (tasks queued on a killed worker
        # count as killed too).
        done = {job.video: job for job in run_on_dask(cluster_client, jobs, in_flight=1)}
    finally:
        stop.set()
        thread.join()
    assert kills == wanted
    assert done["a.xz"].error is None and done["z.xz"].error is None
    assert done["fifo_recovers.xz"].error is None and done["fifo_recovers.xz"].tracks  # retried once
    assert "lost by the dask cluster" in done["fifo_dies.xz"].error and "KilledWorker" in done["fifo_dies.xz"].error


def _unblock_readers(pids, folder):
    """Open for writing, then close, every FIFO under ``folder`` (replaced ones too) that
    a process in ``pids`` holds open: its read returns EOF."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(folder)):
                    os.close(os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                continue


def _blocked_on(pid, path):
    """True when process ``pid`` has ``path`` open (it is reading the FIFO)."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


def test_bounded_in_flight(tmp_path, cluster_client):
    from bodybatch.pool import run_on_dask

    _, jobs = make_jobs(tmp_path, [f"v{i:02d}.xz" for i in range(12)])
    seen = []
    for _ in run_on_dask(cluster_client, jobs, in_flight=3):
        seen.append(len(cluster_client.who_has()))  # futures the scheduler knows of
    assert len(seen) == 12 and max(seen) <= 3
