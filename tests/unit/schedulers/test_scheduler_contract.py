"""Every scheduler setup through the same protocol contract; a toy PBT clones through it."""

from __future__ import annotations

from typing import Mapping, Sequence

import pytest

from tunelab.schedulers import (
    ASHAScheduler,
    BaseScheduler,
    Decision,
    FIFOScheduler,
    HyperbandScheduler,
    MedianStoppingScheduler,
    Scheduler,
    Suggestion,
    make_scheduler,
)
from tunelab.testing.scheduler_contract import CONTRACT_CONFIGS, check_scheduler_contract, replay
from tunelab.trial import State, TrialRecord


class ToyPBT(BaseScheduler):
    """Not PBT: at step 3 it stops a trial that is not the best so far and queues a clone of the
    best one's checkpoint with a perturbed config. Enough to show the protocol carries exploit."""

    def __init__(self, metric: str, mode: str = "maximize") -> None:
        super().__init__(metric, mode)
        self._at_3: dict[int, tuple[float, Mapping[str, float]]] = {}
        self._queue: list[Suggestion] = []

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        if step != 3 or self.metric not in metrics:
            return Decision.CONTINUE
        score = self.score(metrics[self.metric])
        best_id = max(self._at_3, key=lambda t: self._at_3[t][0], default=None)
        self._at_3[trial.trial_id] = (score, trial.config)
        if best_id is None or score >= self._at_3[best_id][0]:
            return Decision.CONTINUE
        config = dict(self._at_3[best_id][1])
        config["b"] = round(config["b"] * 0.8, 6)  # explore: a readable, deterministic nudge
        self._queue.append(Suggestion(config, from_checkpoint=best_id))
        return Decision.STOP

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        return self._queue.pop(0) if self._queue else None


SETUPS = {
    "fifo": lambda metric, mode: FIFOScheduler(metric, mode),
    "asha": lambda metric, mode: ASHAScheduler(metric, mode, max_resource=9),
    "asha-rf2-fractional": lambda metric, mode: ASHAScheduler(
        metric, mode, min_resource=0.5, max_resource=8, reduction_factor=2
    ),
    "asha-unbounded": lambda metric, mode: ASHAScheduler(metric, mode),
    "hyperband": lambda metric, mode: HyperbandScheduler(metric, mode, max_resource=9),
    "hyperband-rf2": lambda metric, mode: HyperbandScheduler(metric, mode, max_resource=8, reduction_factor=2),
    "median": lambda metric, mode: MedianStoppingScheduler(metric, mode, min_trials=3),
    "median-warmup-interval": lambda metric, mode: MedianStoppingScheduler(
        metric, mode, warmup_steps=2, min_trials=2, interval=2
    ),
    "factory-asha": lambda metric, mode: make_scheduler({"type": "asha", "max_resource": 3}, metric, mode),
    "toy-pbt": lambda metric, mode: ToyPBT(metric, mode),
}


@pytest.mark.parametrize("make", list(SETUPS.values()), ids=list(SETUPS))
def test_scheduler_contract(make):
    check_scheduler_contract(make)


def test_a_scheduler_can_stop_a_trial_and_start_a_clone_from_its_checkpoint():
    pbt = ToyPBT("score")
    assert isinstance(pbt, Scheduler)
    run = replay(pbt, CONTRACT_CONFIGS, trials=16)
    clones = {tid: r for tid, r in run.records.items() if r.parent_id is not None}
    assert set(run.stopped().values()) == {3} and len(run.records) == 16
    assert clones and len(clones) == len(run.suggestions)
    for clone in clones.values():
        parent = run.records[clone.parent_id]
        assert parent.state is State.COMPLETE  # cloned from a trial that was doing well
        assert clone.config == {"a": parent.config["a"], "b": round(parent.config["b"] * 0.8, 6)}
        # Resumed from the parent's latest checkpoint (step 3 or later), never from scratch.
        assert all(report.step > 3 for report in clone.history)
    assert replay(ToyPBT("score"), CONTRACT_CONFIGS, trials=16).log() == run.log()


class _WrongAnswer(BaseScheduler):
    def on_result(self, trial, step, metrics):  # type: ignore[no-untyped-def]
        return "stop"


class _Forgetful(BaseScheduler):
    """Decides on how many trials it has ever seen across instances: hidden shared state."""

    seen: list[int] = []

    def on_result(self, trial, step, metrics):  # type: ignore[no-untyped-def]
        self.seen.append(trial.trial_id)
        return Decision.STOP if len(self.seen) % 7 == 0 else Decision.CONTINUE


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda metric, mode: _WrongAnswer(metric, mode), "on_result returned 'stop'"),
        (lambda metric, mode: _Forgetful(metric, mode), "decided differently"),
    ],
    ids=["not-a-decision", "not-deterministic"],
)
def test_the_contract_catches_broken_schedulers(make, words):
    with pytest.raises(AssertionError, match=words):
        check_scheduler_contract(make)
