"""Real cluster parts for tests and benchmarks: a local Ray cluster and a PostgreSQL server.

Both are started on this machine from their own command-line tools and stopped by process
group, never by name: ``ray stop`` would also stop Ray clusters that other people run on the
same machine, so each ``ray start --block`` runs in its own session and teardown ends exactly
that session (and checks nothing of it is left).

Used by ``tests/integration/test_ray*.py``, ``test_postgres*.py`` and ``benchmarks/cluster.py``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

VENV_BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_block(n: int, attempts: int = 50) -> list[int]:
    """``n`` consecutive ports below the kernel's ephemeral range, each free on 127.0.0.1 right now.

    Below that range no outgoing connection takes one as its source port between this check and
    the moment a server binds it, which ports from ``free_ports`` (inside the range) cannot promise;
    a random block keeps clusters side by side apart."""
    top = _ephemeral_low() - n
    for _ in range(attempts):
        base = 10000 + secrets.randbelow(max(1, top - 10000))
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return list(range(base, base + n))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {n} free ports below {top + n} after {attempts} tries")


def wait_until(condition, timeout: float, what: str, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def session_pids(sid: int) -> list[int]:
    """Live (non-zombie) processes whose session id is ``sid``."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(stat.split("/")[2]))
    return out


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (to check a teardown, never to kill)."""
    out = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                if text.encode() in f.read():
                    pid = int(cmdline.split("/")[2])
                    if pid != os.getpid() and session_state(pid) not in (None, "Z"):
                        out.append(pid)
        except OSError:
            continue
    return out


def session_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# ---- Ray ---------------------------------------------------------------------------------------


@dataclass
class RayNode:
    proc: subprocess.Popen
    log: Path
    resources: str

    @property
    def sid(self) -> int:
        return self.proc.pid  # started with start_new_session: the session id is its pid


@dataclass
class RayCluster:
    """``ray start --head`` plus worker nodes, all on 127.0.0.1, in a private temp dir."""

    temp_dir: Path
    port: int
    token: str
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What every node and driver of this cluster needs in its environment: its own token
        (Ray >= 2.5x enables token auth on a head when ~/.ray/auth_token exists, but not on the
        nodes that join it, so the mode is set explicitly), and no usage stats."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0"}

    @classmethod
    def start(cls, head_cpus: int = 2, worker_cpus: tuple[int, ...] = (1,), timeout: float = 90) -> "RayCluster":
        # A short path: Ray's unix sockets live under it (108-byte limit).
        temp_dir = Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp"))
        cluster = cls(temp_dir, port_block(1)[0], secrets.token_hex(32))
        try:
            cluster._start_node(head=True, cpus=head_cpus, name="head", timeout=timeout)
            for i, cpus in enumerate(worker_cpus):
                cluster._start_node(head=False, cpus=cpus, name=f"node{i + 1}", timeout=timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def add_node(self, cpus: int = 1, timeout: float = 90) -> RayNode:
        return self._start_node(head=False, cpus=cpus, name=f"node{len(self.nodes)}", timeout=timeout)

    def _start_node(self, *, head: bool, cpus: int, name: str, timeout: float) -> RayNode:
        """Start a node; if `ray start` fails or does not come up in time, stop what it started and
        try once more on other ports (the head's GCS port too), showing why the first try failed.
        A 2-core machine under a full test run has once left a head's GCS unanswered for 30 s."""
        try:
            return self._start_node_once(head=head, cpus=cpus, name=name, timeout=timeout)
        except (RuntimeError, TimeoutError) as first:
            failed = self.nodes.pop()
            log = failed.log.read_text(errors="replace")[-2000:] if failed.log.exists() else ""
            self.stop_node(failed)
            failed.log.rename(failed.log.with_suffix(".failed.log"))
            if head:
                self.port = port_block(1)[0]
            print(f"cluster_fixtures: retrying the Ray {name} once after: {first}\n{log}", file=sys.stderr)
            return self._start_node_once(head=head, cpus=cpus, name=name, timeout=timeout)

    def _start_node_once(self, *, head: bool, cpus: int, name: str, timeout: float) -> RayNode:
        # One private block per node: 10 fixed ports, then 200 for its workers.
        block = port_block(210)
        ports = block[:10]
        resources = f'{{"tl_{name}": 1}}'  # tells the nodes apart in tests
        args = [str(VENV_BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                "--num-gpus=0", f"--resources={resources}", "--disable-usage-stats",
                "--object-store-memory=80000000", f"--node-manager-port={ports[0]}",
                f"--object-manager-port={ports[1]}", f"--dashboard-agent-listen-port={ports[2]}",
                f"--dashboard-agent-grpc-port={ports[3]}", f"--runtime-env-agent-port={ports[4]}",
                f"--metrics-export-port={ports[5]}"]
        args += [f"--min-worker-port={block[10]}", f"--max-worker-port={block[-1]}"]
        if head:
            args += ["--head", f"--port={self.port}", "--include-dashboard=false", f"--dashboard-port={ports[7]}",
                     f"--ray-client-server-port={ports[8]}", f"--temp-dir={self.temp_dir}"]
        else:
            args += [f"--address={self.address}"]
        log = self.temp_dir / f"{name}.log"
        env = {**os.environ, **self.env}
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        node = RayNode(proc, log, resources)
        self.nodes.append(node)

        def started() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start` for {name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            return b"Ray runtime started" in log.read_bytes()

        wait_until(started, timeout, f"the Ray {name} to start (log: {log})", interval=0.2)
        return node

    def stop_node(self, node: RayNode, timeout: float = 40) -> None:
        """Stop one node: SIGTERM its `ray start --block` (it stops its own processes), then SIGKILL
        whatever of its session is left."""
        if node.proc.poll() is None:
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.sid, signal.SIGKILL)
        if node.proc.poll() is None:
            node.proc.wait(timeout=10)
        wait_until(lambda: not session_pids(node.sid), 20, f"the processes of Ray node {node.sid} to exit")

    def kill_node(self, node: RayNode) -> None:
        """Lose a node at once (SIGKILL to everything of it): what a machine failure looks like."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.sid, signal.SIGKILL)
        node.proc.wait(timeout=10)
        wait_until(lambda: not session_pids(node.sid), 20, f"the processes of Ray node {node.sid} to exit")

    def leftovers(self) -> list[int]:
        """Processes of this cluster still alive (by session, and by its temp dir on the command line)."""
        pids = set(pids_mentioning(str(self.temp_dir)))
        for node in self.nodes:
            pids.update(session_pids(node.sid))
        return sorted(pids)

    def stop(self) -> None:
        for node in reversed(self.nodes):  # workers first, the head last
            self.stop_node(node)
        left = self.leftovers()
        for pid in left:  # only processes of this cluster, found by its private temp dir
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes were left after stopping the cluster: {left}")


@contextlib.contextmanager
def ray_cluster(head_cpus: int = 2, worker_cpus: tuple[int, ...] = (1,),
                extra_env: dict[str, str] | None = None) -> Iterator[RayCluster]:
    """A cluster whose settings (its auth token, and ``extra_env``) this process uses while it
    runs; afterwards Ray is shut down here, the environment restored, and no process is left."""
    cluster = RayCluster.start(head_cpus, worker_cpus)
    env = {**cluster.env, **(extra_env or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # for executors created in this process
    if "ray" in sys.modules:  # imported before the token was set: make Ray read its settings again
        from ray._raylet import Config

        Config.initialize("")
    try:
        yield cluster
    finally:
        if "ray" in sys.modules:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        cluster.stop()  # raises if a process of the cluster is left
        assert cluster.leftovers() == []


# ---- PostgreSQL --------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server binaries (``apt-get install postgresql``), newest version."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _as_user() -> list[str]:
    """PostgreSQL refuses to run as root: run it as `nobody` then (files owned by nobody)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "nobody", "--"]


@dataclass
class Postgres:
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth), data in a temp dir."""

    data_dir: Path
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"postgresql://tunelab@127.0.0.1:{self.port}/tunelab"

    @classmethod
    def start(cls, timeout: float = 60) -> "Postgres":
        bindir = postgres_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries not found (apt-get install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="tlpg-", dir="/tmp"))
        data, sock = root / "data", root / "sock"
        sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(root, "nobody")
            shutil.chown(sock, "nobody")
        run = _as_user()
        subprocess.run([*run, str(bindir / "initdb"), "-D", str(data), "-U", "tunelab", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True, timeout=timeout)
        port = free_ports(1)[0]
        log = open(root / "postgres.log", "wb")
        proc = subprocess.Popen([*run, str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                 "-k", str(sock), "-c", "fsync=off", "-c", "max_connections=60"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(data, port, proc)
        try:
            wait_until(lambda: server._ready(bindir, sock), timeout, "PostgreSQL to accept connections", 0.1)
            subprocess.run([*run, str(bindir.parent / "bin" / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                            "-U", "tunelab", "tunelab"], check=True, capture_output=True, timeout=timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _ready(self, bindir: Path, sock: Path) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"postgres exited: {(self.data_dir.parent / 'postgres.log').read_text()[-2000:]}")
        ready = bindir / "pg_isready"
        return subprocess.run([str(ready), "-h", "127.0.0.1", "-p", str(self.port), "-q"]).returncode == 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGINT is postgres' "fast shutdown": clients are disconnected, the server exits.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        wait_until(lambda: not session_pids(self.proc.pid), 20, "the PostgreSQL processes to exit")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
