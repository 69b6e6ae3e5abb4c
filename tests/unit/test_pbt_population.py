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
    # Without a known end, 2 (running) may still train; 0 has completed: its clone would start at its end.
    assert s.donor(records, 1, 1.0) == 2


def test_with_an_unknown_end_a_completed_member_is_never_a_donor() -> None:
    """A found bug (issue 11, a function objective on Ray): a member exploited after the top one had
    completed cloned it, restored its final checkpoint at its final step and trained nothing."""
    from tunelab.trial import State

    for seed in range(20):
        s = PBTScheduler("score", population=4, quantile=0.5, seed=seed, space=choice_space(CONFIGS))
        assert s.end_step is None
        # The top half at step 1 is 0 and 1, both complete; 3 (running, below them) is the only member
        # with training left, so the exploited member 2 clones it, whatever the seed.
        records = [_member(0, [0.9, 0.9], State.COMPLETE), _member(1, [0.8, 0.8], State.COMPLETE),
                   _member(2, [0.1], State.PRUNED), _member(3, [0.5])]
        assert s.donor(records, 2, 1.0) == 3, seed
        suggestion = s.suggest(records)
        assert suggestion is not None and suggestion.from_checkpoint == 3 and suggestion.start_step == 1.0
        # Every other member completed: no clone at all rather than one with nothing to train.
        done = records[:3] + [_member(3, [0.5, 0.5], State.COMPLETE)]
        assert s.donor(done, 2, 1.0) is None
        assert s.suggest(done) is None


def test_a_worse_member_is_stopped_only_when_a_member_with_training_left_can_replace_it() -> None:
    # Members one after another (fewer workers than the population): stopping the worse one for
    # a donor that has finished ended its training and cloned nothing.
    from tunelab.schedulers import Decision
    from tunelab.trial import State

    s = PBTScheduler("score", population=4, quantile=0.5, seed=0, space=choice_space(CONFIGS))
    for r in (_member(0, [0.9, 0.9], State.COMPLETE), _member(1, [0.8, 0.8], State.COMPLETE)):
        s.on_end(r)
    worse = _member(2, [0.1])
    assert s.on_result(worse, 1.0, worse.history[-1].metrics) == Decision.CONTINUE
    running = _member(3, [0.95])  # a better member still training: now there is a donor
    s.on_result(running, 1.0, running.history[-1].metrics)
    worse = _member(2, [0.1, 0.1])
    assert s.on_result(worse, 2.0, worse.history[-1].metrics) == Decision.STOP
    assert s.donor(s._known.values(), 2, 2.0) == 3


def test_max_resource_tells_pbt_where_a_function_objectives_training_ends() -> None:
    from tunelab.schedulers import Decision
    from tunelab.trial import State

    s = PBTScheduler("score", population=4, max_resource=3, space=choice_space(CONFIGS))
    assert s.end_step == 3.0 and s.to_dict()["max_resource"] == 3
    records = [_member(0, [0.6, 0.7, 0.9]), _member(1, [0.6, 0.6, 0.5]), _member(2, [0.6, 0.7, 0.7]),
               _member(3, [0.6, 0.7, 0.6])]
    for r in (records[0], records[2], records[3]):
        s.on_result(r, 3.0, r.history[-1].metrics)
    # 1 is the worst at step 3, its last: it finishes, not exploited.
    assert s.on_result(records[1], 3.0, records[1].history[-1].metrics) == Decision.CONTINUE
    # Without max_resource the same member, at the same step, is exploited.
    t = PBTScheduler("score", population=4, space=choice_space(CONFIGS))
    for r in (records[0], records[2], records[3]):
        t.on_result(r, 3.0, r.history[-1].metrics)
    assert t.on_result(records[1], 3.0, records[1].history[-1].metrics) == Decision.STOP
    # A donor needs training left: 0 and 2 (the top) are at step 3, the end; 3 is at step 2.
    at_end = [_member(0, [0.9, 0.9, 0.9]), _member(1, [0.1], State.PRUNED), _member(2, [0.8, 0.8, 0.8]),
              _member(3, [0.7, 0.7])]
    assert s.donor(at_end, 1, 1.0) == 3


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


def test_pbt_with_fewer_workers_than_its_population_is_told_why_members_will_not_exploit() -> None:
    from tunelab.schedulers.asha import ASHAScheduler
    from tunelab.schedulers.pbt import population_advice

    s = PBTScheduler("score", population=4, space=choice_space(CONFIGS))
    assert population_advice(s, 4) is None and population_advice(s, 8) is None
    assert population_advice(ASHAScheduler("score", "maximize"), 1) is None
    two = population_advice(s, 2)
    assert two is not None and "population is 4 but 2 trial(s)" in two and "--workers 4, or `population: 2`" in two
    one = population_advice(s, 1, set_workers="workers={n}")
    assert one is not None and "only explores" in one and one.endswith("Use workers=4.")
