"""The real Tuner on the simulated executor and clock (issue 11.3-11.5): ASHA, Hyperband and the
median rule through storage; budgets in trials, simulated time, epochs and a target; two drivers
on one study deciding alike; a driver killed mid-study and another continuing."""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping, Sequence

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.config import parse_budget
from tunelab.errors import ConfigError
from tunelab.executors.simulated import SimulatedClock, interleave
from tunelab.metrics import MetricSet
from tunelab.schedulers import (ASHAScheduler, BaseScheduler, Decision, FIFOScheduler, HyperbandScheduler,
                                MedianStoppingScheduler, Suggestion)
from tunelab.study import StudyView
from tunelab.testing.scheduler_contract import Recording, Replay, curve
from tunelab.testing.simulate import choice_space, sequence_sampler, simulated_tuner
from tunelab.trial import Report, State, TrialRecord
from tunelab.tuner import Tuner

SCORE = MetricSet.parse([{"name": "score", "goal": "maximize"}])
STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
CONFIGS = [{"a": round(0.5 + 0.05 * (i * 7 % 10), 2), "b": round(0.02 + 0.1 * (i * 3 % 10), 2)} for i in range(24)]
DEAD = f"{socket.gethostname()}:{os.getpid()}:1"  # this host, a start time not ours: a dead driver


def score(config: Mapping[str, Any], step: float) -> dict[str, float]:
    return {"score": curve(config, step)}


def states(study: optuna.Study) -> dict[int, State]:
    return {t.number: t.state for t in StudyView(study).trials()}


# ---- schedulers through the tuner ----------------------------------------------------------------


def test_asha_prunes_through_storage_at_its_rungs() -> None:
    # As tests/unit/schedulers/test_asha.py's synchronous case, but checked in storage.
    configs = [{"a": a, "b": 0.1} for a in (0.6, 0.7, 0.5, 0.8, 0.4, 0.9, 0.65, 0.75, 0.55)]
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=ASHAScheduler("score", max_resource=9),
                          metrics=SCORE, configs=configs, workers=9, trials=9)
    sim.tuner.run()
    pruned = {t.number: max(t.intermediate_values) for t in sim.study.get_trials(states=(TrialState.PRUNED,))}
    assert pruned == {2: 1, 4: 1, 6: 1, 8: 1, 7: 3}
    assert all(len(t.intermediate_values) == 9 for t in sim.study.get_trials(states=(TrialState.COMPLETE,)))
    assert sim.clock() == 9.0  # nine steps of one simulated second, nine workers


def test_hyperband_prunes_only_at_the_rungs_of_each_trials_bracket() -> None:
    hb = HyperbandScheduler("score", max_resource=9)
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=hb, metrics=SCORE, configs=CONFIGS, workers=4,
                          trials=24, step_seconds=lambda tid, c: 1.0 + 0.5 * (tid % 3))
    sim.tuner.run()
    pruned = sim.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned
    for t in pruned:
        start = hb.bracket_min_resources()[hb.bracket_of(t.number)]
        assert max(t.intermediate_values) in (start, start * 3)


def test_the_median_rule_stops_trials_below_the_median_of_the_others() -> None:
    configs = [{"a": 1.0 - 0.05 * i, "b": 0.1} for i in range(8)]
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=MedianStoppingScheduler("score", min_trials=3),
                          metrics=SCORE, configs=configs, workers=1, trials=8)
    sim.tuner.run()
    got = states(sim.study)
    # One worker: trials run one after the other, each worse than all before: from the fourth
    # on (three others to compare with) every trial is stopped at its first checked step.
    assert [got[i] for i in range(8)] == [State.COMPLETE] * 3 + [State.PRUNED] * 5
    assert all(len(t.intermediate_values) == 1 for t in sim.study.get_trials(states=(TrialState.PRUNED,)))


# ---- budgets ------------------------------------------------------------------------------------


def test_the_trial_budget() -> None:
    sim = simulated_tuner(curve=score, steps=(1, 2), scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=CONFIGS, workers=3, trials=5)
    sim.tuner.run()
    assert len(sim.study.get_trials(states=(TrialState.COMPLETE,))) == 5


def test_the_time_budget_reads_the_tuners_clock() -> None:
    seen = []
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=CONFIGS, workers=1, time_s=10.0, on_progress=seen.append)
    sim.tuner.run()
    assert sim.clock() == 10.0  # trial 0 took 9 simulated seconds, trial 1 one step more
    got = states(sim.study)
    assert got[0] == State.COMPLETE and got[1] == State.FAILED
    assert seen[-1].elapsed_s == 10.0 and "time budget reached" in [p.last for p in seen]


def test_the_eta_is_in_the_tuners_clock() -> None:
    seen = []
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=CONFIGS, workers=1, trials=3, on_progress=seen.append)
    sim.tuner.run()
    etas = [p.eta_s for p in seen if p.eta_s is not None]
    assert etas and etas[0] == 18.0  # after the first 9-second trial: two more of 9 s each


