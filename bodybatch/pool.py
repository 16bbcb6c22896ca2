"""Run jobs on a joblib pool (loky processes) or on a dask.distributed cluster.

Results stream back as they finish (``return_as="generator_unordered"``); each job
catches its own errors (:func:`bodybatch.job.run_job`), so one bad video never stops
the others. Each worker uses one compression thread: N workers x all-cores threads
would oversubscribe the machine. Worker processes inherit these settings (and the
malloc tuning below) through the environment, set before they start.
"""

import contextlib
import itertools
import os

from bodybatch.errors import ConfigError

__all__ = ["run_jobs", "BACKENDS"]

BACKENDS = ("loky", "dask")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: glibc malloc for the workers: keep freed arrays below 32 MiB in the heap and do
#: not hand the heap back to the system below 256 MiB. Encoding allocates the same
#: few-MiB work arrays chunk after chunk; by default each is a fresh mmap whose pages
#: fault in again (measured on 20 videos: 195k -> 80k page faults, 1.2 -> 0.6 s of
#: system time, same peak RSS), and with a 64 MiB trim threshold a chunk's freed
#: temporaries still went back to the system and faulted in again for the next one
#: (112k -> 17k page faults, 0.9 -> 0.25 s of system time). Freed memory is reused,
#: so the peak RSS stays the same. Other C libraries ignore these variables.
_MALLOC_VARS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20)}


def run_jobs(jobs, n_jobs=2, backend="loky", scheduler=None, connect_timeout=10.0):
    """Yield finished jobs (:func:`bodybatch.job.run_job`) as they finish.

    Parameters
    ----------
    jobs : list of Job
    n_jobs : int
        Worker processes (-1: one per core). With dask and no scheduler, the size of
        the local cluster.
    backend : {"loky", "dask"}
    scheduler : str, optional
        dask scheduler address (``tcp://host:8786``); a local cluster when unset.
    connect_timeout : float
        Seconds to wait for ``scheduler`` to answer.

    Raises
    ------
    ConfigError
        Unknown backend, dask not installed, or ``scheduler`` malformed or not
        answering within ``connect_timeout`` (before any job runs).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"pool.backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if not jobs:
        return
    from joblib import Parallel, delayed

    from bodybatch.job import run_job

    n_jobs = os.cpu_count() if n_jobs == -1 else n_jobs
    for var in _THREAD_VARS:
        os.environ.setdefault(var, "1")
    for var, value in _MALLOC_VARS.items():
        os.environ.setdefault(var, value)
    calls = (delayed(run_job)(job) for job in jobs)
    if backend == "loky":
        if n_jobs == 1:
            for job in jobs:
                yield run_job(job)
            return
        parallel = Parallel(n_jobs=min(n_jobs, len(jobs)), return_as="generator_unordered", backend="loky")
        yield from parallel(calls)
        return
    with _dask_client(n_jobs, scheduler, connect_timeout) as client:
        yield from run_on_dask(client, jobs)


def run_on_dask(client, jobs, in_flight=None):
    """Yield finished jobs from a dask.distributed ``client``, keeping at most
    ``in_flight`` jobs submitted at once (default: twice the cluster's threads), so a
    dataset of 100k videos is not handed to the scheduler in one go.

    A job whose worker dies under it is retried by the scheduler as its
    ``distributed.scheduler.allowed-failures`` says (bodybatch's local cluster: once);
    after that (``KilledWorker``) or for any other error of the cluster, the job
    comes back failed, naming the worker loss, and the run goes on.
    """
    from distributed import as_completed

    from bodybatch.job import run_job

    if in_flight is None:
        in_flight = 2 * max(1, sum(client.nthreads().values()))
    queue = iter(jobs)
    submitted = {}
    finished = as_completed()

    def submit(job):
        future = client.submit(run_job, job, pure=False)
        submitted[future] = job
        finished.add(future)

    for job in itertools.islice(queue, in_flight):
        submit(job)
    for future in finished:
        job = submitted.pop(future)
        try:
            yield future.result()
        except Exception as exc:  # KilledWorker, a lost connection...: this video fails, the run goes on
            yield _lost(job, exc)
        finally:
            future.release()
        job = next(queue, None)
        if job is not None:
            submit(job)


def _lost(job, exc):
    """``job`` as failed because the cluster lost it."""
    reason = "its worker died while converting it, also on retry" if type(exc).__name__ == "KilledWorker" else str(exc)
    job.tracks, job.error = {}, f"{job.video}: lost by the dask cluster: {reason} ({type(exc).__name__})"
    return job


@contextlib.contextmanager
def _dask_client(n_workers, scheduler, connect_timeout):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("pool.backend 'dask' needs dask.distributed: pip install 'bodybatch[dask]'") from None
    if scheduler:
        with _connect(Client, scheduler, connect_timeout) as client:
            yield client
        return
    import dask

    with _sigint_ignored(), dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=40,
        )
    with cluster, Client(cluster) as client:
        yield client


def _connect(client_class, scheduler, timeout):
    """A dask ``Client`` of ``scheduler``; a one-line :class:`ConfigError` naming the
    address when it is malformed or does not answer within ``timeout`` seconds
    (distributed raises ``ValueError`` or ``OSError`` with a chained traceback)."""
    try:
        return client_class(scheduler, timeout=timeout)
    except ValueError as exc:
        raise ConfigError(f"pool.scheduler: bad dask scheduler address {scheduler!r}: {exc}") from None
    except OSError:
        raise ConfigError(
            f"pool.scheduler: no dask scheduler answered at {scheduler} within {timeout:g} s "
            f"(pool.connect_timeout); is it running?"
        ) from None


@contextlib.contextmanager
def _sigint_ignored():
    """Ignore SIGINT in this process while the block runs (main thread only).

    A terminal's Ctrl-C signals the whole foreground process group: the driver and
    every dask worker process. The driver stops the run and closes the cluster
    (:mod:`bodybatch.cli` prints one line); a worker that also got the signal dies
    with a KeyboardInterrupt traceback. A child process inherits SIG_IGN through
    fork and exec, and Python then installs no KeyboardInterrupt handler in it, so
    workers started inside this block ignore Ctrl-C and are stopped by the driver.
    A Ctrl-C that arrives inside the block is ignored by the driver too.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
