"""PBT as a pure decision object: exploit, explore, Ray Tune's change log, determinism, restarts."""

from __future__ import annotations

import math
import re

import pytest

from tunelab.schedulers import Decision, PBTScheduler, Suggestion, make_scheduler, scheduler_to_dict
from tunelab.schedulers.pbt import change_log
from tunelab.space import Space
from tunelab.testing.scheduler_contract import CONTRACT_CONFIGS, check_scheduler_contract, replay
from tunelab.trial import Report, State, TrialRecord

SPACE = Space({
    "learning_rate": {"float": [1e-5, 1e-3], "log": True},
    "batch_size": {"choice": [16, 32, 64]},
    "layers": {"int": [1, 6]},
    "dropout": {"float": [0.0, 0.5]},
    "epochs": 3,
})
CONFIG = {"learning_rate": 3e-05, "batch_size": 32, "layers": 2, "dropout": 0.1, "epochs": 3}


def pbt(**kw) -> PBTScheduler:
    kw.setdefault("space", SPACE)
    kw.setdefault("population", 4)
    return PBTScheduler("acc", "maximize", **kw)


def member(tid: int, values: list[float], state: State = State.RUNNING, parent: int | None = None,
           config: dict | None = None, start: float = 0, replaces: int | None = None,
           failure: str | None = None) -> TrialRecord:
    history = tuple(Report(start + i + 1.0, {"acc": v}) for i, v in enumerate(values))
    return TrialRecord(tid, dict(config or {**CONFIG, "layers": 1 + tid % 6}), state, history, failure, parent,
                       replaces)


def four_at_step_one() -> list[TrialRecord]:
    return [member(0, [0.9]), member(1, [0.5]), member(2, [0.7]), member(3, [0.6])]


# ---- exploit ---------------------------------------------------------------------------------


def test_bottom_member_is_stopped_and_replaced_by_a_mutated_clone_of_a_top_member():
    s = pbt()
    records = four_at_step_one()
    decisions = {r.trial_id: s.on_result(r, 1.0, r.history[-1].metrics) for r in records}
    # 4 members, quantile 0.25: one at the bottom (trial 1, 0.5), one at the top (trial 0, 0.9).
    assert decisions == {0: Decision.CONTINUE, 1: Decision.STOP, 2: Decision.CONTINUE, 3: Decision.CONTINUE}
    history = [r if r.trial_id != 1 else TrialRecord(1, r.config, State.PRUNED, r.history) for r in records]
    clone = s.suggest(history)
    assert isinstance(clone, Suggestion)
    assert clone.from_checkpoint == 0 and clone.start_step == 1.0
    assert set(clone.mutations) == {"learning_rate", "batch_size", "layers", "dropout"}  # not the fixed epochs
    assert clone.config["epochs"] == 3
    for name, text in clone.mutations.items():
        old, new = text.split(" --- ")[0], text.split(" --> ")[1]
        assert old == str(records[0].config[name]) and new == str(clone.config[name])
    # The clone pays the exploit: nothing more is owed.
    assert clone.replaces == 1
    assert s.suggest(history + [member(4, [], parent=0, config=dict(clone.config), replaces=1)]) is None


def test_only_perturbation_steps_are_judged():
    s = pbt(perturbation_interval=2)
    assert s.on_result(member(9, [0.9]), 1.0, {"acc": 0.9}) is Decision.CONTINUE
    worst = member(1, [0.1])
    assert s.on_result(worst, 1.0, {"acc": 0.1}) is Decision.CONTINUE  # step 1 is not a multiple of 2
    worst = member(1, [0.1, 0.1])
    s.on_result(member(9, [0.9, 0.9]), 2.0, {"acc": 0.9})
    assert s.on_result(worst, 2.0, {"acc": 0.1}) is Decision.STOP
    # A member that reports at 1.5 then 2.5 crosses 2 between them.
    assert s.is_perturbation_step(TrialRecord(5, {}, history=(Report(1.5, {}), Report(2.5, {}))), 2.5)
    assert not s.is_perturbation_step(TrialRecord(5, {}, history=(Report(2.5, {}), Report(3.5, {}))), 3.5)


