"""Where tasks run: in-process (serial), a local Dask cluster, an existing scheduler, or SLURM.

The user's task function never sees the scheduler: it gets one item and returns a small result.
Dask workers are processes with one thread each (cc3d and friends hold the GIL), and tasks are
coarse (one block, >= 100 ms), which is what Dask needs to pay off on few cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Compute:
    """How to run tasks.

    scheduler: ``"local"`` (a ``distributed.LocalCluster`` of worker processes, the default),
    ``"serial"`` (in this process, no Dask), ``"slurm"`` (workers in SLURM jobs, see
    ``engine.slurm``), or a scheduler address ``"tcp://host:8786"`` of an existing cluster.
    workers: worker processes for ``local`` (default: the number of cores).
    memory_limit: per worker, e.g. ``"4GiB"`` or ``"auto"`` (machine memory / workers).
    slurm: the jobs for ``slurm`` (``config.SlurmParams``; none = its defaults).
    """

    scheduler: str = "local"
    workers: int | None = None
    memory_limit: str = "auto"
    slurm: Any = field(default=None, hash=False)  # a pydantic model: not hashable

    @classmethod
    def from_config(cls, params: Any) -> Compute:
        """From a config's ``[compute]`` section (``ProjectConfig.compute``)."""
        return cls(scheduler=params.scheduler, workers=params.workers or None,
                   memory_limit=params.memory_limit, slurm=params.slurm)

    @property
    def n_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


class Runner:
    """Runs ``fn(item)`` over items and yields ``(index, result, error)`` as tasks finish."""

    def __init__(self, compute: Compute, client: Any = None):
        self.compute = compute
        self.client = client

    def map_unordered(
        self, fn: Callable[[Any], Any], items: Sequence[Any], keys: Sequence[str]
    ) -> Iterator[tuple[int, Any, BaseException | None]]:
        if self.client is None:
            for i, item in enumerate(items):
                try:
                    yield i, fn(item), None
                except Exception as exc:  # reported per task by the caller
                    yield i, None, exc
            return
        from distributed import as_completed

        futures = self.client.map(fn, list(items), key=list(keys), pure=False, retries=0)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            i = index[fut.key]
            if fut.status == "finished":
                yield i, fut.result(), None
            else:
                yield i, None, fut.exception()
            fut.release()


class SchedulerAddressError(ValueError):
    """The scheduler setting is neither "local", "serial", "slurm" nor a Dask address (or slurm cannot run)."""


class SchedulerUnreachable(ConnectionError):
    """Nothing answers at the scheduler address (an environment error, not bad input)."""


# distributed's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also switches off
# glibc's adaptive mmap threshold: every array above 128 KiB is then mmapped and unmapped, and each
# new temporary page-faults (2x the CPU of the same work in one process, mostly system time;
# docs/performance.md). Workers keep glibc's defaults instead.
WORKER_ENVIRON = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
# the same for SLURM jobs, whose nannies read their own config: an explicit setting that keeps what
# glibc's adaptive threshold converges to (32 MiB), so that the nanny's value is not used
SLURM_MALLOC_ENV = ("export MALLOC_MMAP_THRESHOLD_=33554432", "export MALLOC_TRIM_THRESHOLD_=134217728")


SCHEDULER_SCHEMES = ("tcp", "tls", "inproc", "ws", "wss", "ucx")


_ANSWERED: set[str] = set()  # addresses that answered once in this process (probed once per run)


def check_scheduler(address: str, timeout_s: float = 3.0) -> None:
    """Refuse a malformed scheduler address at once, and a tcp/tls one nothing listens on within
    ``timeout_s`` (Dask itself waits 30 s before a raw traceback). An address that answered
    before in this process is not probed again (the config check and the session share one)."""
    import socket
    from urllib.parse import urlsplit

    if address in ("local", "serial") or address in _ANSWERED:
        return
    if address == "slurm":
        from syngraph.engine.slurm import check_slurm

        check_slurm()
        return
    fix = 'use "local", "serial", "slurm" or tcp://HOST:PORT of a running `dask scheduler`'
    scheme, _, rest = address.partition("://")
    if not rest or scheme not in SCHEDULER_SCHEMES:
        raise SchedulerAddressError(f"scheduler {address!r} is not a scheduler address; {fix}")
    if scheme not in ("tcp", "tls"):
        return
    try:
        url = urlsplit(address)
        host, port = url.hostname, url.port
    except ValueError as exc:
        raise SchedulerAddressError(f"scheduler {address!r}: {exc}; {fix}") from exc
    if not host or not port:
        raise SchedulerAddressError(f"scheduler {address!r} has no host:port; {fix}")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
        _ANSWERED.add(address)
    except OSError as exc:
        raise SchedulerUnreachable(
            f"scheduler unreachable: nothing answers at {address} ({exc.strerror or exc}); start "
            f"`dask scheduler` there, fix --scheduler / [compute] scheduler, or use --scheduler local"
        ) from None


_ACTIVE: list[Runner] = []


def active_client() -> Any:
    """The Dask client of the open session (None: serial, or no session)."""
    return _ACTIVE[-1].client if _ACTIVE else None


@contextlib.contextmanager
def session(compute: Compute | None = None) -> Iterator[Runner]:
    """Open a runner for ``compute``; nested calls reuse the outer one (one cluster per pipeline)."""
    if _ACTIVE:
        # the outermost session decides where tasks run (one cluster per pipeline run)
        yield _ACTIVE[-1]
        return
    compute = compute or Compute()
    if compute.scheduler == "serial" or (compute.scheduler == "local" and compute.n_workers <= 1):
        runner = Runner(compute, None)
        _ACTIVE.append(runner)
        try:
            yield runner
        finally:
            _ACTIVE.pop()
        return
    import dask
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if compute.scheduler == "local":
            stack.enter_context(dask.config.set(WORKER_ENVIRON))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=compute.n_workers,
                    threads_per_worker=1,
                    processes=True,
                    memory_limit=compute.memory_limit,
                    dashboard_address=":0",
                    silence_logs=40,
                )
            )
            client = stack.enter_context(Client(cluster))
        elif compute.scheduler == "slurm":
            from syngraph.engine.slurm import slurm_cluster

            client = stack.enter_context(Client(stack.enter_context(slurm_cluster(compute.slurm))))
        else:
            check_scheduler(compute.scheduler)
            client = stack.enter_context(Client(compute.scheduler, timeout="30s"))
        runner = Runner(compute, client)
        _ACTIVE.append(runner)
        try:
            yield runner
        finally:
            _ACTIVE.pop()
