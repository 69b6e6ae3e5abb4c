"""PBT through the real Tuner on the simulated executor (issue 11.4): a driver killed mid-population
is continued by the next one (members continue from their checkpoints, nothing lost or run twice),
and a member's replacement runs once however many drivers suggest it."""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.metrics import MetricSet
from tunelab.schedulers import PBTScheduler, Suggestion
from tunelab.space import Space
from tunelab.testing.scheduler_contract import curve
from tunelab.testing.simulate import sequence_sampler, simulated_tuner

pytestmark = pytest.mark.filterwarnings("ignore:trial .* left no checkpoint")  # simulated trials save none

SCORE = MetricSet.parse([{"name": "score", "goal": "maximize"}])
SPACE = Space({"a": {"float": [0.5, 1.0]}, "b": {"float": [0.01, 1.0]}})
CONFIGS = [{"a": round(0.5 + 0.05 * (i * 7 % 10), 2), "b": round(0.02 + 0.1 * (i * 3 % 10), 2)} for i in range(24)]
STEPS = tuple(range(1, 10))
DEAD = f"{socket.gethostname()}:{os.getpid()}:1"  # this host, a start time not ours: a dead driver


def score(config: Mapping[str, Any], step: float) -> dict[str, float]:
    return {"score": curve(config, step)}


def pbt() -> PBTScheduler:
    return PBTScheduler("score", population=4, perturbation_interval=2, quantile=0.25, seed=3, space=SPACE)


def sim(storage: Any, configs: list[dict[str, Any]], trials: int = 14, workers: int = 4) -> Any:
    return simulated_tuner(curve=score, steps=STEPS, scheduler=pbt(), metrics=SCORE, space=SPACE,
                           sampler=sequence_sampler(configs), storage=storage, workers=workers, trials=trials,
                           step_seconds=lambda tid, c: 1.0 + 0.25 * (tid % 3))


def run_of(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return t.user_attrs.get("run") or {}


def test_a_pbt_driver_killed_mid_population_is_continued_by_the_next() -> None:
    storage = optuna.storages.InMemoryStorage()
    first = sim(storage, CONFIGS)
    first.tuner.driver = DEAD  # its process "dies": no shutdown, trials left running in storage
    first.tuner.begin()
    while not any(run_of(t).get("mutations") and t.intermediate_values for t in first.study.get_trials()):
        assert first.tuner.launch_ready()
        first.tuner.step()
    at_kill = {t.number: t for t in first.study.get_trials(states=(TrialState.RUNNING,))}
    reported = {n: max(t.intermediate_values) for n, t in at_kill.items() if t.intermediate_values}
    assert len(reported) >= 2

    second = sim(storage, [c for c in CONFIGS if c not in [t.params for t in first.study.get_trials()]])
    second.tuner.run()
    trials = {t.number: t for t in second.study.get_trials()}
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number, step in reported.items():  # each member cut off after reporting continues, once
        assert trials[number].user_attrs["failure"]["kind"] == "interrupted"
        (cont,) = [t for t in trials.values() if run_of(t).get("replaces") == number]
        assert run_of(cont)["parent"] == number and run_of(cont)["start_step"] == step
        assert run_of(cont)["mutations"] == {}
        assert run_of(cont)["config"] == {**trials[number].params, **run_of(trials[number]).get("config", {})}
        assert min(cont.intermediate_values) == step + 1  # it continues, not from scratch
        assert not [t for t in trials.values() if t.user_attrs.get("retry_of") == number]
    # Every replaced member (exploited or interrupted) is replaced once, and the budget holds.
    replaced = [run_of(t)["replaces"] for t in trials.values() if "replaces" in run_of(t)]
    assert len(replaced) == len(set(replaced))
    counted = [t for t in trials.values() if (t.user_attrs.get("failure") or {}).get("kind")
               not in ("interrupted", "cancelled")]
    assert len(counted) <= 14  # the budget holds; PBT samples only its population, then clones
    originals = [t for t in trials.values() if run_of(t).get("parent") is None]
    assert len(originals) == 4 + len([t for t in originals if "retry_of" in t.user_attrs])  # sampled once
    # Steps trained: the interrupted members' steps are not trained again by their continuations.
    assert second.tuner.used_epochs() == sum(
        max(t.intermediate_values) - (run_of(t).get("start_step") or 0) for t in trials.values()
        if t.intermediate_values)


def test_without_continuations_a_member_cut_off_would_restart_cold(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scenario above can tell: a tuner that queues a cold retry restarts the member at step 1.
    monkeypatch.setattr(PBTScheduler, "continues_interrupted", False)
    monkeypatch.setattr(PBTScheduler, "interrupted", lambda self, records: [])
    storage = optuna.storages.InMemoryStorage()
    first = sim(storage, CONFIGS)
    first.tuner.driver = DEAD
    first.tuner.begin()
    for _ in range(12):
        assert first.tuner.launch_ready()
        first.tuner.step()
    second = sim(storage, CONFIGS[8:])
    second.tuner.run()
    retries = [t for t in second.study.get_trials() if "retry_of" in t.user_attrs]
    assert retries and all(min(t.intermediate_values) == 1 for t in retries if t.intermediate_values)


def test_a_replacement_suggested_by_two_drivers_runs_once() -> None:
    """Two drivers that both decided to replace member 9 (neither saw the other's trial yet):
    the first trial created goes ahead, the other ends cancelled before anything ran."""
    storage = optuna.storages.InMemoryStorage()
    a, b = sim(storage, CONFIGS[:2], trials=6, workers=2), sim(storage, CONFIGS[2:4], trials=6, workers=2)
    a.tuner.begin()
    b.tuner.begin()
    suggestion = Suggestion(dict(CONFIGS[5]), from_checkpoint=0, start_step=2.0, mutations={"a": "x"}, replaces=9)
    assert a.tuner._launch_suggestion(suggestion)
    assert b.tuner._launch_suggestion(suggestion)
    trials = a.study.get_trials()
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL]
    assert trials[1].user_attrs["failure"]["kind"] == "cancelled"
    assert "trial 0 replaces trial 9" in trials[1].user_attrs["failure"]["message"]
    assert [s.trial_id for s in a.executor.launched] == [0] and b.executor.launched == []
    # The cancelled twin uses up no budget, and does not void the replacement for the scheduler.
    assert a.tuner._counted_trials() == 1
    assert b.tuner.scheduler.owed(b.tuner._history()) == []
    a.tuner.finish()
    b.tuner.finish()
    assert a.study.get_trials()[0].user_attrs["failure"]["kind"] == "interrupted"


def test_the_progress_line_says_each_clone_and_its_change_log() -> None:
    said: list[str] = []
    s = simulated_tuner(curve=score, steps=STEPS, scheduler=pbt(), metrics=SCORE, space=SPACE,
                        sampler=sequence_sampler(CONFIGS), workers=4, trials=10,
                        on_progress=lambda p: said.append(p.last))
    s.tuner.run()
    clones = [t for t in s.study.get_trials() if run_of(t).get("mutations")]
    assert clones
    for t in clones:
        run = run_of(t)
        line = f"trial {t.number} clones trial {run['parent']} at step {run['start_step']:g}: " + "; ".join(
            f"{k}: {v}" for k, v in run["mutations"].items())
        assert line in said
        assert " --- (" in line
