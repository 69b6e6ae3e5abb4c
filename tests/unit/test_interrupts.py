"""Ctrl-C / SIGTERM stop a study between two steps of the tuner's loop, never inside an executor:
a signal that lands mid-launch (a fork done, its pid not yet recorded) used to leave a trial the
executor did not know about, and the driver hung instead of stopping."""

from __future__ import annotations

import os
import signal
from typing import Any, Iterator, Mapping

import pytest

from tunelab.interrupts import deferred_interrupts
from tunelab.metrics import MetricSet
from tunelab.schedulers import FIFOScheduler
from tunelab.study import StudyView
from tunelab.testing.simulate import simulated_tuner
from tunelab.trial import State

SCORE = MetricSet.parse([{"name": "score", "goal": "maximize"}])


@pytest.fixture(autouse=True)
def ctrl_c_delivered() -> Iterator[None]:
    """Ctrl-C as a terminal delivers it: a test run started in the background of a shell inherits
    SIGINT ignored (POSIX), and an ignored signal rightly stays ignored by tunelab."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
CONFIGS = [{"x": i / 10} for i in range(10)]


def score(config: Mapping[str, Any], step: float) -> dict[str, float]:
    return {"score": config["x"] * step}


def interrupted_mid_launch(signals: int) -> tuple[Any, list[str]]:
    """A study whose executor receives ``signals`` SIGINTs in the middle of its second launch,
    then goes on with that launch (records the trial): what a real executor does after a fork."""
    sim = simulated_tuner(curve=score, steps=(1, 2, 3), scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=CONFIGS, workers=2, trials=10)
    executor, done = sim.executor, []
    launch = executor.launch

    def launch_with_a_signal_inside(spec: Any) -> int:
        if len(executor.launched) == 1:
            for _ in range(signals):
                os.kill(os.getpid(), signal.SIGINT)
            done.append("the launch went on after the signal")
        return launch(spec)

    executor.launch = launch_with_a_signal_inside  # type: ignore[method-assign]
    return sim, done


def test_a_signal_inside_a_launch_stops_the_study_after_the_launch() -> None:
    sim, done = interrupted_mid_launch(signals=1)
    with pytest.raises(KeyboardInterrupt):
        sim.tuner.run()
    assert done == ["the launch went on after the signal"]  # not cut short inside the executor
    assert len(sim.executor.launched) == 2  # the launch in progress completed; nothing launched after
    trials = StudyView(sim.study).trials()
    ran = [t for t in trials if t.state != State.WAITING]  # the waiting ones: queued to run again next time
    assert [t.number for t in ran] == [0, 1]
    assert {t.state for t in ran} == {State.FAILED} and {t.failure_kind for t in ran} == {"interrupted"}
    assert sorted(t.retry_of for t in trials if t.state == State.WAITING) == [0, 1]


def test_a_second_signal_interrupts_at_once() -> None:
    sim, done = interrupted_mid_launch(signals=2)
    with pytest.raises(KeyboardInterrupt):
        sim.tuner.run()
    assert done == []  # the user insisted: Python's own behaviour, inside the launch
    assert not [t for t in StudyView(sim.study).trials() if t.state == State.RUNNING]  # still recorded as ended


def test_the_previous_handlers_come_back_and_an_ignored_signal_stays_ignored() -> None:
    before = signal.getsignal(signal.SIGINT)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with deferred_interrupts() as interrupted:
            assert signal.getsignal(signal.SIGINT) is not before
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert interrupted()
        assert signal.getsignal(signal.SIGINT) is before
    finally:
        signal.signal(signal.SIGTERM, previous_term)


def test_sigterm_with_its_default_action_is_left_alone() -> None:
    """Without a handler (a plain script calling tune()), SIGTERM still ends the process at once,
    as it did; the CLI installs one, and then SIGTERM stops the study like Ctrl-C."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # other tests ran the CLI, which sets one
    try:
        with deferred_interrupts():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)