def test_members_are_compared_at_comparable_steps():
    """A member far ahead counts with its value at the step being judged, not its later progress."""
    s = pbt(population=2)
    ahead = member(0, [0.2, 0.9, 0.95])  # poor at step 1, good later
    s.on_result(ahead, 3.0, {"acc": 0.95})
    behind = member(1, [0.5])
    assert s.on_result(behind, 1.0, {"acc": 0.5}) is Decision.CONTINUE  # 0.5 beats 0.2 at step 1


def test_a_lone_member_and_a_report_without_the_metric_go_on():
    s = pbt()
    assert s.on_result(member(0, [0.1]), 1.0, {"acc": 0.1}) is Decision.CONTINUE
    assert s.on_result(member(1, [0.0]), 1.0, {"other": 0.0}) is Decision.CONTINUE


def test_minimize_mirrors_maximize():
    up, down = pbt(), PBTScheduler("acc", "minimize", space=SPACE, population=4)
    for r in four_at_step_one():
        neg = TrialRecord(r.trial_id, r.config, r.state, tuple(Report(x.step, {"acc": -x.metrics["acc"]})
                                                               for x in r.history))
        assert up.on_result(r, 1.0, r.history[-1].metrics) == down.on_result(neg, 1.0, neg.history[-1].metrics)


def test_quantile_sizes_follow_ray_tune():
    s = pbt(quantile=0.5)
    records = [member(i, [0.1 * i]) for i in range(5)]
    bottom, top = s.quantiles(records, 1.0)
    assert (bottom, top) == ([1, 0], [4, 3])
    assert s.quantiles(records[:1], 1.0) == ([], [])  # ceil(5 * 0.5) = 3, capped at 5 // 2 = 2
    two = pbt(population=2)
    assert two.quantiles(records[:2], 1.0) == ([0], [1])


# ---- determinism and restarts ----------------------------------------------------------------


def exploited_history() -> list[TrialRecord]:
    records = [member(i, [v, v + 0.01]) for i, v in enumerate([0.9, 0.5, 0.7, 0.6, 0.8, 0.3, 0.85, 0.4])]
    return [TrialRecord(r.trial_id, r.config, State.PRUNED, r.history[:1]) if r.trial_id in (5, 7) else r
            for r in records]


def test_two_instances_fed_the_same_history_decide_the_same():
    a, b = pbt(population=8, seed=7), pbt(population=8, seed=7)
    history = exploited_history()
    first, second = a.suggest(history), b.suggest(history)
    assert first == second and first is not None
    assert first.from_checkpoint in (0, 6)  # the top quarter at step 1: 0.9 and 0.85


def test_a_restarted_driver_owes_the_same_clones():
    """A fresh instance that saw no report rebuilds the owed exploits from the records alone."""
    live = pbt(population=8, seed=3)
    history = exploited_history()
    for r in history:
        if r.state == State.RUNNING:
            live.on_result(TrialRecord(r.trial_id, r.config, r.state, r.history[:1]), 1.0, r.history[0].metrics)
    first = live.suggest(history)
    restarted = pbt(population=8, seed=3).suggest(history)
    assert first == restarted
    # After the first clone is launched, the second exploit (trial 7) is owed, in both.
    after = history + [member(8, [], parent=first.from_checkpoint, config=dict(first.config),
                              replaces=first.replaces)]
    assert live.suggest(after) == pbt(population=8, seed=3).suggest(after) is not None
    assert live.owed(after) == [(7, 1.0)]


def test_the_seed_changes_the_random_choices():
    history = exploited_history()
    clones = [pbt(population=8, seed=seed).suggest(history) for seed in range(8)]
    assert len({tuple(sorted(c.config.items())) for c in clones}) > 1


CURVE_SPACE = Space({"a": {"float": [0.5, 1.0]}, "b": {"float": [0.01, 0.5]}})


def test_contract():
    # Clones use up the replay's trials, so the best sampled curve may never run there:
    # ``best_survives`` is checked below with a budget that lets it run.
    check_scheduler_contract(lambda metric, mode: PBTScheduler(metric, mode, population=4, space=CURVE_SPACE),
                             best_survives=False)


