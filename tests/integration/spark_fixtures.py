"""Real Spark for tests and benchmarks: a local session and a standalone master with workers.

Everything listens on 127.0.0.1 (``SPARK_LOCAL_IP``), without the Spark UI where Spark lets
it be off. The standalone daemons run from pyspark's own ``spark-class``, each in a session
of its own, and are stopped by process group, never by name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_fixtures import free_ports, session_pids, wait_until

LOOPBACK = "127.0.0.1"


def spark_env() -> dict[str, str]:
    """What a driver and the daemons need here: loopback only, this interpreter in the workers,
    this checkout's tunelab on their path."""
    src = str(Path(__file__).resolve().parents[2] / "src")
    path = os.environ.get("PYTHONPATH", "")
    return {"SPARK_LOCAL_IP": LOOPBACK, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "PYTHONPATH": src + (os.pathsep + path if path else "")}


def local_session(cores: int = 2) -> Any:
    """A SparkSession on ``local[cores]``, as a notebook would have it (``spark``)."""
    os.environ.update(spark_env())
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master(f"local[{cores}]").appName("tunelab-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.host", LOOPBACK).config("spark.driver.bindAddress", LOOPBACK)
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def _spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


@dataclass
class Standalone:
    """A standalone master on 127.0.0.1 and the workers added to it."""

    master: subprocess.Popen
    port: int
    work: Path
    workers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://{LOOPBACK}:{self.port}"

    @classmethod
    def start(cls, work: Path) -> "Standalone":
        port, ui = free_ports(2)
        work.mkdir(parents=True, exist_ok=True)
        log = open(work / "master.log", "ab")
        master = subprocess.Popen([_spark_class(), "org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
                                   "--port", str(port), "--webui-port", str(ui)],
                                  env={**os.environ, **spark_env()}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        cluster = cls(master, port, work)
        wait_until(lambda: b"I have been elected leader" in (work / "master.log").read_bytes()
                   or master.poll() is not None, 120, "the Spark master")
        if master.poll() is not None:
            raise RuntimeError((work / "master.log").read_text())
        return cluster

    def add_worker(self, cores: int) -> subprocess.Popen:
        n = len(self.workers)
        (ui,) = free_ports(1)
        log_path = self.work / f"worker{n}.log"
        log = open(log_path, "ab")
        worker = subprocess.Popen([_spark_class(), "org.apache.spark.deploy.worker.Worker", self.url, "--host",
                                   LOOPBACK, "--cores", str(cores), "--memory", "1g", "--webui-port", str(ui),
                                   "--work-dir", str(self.work / f"worker{n}")],
                                  env={**os.environ, **spark_env()}, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        self.workers.append(worker)
        wait_until(lambda: b"Successfully registered with master" in log_path.read_bytes()
                   or worker.poll() is not None, 120, "a Spark worker to register")
        if worker.poll() is not None:
            raise RuntimeError(log_path.read_text())
        return worker

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL a daemon's whole session: the worker, its executors and their Python workers."""
        for pid in session_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    def stop(self) -> list[int]:
        """Kill everything; return what is still alive after (should be nothing)."""
        for proc in [*self.workers, self.master]:
            self.kill(proc)
        deadline = time.monotonic() + 30
        left = [p for proc in [*self.workers, self.master] for p in session_pids(proc.pid)]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = [p for proc in [*self.workers, self.master] for p in session_pids(proc.pid)]
        return left
