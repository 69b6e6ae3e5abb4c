"""The simulated executor keeps the executor protocol on a simulated clock (issue 11.5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.executors.base import TrialSpec
from tunelab.executors.simulated import SimulatedClock, SimulatedExecutor
from tunelab.trial import Ended, Result, State


def curve(config, step):  # type: ignore[no-untyped-def]
    return {"score": config["a"] * step}


def spec(trial_id: int, a: float = 1.0, **kw) -> TrialSpec:  # type: ignore[no-untyped-def]
    return TrialSpec(trial_id, {"a": a}, Path("unused"), **kw)


def drain(ex: SimulatedExecutor, stop: set[int] = frozenset()) -> list[tuple[float, object]]:  # type: ignore[assignment]
    out = []
    while True:
        events = ex.poll(0.5)
        if not events:
            return out
        for event in events:
            out.append((ex.clock(), event))
            if isinstance(event, Result):
                ex.reply(event.trial_id, event.trial_id in stop)


def test_trials_report_each_step_at_their_own_speed_and_end_complete() -> None:
    clock = SimulatedClock()
    ex = SimulatedExecutor(curve, (1, 2, 3), clock=clock, workers=2,
                           step_seconds=lambda tid, c: 1.0 if tid == 0 else 2.5)
    assert ex.capacity() == 2
    ex.launch(spec(0, 0.5))
    ex.launch(spec(1, 0.1))
    assert ex.capacity() == 0
    log = drain(ex)
    assert [(t, type(e).__name__, e.trial_id) for t, e in log] == [
        (1.0, "Result", 0), (2.0, "Result", 0), (2.5, "Result", 1), (3.0, "Result", 0), (3.0, "Ended", 0),
        (5.0, "Result", 1), (7.5, "Result", 1), (7.5, "Ended", 1),
    ]
    ended = [e for _, e in log if isinstance(e, Ended)]
    assert ended[0] == Ended(0, State.COMPLETE, {"score": 1.5})
    assert clock() == 7.5 and ex.capacity() == 2
    assert ex.poll(10.0) == [] and clock() == 7.5  # nothing left: time does not move


def test_a_trial_holds_its_worker_until_its_end_is_handed_over() -> None:
    ex = SimulatedExecutor(curve, (1, 2), workers=1)
    ex.launch(spec(0))
    [result] = ex.poll(1)
    ex.reply(0, True)
    assert ex.capacity() == 0  # the Ended event has not been polled yet
    assert ex.poll(1) == [Ended(0, State.PRUNED, {"score": 1.0})]
    assert ex.capacity() == 1


def test_stop_timeout_and_failures() -> None:
    clock = SimulatedClock()
    ex = SimulatedExecutor(curve, (1, 2, 3, 4), clock=clock, workers=3, step_seconds=2.0,
                           fail=lambda c, s: "oom" if c["a"] == 9 and s == 2 else None)
    ex.launch(spec(0, timeout=5.0))
    ex.launch(spec(1, a=9))
    ex.launch(spec(2))
    ex.stop(2)
    log = drain(ex)
    ends = {e.trial_id: (t, e.state, e.kind) for t, e in log if isinstance(e, Ended)}
    assert ends == {2: (0.0, State.FAILED, "interrupted"), 1: (4.0, State.FAILED, "oom"),
                    0: (5.0, State.FAILED, "timeout")}


def test_a_clone_reports_only_the_steps_after_its_start_step() -> None:
    ex = SimulatedExecutor(curve, (1, 2, 3, 4))
    ex.launch(spec(0, start_step=2))
    steps = [e.step for _, e in drain(ex) if isinstance(e, Result)]
    assert steps == [3, 4]
    ex.launch(spec(1, start_step=4))  # nothing left to train: complete at once
    assert ex.poll(1) == [Ended(1, State.COMPLETE, {"score": 4.0})]


def test_runs_are_deterministic_and_shutdown_ends_everything() -> None:
    def run() -> list[object]:
        ex = SimulatedExecutor(curve, (1, 2, 3), workers=3, step_seconds=1.0)
        for i in range(3):
            ex.launch(spec(i, a=i))
        return [e for _, e in drain(ex)]

    assert run() == run()
    ex = SimulatedExecutor(curve, (1, 2), workers=2)
    ex.launch(spec(0))
    ex.shutdown()
    assert ex.poll(1) == [Ended(0, State.FAILED, {}, "interrupted", "study shut down")]


def test_bad_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="increasing"):
        SimulatedExecutor(curve, (2, 1))