def test_the_best_curve_is_never_stopped():
    # Every config is a member (PBT samples only its population), the best one the 6th.
    out = replay(PBTScheduler("score", "maximize", population=len(CONTRACT_CONFIGS), space=CURVE_SPACE),
                 CONTRACT_CONFIGS, trials=40)
    best = [tid for tid, r in out.records.items() if r.config == CONTRACT_CONFIGS[5] and r.parent_id is None]
    assert best and not set(best) & set(out.stopped())


def test_replay_clones_and_keeps_the_population_going():
    out = replay(PBTScheduler("score", "maximize", population=4, space=CURVE_SPACE), CONTRACT_CONFIGS[:4],
                 workers=4, trials=12)
    assert out.suggestions, "no member was ever exploited"
    for s in out.suggestions:
        assert s.mutations and s.start_step is not None and s.start_step >= 1
        assert out.records[s.from_checkpoint].history  # cloned from a member with a checkpoint
    pruned = [r for r in out.records.values() if r.state == State.PRUNED]
    assert len(pruned) >= len(out.suggestions)


# ---- explore: mutations and the change log ---------------------------------------------------


def all_mutations(s: PBTScheduler, config: dict, n: int = 200) -> list[tuple[dict, dict]]:
    return [s.mutate(config, trial_id=i, step=1.0) for i in range(n)]


def test_change_log_is_ray_tunes():
    s = pbt(resample_probability=0.25)
    lines = [line for _c, m in all_mutations(s, CONFIG) for line in change_log(m)]
    assert "learning_rate: 3e-05 --- (* 1.2) --> 3.6e-05" in lines
    assert "learning_rate: 3e-05 --- (* 0.8) --> 2.4e-05" in lines
    assert "layers: 2 --- (+ 1) --> 3" in lines and "layers: 2 --- (- 1) --> 1" in lines
    assert "batch_size: 32 --- (shift left) --> 16" in lines and "batch_size: 32 --- (shift right) --> 64" in lines
    assert any(re.fullmatch(r"batch_size: 32 --- \(resample\) --> (16|32|64)", line) for line in lines)
    pattern = re.compile(r"\w+: \S+ --- \((\* 0\.8|\* 1\.2|[+-] 1|shift left|shift right|resample)\) --> \S+")
    assert all(pattern.fullmatch(line) for line in lines), [l for l in lines if not pattern.fullmatch(l)][:3]


def test_mutations_stay_in_bounds_and_fixed_parameters_never_change():
    s = pbt(resample_probability=0.3)
    for config in ({**CONFIG, "learning_rate": 1e-3, "layers": 6, "batch_size": 64, "dropout": 0.5},
                   {**CONFIG, "learning_rate": 1e-5, "layers": 1, "batch_size": 16, "dropout": 0.0}):
        for new, changes in all_mutations(s, config):
            assert 1e-5 <= new["learning_rate"] <= 1e-3 and 1 <= new["layers"] <= 6
            assert new["batch_size"] in (16, 32, 64) and 0.0 <= new["dropout"] <= 0.5
            assert new["epochs"] == 3 and "epochs" not in changes
            assert isinstance(new["layers"], int)
            if "(+ 1)" in changes["layers"] or "(- 1)" in changes["layers"]:
                assert new["layers"] != config["layers"]  # at an edge the step goes the other way
            if "shift" in changes["batch_size"]:
                assert new["batch_size"] != config["batch_size"]


def test_resample_probability_bounds():
    never = all_mutations(pbt(resample_probability=0.0), CONFIG, 50)
    always = all_mutations(pbt(resample_probability=1.0), CONFIG, 50)
    assert not any("resample" in t for _c, m in never for t in m.values())
    assert all("(resample)" in t for _c, m in always for t in m.values())


def test_log_parameters_move_by_a_factor_and_ints_by_their_step():
    space = Space({"lr": {"float": [1e-6, 1.0], "log": True}, "n": {"int": [0, 20], "step": 4}})
    s = PBTScheduler("acc", space=space, resample_probability=0.0)
    for new, changes in all_mutations(s, {"lr": 1e-4, "n": 8}, 40):
        assert math.isclose(new["lr"] / 1e-4, 1.2) or math.isclose(new["lr"] / 1e-4, 0.8)
        assert new["n"] in (4, 12) and changes["n"] in ("8 --- (+ 4) --> 12", "8 --- (- 4) --> 4")


