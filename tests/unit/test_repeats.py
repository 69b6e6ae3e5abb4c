"""Seed repeats (issue 13.3) on the simulated executor: what runs, what is best, resume, budget."""

from __future__ import annotations

import os
import socket
from typing import Any, Mapping

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.config import parse_search
from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet
from tunelab.repeats import Repeats, check_space, seeds_for
from tunelab.schedulers import ASHAScheduler, FIFOScheduler
from tunelab.space import Space
from tunelab.study import StudyView
from tunelab.testing.simulate import choice_space, sequence_sampler, simulated_tuner

SCORE = MetricSet.parse([{"name": "score", "goal": "maximize"}])
STEPS = (1, 2, 3)
DEAD = f"{socket.gethostname()}:{os.getpid()}:1"  # this host, a start time not ours: a dead driver
# Config "lucky" wins with its first seed (0) and loses on the others; "steady" has the best mean.
NOISE = {"lucky": {0: 0.05, 1: -0.05, 2: -0.04}, "steady": {0: 0.0, 1: 0.01, 2: 0.0},
         "third": {0: 0.0, 1: 0.0, 2: 0.0}, "worst": {0: 0.0, 1: 0.0, 2: 0.0}}
BASE = {"lucky": 0.80, "steady": 0.79, "third": 0.70, "worst": 0.5}
CONFIGS = [{"name": n} for n in ("worst", "lucky", "third", "steady")]


def score(config: Mapping[str, Any], step: float) -> dict[str, float]:
    seed = config.get("seed", 0)
    return {"score": (BASE[config["name"]] + NOISE[config["name"]].get(seed, 0.0)) * step / 3}


def run(top: int = 2, seeds: int = 2, **kw: Any) -> Any:
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=kw.pop("scheduler", FIFOScheduler("score")),
                          metrics=SCORE, configs=CONFIGS, trials=4, repeats=Repeats(top, seeds), **kw)
    sim.tuner.run()
    return sim


def test_the_best_configs_run_again_with_other_seeds_after_the_search() -> None:
    sim = run(workers=2)
    trials = sim.study.get_trials()
    assert len(trials) == 4 + 2 * 2  # repeats come on top of the trial budget
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    assert sorted((t.user_attrs["repeat_of"], t.user_attrs["seed"]) for t in repeats) == [(1, 1), (1, 2), (3, 1), (3, 2)]
    assert all(t.number >= 4 for t in repeats)  # after the search
    assert all(t.params == {} for t in repeats)  # never taught to the sampler as new points
    assert [t.user_attrs["run"]["config"] for t in repeats if t.user_attrs["repeat_of"] == 3] == [
        {"name": "steady", "seed": 1}, {"name": "steady", "seed": 2}]
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_the_best_config_is_the_best_mean_and_its_best_seed_is_the_best_trial() -> None:
    view = StudyView(run().study)
    group = view.best_seed_group()
    assert group is not None and group.config == {"name": "steady"}
    assert group.seeds == (0, 1, 2)
    assert group.values == pytest.approx((0.79, 0.80, 0.79))
    assert group.mean == pytest.approx(0.79333, abs=1e-4)
    assert view.best_config == {"name": "steady"}  # not "lucky", the best single trial (0.85)
    assert view.best_trial is not None and view.best_trial.config == {"name": "steady", "seed": 1}
    assert [g.config["name"] for g in view.seed_groups()] == ["steady", "lucky"]
    assert "over 3 seeds" in group.spread()


def test_repeats_are_never_pruned_and_not_told_to_the_scheduler() -> None:
    # ASHA with a grace of 1 would stop a trial below the rung's best: repeats run to the end.
    sim = run(scheduler=ASHAScheduler("score", max_resource=3, reduction_factor=3), top=2, seeds=2)
    repeats = [t for t in sim.study.get_trials() if "repeat_of" in t.user_attrs]
    assert len(repeats) == 4 and all(t.state == TrialState.COMPLETE for t in repeats)


