"""A private single-node SLURM cluster for the tests marked ``slurm`` (tests/cluster/slurm_local.sh)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("slurm_local.sh")
APT = ("apt-get install -y slurm-wlm munge slurmdbd slurm-wlm-mysql-plugin mariadb-server-core "
       "mariadb-client-core")
BINARIES = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sinfo", "scancel")
SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


@dataclass
class Cluster:
    dir: Path
    conf: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a SLURM client (Hydra's submitit launcher included): SLURM_CONF exported."""
        return dict(os.environ, SLURM_CONF=str(self.conf), PATH=SBIN, **extra)

    def ports(self) -> set[int]:
        text = (self.dir / "etc" / "slurm.conf").read_text() + (self.dir / "etc" / "slurmdbd.conf").read_text()
        return {int(p) for p in re.findall(r"^(?:SlurmctldPort|SlurmdPort|DbdPort|StoragePort)=(\d+)$", text, re.M)}


def _missing() -> list[str]:
    return [b for b in BINARIES if shutil.which(b, path=SBIN) is None]


def leftovers(cluster: Cluster) -> list[str]:
    """Processes of this cluster (its folder on their command line, or its SLURM_CONF in their environment: daemons,
    job steps) and its listening ports that are still there."""
    import psutil

    found = []
    key = f"SLURM_CONF={cluster.conf}"
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            environ = proc.environ() if str(cluster.dir) not in cmdline else {}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if str(cluster.dir) in cmdline or f"SLURM_CONF={environ.get('SLURM_CONF')}" == key:
            found.append(f"process {proc.pid} {proc.info['name']}: {cmdline[:200]}")
    ports = cluster.ports()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in ports:
            found.append(f"listening port {conn.laddr.port} (pid {conn.pid})")
    return found


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> Cluster:
    """munged, MariaDB, slurmdbd, slurmctld and slurmd on loopback, all state in a temp folder; the node idle.

    Teardown cancels every job, stops every daemon and checks that no process and no listening port is left."""
    missing = _missing()
    if missing:
        pytest.skip(f"needs SLURM, munge and MariaDB ({', '.join(missing)} not found); as root: {APT}")
    if os.geteuid() != 0:
        pytest.skip(f"the private SLURM cluster runs its daemons as root (slurmd starts the jobs); run as root")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs evalkit[slurm] (hydra-submitit-launcher)")
    base = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run([str(SCRIPT), "start", str(base)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PATH=SBIN))
    if proc.returncode != 0:
        pytest.fail(f"the private SLURM cluster did not start (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    cluster = Cluster(base, Path(proc.stdout.strip().splitlines()[-1]))
    try:
        yield cluster
    finally:
        stop = subprocess.run([str(SCRIPT), "stop", str(base)], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PATH=SBIN))
        left = leftovers(cluster)
        assert stop.returncode == 0, f"slurm_local.sh stop failed:\n{stop.stderr[-4000:]}"
        assert not left, "the private SLURM cluster left behind:\n" + "\n".join(left)
