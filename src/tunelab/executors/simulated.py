"""Trials as learning curves on a simulated clock (Syne Tune's simulator backend, in small).

``SimulatedExecutor`` keeps the ``Executor`` protocol with no process, thread or sleep: a
trial is a function ``curve(config, step) -> metrics`` read at ``steps``, each step taking
``step_seconds(trial_id, config)`` simulated seconds. ``poll`` moves the ``SimulatedClock`` to
the next event and returns it; the trial then waits for ``reply`` like a real one, so pruning,
stops, timeouts and clones go through the real ``Tuner``. A clone (``TrialSpec.start_step``)
reports only the steps after the one it continues from. Everything is deterministic: equal
times are broken by launch order. Give the ``Tuner`` the same clock (``clock=``) so that time
budgets and ETAs read simulated seconds.

Example:
    >>> clock = SimulatedClock()
    >>> ex = SimulatedExecutor(lambda c, s: {"score": c["a"] * s}, steps=(1, 2), clock=clock)
    >>> ex.launch(TrialSpec(0, {"a": 0.5}, Path("unused")))
    0
    >>> ex.poll(1.0), clock()
    ([Result(trial_id=0, step=1, metrics={'score': 0.5})], 1.0)
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tunelab.executors.base import TrialSpec
from tunelab.trial import Ended, Event, Result, State

Curve = Callable[[Mapping[str, Any], float], Mapping[str, float]]
StepSeconds = Callable[[int, Mapping[str, Any]], float]


class SimulatedClock:
    """Seconds that pass only when told; call it like ``time.monotonic``."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance_to(self, when: float) -> None:
        self.now = max(self.now, float(when))  # never backwards: several executors may share it


@dataclass
class _Trial:
    spec: TrialSpec
    slot: int
    next_index: int  # index into steps of the next report
    deadline: float
    last: Mapping[str, float] = field(default_factory=dict)
    waiting: bool = False  # a Result was sent and not yet answered


