"""A Spark cluster as the executor: each trial is one Spark task, in a job group of its own.

- **Where.** ``master``: ``local[N]``, ``spark://HOST:7077`` (or any master URL Spark takes),
  or ``None`` for the active SparkSession (a Databricks notebook's ``spark``), else a new
  ``local[workers]``. A session tunelab starts is stopped at the end; an active one is left
  as it was. A local master listens on 127.0.0.1 only, without the Spark UI.
- **One job per trial.** A driver thread per trial sets the trial's job group
  (``setJobGroup(..., interruptOnCancel=True)``) and runs a one-partition job; cancelling the
  group (stop after a grace, time limit, shutdown) kills the task's Python worker. Spark never
  retries a trial behind the tuner's back: a session tunelab starts has
  ``spark.task.maxFailures=1``, and a retried attempt on another session runs nothing and
  ends the trial ``interrupted`` (the tuner re-queues an interrupted config once).
- **A fresh process per trial.** The task's Python worker only relays; the trial runs in a
  new interpreter under the local executor's supervisor (``_spark_task``), so a crash or an
  OOM kill never takes the worker down and every process the trial started ends with it.
  Python workers are therefore left reusable (``spark.python.worker.reuse``, Spark's
  default): reuse saves a fork per task and keeps broadcast values cached in the worker,
  and nothing of a trial lives in it.
- **Reports and decisions** travel through the driver's mailbox (``_spark_mailbox``): a
  server on the driver's address, authenticated with a random per-study token.
- **The objective travels once per executor**: pickled once, sent with ``sc.broadcast``
  (Spark copies a broadcast to each executor once, and reused Python workers keep it); each
  task carries only a reference.
- **Failures have kinds.** What the objective raised is classified in the trial, as locally;
  a task that fails because its executor was lost (worker or node gone) ends ``interrupted``;
  another Spark failure of the task is ``crash`` with Spark's message.
"""

from __future__ import annotations

import contextlib
import os
import queue
import secrets
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tunelab.errors import ConfigError, require
from tunelab.executors._running import INTERRUPTED, LOG_NAME, TIMEOUT, Running, RunningTrials, stopped_end
from tunelab.executors.base import TrialSpec, prepare_trial_dir, tail
from tunelab.trial import Ended, Event, Result, State

_LOOPBACK = "127.0.0.1"
#: Spark's words for a task that failed because its executor, worker or node went away.
_LOST = ("ExecutorLostFailure", "executor lost", "Worker lost", "worker lost", "Executor heartbeat timed out",
         "decommission", "Remote RPC client disassociated", "Connection reset")


@dataclass
class _Running(Running):
    group: str = ""
    thread: threading.Thread | None = None
    conn: Any = None  # the trial's mailbox connection, once its task started
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the last report
    cancelled: bool = False


