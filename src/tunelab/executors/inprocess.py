"""Trials as threads of the driver process: for tests and cheap functions.

One long-lived thread per worker slot runs the trials handed to it (starting a thread per
trial cost more than a cheap trial itself). No isolation: a trial that hangs cannot be
killed, so ``timeout`` and ``stop`` are cooperative. The tuner records the trial as timed
out or interrupted at once, and the thread's next ``report`` raises ``TrialPruned`` so it
winds down.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Mapping

from tunelab.executors._run_trial import make_reporter, run_objective
from tunelab.executors.base import TrialSpec
from tunelab.trial import Ended, Event, Result, State
from tunelab.worker import Reporter, Resources


class _QueueChannel:
    def __init__(self, trial_id: int, events: "queue.SimpleQueue[Event]") -> None:
        self.trial_id = trial_id
        self.events = events
        self.replies: "queue.SimpleQueue[bool]" = queue.SimpleQueue()

    def send_result(self, step: float, metrics: Mapping[str, float]) -> bool:
        self.events.put(Result(self.trial_id, step, dict(metrics)))
        return self.replies.get()


class InProcessExecutor:
    def __init__(self, objective: Any, workers: int = 1) -> None:
        self.objective = objective
        self.workers = workers
        # SimpleQueue (in C): a trial's hand-off to its thread and back costs a fifth less.
        self._events: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._channels: dict[int, _QueueChannel] = {}  # every trial whose thread still runs it
        self._reporters: dict[int, Reporter] = {}
        self._slots: dict[int, int] = {}  # trials the tuner still counts as running
        self._deadlines: dict[int, float] = {}
        self._pending: list[Event] = []
        self._inboxes: list["queue.SimpleQueue[Reporter | None]"] = []
        self._threads: list[threading.Thread] = []

    def capacity(self) -> int:
        return self.workers - len(self._slots)

    def launch(self, spec: TrialSpec) -> int:
        slot = spec.slot if spec.slot is not None else min(set(range(self.workers)) - set(self._slots.values()))
        channel = _QueueChannel(spec.trial_id, self._events)
        reporter = make_reporter(spec, channel, Resources(cpus=1))
        self._channels[spec.trial_id] = channel
        self._reporters[spec.trial_id] = reporter
        self._slots[spec.trial_id] = slot
        if spec.timeout:
            self._deadlines[spec.trial_id] = time.monotonic() + spec.timeout
        self._inbox(slot).put(reporter)
        return slot

    def _inbox(self, slot: int) -> "queue.SimpleQueue[Reporter | None]":
        while len(self._inboxes) <= slot:
            inbox: "queue.SimpleQueue[Reporter | None]" = queue.SimpleQueue()
            thread = threading.Thread(target=self._serve, args=(inbox,), daemon=True,
                                      name=f"tunelab-slot-{len(self._inboxes)}")
            self._inboxes.append(inbox)
            self._threads.append(thread)
            thread.start()
        return self._inboxes[slot]

    def _serve(self, inbox: "queue.SimpleQueue[Reporter | None]") -> None:
        while (reporter := inbox.get()) is not None:
            self._events.put(run_objective(self.objective, reporter))

    def poll(self, timeout: float) -> list[Event]:
        now = time.monotonic()
        for trial_id, deadline in list(self._deadlines.items()):
            if now >= deadline:
                self._abandon(trial_id, "timeout", "trial exceeded its time limit")
        if not self._pending:
            try:
                self._take(self._events.get(timeout=timeout))
            except queue.Empty:
                pass
        while True:
            try:
                self._take(self._events.get_nowait())
            except queue.Empty:
                break
        events, self._pending = self._pending, []
        return events

    def _take(self, event: Event) -> None:
        if event.trial_id not in self._slots:  # abandoned: let the thread wind down
            if isinstance(event, Result):
                self._channels[event.trial_id].replies.put(True)
            else:
                self._forget(event.trial_id)
            return
        if isinstance(event, Ended):
            self._slots.pop(event.trial_id)
            self._deadlines.pop(event.trial_id, None)
            self._forget(event.trial_id)
        self._pending.append(event)

    def _forget(self, trial_id: int) -> None:
        self._channels.pop(trial_id, None)
        self._reporters.pop(trial_id, None)

    def _abandon(self, trial_id: int, kind: str, message: str) -> None:
        reporter = self._reporters[trial_id]
        reporter.request_stop()
        self._slots.pop(trial_id)
        self._deadlines.pop(trial_id, None)
        self._pending.append(Ended(trial_id, State.FAILED, reporter.last_metrics, kind, message))

    def reply(self, trial_id: int, stop: bool) -> None:
        channel = self._channels.get(trial_id)
        if channel is not None:
            channel.replies.put(stop)

    def stop(self, trial_id: int) -> None:
        if trial_id in self._slots:
            self._abandon(trial_id, "interrupted", "stopped by the tuner")

    def shutdown(self) -> None:
        for trial_id in list(self._slots):
            self._abandon(trial_id, "interrupted", "study shut down")
        for channel in list(self._channels.values()):
            channel.replies.put(True)
        for inbox in self._inboxes:
            inbox.put(None)
