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


# ---- the end of training (a found bug: members were exploited at their last epoch and cloned from
# members that had finished, so a clone had nothing left to train, or restarted cold from a checkpoint
# retention had already dropped while its epochs were counted from the parent's last step) ----------

def _member(tid: int, values: list[float], state: Any = None, start: float = 0) -> Any:
    from tunelab.trial import Report, State, TrialRecord

    history = tuple(Report(start + i + 1.0, {"score": v}) for i, v in enumerate(values))
    return TrialRecord(tid, {"a": 0.5 + 0.01 * tid, "b": 0.1}, state or State.RUNNING, history, None, None)


def test_a_member_at_the_end_of_its_training_is_not_exploited() -> None:
    from tunelab.schedulers import Decision

    s = PBTScheduler("score", population=4, space=choice_space(CONFIGS))
    s.end_step = 3.0
    records = [_member(0, [0.6, 0.7, 0.9]), _member(1, [0.6, 0.6, 0.5]), _member(2, [0.6, 0.7, 0.7]),
               _member(3, [0.6, 0.7, 0.6])]
    for r in records[:3]:
        s.on_result(r, 3.0, r.history[-1].metrics)
    assert s.on_result(records[1], 3.0, records[1].history[-1].metrics) == Decision.CONTINUE  # it finishes
    s.end_step = None  # unknown end (a function objective): judged as before
    assert PBTScheduler("score", population=4, space=choice_space(CONFIGS)).on_result(
        records[1], 3.0, records[1].history[-1].metrics) in (Decision.CONTINUE, Decision.STOP)


def test_a_clone_copies_a_member_with_training_left() -> None:
    from tunelab.trial import State

    s = PBTScheduler("score", population=4, space=choice_space(CONFIGS))
    s.end_step = 3.0
    # Trial 1 was stopped at epoch 1; the top member (0) has finished, 2 is at its last epoch,
    # 3 is still training: only 3 can be continued.
    records = [_member(0, [0.9, 0.9, 0.9], State.COMPLETE), _member(1, [0.5], State.PRUNED),
               _member(2, [0.8, 0.8, 0.8]), _member(3, [0.7])]
    assert s.donor(records, 1, 1.0) == 3
    s.end_step = None
    assert s.donor(records, 1, 1.0) in (0, 2)  # without a known end: the top quantile, as before


def test_the_text_classification_objective_tells_pbt_where_training_ends(tmp_path: Any) -> None:
    from tunelab.objectives.text_classification import TextClassification
    from tunelab.schedulers import make_scheduler

    for name in ("train", "validation"):
        (tmp_path / f"{name}.csv").write_text("text,label\na,x\nb,y\n")
    objective = TextClassification(model=str(tmp_path), data={"train": str(tmp_path / "train.csv"),
                                   "validation": str(tmp_path / "validation.csv"), "text": "text", "label": "label"})
    space = {"learning_rate": {"float": [1e-5, 1e-3], "log": True}, "num_train_epochs": 3}
    pbt = make_scheduler({"type": "pbt"}, "accuracy", "maximize", space=space, objective=objective)
    assert pbt.end_step == 3.0