def test_the_epoch_budget_counts_steps_reached() -> None:
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=CONFIGS, workers=1, epochs=20)
    sim.tuner.run()
    # 9 + 9 < 20 starts a third trial; 27 >= 20 stops.
    assert len(sim.study.get_trials()) == 3 and sim.tuner.used_epochs() == 27


def test_the_epoch_budget_counts_pruned_trials_by_the_steps_they_reached() -> None:
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=ASHAScheduler("score", max_resource=9),
                          metrics=SCORE, configs=CONFIGS, workers=2, epochs=40)
    sim.tuner.run()
    reached = [max(t.intermediate_values) for t in sim.study.get_trials() if t.intermediate_values]
    assert sim.tuner.used_epochs() == sum(reached) >= 40
    assert sum(reached) - max(reached) < 40 + 9  # nothing started once the budget was used


class CloneAt3(BaseScheduler):
    """Stops trial 1 at step 3 and clones trial 0 from its step 3 (a PBT exploit, in small)."""

    def __init__(self) -> None:
        super().__init__("score")
        self.queue: list[Suggestion] = []

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        if trial.trial_id == 1 and step == 3:
            self.queue.append(Suggestion({"a": 0.55, "b": 0.3}, from_checkpoint=0, start_step=3,
                                         mutations={"a": "0.5 --- (* 1.1) --> 0.55"}))
            return Decision.STOP
        return Decision.CONTINUE

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        return self.queue.pop(0) if self.queue else None


def test_a_clone_counts_only_the_steps_it_trained_and_stores_its_lineage() -> None:
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=CloneAt3(), metrics=SCORE,
                          configs=[{"a": 0.5, "b": 0.3}, {"a": 0.6, "b": 0.9}], workers=2, trials=3)
    sim.tuner.run()
    clone = sim.study.get_trials()[2]
    assert clone.user_attrs["run"]["parent"] == 0 and clone.user_attrs["run"]["start_step"] == 3
    assert clone.user_attrs["run"]["mutations"] == {"a": "0.5 --- (* 1.1) --> 0.55"}
    assert sorted(clone.intermediate_values) == [4, 5, 6, 7, 8, 9]  # continues after the parent's step
    assert [spec.start_step for spec in sim.executor.launched] == [None, None, 3]
    assert sim.tuner.used_epochs() == 9 + 3 + 6


def test_the_target_ends_the_study() -> None:
    configs = [{"a": 0.5, "b": 0.1}, {"a": 0.96, "b": 0.1}, {"a": 0.4, "b": 0.1}]
    sim = simulated_tuner(curve=score, steps=(1, 2), scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=configs, workers=1, trials=3, target=0.9)
    sim.tuner.run()
    assert len(sim.study.get_trials()) == 2  # 0.96 - 0.1/2 = 0.91 reached the target


@pytest.mark.parametrize("epochs", [20, 2.5, "40"])
def test_budget_epochs_is_parsed(epochs: Any) -> None:
    assert parse_budget({"epochs": epochs}, SCORE).epochs == float(epochs)


@pytest.mark.parametrize("epochs", [0, -3, "many", True, float("inf")])
def test_a_bad_epoch_budget_is_a_config_error(epochs: Any) -> None:
    with pytest.raises(ConfigError) as err:
        parse_budget({"epochs": epochs}, SCORE)
    assert err.value.field == "budget.epochs"


def test_an_epoch_budget_alone_bounds_the_study() -> None:
    from tunelab.api import effective_trials
    from tunelab.config import load_config  # noqa: F401  (the config form is checked above)

    class Config:  # the fields effective_trials reads
        budget = parse_budget({"epochs": 30}, SCORE)

        class search:  # noqa: N801
            sampler = "tpe"

    assert effective_trials(Config()) is None  # type: ignore[arg-type]


# ---- two drivers on one study, and a driver that dies ---------------------------------------------


SCHEDULERS = {
    "asha": lambda: ASHAScheduler("score", max_resource=9),
    "hyperband": lambda: HyperbandScheduler("score", max_resource=9),
    "median": lambda: MedianStoppingScheduler("score", min_trials=3),
}


def two_drivers(make: Any) -> tuple[Replay, optuna.Study]:
    """Two drivers on one in-memory study and one clock, each proposing half of CONFIGS; every
    decision logged in the order it was made."""
    storage, clock, log = optuna.storages.InMemoryStorage(), SimulatedClock(), Replay()
    space = choice_space(CONFIGS)
    sims = [
        simulated_tuner(curve=score, steps=STEPS, scheduler=Recording(make(), log), metrics=SCORE, space=space,
                        sampler=sequence_sampler(CONFIGS[k::2]), storage=storage, clock=clock, workers=2,
                        trials=24, step_seconds=lambda tid, c, k=k: 1.0 + 0.3 * k + 0.5 * (tid % 3))
        for k in (0, 1)
    ]
    interleave([s.tuner for s in sims], [s.executor for s in sims])
    return log, sims[0].study


