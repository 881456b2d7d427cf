"""SLURM for real: a one-node SLURM cluster on this machine (Debian's slurm-wlm: munged, slurmctld,
slurmd, started and stopped by a fixture), and ``syngraph run all`` with ``scheduler = "slurm"``
gives the bytes of a serial run, also when one of its jobs is cancelled mid-step. Plus the refusals when SLURM cannot run (fast tests)."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from syngraph.engine import Compute

SERIAL = Compute(scheduler="serial")
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
INSTALL_SLURM = "apt-get install slurm-wlm munge"
INSTALL_JOBQUEUE = 'pip install "syngraph[slurm]"'


def _syngraph(*args: object, cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syngraph", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _why_no_slurm() -> str | None:
    """Why the SLURM test cannot run here, with the fix; None when it can."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM is not installed (no {', '.join(missing)}): {INSTALL_SLURM}"
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        return f"dask-jobqueue is not installed: {INSTALL_JOBQUEUE}"
    if os.geteuid() != 0:
        return "slurmd runs jobs as root: run this test as root (e.g. in a container or VM)"
    return None


def _slurm_conf(d: Path, munge_socket: Path) -> str:
    """A minimal one-node slurm.conf: this host's name, CPU count and memory; all state in ``d``."""
    host = socket.gethostname().split(".")[0]
    with open("/proc/meminfo") as f:
        mem_mb = int(f.readline().split()[1]) // 1024 * 9 // 10
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""ClusterName=syngraphtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
SlurmdParameters=config_overrides
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait(what: str, ok, timeout_s: float, logs: list[Path]) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if ok():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                      for p in logs if p.exists())
    raise RuntimeError(f"{what} within {timeout_s:.0f} s\n{tails}")