class SparkExecutor:
    """Run trials as Spark tasks; ``workers`` caps how many run at once."""

    def __init__(
        self,
        objective: Any,
        workers: int = 1,
        *,
        master: str | None = None,
        cpus_per_trial: int | None = None,
        gpus_per_trial: float = 0.0,
    ) -> None:
        import cloudpickle

        require("pyspark", "spark")
        self.workers = workers
        self.cpus = int(cpus_per_trial or 1)
        self.gpus = float(gpus_per_trial or 0.0)
        self._session, self._owns = _session(master, workers, cpus_per_trial, self.gpus)
        sc = self._session.sparkContext
        self._sc = sc
        try:
            self._profile = None if self._owns else _profile(cpus_per_trial, self.gpus)
            host = _LOOPBACK if sc.master.startswith("local") else sc.getConf().get("spark.driver.host", _LOOPBACK)
            self._inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
            from tunelab.executors._spark_mailbox import Mailbox

            self._mailbox = Mailbox(host, self._inbox)
            self._objective = sc.broadcast(cloudpickle.dumps(objective))
            self._files_dir = tempfile.mkdtemp(prefix="tunelab-spark-files-")
            self._files = ship_token_caches(sc, objective, Path(self._files_dir))
        except BaseException:
            if hasattr(self, "_mailbox"):
                self._mailbox.close()
            self._stop_session()
            raise
        self._prefix = f"tunelab-{secrets.token_hex(6)}"  # the study's job groups (not the token: groups are shown)
        self._running: RunningTrials[_Running] = RunningTrials(workers)
        self._pending: list[Event] = []
        #: What each trial's task said when it started: pid, host, executor, attempt.
        self.started: dict[int, dict[str, Any]] = {}

    # ---- protocol ------------------------------------------------------------------------

    def capacity(self) -> int:
        return self._running.capacity()

    def launch(self, spec: TrialSpec) -> int:
        slot = self._running.slot_for(spec)
        prepare_trial_dir(spec)
        run = _Running(spec, slot, time.monotonic(), begun=False, group=f"{self._prefix}-{spec.trial_id}")
        run.thread = threading.Thread(target=self._job, args=(spec, run.group), daemon=True,
                                      name=f"tunelab-spark-trial-{spec.trial_id}")
        self._running.add(run)
        run.thread.start()
        return slot

    def poll(self, timeout: float) -> list[Event]:
        self._enforce_deadlines()
        if not self._pending and self._running:
            try:
                self._handle(self._inbox.get(timeout=self._running.wait_s(timeout)))
                while True:
                    self._handle(self._inbox.get_nowait())
            except queue.Empty:
                pass
            self._enforce_deadlines()
        elif not self._running and not self._pending:
            time.sleep(min(timeout, 0.05))
        events, self._pending = self._pending, []
        return events

    def reply(self, trial_id: int, stop: bool) -> None:
        run = self._running.get(trial_id)
        if run is not None:
            self._send(run, ("decide", bool(stop)))

    def stop(self, trial_id: int) -> None:
        run = self._running.get(trial_id)
        if run is not None and run.stop_kind is None:
            self._stop(run, INTERRUPTED)

    def shutdown(self) -> None:
        try:
            for run in self._running:
                self._stop(run, run.stop_kind or INTERRUPTED)
            deadline = time.monotonic() + 2 * _grace()
            while self._running and time.monotonic() < deadline:
                self.poll(0.2)  # trials that end by themselves within the grace
            for run in self._running:
                self._cancel(run)
            for run in self._running:
                if run.thread is not None:
                    run.thread.join(timeout=60)  # Spark confirms the job is gone
            self._running.clear()
        finally:
            self._mailbox.close()
            with contextlib.suppress(Exception):
                self._objective.destroy()
            self._stop_session()
            shutil.rmtree(getattr(self, "_files_dir", ""), ignore_errors=True)

    # ---- internals -----------------------------------------------------------------------

    def _job(self, spec: TrialSpec, group: str) -> None:
        """A driver thread: the trial's one-partition job, in the trial's job group."""
        from tunelab.executors._spark_task import driver_env, trial_task

        sc = self._sc
        try:
            sc.setJobGroup(group, f"tunelab trial {spec.trial_id}", interruptOnCancel=True)
            rdd = sc.parallelize([0], 1)
            if self._profile is not None:
                rdd = rdd.withResources(self._profile)
            task = trial_task(self._objective, spec, self._mailbox.address, self._mailbox.token, self.cpus, self.gpus,
                              list(sys.path), os.getcwd(), self._files, driver_env())
            out = rdd.mapPartitions(task).collect()
            self._inbox.put(("done", spec.trial_id, out[0] if out else None))
        except BaseException as exc:  # noqa: BLE001 - reported as the trial's end
            self._inbox.put(("failed", spec.trial_id, exc))

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, trial_id = message[0], message[1]
        run = self._running.get(trial_id)
        if kind == "started":
            info, conn = message[2], message[3]
            self.started[trial_id] = dict(info)
            if run is None:
                from tunelab.executors._spark_mailbox import hang_up

                hang_up(conn)  # a trial that is gone already
                return
            run.conn, run.info = conn, dict(info)
            run.begin()  # the time limit counts from here, not from Spark's queue
            if run.stop_kind is not None:
                self._send(run, ("stop",))
        elif kind == "result":
            if run is None or run.stop_kind is not None:
                if run is not None:
                    self._send(run, ("decide", True))  # it is being stopped anyway
                return
            run.metrics = dict(message[3])
            self._pending.append(Result(trial_id, message[2], message[3]))
        elif kind in ("done", "failed") and run is not None:
            self._reap(run, message[2] if kind == "done" else None, message[2] if kind == "failed" else None)

    def _reap(self, run: _Running, value: Any, error: BaseException | None) -> None:
        from tunelab.executors._spark_mailbox import hang_up

        self._running.pop(run.spec.trial_id)
        if run.conn is not None:
            hang_up(run.conn)
        event = stopped_end(run, value.metrics if isinstance(value, Ended) else run.metrics)
        if event is None:
            event = value if isinstance(value, Ended) else self._failure(run, value, error)
        self._pending.append(event)

    def _failure(self, run: _Running, value: Any, error: BaseException | None) -> Ended:
        trial_id = run.spec.trial_id
        info = run.info or (value[1] if isinstance(value, tuple) and len(value) > 1 else {})
        where = f" on {info['host']}, pid {info['pid']}" if info.get("host") else ""
        if isinstance(value, tuple) and value and value[0] == "retry":
            return Ended(trial_id, State.FAILED, {}, INTERRUPTED,
                         f"Spark ran this trial's task again{where} after its first attempt failed (its executor "
                         "was probably lost); the tuner, not Spark, re-runs a trial")
        text = _spark_message(error) if error is not None else f"the trial's task returned {value!r}"
        first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
        if any(word in text for word in _LOST):
            return Ended(trial_id, State.FAILED, {}, INTERRUPTED,
                         f"the Spark executor running this trial was lost{where}: {first}")
        log_tail = tail(run.spec.trial_dir / LOG_NAME)
        return Ended(trial_id, State.FAILED, {}, "crash",
                     f"the trial's Spark task failed{where}: {first}\n{log_tail}".strip())

    def _send(self, run: _Running, message: tuple[Any, ...]) -> None:
        if run.conn is None:
            return
        try:
            run.conn.send(message)
        except OSError:
            pass  # the task ended meanwhile; its end comes through poll

    def _stop(self, run: _Running, kind: str) -> None:
        """Ask the trial to stop (SIGTERM in its process); cancel its job after the grace."""
        run.stopping(kind, grace=True)
        if run.conn is None:
            self._cancel(run)  # still waiting for a place: nothing to stop gently
        else:
            self._send(run, ("stop",))

    def _cancel(self, run: _Running) -> None:
        if not run.cancelled:
            run.cancelled = True
            with contextlib.suppress(Exception):
                self._sc.cancelJobGroup(run.group)

    def _enforce_deadlines(self) -> None:
        for run, what in self._running.due():
            if what == TIMEOUT:
                # The trial's own supervisor kills it at its time limit too; this is the backstop.
                self._stop(run, TIMEOUT)
            else:
                self._cancel(run)

    def _stop_session(self) -> None:
        if self._owns:
            self._owns = False
            self._session.stop()


