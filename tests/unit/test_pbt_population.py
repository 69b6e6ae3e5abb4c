"""PBT trains its population and no more: once ``population`` members were sampled, a free
worker takes only clones (a found bug: the sampler kept adding members until another budget
ended the study, so PBT trained far past the epochs its population needs)."""

from __future__ import annotations

from typing import Any, Mapping

from tunelab.metrics import MetricSet
from tunelab.schedulers import PBTScheduler
from tunelab.testing.scheduler_contract import curve
from tunelab.testing.simulate import choice_space, simulated_tuner

SCORE = MetricSet.parse([{"name": "score", "goal": "maximize"}])
CONFIGS = [{"a": round(0.5 + 0.05 * (i * 7 % 10), 2), "b": round(0.02 + 0.1 * (i * 3 % 10), 2)} for i in range(12)]


def score(config: Mapping[str, Any], step: float) -> dict[str, float]:
    return {"score": curve(config, step)}


def members_and_clones(population: int, workers: int) -> tuple[list[int], list[int], float]:
    space = choice_space(CONFIGS)
    sim = simulated_tuner(curve=score, steps=(1, 2, 3), metrics=SCORE, configs=CONFIGS, space=space,
                          scheduler=PBTScheduler("score", population=population, space=space), workers=workers,
                          epochs=100)
    sim.tuner.run()
    trials = sim.study.get_trials()
    members = [t.number for t in trials if (t.user_attrs.get("run") or {}).get("parent") is None]
    clones = [t.number for t in trials if (t.user_attrs.get("run") or {}).get("parent") is not None]
    return members, clones, sim.tuner.used_epochs()


def test_pbt_samples_only_its_population_then_only_clones() -> None:
    members, clones, used = members_and_clones(population=2, workers=2)
    assert members == [0, 1]  # not 12: the sampler had 12 configs and the epoch budget room for them
    assert clones  # the bottom member was exploited
    # Two lineages of 3 steps, and what a clone retrains when its donor was an interval behind the
    # member it replaces (here one step); 26 before the fix.
    assert used <= 2 * 3 + 1


def test_a_population_larger_than_the_workers_is_sampled_in_full() -> None:
    members, _clones, _used = members_and_clones(population=3, workers=2)
    assert len(members) == 3