def _pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (this test's SLURM_CONF): slurmstepd and job
    processes, which outlive slurmd by design."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if marker.encode() in (p / "environ").read_bytes().split(b"\0"):
                out.append(int(p.name))
        except OSError:
            continue
    return out


@pytest.fixture
def slurm_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """munged, slurmctld and slurmd of a one-node cluster, all state under tmp_path; everything
    (jobs, their processes, the daemons) is stopped when the test ends, also on failure."""
    why = _why_no_slurm()
    if why:
        pytest.skip(why)
    d = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (d / sub).mkdir(parents=True)
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = d / "munge.socket"
    conf = d / "slurm.conf"
    conf.write_text(_slurm_conf(d, sock))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    marker = f"SLURM_CONF={conf}"
    host = socket.gethostname().split(".")[0]
    commands = {
        "munged": ["munged", "-F", "--force", f"--socket={sock}", f"--key-file={key}",
                   f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed"],
        "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],
        "slurmd": ["slurmd", "-D", "-f", str(conf), "-N", host],
    }
    logs = [d / f"{name}.out" for name in commands]
    procs: list[subprocess.Popen] = []
    try:
        for name, cmd in commands.items():
            with open(d / f"{name}.out", "w") as out:
                procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
            if name == "munged":
                _wait("munged made no socket", sock.exists, 20, logs)

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            return r.stdout.strip() == "idle"

        _wait("the node did not become idle", idle, 60, logs)
        monkeypatch.setenv("SLURM_CONF", str(conf))
        yield conf
    finally:
        subprocess.run(["scancel", "--full", "--partition=test"], env=env, capture_output=True, timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline and _pids_with_env(marker):
            time.sleep(0.5)  # cancelled jobs end, their workers exit
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for pid in _pids_with_env(marker):  # anything of this cluster still alive
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _outputs(wd: Path) -> dict[str, bytes]:
    """Every file a run writes for the user (tables, volumes, meshes, skeletons, exports), not the
    run records under steps/ (times, pids), report.html (times) nor the SLURM logs."""
    return {p.relative_to(wd).as_posix(): p.read_bytes() for p in sorted(wd.rglob("*"))
            if p.is_file() and p.relative_to(wd).parts[0] not in ("steps", "slurm-logs")
            and p.name != "report.html"}


def _jobs(states: str = "PD,R") -> list[str]:
    """Ids of the jobs in the queue in ``states`` (default: pending or running)."""
    r = subprocess.run(["squeue", "-h", "-o", "%i", "-t", states], capture_output=True, text=True, timeout=30,
                       check=True)
    return sorted(r.stdout.split(), key=int)


def _task_pids(wd: Path) -> set[int]:
    import json

    return {json.loads(p.read_text())["pid"] for p in (wd / "steps").rglob("tasks/*.done")}


@pytest.mark.slow
def test_run_all_on_slurm_gives_the_bytes_of_a_serial_run_also_when_a_job_is_cancelled(slurm_cluster: Path, tmp_path: Path) -> None:
    from syngraph.config import SlurmParams, load_config, write_config
    from syngraph.synth import synthesize

    base = tmp_path / "base"
    synthesize(base, shape_xyz=(192, 192, 64), seed=2, compute=SERIAL)
    cfg = load_config(base)
    compute = cfg.compute.model_copy(update={
        "scheduler": "slurm", "block_size_vx": (96, 96, 32),  # several blocks: tasks on both workers
        "slurm": SlurmParams(cores=1, memory="3GiB", walltime="00:30:00", jobs=2, log_directory="slurm-logs"),
    })
    write_config(base, cfg.model_copy(update={"compute": compute}))
    serial, cluster = tmp_path / "serial", tmp_path / "cluster"
    shutil.copytree(base, serial)
    shutil.copytree(base, cluster)

    r = _syngraph("run", "all", "--wd", serial, "--scheduler", "serial", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"  # sbatch runs the jobs in the directory syngraph runs in
    elsewhere.mkdir()
    run = subprocess.Popen([sys.executable, "-m", "syngraph", "run", "all", "--wd", str(cluster)],
                           cwd=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # cancel one running job mid-step (as a walltime or a lost node would): its blocks run
        # elsewhere and adapt submits a job to replace it
        deadline = time.time() + 300
        while time.time() < deadline and run.poll() is None:
            running = _jobs("R")  # a running job: a pending one cancelled leaves no worker log
            if running and len(list((cluster / "steps" / "init").rglob("*.done"))) >= 3:
                subprocess.run(["scancel", running[0]], check=True, timeout=30)
                break
            time.sleep(0.1)
        cancelled_mid_step = run.poll() is None
        _, err = run.communicate(timeout=900)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err[-3000:]
    assert cancelled_mid_step, "the run ended before a job could be cancelled"
    assert "slurm: 2 job(s) of 1 worker(s) submitted" in err

    # the tasks ran in SLURM jobs: dask workers (not the syngraph process) wrote them, and the
    # workers' logs are where [compute.slurm] log_directory says
    pids = _task_pids(cluster)
    assert pids and run.pid not in pids
    # both jobs' workers registered and one was cancelled while running; the job that replaces it may
    # start after the survivor has finished the remaining tasks (a fast run), so it is not required
    logs = [p.read_text() for p in sorted((cluster / "slurm-logs").glob("*.err"))]
    assert sum("Registered to" in t for t in logs) >= 2, logs
    assert sum("CANCELLED AT" in t and "Registered to" in t for t in logs) >= 1, logs
    assert _jobs() == []  # the jobs end with the run

    a, b = _outputs(serial), _outputs(cluster)
    assert len(a) > 100 and any(k.startswith("volumes.zarr/") for k in a) and "tables/synapses.parquet" in a
    assert set(a) == set(b)
    assert [k for k in a if a[k] != b[k]] == []


@pytest.mark.slow
def test_a_job_slurm_refuses_is_one_line_exit_2_and_submits_nothing(slurm_cluster: Path, tmp_path: Path) -> None:
    from syngraph.config import load_config, write_config
    from syngraph.synth import synthesize

    wd = tmp_path / "wd"
    synthesize(wd, shape_xyz=(32, 32, 16), seed=1, compute=SERIAL)
    cfg = load_config(wd)
    for key, value, words in (("queue", "nosuch", "invalid partition"), ("walltime", "banana", "--time"),
                              ("memory", "100TiB", "node configuration is not available")):
        slurm = cfg.compute.slurm.model_copy(update={key: value})
        write_config(wd, cfg.model_copy(update={"compute": cfg.compute.model_copy(
            update={"scheduler": "slurm", "slurm": slurm})}))
        r = _syngraph("run", "init", "--wd", wd, cwd=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("error: [compute.slurm]: sbatch refuses") and words in lines[0], lines[0]
        assert _jobs() == []
        assert not (wd / "steps" / "init").exists()


def test_slurm_without_sbatch_is_one_line_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue", reason=f"dask-jobqueue is not installed: {INSTALL_JOBQUEUE}")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    r = _syngraph("demo", "--wd", tmp_path / "demo", "--shape", "32", "32", "16", "--scheduler", "slurm",
                  cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "sbatch" in lines[0] and "--scheduler local" in lines[0], r.stderr
    assert not (tmp_path / "demo").exists()


def test_slurm_without_dask_jobqueue_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from syngraph.engine.compute import SchedulerAddressError, check_scheduler

    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if not installed
    with pytest.raises(SchedulerAddressError, match=r'dask-jobqueue.*pip install "syngraph\[slurm\]"'):
        check_scheduler("slurm")


def test_slurm_settings_reach_the_job_script() -> None:
    pytest.importorskip("dask_jobqueue", reason=f"dask-jobqueue is not installed: {INSTALL_JOBQUEUE}")
    from dask_jobqueue import SLURMCluster

    from syngraph.config import SlurmParams
    from syngraph.engine.slurm import cluster_options

    params = SlurmParams(queue="bigmem", account="lab7", cores=4, memory="16GiB", walltime="02:00:00",
                         job_extra=("--qos=long",))
    with SLURMCluster(**cluster_options(params)) as cluster:
        script = cluster.job_script()
    for line in ("#SBATCH -p bigmem", "#SBATCH -A lab7", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=",
                 "#SBATCH -t 02:00:00", "#SBATCH --qos=long", "--nworkers 4", "--nthreads 1",
                 "export MALLOC_MMAP_THRESHOLD_=33554432"):  # glibc's adaptive setting, not the nanny's
        assert line in script, (line, script)


@pytest.mark.parametrize(("key", "value"), [("memory", '"lots"'), ("cores", "0"), ("jobs", "0")])
def test_bad_slurm_settings_name_the_key(tmp_path: Path, key: str, value: str) -> None:
    from syngraph.config import ConfigError, default_config, dump_config, load_config

    text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", dump_config(default_config()), flags=re.M)
    assert n == 1  # the key is in [compute.slurm] only
    (tmp_path / "syngraph.toml").write_text(text)
    with pytest.raises(ConfigError, match=key):
        load_config(tmp_path)
