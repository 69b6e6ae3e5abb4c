"""What every process-running executor (local, Ray, Spark) keeps about its running trials.

The record of a running trial, its time limit and the grace before a stopped trial is
killed, which worker slot a trial takes, and how a trial the driver ended (time limit, the
tuner's stop) is reported. Executors differ only in how they start, signal and reap a trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Generic, Iterator, Mapping, TypeVar

from tunelab.executors.base import TrialSpec
from tunelab.trial import Ended, State

#: The trial's stdout and stderr, in its trial directory (written where the trial runs).
LOG_NAME = "trial.log"
#: How long a trial stopped with SIGTERM (or its backend's equivalent) has before it is killed.
KILL_GRACE_S = 3.0

TIMEOUT = "timeout"
INTERRUPTED = "interrupted"


@dataclass
class Running:
    """A trial an executor started and has not reported ended yet."""

    spec: TrialSpec
    slot: int
    #: When the time limit starts counting: at launch, or when the trial's process is up (a
    #: cluster may queue it first; see ``begun``).
    started: float
    #: Set when the driver ended the trial (``timeout`` or ``interrupted``): that is how it ends.
    stop_kind: str | None = None
    #: When a trial stopped gently is killed.
    kill_at: float | None = None
    #: False while the trial waits in a cluster's queue: its time limit has not started.
    begun: bool = True

    def begin(self) -> None:
        """The trial's process is up: its time limit counts from now."""
        self.begun = True
        self.started = time.monotonic()

    def stopping(self, kind: str, *, grace: bool) -> None:
        """The driver ends this trial as ``kind``; with ``grace`` it is killed after ``KILL_GRACE_S``."""
        self.stop_kind = kind
        self.kill_at = time.monotonic() + KILL_GRACE_S if grace else None

    def overdue(self, now: float) -> bool:
        timeout = self.spec.timeout
        return bool(timeout) and self.begun and self.stop_kind is None and now >= self.started + timeout  # type: ignore[operator]

    def deadlines(self, now: float) -> list[float]:
        """Seconds until this trial's next deadline (its time limit, its kill after a grace)."""
        out = []
        if self.spec.timeout and self.begun and self.stop_kind is None:
            out.append(self.started + self.spec.timeout - now)
        if self.kill_at is not None:
            out.append(self.kill_at - now)
        return out


R = TypeVar("R", bound=Running)


class RunningTrials(Generic[R]):
    """The running trials of one executor, by trial id, with their slots and deadlines."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._runs: dict[int, R] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[R]:
        return iter(list(self._runs.values()))

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._runs

    def get(self, trial_id: int) -> R | None:
        return self._runs.get(trial_id)

    def add(self, run: R) -> None:
        self._runs[run.spec.trial_id] = run

    def pop(self, trial_id: int) -> R | None:
        return self._runs.pop(trial_id, None)

    def clear(self) -> None:
        self._runs.clear()

    def capacity(self) -> int:
        return max(0, self.workers - len(self._runs))

    def slot_for(self, spec: TrialSpec) -> int:
        """The slot the tuner chose, else the lowest free one."""
        if spec.slot is not None:
            return spec.slot
        return min(set(range(self.workers)) - {r.slot for r in self._runs.values()})

    def wait_s(self, timeout: float) -> float:
        """How long a poll may wait: ``timeout``, or less when a deadline comes first."""
        now = time.monotonic()
        return max(0.0, min([timeout] + [d for r in self._runs.values() for d in r.deadlines(now)]))

    def due(self) -> Iterator[tuple[R, str]]:
        """Trials whose deadline passed: ``(run, "timeout")`` for a time limit (kill it now and
        end it as ``timeout``), ``(run, "kill")`` when a stopped trial's grace is over."""
        now = time.monotonic()
        for run in list(self._runs.values()):
            if run.overdue(now):
                yield run, TIMEOUT
            elif run.kill_at is not None and now >= run.kill_at:
                run.kill_at = None
                yield run, "kill"


def stopped_end(run: Running, metrics: Mapping[str, float]) -> Ended | None:
    """How a trial the driver ended is reported (its last metrics kept); None if it was not."""
    trial_id = run.spec.trial_id
    if run.stop_kind == TIMEOUT:
        return Ended(trial_id, State.FAILED, dict(metrics), TIMEOUT,
                     f"trial exceeded its time limit of {run.spec.timeout:g} s")
    if run.stop_kind == INTERRUPTED:
        return Ended(trial_id, State.FAILED, dict(metrics), INTERRUPTED, "stopped by the tuner")
    return None


def process_exit(code: int) -> str:
    """``exited with code 3`` / ``was killed by signal 9 (...)``: how a trial process ended."""
    import signal

    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    if code == -signal.SIGKILL:
        how += " (the kernel's out-of-memory killer does this when RAM runs out)"
    return how