def decided_alone(make: Any, log: Replay, study: optuna.Study) -> list[Decision]:
    """What ONE scheduler decides on every report of the study, in the order they were stored."""
    alone, configs, histories = make(), {t.number: t.params for t in study.get_trials()}, {}
    out = []
    for tid, step, _ in log.decisions:
        metrics = score(configs[tid], step)
        histories[tid] = histories.get(tid, ()) + (Report(step, metrics),)
        out.append(alone.on_result(TrialRecord(tid, configs[tid], history=histories[tid]), step, metrics))
    return out


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_two_drivers_on_one_study_decide_as_one_scheduler_would(name: str) -> None:
    log, study = two_drivers(SCHEDULERS[name])
    drivers = {t.user_attrs["run"]["driver"] for t in study.get_trials()}
    assert len(study.get_trials()) == 24 and len(drivers) == 1  # one process, two Tuners
    assert {tid % 2 for tid, *_ in log.decisions} == {0, 1}
    assert [d for *_, d in log.decisions] == decided_alone(SCHEDULERS[name], log, study)
    assert any(d is Decision.STOP for *_, d in log.decisions)


def test_without_reading_storage_two_drivers_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scenario above can tell: drivers that keep only their own rungs decide otherwise.
    monkeypatch.setattr(Tuner, "_refresh_scheduler", lambda self: None)
    log, study = two_drivers(SCHEDULERS["asha"])
    assert [d for *_, d in log.decisions] != decided_alone(SCHEDULERS["asha"], log, study)


def test_a_driver_killed_mid_study_is_continued_by_a_new_one() -> None:
    storage, log = optuna.storages.InMemoryStorage(), Replay()
    space = choice_space(CONFIGS)
    first = simulated_tuner(curve=score, steps=STEPS, scheduler=Recording(SCHEDULERS["asha"](), log),
                            metrics=SCORE, space=space, sampler=sequence_sampler(CONFIGS), storage=storage,
                            workers=3, trials=12, step_seconds=lambda tid, c: 1.0 + 0.5 * (tid % 3))
    first.tuner.driver = DEAD  # as if its process had been killed: the next driver recovers its trials
    first.tuner.begin()
    for _ in range(20):  # twenty events in, it dies: no shutdown, trials left running in storage
        assert first.tuner.launch_ready()
        first.tuner.step()
    running = {t.number for t in first.study.get_trials(states=(TrialState.RUNNING,))}
    assert running
    taken = {tuple(sorted(t.params.items())) for t in first.study.get_trials()}
    rest = [c for c in CONFIGS if tuple(sorted(c.items())) not in taken]
    second = simulated_tuner(curve=score, steps=STEPS, scheduler=Recording(SCHEDULERS["asha"](), log),
                             metrics=SCORE, space=space, sampler=sequence_sampler(rest), storage=storage,
                             workers=3, trials=12)
    second.tuner.run()
    trials = second.study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for number in running:  # each interrupted trial ran again, once
        assert trials[number].user_attrs["failure"]["kind"] == "interrupted"
        assert sum(t.user_attrs.get("retry_of") == number for t in trials) == 1
    counted = [t for t in trials if (t.user_attrs.get("failure") or {}).get("kind") != "interrupted"]
    assert len(counted) == 12
    # The new driver's rungs hold the dead one's reports: its decisions are one scheduler's.
    assert [d for *_, d in log.decisions] == decided_alone(SCHEDULERS["asha"], log, second.study)


def test_a_clone_left_running_by_a_dead_driver_is_interrupted_and_not_run_again_cold() -> None:
    storage = optuna.storages.InMemoryStorage()
    configs = [{"a": 0.5, "b": 0.3}, {"a": 0.6, "b": 0.9}]
    first = simulated_tuner(curve=score, steps=STEPS, scheduler=CloneAt3(), metrics=SCORE, configs=configs,
                            storage=storage, workers=2, trials=3)
    first.tuner.driver = DEAD
    first.tuner.begin()
    while not any((t.user_attrs.get("run") or {}).get("parent") == 0 and t.intermediate_values
                  for t in first.study.get_trials()):
        assert first.tuner.launch_ready()
        first.tuner.step()
    second = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                             configs=configs, storage=storage, trials=3)
    second.tuner.begin()  # recovers the dead driver's trials
    clone = second.study.get_trials()[2]
    assert clone.state == TrialState.FAIL and clone.user_attrs["failure"]["kind"] == "interrupted"
    retries = [t.user_attrs["retry_of"] for t in second.study.get_trials() if "retry_of" in t.user_attrs]
    assert 2 not in retries  # the clone's config is not queued to run from scratch
    second.tuner.finish()
