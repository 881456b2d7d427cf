"""``scheduler = "slurm"``: Dask workers in SLURM jobs, submitted through dask-jobqueue.

The scheduler runs in the syngraph process (on the login node); each job holds ``cores``
single-threaded worker processes. The jobs are cancelled when the run ends.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from syngraph.engine.compute import SLURM_MALLOC_ENV, SchedulerAddressError

INSTALL = 'pip install "syngraph[slurm]"'


def check_slurm() -> None:
    """Refuse ``slurm`` where it cannot work: dask-jobqueue missing, or no ``sbatch`` on PATH."""
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise SchedulerAddressError(
            f'scheduler "slurm" needs dask-jobqueue, which is not installed; {INSTALL}, '
            f"or use --scheduler local") from None
    if shutil.which("sbatch") is None:
        raise SchedulerAddressError(
            'scheduler "slurm" needs sbatch, which is not on PATH; run on a SLURM login node '
            "(e.g. after `module load slurm`), or use --scheduler local")


def check_job_script(script: str) -> None:
    """Refuse a worker job SLURM would not run (unknown partition or account, too much memory, a bad
    walltime): ``sbatch --test-only`` submits nothing; without it the run would wait forever."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
        f.write(script)
        f.flush()
        r = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        why = "; ".join(line.removeprefix("sbatch: error: ").strip() for line in r.stderr.splitlines() if line.strip())
        raise SchedulerAddressError(
            f"[compute.slurm]: sbatch refuses the worker job ({why or f'exit {r.returncode}'}); fix queue, "
            f"account, cores, memory, walltime or job_extra (`sinfo` lists partitions and node memory)")


def cluster_options(params: Any) -> dict[str, Any]:
    """``SLURMCluster`` keyword arguments from ``[compute.slurm]`` (``config.SlurmParams``)."""
    return {
        "queue": params.queue or None,
        "account": params.account or None,
        "cores": params.cores,
        "processes": params.cores,  # one thread per worker: cc3d and friends hold the GIL
        "memory": params.memory,
        "walltime": params.walltime,
        "job_extra_directives": list(params.job_extra),
        "job_script_prologue": list(SLURM_MALLOC_ENV),
        "log_directory": params.log_directory or None,
        "interface": params.interface or None,
        "scheduler_options": {"dashboard_address": ":0"},  # any free port, never a clash
        "silence_logs": "error",
    }


def slurm_cluster(params: Any) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` from ``[compute.slurm]``, its ``jobs`` submitted."""
    if params is None:
        raise SchedulerAddressError('scheduler "slurm" needs its [compute.slurm] settings: '
                                    "build Compute with Compute.from_config")
    check_slurm()
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(**cluster_options(params))
    try:
        check_job_script(cluster.job_script())
    except BaseException:
        cluster.close()
        raise
    cluster.adapt(minimum_jobs=params.jobs, maximum_jobs=params.jobs)  # replaces a job that ends or dies
    print(f"slurm: {params.jobs} job(s) of {params.cores} worker(s) submitted (squeue --me); "
          f"tasks start when SLURM runs them", file=sys.stderr, flush=True)
    return cluster
