"""Local processes: W worker slots, one fresh interpreter per trial.

Each trial runs under a supervisor process (``_child``) that owns the trial's whole process
tree: it is a child subreaper, so whatever the trial started (a training command, its
children, a daemon that left with ``setsid``) stays below it, and it kills all of it when the
trial ends, when the driver stops the trial, and when the driver dies, even by ``kill -9``
(the kernel's parent-death signal reaches the supervisor). Where the machine offers a
writable cgroup (v2), the trial also runs in a cgroup of its own, which the driver kills too
after the supervisor is gone (in case the supervisor itself was killed). Its stdout and stderr go to ``<trial_dir>/trial.log``. GPUs are handed
out per trial through ``CUDA_VISIBLE_DEVICES``; CPU threads through ``OMP_NUM_THREADS`` etc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from tunelab.executors._child import KILL_NOW
from tunelab.executors._preload import Preloader, modules_for
from tunelab.executors._running import (INTERRUPTED, KILL_GRACE_S, LOG_NAME, TIMEOUT, Running, RunningTrials,
                                        process_exit, stopped_end)
from tunelab.executors._tree import kill_cgroup, trial_cgroup
from tunelab.executors.base import TrialSpec, prepare_trial_dir, tail
from tunelab.executors.resources import GpuPool, cpus_per_trial as _cpus_for, visible_gpus
from tunelab.trial import Ended, Event, Result, State
from tunelab.worker import Resources


@dataclass
class _Running(Running):
    proc: subprocess.Popen = None  # type: ignore[assignment]
    conn: Connection = None  # type: ignore[assignment]
    gpus: tuple[int, ...] = ()
    ended: Ended | None = None
    log: Any = None
    closed: bool = field(default=False)


class LocalExecutor:
    def __init__(
        self,
        objective: Any,
        workers: int = 1,
        *,
        gpus_per_trial: float = 0.0,
        cpus_per_trial: int | None = None,
        gpus: list[int] | None = None,
        cwd: str | None = None,
        sys_path: list[str] | None = None,
        env: dict[str, str] | None = None,
        preload: bool = True,
    ) -> None:
        """``cwd``, ``sys_path`` and ``env`` (added to this process's environment): where trials
        run, what they import from and what they are told, when not only this process's (the
        Spark executor runs trials for a driver elsewhere)."""
        import cloudpickle

        self.workers = workers
        self.gpu_pool = GpuPool(list(gpus) if gpus is not None else (visible_gpus() if gpus_per_trial else []),
                                gpus_per_trial)
        self.cpus = _cpus_for(workers, cpus_per_trial)
        self._objective_bytes = cloudpickle.dumps(objective)
        self._running: RunningTrials[_Running] = RunningTrials(workers)
        self._pending: list[Event] = []
        self._cwd = cwd
        self._sys_path = list(sys_path or [])
        self._env = dict(env or {})
        self._preloader = Preloader(modules_for(objective)) if preload else None  # trials forked, not exec'd

    # ---- protocol ------------------------------------------------------------------------

    def capacity(self) -> int:
        return max(0, min(self._running.capacity(), self.gpu_pool.slots() - len(self._running)))

    def launch(self, spec: TrialSpec) -> int:
        gpus = self.gpu_pool.take()
        if gpus is None:
            raise RuntimeError("no GPU share is free; check capacity() before launch()")
        slot = self._running.slot_for(spec)
        prepare_trial_dir(spec)
        log = open(spec.trial_dir / LOG_NAME, "ab", buffering=0)
        driver_sock, child_sock = socket.socketpair()
        env = self._child_env(gpus)
        proc = self._preloader.spawn(child_sock.fileno(), log.fileno(), env) if self._preloader else None
        proc = proc or subprocess.Popen(
            [sys.executable, "-m", "tunelab.executors._child", str(child_sock.fileno()), str(os.getpid())],
            pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=self._cwd if self._cwd and os.path.isdir(self._cwd) else os.getcwd(), start_new_session=True,
        )
        child_sock.close()
        conn = Connection(driver_sock.detach())
        resources = Resources(cpus=self.cpus, gpus=gpus, gpu_fraction=self.gpu_pool.per_trial)
        conn.send(self._sys_path + [p for p in sys.path if p not in self._sys_path])
        conn.send_bytes(self._payload(spec, resources))
        self._running.add(_Running(spec, slot, time.monotonic(), proc=proc, conn=conn, gpus=gpus, log=log))
        return slot

    def _payload(self, spec: TrialSpec, resources: Resources) -> bytes:
        import pickle

        import cloudpickle

        # The objective was pickled once at construction; wrap it so it is not pickled per trial.
        return cloudpickle.dumps({"spec": spec, "resources": resources,
                                  "objective": _Preloaded(self._objective_bytes)}, protocol=pickle.HIGHEST_PROTOCOL)

    def _child_env(self, gpus: tuple[int, ...]) -> dict[str, str]:
        env = {**os.environ, **self._env}
        threads = str(self.cpus)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        if self.gpu_pool.per_trial > 0 or self.gpu_pool.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        return env

    def poll(self, timeout: float) -> list[Event]:
        self._enforce_deadlines()
        if not self._pending and self._running:
            conns = [r.conn for r in self._running if not r.closed]
            wait_s = self._running.wait_s(timeout)
            for conn in wait(conns, timeout=wait_s) if conns else []:
                self._read(conn)
            self._enforce_deadlines()
        elif not self._running and not self._pending:
            time.sleep(min(timeout, 0.05))
        events, self._pending = self._pending, []
        return events

    def connections(self) -> list[Connection]:
        """The open connections of running trials, for a caller that waits on them and on more
        (``multiprocessing.connection.wait``) before calling ``poll(0)``."""
        return [r.conn for r in self._running if not r.closed]

    def reply(self, trial_id: int, stop: bool) -> None:
        run = self._running.get(trial_id)
        if run is not None and not run.closed:
            try:
                run.conn.send(stop)
            except OSError:
                pass  # the trial died meanwhile; its end is reported by poll

    def stop(self, trial_id: int) -> None:
        run = self._running.get(trial_id)
        if run is not None and run.stop_kind is None:
            self._signal(run, signal.SIGTERM, INTERRUPTED)

    def shutdown(self) -> None:
        for run in self._running:
            self._signal(run, signal.SIGTERM, run.stop_kind or INTERRUPTED)
        deadline = time.monotonic() + KILL_GRACE_S
        for run in self._running:
            self._wait_or_kill(run, max(0.0, deadline - time.monotonic()))
            kill_cgroup(trial_cgroup(run.proc.pid))
            self._finish(run)
        if self._preloader is not None:
            self._preloader.close()

    # ---- internals -----------------------------------------------------------------------

    def _read(self, conn: Connection) -> None:
        run = next(r for r in self._running if r.conn is conn)
        try:
            while conn.poll():
                message = conn.recv()
                if message[0] == "result":
                    if run.stop_kind is None:
                        self._pending.append(Result(run.spec.trial_id, message[1], message[2]))
                    else:
                        conn.send(True)
                elif message[0] == "ended":
                    run.ended = message[1]
        except (EOFError, OSError):
            run.closed = True
            self._reap(run)

    def _reap(self, run: _Running) -> None:
        code = self._wait_or_kill(run, 10)
        kill_cgroup(trial_cgroup(run.proc.pid))  # left only when the supervisor itself was killed
        event = stopped_end(run, _last(run)) or run.ended
        if event is None:
            log_tail = tail(run.spec.trial_dir / LOG_NAME)
            event = Ended(run.spec.trial_id, State.FAILED, {}, "crash",
                          f"trial process {process_exit(code)}.\n{log_tail}".strip())
        self._pending.append(event)
        self._finish(run)

    def _finish(self, run: _Running) -> None:
        if self._running.pop(run.spec.trial_id) is None:
            return
        self.gpu_pool.give_back(run.gpus)
        try:
            run.conn.close()
        except OSError:
            pass
        if run.log is not None:
            run.log.close()

    def _enforce_deadlines(self) -> None:
        for run, what in self._running.due():
            if what == TIMEOUT:
                self._signal(run, signal.SIGKILL, TIMEOUT)
            else:
                self._tell(run, signal.SIGKILL)

    def _signal(self, run: _Running, sig: int, kind: str) -> None:
        run.stopping(kind, grace=sig != signal.SIGKILL)
        self._tell(run, sig)

    def _wait_or_kill(self, run: _Running, timeout: float) -> int:
        """The supervisor's exit status, once it and everything below it are gone."""
        try:
            return run.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._tell(run, signal.SIGKILL)  # the supervisor kills the trial's tree, then exits
        try:
            return run.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a supervisor that does not answer: its session at least
            try:
                os.killpg(run.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return run.proc.wait()

    @staticmethod
    def _tell(run: _Running, sig: int) -> None:
        """Tell the trial's supervisor: SIGTERM (passed on to the tree), SIGKILL (kill the tree now)."""
        if run.proc.returncode is not None:
            return
        try:
            os.kill(run.proc.pid, KILL_NOW if sig == signal.SIGKILL else sig)
        except (ProcessLookupError, PermissionError):
            pass


class _Preloaded:
    """An already pickled objective, unpickled in the trial process."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self):  # type: ignore[no-untyped-def]
        import pickle

        return (pickle.loads, (self.data,))


def _last(run: _Running) -> dict[str, float]:
    return dict(run.ended.metrics) if run.ended is not None else {}