class SimulatedExecutor:
    """Runs ``curve`` on a simulated clock; see the module doc.

    Args:
        curve: The metrics of a config at a step.
        steps: The report steps of a full trial, increasing.
        clock: The simulated clock (shared with the ``Tuner``; a new one by default).
        workers: Trials running at once.
        step_seconds: Simulated seconds one step of a trial takes (a number, or a function of
            trial id and config; uneven speeds make reports interleave).
        fail: Optional ``(config, step) -> failure kind or None``: the trial ends failed
            (``oom``, ``crash``, ...) instead of reporting that step.
    """

    def __init__(
        self,
        curve: Curve,
        steps: Sequence[float],
        *,
        clock: SimulatedClock | None = None,
        workers: int = 1,
        step_seconds: float | StepSeconds = 1.0,
        fail: Callable[[Mapping[str, Any], float], str | None] | None = None,
    ) -> None:
        if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"steps must be a non-empty increasing sequence, got {steps!r}")
        self.curve = curve
        self.steps = tuple(float(s) for s in steps)
        self.clock = clock if clock is not None else SimulatedClock()
        self.workers = workers
        self._seconds = step_seconds if callable(step_seconds) else (lambda _t, _c, s=float(step_seconds): s)
        self.fail = fail
        self._running: dict[int, _Trial] = {}
        self._heap: list[tuple[float, int, int]] = []  # (time, tiebreak, trial_id): the trial's next event
        self._order = itertools.count()
        self._pending: list[Event] = []
        self._ending: dict[int, int] = {}  # trial id -> slot of trials whose Ended waits in _pending
        self.launched: list[TrialSpec] = []  # every spec launched, in order (for tests)

    def capacity(self) -> int:
        # A trial holds its worker until its Ended event is handed over, as with real executors.
        return self.workers - len(self._running) - sum(isinstance(e, Ended) for e in self._pending)

    def launch(self, spec: TrialSpec) -> int:
        taken = {t.slot for t in self._running.values()} | set(self._ending.values())
        slot = spec.slot if spec.slot is not None else min(set(range(self.workers)) - taken)
        start = getattr(spec, "start_step", None)
        first = 0 if start is None else next((i for i, s in enumerate(self.steps) if s > start), len(self.steps))
        now = self.clock()
        deadline = now + spec.timeout if spec.timeout else math.inf
        trial = _Trial(spec, slot, first, deadline)
        self._running[spec.trial_id] = trial
        self.launched.append(spec)
        if first >= len(self.steps):  # cloned at the end of training: nothing left to run
            self._end(trial, State.COMPLETE, self.curve(spec.config, self.steps[-1]))
        else:
            self._schedule(trial)
        return slot

    def next_event_time(self) -> float:
        """When this executor's next event happens (now if one waits; inf if none will)."""
        if self._pending:
            return self.clock()
        live = [t for t, _, tid in self._heap if tid in self._running]
        return min(live, default=math.inf)

    def poll(self, timeout: float) -> list[Event]:
        # Jumps to the next event whatever the timeout: simulated waiting costs nothing.
        while not self._pending and self._heap:
            when, _, trial_id = heapq.heappop(self._heap)
            trial = self._running.get(trial_id)
            if trial is None or trial.waiting:
                continue  # ended or stopped since it was scheduled
            self.clock.advance_to(when)
            self._fire(trial, when)
        events, self._pending = self._pending, []
        self._ending.clear()
        return events

    def reply(self, trial_id: int, stop: bool) -> None:
        trial = self._running.get(trial_id)
        if trial is None or not trial.waiting:
            return
        trial.waiting = False
        if stop:
            self._end(trial, State.PRUNED, trial.last)
        elif trial.next_index >= len(self.steps):
            self._end(trial, State.COMPLETE, trial.last)
        else:
            self._schedule(trial)

    def stop(self, trial_id: int) -> None:
        trial = self._running.get(trial_id)
        if trial is not None:
            self._end(trial, State.FAILED, trial.last, "interrupted", "stopped by the tuner")

    def shutdown(self) -> None:
        for trial in list(self._running.values()):
            self._end(trial, State.FAILED, trial.last, "interrupted", "study shut down")

    # ---- internals -----------------------------------------------------------------------

    def _schedule(self, trial: _Trial) -> None:
        when = self.clock() + float(self._seconds(trial.spec.trial_id, trial.spec.config))
        heapq.heappush(self._heap, (min(when, trial.deadline), next(self._order), trial.spec.trial_id))

    def _fire(self, trial: _Trial, now: float) -> None:
        if now >= trial.deadline:
            self._end(trial, State.FAILED, trial.last, "timeout", "trial exceeded its time limit")
            return
        step = self.steps[trial.next_index]
        kind = self.fail(trial.spec.config, step) if self.fail is not None else None
        if kind:
            self._end(trial, State.FAILED, trial.last, kind, f"simulated {kind} at step {step:g}")
            return
        trial.last = dict(self.curve(trial.spec.config, step))
        trial.next_index += 1
        trial.waiting = True
        self._pending.append(Result(trial.spec.trial_id, _plain(step), dict(trial.last)))

    def _end(self, trial: _Trial, state: State, metrics: Mapping[str, float], kind: str | None = None,
             message: str = "") -> None:
        self._running.pop(trial.spec.trial_id, None)
        self._ending[trial.spec.trial_id] = trial.slot
        self._pending.append(Ended(trial.spec.trial_id, state, dict(metrics), kind, message))


def _plain(step: float) -> float:
    """Whole steps as ints, as a trial's reporter would send them."""
    return int(step) if float(step).is_integer() else step


def interleave(tuners: Sequence[Any], executors: Sequence[SimulatedExecutor]) -> None:
    """Run several ``Tuner``s (drivers on one study) on one simulated clock, always stepping the
    one whose executor has the earliest next event, so that their storage writes interleave as
    the clock says. ``executors[i]`` is the one ``tuners[i]`` runs on; they share the clock."""
    for tuner in tuners:
        tuner.begin()
    active = list(range(len(tuners)))
    try:
        while active:
            # Launch everywhere first: a driver with nothing running has no next event yet.
            active = [i for i in active if tuners[i].launch_ready()]
            if active:
                tuners[min(active, key=lambda j: (executors[j].next_event_time(), j))].step()
    finally:
        for tuner in tuners:
            tuner.finish()