def _grace() -> float:
    from tunelab.executors._running import KILL_GRACE_S

    return KILL_GRACE_S


def _spark_message(error: BaseException) -> str:
    """The useful part of a Spark job failure (the Java exception's message, not py4j's frame)."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        with contextlib.suppress(Exception):
            return str(java.getMessage())
    desc = getattr(error, "desc", None) or getattr(error, "getMessage", lambda: None)()
    return str(desc or error)


# ---- set-up ------------------------------------------------------------------------------------


def ship_token_caches(sc: Any, objective: Any, directory: Path) -> dict[int, str]:
    """Send the objective's token cache to every executor once: ``max_length -> file name``.

    Each cache entry (a directory of Arrow files, built by ``prepare()`` in the driver) becomes
    one uncompressed tar given to ``sc.addFile``: an executor fetches a file once and keeps it
    for every later task, and the first task there unpacks it next to it (``_spark_task``). The
    trials then read that copy instead of the cache directory, which needs no shared path.
    """
    caches = getattr(objective, "token_caches", None)
    if not callable(caches):
        return {}
    files = {}
    for length, entry in caches().items():
        name = f"tunelab-tokens-{entry.name}.tar"  # the entry's name is a hash of what it holds
        with tarfile.open(directory / name, "w") as tar:
            tar.add(entry, arcname=entry.name)
        sc.addFile(str(directory / name))
        files[int(length)] = name
    return files


def local_master(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def _session(master: str | None, workers: int, cpus_per_trial: int | None, gpus: float) -> tuple[Any, bool]:
    """The SparkSession to use and whether tunelab started it (and so stops it)."""
    with warnings.catch_warnings():  # pyspark warns about pandas versions it does not know
        warnings.simplefilter("ignore", FutureWarning)
        return _start_session(master, workers, cpus_per_trial, gpus)


def _start_session(master: str | None, workers: int, cpus_per_trial: int | None, gpus: float) -> tuple[Any, bool]:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and (master is None or active.sparkContext.master == master):
        return active, False
    if active is not None:
        raise ConfigError("execution.master", f"is {master!r}, but this process already has a SparkSession on "
                          f"{active.sparkContext.master!r} (Spark allows one per process).",
                          "leave `master` out to use the active session, or stop it first (spark.stop()).")
    import shutil

    if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
        raise ConfigError("execution.backend", "is `spark`, but this machine has no Java (no `java` on PATH, no "
                          "JAVA_HOME); pyspark starts Spark's JVM with it.",
                          "install Java 17 or later (e.g. apt-get install openjdk-17-jre-headless).")
    cpus = int(cpus_per_trial or 1)
    target = master or f"local[{workers * cpus}]"
    if gpus and local_master(target):
        raise ConfigError("execution.gpus_per_trial", f"is {gpus:g}, but a local Spark master schedules no GPUs.",
                          "use `backend: local` (it hands out GPUs itself), or a Spark cluster whose executors "
                          "have GPUs.")
    builder = (SparkSession.builder.master(target).appName("tunelab")
               .config("spark.task.maxFailures", "1")  # the tuner re-runs an interrupted trial, not Spark
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.python.worker.reuse", "true"))
    if cpus_per_trial:
        builder = builder.config("spark.task.cpus", str(cpus))
    if gpus:
        builder = builder.config("spark.task.resource.gpu.amount", f"{gpus:g}")
    with _local_env(target):
        if local_master(target):
            builder = (builder.config("spark.ui.enabled", "false")
                       .config("spark.driver.host", _LOOPBACK).config("spark.driver.bindAddress", _LOOPBACK))
            if "PYSPARK_PYTHON" not in os.environ:  # the workers run this interpreter, not `python3` on PATH
                builder = builder.config("spark.pyspark.python", sys.executable)
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # noqa: BLE001 - no Java, a master that does not answer, ...
            raise ConfigError("execution.master", f"cannot start a Spark session on {target!r}: "
                              f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                              "check the master URL (local[N], spark://HOST:7077) and that Java 17+ is installed "
                              "(pyspark needs it).") from None
    session.sparkContext.setLogLevel("ERROR")
    return session, True


@contextlib.contextmanager
def _local_env(master: str) -> Iterator[None]:
    """SPARK_LOCAL_IP=127.0.0.1 while a local master's JVM starts: every server it opens binds
    to the loopback (the JVM reads it at launch)."""
    if not local_master(master) or "SPARK_LOCAL_IP" in os.environ:
        yield
        return
    os.environ["SPARK_LOCAL_IP"] = _LOOPBACK
    try:
        yield
    finally:
        os.environ.pop("SPARK_LOCAL_IP", None)


def _profile(cpus_per_trial: int | None, gpus: float) -> Any:
    """A task resource profile for a session tunelab did not start (its ``spark.task.cpus`` is
    the session's): only when the study asks for resources."""
    if not cpus_per_trial and not gpus:
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    requests = TaskResourceRequests()
    if cpus_per_trial:
        requests = requests.cpus(int(cpus_per_trial))
    if gpus:
        requests = requests.resource("gpu", gpus)
    builder = ResourceProfileBuilder()
    ask = builder.require  # (named apart from tunelab's `require`, which tests/unit/test_packaging.py scans for)
    return ask(requests).build