def test_an_interrupted_repeat_phase_continues() -> None:
    storage = optuna.storages.InMemoryStorage()
    first = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                            configs=CONFIGS, trials=4, repeats=Repeats(2, 2), storage=storage)
    first.tuner.driver = DEAD
    first.tuner.begin()
    while sum("repeat_of" in t.user_attrs and t.state == TrialState.COMPLETE for t in first.study.get_trials()) < 1:
        assert first.tuner.launch_ready()
        first.tuner.step()
    assert first.tuner.launch_ready()  # the second repeat starts; the driver dies in it
    # a new driver on the same study: the search is done, the repeat phase goes on
    second = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                             space=choice_space(CONFIGS), sampler=sequence_sampler([]), trials=4,
                             repeats=Repeats(2, 2), storage=storage)
    second.tuner.run()
    trials = second.study.get_trials()
    interrupted = [t for t in trials if (t.user_attrs.get("failure") or {}).get("kind") == "interrupted"]
    assert len(interrupted) == 1 and "repeat_of" in interrupted[0].user_attrs
    assert not any("retry_of" in t.user_attrs for t in trials)  # not queued as a search trial
    done = sorted((t.user_attrs["repeat_of"], t.user_attrs["seed"]) for t in trials
                  if "repeat_of" in t.user_attrs and t.state == TrialState.COMPLETE)
    assert done == [(1, 1), (1, 2), (3, 1), (3, 2)]  # each once: continued, not restarted
    assert sum(t.number < 4 for t in trials) == 4 and len(trials) == 4 + 4 + 1


def test_a_study_without_repeats_is_unchanged() -> None:
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=CONFIGS, trials=4)
    sim.tuner.run()
    view = StudyView(sim.study)
    assert len(sim.study.get_trials()) == 4 and view.best_seed_group() is None
    assert view.best_config == {"name": "lucky"}


@pytest.mark.parametrize("raw, field", [
    ({"top": 0, "seeds": 3}, "search.repeats.top"), ({"top": 3, "seeds": 0}, "search.repeats.seeds"),
    ({"top": 1.5}, "search.repeats.top"), ({"seed": 2}, "search.repeats.seed"), ([3, 3], "search.repeats"),
    ({"top": True}, "search.repeats.top"),
])
def test_bad_repeats_are_config_errors(raw: Any, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_search({"repeats": raw}, SCORE)
    assert err.value.field == field


def test_repeats_need_one_objective_and_an_unsearched_seed() -> None:
    two = MetricSet.parse([{"name": "a", "goal": "maximize"}, {"name": "b", "goal": "minimize"}])
    with pytest.raises(ConfigError, match="single optimized metric"):
        parse_search({"repeats": {"top": 1, "seeds": 1}}, two)
    with pytest.raises(ConfigError, match="searches"):
        check_space(Repeats(1, 1), Space.from_dict({"seed": {"int": [0, 9]}, "x": {"float": [0, 1]}}))
    check_space(Repeats(1, 1), Space.from_dict({"seed": 7, "x": {"float": [0, 1]}}))  # fixed: fine


def test_repeat_seeds_count_on_from_the_configs_own() -> None:
    assert seeds_for({"x": 1}, 42, 3) == [43, 44, 45]
    assert seeds_for({"seed": 7}, 42, 2) == [8, 9]
    assert seeds_for({}, 2**32 - 1, 1) == [0]
    assert parse_search({"repeats": {"top": 2, "seeds": 5}}, SCORE).repeats == Repeats(2, 5)
    assert parse_search({"repeats": {"top": 2, "seeds": 5}}, SCORE).options == {}


def test_the_summary_status_best_and_report_show_the_spread() -> None:
    from tunelab.cli.inspect import best_payload, status_payload
    from tunelab.display import summary
    from tunelab.report.data import ReportData
    from tunelab.report.html import _seeds, _summary

    view = StudyView(run().study)
    text = summary(view, 1.0)
    assert "best config (best mean of value: mean 0.7933 ± 0.005774 (sd) over 3 seeds, 0.79..0.8)" in text
    assert "{'name': 'steady'}; its best seed is trial" in text and "seed 1)" in text
    assert "best trial" not in text  # the lucky single trial is not called the best
    status = status_payload(view)
    assert status["seeds"]["config"] == {"name": "steady"} and status["seeds"]["n"] == 3
    assert status["best"][0]["trial"] == view.best_trial.number
    best = best_payload(view)[0]
    assert best["config"] == {"name": "steady"}
    assert [s["seed"] for s in best["seeds"]["seeds"]] == [0, 1, 2]
    data = ReportData.from_study(view)
    html = _seeds(data)
    assert "Seeds of each repeated config" in html and "seed 2: 0.79" in html and "lucky" in html
    assert "mean over 3 seeds" in _summary(data)


def noisy(config: Mapping[str, Any], reporter: Any) -> dict[str, float]:
    return {"loss": (config["x"] - 1) ** 2 + 0.01 * (config.get("seed", 0) % 3)}


def test_tune_repeats_and_returns_the_spread() -> None:
    from tunelab import tune

    view = tune(noisy, {"x": {"float": [-3, 3]}}, metrics="loss", trials=5, seed=0, backend="inprocess",
                storage="memory", progress=False, repeats={"top": 2, "seeds": 2})
    assert len(view.trials()) == 9
    group = view.best_seed_group()
    assert group is not None and len(group.trials) == 3 and group.seeds == (0, 1, 2)
    assert view.best_config == {"x": group.config["x"]} and view.best_trial.number == group.best.number
    with pytest.raises(ConfigError) as err:
        tune(noisy, {"x": {"float": [-3, 3]}}, metrics="loss", backend="inprocess", storage="memory",
             progress=False, repeats={"top": 0})
    assert err.value.field == "repeats.top"


def test_export_takes_the_best_seed_of_the_best_mean_and_retention_keeps_it(tmp_path: Any) -> None:
    from tunelab.cli.export import choose_trial

    for n in range(8):  # checkpoints as trials leave them (the simulated executor writes none)
        (tmp_path / f"trial_{n:04d}" / "checkpoint" / "best").mkdir(parents=True)
    sim = run(trial_root=tmp_path, keep_checkpoints=1)
    view = StudyView(sim.study)
    chosen = choose_trial(view, None)
    assert chosen.config == {"name": "steady", "seed": 1} and chosen.number == view.best_seed_group().best.number
    kept = {n for n in range(8) if (tmp_path / f"trial_{n:04d}" / "checkpoint").exists()}
    # keep_checkpoints=1 alone would keep only trial 1 ("lucky", the best single value)
    assert chosen.number in kept and {1, 3} <= kept


def test_two_drivers_planning_the_same_repeat_run_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelab.tuner as tuner_module

    storage = optuna.storages.InMemoryStorage()
    search = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                             configs=CONFIGS, trials=4, storage=storage)
    search.tuner.run()

    def driver() -> Any:
        return simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                               space=choice_space(CONFIGS), sampler=sequence_sampler([]), trials=4, workers=4,
                               repeats=Repeats(2, 2), storage=storage)

    first, second = driver(), driver()
    view = StudyView(first.study)
    stale = tuner_module.missing_repeats(first.study.get_trials(), view.ranked_trials(), Repeats(2, 2), 0)
    first.tuner.begin()
    assert first.tuner.launch_ready()  # it starts the four repeats
    second.tuner.begin()
    monkeypatch.setattr(tuner_module, "missing_repeats", lambda *a: stale)  # it read storage before they existed
    assert not second.tuner.launch_ready()  # each of its four finds the first driver's: cancelled, not run
    second.tuner.finish()
    monkeypatch.undo()
    while first.tuner.launch_ready():
        first.tuner.step()
    first.tuner.finish()
    trials = StudyView(first.study).trials()  # cancelled trials are not shown
    assert sorted((t.repeat_of, t.seed) for t in trials if t.repeat_of is not None) == [(1, 1), (1, 2), (3, 1), (3, 2)]