def test_given_mutations_restrict_what_changes_and_their_ranges():
    s = pbt(mutations={"learning_rate": {"float": [1e-5, 1e-4], "log": True}, "batch_size": [16, 32]},
            resample_probability=1.0)
    for new, changes in all_mutations(s, CONFIG, 30):
        assert set(changes) == {"learning_rate", "batch_size"}
        assert 1e-5 <= new["learning_rate"] <= 1e-4 and new["batch_size"] in (16, 32)
        assert new["layers"] == CONFIG["layers"]


def test_inactive_conditional_parameters_are_not_mutated():
    space = Space({"opt": ["sgd", "adam"], "momentum": {"float": [0.5, 0.99], "when": {"opt": "sgd"}}})
    s = PBTScheduler("acc", space=space)
    new, changes = s.mutate({"opt": "adam"}, trial_id=0, step=1.0)
    assert "momentum" not in new and set(changes) == {"opt"}


# ---- the factory ----------------------------------------------------------------------------


def test_factory_builds_and_round_trips():
    spec = {"type": "pbt", "population": 8, "perturbation_interval": 1, "quantile": 0.25,
            "resample_probability": 0.25, "seed": 3, "mutations": {"learning_rate": {"float": [1e-5, 1e-3]}}}
    s = make_scheduler(spec, "accuracy", "maximize", space=SPACE)
    assert isinstance(s, PBTScheduler) and set(s.mutable) == {"learning_rate"}
    assert scheduler_to_dict(s) == spec
    again = make_scheduler(scheduler_to_dict(s), "accuracy", "maximize", space=SPACE)
    assert again.to_dict() == spec
    built = PBTScheduler("accuracy")  # built in Python, bound to the study's space by the factory
    assert make_scheduler(built, "accuracy", "maximize", space=SPACE) is built
    assert set(built.mutable) == {"learning_rate", "batch_size", "layers", "dropout"}


def test_a_clone_is_first_judged_an_interval_after_the_step_it_started_at():
    s = pbt(perturbation_interval=4)
    parent = member(0, [0.1 * i for i in range(1, 7)])  # reported steps 1..6
    s.on_end(parent)
    clone = TrialRecord(8, CONFIG, history=(Report(5.0, {"acc": 0.5}),), parent_id=0)
    # It started from the parent's step-4 checkpoint: step 5 crosses no multiple of 4 since.
    assert not s.is_perturbation_step(clone, 5.0)
    later = TrialRecord(8, CONFIG, history=(Report(5.0, {}), Report(8.0, {"acc": 0.5})), parent_id=0)
    assert s.is_perturbation_step(later, 8.0)
    root = TrialRecord(9, CONFIG, history=(Report(5.0, {"acc": 0.5}),))
    assert s.is_perturbation_step(root, 5.0)  # a root started at 0: it crossed 4


def test_a_stopped_member_keeps_its_place_for_one_interval():
    """As in Ray Tune (the exploited member keeps its last score until its next perturbation),
    a stopped member still counts in rankings within one interval of its last report."""
    s = pbt(population=3, quantile=0.5)
    s.on_result(member(0, [0.9]), 1.0, {"acc": 0.9})
    assert s.on_result(member(1, [0.1]), 1.0, {"acc": 0.1}) is Decision.STOP
    s.on_end(member(1, [0.1], state=State.PRUNED))
    assert s.on_result(member(2, [0.5]), 1.0, {"acc": 0.5}) is Decision.CONTINUE  # 0.1 is still below it
    # Two steps on, the stopped member (last report at step 1) is out of the population.
    s.on_result(member(0, [0.9, 0.9, 0.9]), 3.0, {"acc": 0.9})
    assert s.on_result(member(2, [0.5, 0.5, 0.5]), 3.0, {"acc": 0.5}) is Decision.STOP


def test_members_far_behind_are_left_out_but_judged_against_those_ahead():
    s = pbt(population=2)
    ahead = member(0, [0.2, 0.3, 0.4, 0.5, 0.6])
    s.on_result(ahead, 5.0, {"acc": 0.6})
    # Trial 1 is at step 2: trial 0 counts with its step-2 value (0.3), so 0.25 is below it.
    assert s.on_result(member(1, [0.1, 0.25]), 2.0, {"acc": 0.25}) is Decision.STOP
