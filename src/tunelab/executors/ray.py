"""A Ray cluster as the executor: each trial is one Ray task in a process of its own.

- **Resources through Ray.** The task asks for ``num_cpus=cpus_per_trial`` and
  ``num_gpus=gpus_per_trial`` (fractions pack several trials on one GPU; Ray sets
  ``CUDA_VISIBLE_DEVICES``). ``workers`` caps how many trials run at once; a trial that does
  not fit yet waits in Ray's queue, and its time limit starts when it starts.
- **A fresh process per trial.** ``max_calls=1``: the worker process exits after its trial, so
  memory and GPU memory go back and nothing leaks into the next trial. ``max_retries=0``: Ray
  never re-runs a trial behind the tuner's back (the tuner re-queues interrupted ones once).
- **Results stream back, decisions go out.** The trial sends each report to the driver's
  mailbox actor (``_ray_mailbox``) and waits; the driver takes results from it as they arrive
  and posts the scheduler's decision, which ``report()`` turns into ``TrialPruned``.
- **The objective goes to the cluster once.** It is pickled once and put in Ray's object
  store; every trial gets a reference, and Ray copies the bytes to a node once (later trials
  there read the node's copy). Large objects the objective holds travel the same way.
- **Failures have kinds.** What the objective raised is classified in the trial, exactly as
  locally (``_run_trial``). A worker process that dies is ``crash``; one Ray's memory monitor
  killed is ``oom``; a lost node is ``interrupted`` (the config runs again once).
- **Logs and checkpoints** are written under the trial directory on the node that ran the
  trial; make ``execution.trial_dir`` a path every node and the driver share (NFS, ...) so the
  driver can keep, export and show them. ``tunelab logs`` fetches a log through Ray otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from tunelab.errors import ConfigError, TunelabError, require
from tunelab.executors._running import INTERRUPTED, LOG_NAME, TIMEOUT, Running, RunningTrials, stopped_end
from tunelab.executors.base import TrialSpec, prepare_trial_dir, tail
from tunelab.trial import Ended, Event, Result, State

CONNECT_TIMEOUT_S = 30.0
#: For the processes of a local instance tunelab starts (and only while it starts them):
#: Ray's single-machine mode, where every server binds to 127.0.0.1, and no usage statistics
#: (whose collector also probes the cloud metadata addresses).
_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class _Running(Running):
    ref: Any = None  # the task's ObjectRef: resolves to the trial's Ended
    info: dict[str, Any] = field(default_factory=dict)  # pid, node, load time: sent when it starts


class RayExecutor:
    """Run trials as Ray tasks on the cluster at ``address``.

    ``address``: ``None`` (Ray's default: ``RAY_ADDRESS``, else a cluster started on this
    machine with ``ray start``, else a new local instance), ``"auto"`` (an existing cluster,
    or an error), ``"local"`` (a new local instance), ``"ray://HOST:10001"`` (Ray Client) or
    ``"HOST:6379"``. When this process is already connected (``ray.init`` was called), that
    connection is used and left open. A cluster that cannot be reached within
    ``connect_timeout`` seconds is a ``ConfigError`` naming ``execution.address``.

    A local instance that tunelab starts listens on 127.0.0.1 only, without dashboard and
    usage statistics (so no cloud metadata probe either): see docs/cluster.md.
    """

    def __init__(
        self,
        objective: Any,
        workers: int = 1,
        *,
        address: str | None = None,
        gpus_per_trial: float = 0.0,
        cpus_per_trial: int | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> None:
        import cloudpickle

        ray = require("ray", "ray")
        self.workers = workers
        self.cpus = int(cpus_per_trial or 1)
        self.gpus = float(gpus_per_trial or 0.0)
        self._ray = ray
        self._owns_ray = False
        # A local instance's settings stay in this process's environment while it runs: Ray's
        # raylet starts its agents later, from what the driver process holds then.
        self._local_env = contextlib.ExitStack()
        if not ray.is_initialized():
            _connect(ray, address, connect_timeout, self._local_env)
            self._owns_ray = True
        try:
            _check_fits(ray, self.cpus, self.gpus)
            self._objective_ref = ray.put(cloudpickle.dumps(objective))
            self._mailbox = _start_mailbox(ray)
        except BaseException:
            self._disconnect()
            raise
        from tunelab.executors._ray_trial import run_trial

        options: dict[str, Any] = {"num_cpus": self.cpus, "max_calls": 1, "max_retries": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        self._task = ray.remote(**options)(run_trial)
        self._running: RunningTrials[_Running] = RunningTrials(workers)
        self._pending: list[Event] = []
        self._take: Any = None  # the outstanding mailbox.take() call
        #: What each trial's process said when it started, by trial: pid, host, ip, node_id and
        #: load_s (seconds spent getting the objective: object-store fetch and unpickle).
        self.started: dict[int, dict[str, Any]] = {}

    # ---- protocol ------------------------------------------------------------------------

    def capacity(self) -> int:
        return self._running.capacity()

    def launch(self, spec: TrialSpec) -> int:
        slot = self._running.slot_for(spec)
        prepare_trial_dir(spec)
        ref = self._task.remote([self._objective_ref], spec, self.cpus, self.gpus, list(sys.path), os.getcwd(),
                                self._mailbox)
        # Its time limit starts when its process is up (``begun``), not while Ray queues it.
        self._running.add(_Running(spec, slot, time.monotonic(), begun=False, ref=ref))
        return slot

    def poll(self, timeout: float) -> list[Event]:
        ray = self._ray
        self._enforce_deadlines()
        if not self._pending and self._running:
            wait_s = self._running.wait_s(timeout)
            if self._take is None:
                self._take = self._mailbox.take.remote(wait_s)
            refs = [r.ref for r in self._running]
            ray.wait([self._take, *refs], num_returns=1, timeout=wait_s)
            if ray.wait([self._take], timeout=0)[0]:
                self._read(self._get(self._take))
                self._take = None
            done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
            if done:
                # A trial that died while its last result was on the way: that result first.
                self._read(self._get(self._mailbox.take.remote(0.0)))
                for run in [r for r in self._running if r.ref in done]:
                    self._reap(run)
            self._enforce_deadlines()
        elif not self._running and not self._pending:
            time.sleep(min(timeout, 0.05))
        events, self._pending = self._pending, []
        return events

    def reply(self, trial_id: int, stop: bool) -> None:
        if trial_id in self._running:
            self._mailbox.decide.remote(trial_id, bool(stop))

    def stop(self, trial_id: int) -> None:
        run = self._running.get(trial_id)
        if run is not None and run.stop_kind is None:
            self._cancel(run, INTERRUPTED, force=False)

    def shutdown(self) -> None:
        ray = self._ray
        try:
            for run in self._running:
                self._cancel(run, run.stop_kind or INTERRUPTED, force=True)
            refs = [r.ref for r in self._running]
            if refs:  # wait until Ray confirms every trial process is gone
                ray.wait(refs, num_returns=len(refs), timeout=15)
            self._running.clear()
            try:
                ray.kill(self._mailbox)
            except Exception:  # noqa: BLE001 - the cluster may already be gone
                pass
        finally:
            self._disconnect()

    # ---- internals -----------------------------------------------------------------------

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:
            raise TunelabError(f"the driver's mailbox actor on the Ray cluster died ({exc}); "
                               "run the same command again to resume the study") from None

    def _read(self, messages: list[tuple[Any, ...]]) -> None:
        for message in messages:
            run = self._running.get(message[1])
            if message[0] == "started":
                self.started[message[1]] = dict(message[2])
                if run is not None:
                    run.info = dict(message[2])
                    run.begin()  # the time limit counts from here, not from the queue
            elif message[0] == "result":
                if run is None or run.stop_kind is not None:
                    self._mailbox.decide.remote(message[1], True)  # it is being stopped anyway
                else:
                    self._pending.append(Result(message[1], message[2], message[3]))

    def _reap(self, run: _Running) -> None:
        ray = self._ray
        trial_id = run.spec.trial_id
        self._running.pop(trial_id)
        event: Ended
        try:
            event = ray.get(run.ref)
        except ray.exceptions.RayError as exc:
            event = self._failure(run, exc)
        else:
            self._mailbox.forget.remote(trial_id)
        self._pending.append(stopped_end(run, event.metrics) or event)

    def _failure(self, run: _Running, exc: BaseException) -> Ended:
        """How a trial whose task did not return ended (it never raises: see ``_run_trial``)."""
        ex = self._ray.exceptions
        trial_id = run.spec.trial_id
        self._mailbox.forget.remote(trial_id)
        where = f" on {run.info['host']} ({run.info['ip']}), pid {run.info['pid']}" if run.info else ""
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ex.NodeDiedError):
            return Ended(trial_id, State.FAILED, {}, "interrupted",
                         f"the Ray node running this trial was lost{where}: {first_line}")
        if isinstance(exc, ex.TaskCancelledError):
            return Ended(trial_id, State.FAILED, {}, "interrupted", "stopped by the tuner")
        log_tail = tail(run.spec.trial_dir / LOG_NAME)
        if isinstance(exc, ex.OutOfMemoryError):
            return Ended(trial_id, State.FAILED, {}, "oom",
                         f"Ray's memory monitor killed the trial process{where}: {first_line}\n{log_tail}".strip())
        if isinstance(exc, ex.WorkerCrashedError):
            message = (f"trial process{where} died (a signal such as SIGKILL from the kernel's out-of-memory "
                       f"killer, os._exit, or a crash in native code)")
        else:
            message = f"the trial's Ray task failed{where}: {type(exc).__name__}: {first_line}"
        return Ended(trial_id, State.FAILED, {}, "crash", f"{message}.\n{log_tail}".strip())

    def _cancel(self, run: _Running, kind: str, *, force: bool) -> None:
        run.stopping(kind, grace=not force)
        try:
            # Not forced: KeyboardInterrupt in the trial, so its `finally:` blocks run; forced after a grace.
            self._ray.cancel(run.ref, force=force)
        except Exception:  # noqa: BLE001 - the task finished meanwhile
            pass

    def _enforce_deadlines(self) -> None:
        for run, what in self._running.due():
            self._cancel(run, TIMEOUT if what == TIMEOUT else run.stop_kind or INTERRUPTED, force=True)

    def _disconnect(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            try:
                self._ray.shutdown()
            finally:
                self._local_env.close()


# ---- set-up ------------------------------------------------------------------------------------


def _connect(ray: Any, address: str | None, timeout: float, local_env: contextlib.ExitStack) -> None:
    target = _bootstrap(ray, address)
    if target is None:
        _start_local(ray, local_env)
        return
    host, _, port = target.rpartition(":")
    try:  # Ray itself retries an unreachable address for minutes
        socket.create_connection((host.strip("[]"), int(port)), timeout=max(1.0, min(timeout, 10.0))).close()
    except (OSError, ValueError) as exc:
        raise ConfigError("execution.address", f"cannot reach a Ray cluster at {address or target!r} "
                          f"({type(exc).__name__}: {exc}).", _ADDRESS_FIX) from None
    # Bound Ray's own retries too, for a port that answers but is no Ray: each try waits about
    # 40 s for the GCS (Ray's default is 20 tries).
    wait = {"RAY_gcs_server_port_wait_time_s": str(max(1, int(timeout // 40)))}
    try:
        with _environ({} if "RAY_gcs_server_port_wait_time_s" in os.environ else wait):
            # Trial output goes to trial.log, not to the driver's terminal.
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError("execution.address", f"cannot connect to a Ray cluster at {address or target!r}: {exc}",
                          _ADDRESS_FIX) from None


_ADDRESS_FIX = ("start one with `ray start --head` (see docs/cluster.md), or check the address "
                "(HOST:6379, ray://HOST:10001 or auto).")


def _bootstrap(ray: Any, address: str | None) -> str | None:
    """``HOST:PORT`` to reach for ``address``, or ``None`` when Ray would start a local instance."""
    if address == "local":
        return None
    given = address if address not in (None, "auto") else (os.environ.get("RAY_ADDRESS") or address)
    if given not in (None, "auto"):
        return given[len("ray://"):] if given.startswith("ray://") else given
    try:  # what Ray reads: the cluster that `ray start` recorded on this machine, if any
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # another Ray: let ray.init decide (and start locally on its own terms)
        return None
    try:
        return canonicalize_bootstrap_address(given)
    except (ConnectionError, ValueError) as exc:
        raise ConfigError("execution.address", f"is {address!r}: {exc}", _ADDRESS_FIX) from None


def _start_local(ray: Any, local_env: contextlib.ExitStack) -> None:
    """A local instance on 127.0.0.1: no dashboard, no usage statistics, no cloud probes.

    ``local_env`` keeps the switches in this process's environment until the executor lets the
    instance go (every Ray process, also those started later, inherits them), then removes them.
    """
    constants = sys.modules.get("ray._private.ray_constants")
    was = getattr(constants, "ENABLE_RAY_CLUSTER", None)
    try:
        if was is not None:  # read once when Ray was imported: the driver's side of the same switch
            constants.ENABLE_RAY_CLUSTER = False  # type: ignore[union-attr]
        local_env.enter_context(_environ(_LOCAL_ENV))
        try:
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        except BaseException:
            local_env.close()
            raise
    finally:
        if was is not None:
            constants.ENABLE_RAY_CLUSTER = was  # type: ignore[union-attr]


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_fits(ray: Any, cpus: int, gpus: float) -> None:
    """A trial that no node can hold would wait forever: say so before any trial runs."""
    if gpus > 1 and not float(gpus).is_integer():
        raise ConfigError("execution.gpus_per_trial", f"is {gpus:g}; above 1 it must be whole.",
                          "use 0.25, 0.5, 1, 2, ...")
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not nodes:
        return  # Ray Client may not list nodes; Ray will report an infeasible task itself
    if gpus and not any(r.get("GPU", 0) >= gpus for r in nodes):
        most = max((r.get("GPU", 0) for r in nodes), default=0)
        raise ConfigError("execution.gpus_per_trial", f"is {gpus:g}, but no node of the Ray cluster has that many "
                          f"GPUs (the most on one node: {most:g}).",
                          "use a fraction like 0.5 to share a GPU, 0 to train on CPUs, or add GPU nodes.")
    if not any(r.get("CPU", 0) >= cpus for r in nodes):
        most = max((r.get("CPU", 0) for r in nodes), default=0)
        raise ConfigError("execution.cpus_per_trial", f"is {cpus}, but no node of the Ray cluster has that many "
                          f"CPUs (the most on one node: {most:g}).", f"use at most {int(most)}.")


def _start_mailbox(ray: Any) -> Any:
    """The mailbox actor, on the driver's node: short round trips, and it lives exactly as long as
    the driver can (a mailbox on another node would fail with that node)."""
    from tunelab.executors._ray_mailbox import Mailbox

    options: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 10_000, "max_restarts": 0}
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=False)
    except Exception:  # noqa: BLE001 - Ray Client: let Ray place it
        pass
    return ray.remote(Mailbox).options(**options).remote()