def test_searching_again_after_repeats_says_what_the_sampler_loses() -> None:
    storage = optuna.storages.InMemoryStorage()
    simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE, configs=CONFIGS,
                    trials=4, repeats=Repeats(1, 1), storage=storage).tuner.run()
    more = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                           space=choice_space(CONFIGS), sampler=sequence_sampler([{"name": "third"}]), trials=6,
                           storage=storage)
    with pytest.warns(UserWarning, match=r"ran seed repeats \(trials 4..4\).*warm_start"):
        more.tuner.run()
    done = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                           space=choice_space(CONFIGS), sampler=sequence_sampler([]), trials=4, storage=storage)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a finished study run again: no search, nothing to say
        done.tuner.run()


def test_a_fixed_seed_in_the_space_is_what_repeats_count_from() -> None:
    configs = [{**c, "seed": 0} for c in CONFIGS]  # choice_space makes `seed` fixed at 0
    sim = simulated_tuner(curve=score, steps=STEPS, scheduler=FIFOScheduler("score"), metrics=SCORE,
                          configs=configs, trials=4, repeats=Repeats(2, 2))
    sim.tuner.run()
    view = StudyView(sim.study)
    group = view.best_seed_group()
    assert group is not None and group.seeds == (0, 1, 2)
    assert view.best_config == {"name": "steady", "seed": 0}  # the searched config, its own seed
    assert len(view.ranked_trials()) == 8  # the repeats count as inside the space
