"""Hyperband: bracket layout, stable weighted assignment, competition within a bracket only."""

from __future__ import annotations

from collections import Counter

import pytest

from tunelab.errors import ConfigError
from tunelab.schedulers import ASHAScheduler, Decision, HyperbandScheduler
from tunelab.testing.scheduler_contract import curve, replay
from tunelab.trial import Report, TrialRecord

C, S = Decision.CONTINUE, Decision.STOP


def feed(scheduler: HyperbandScheduler, trial_id: int, step: float, value: float) -> Decision:
    record = TrialRecord(trial_id, {}, history=(Report(step, {"acc": value}),))
    return scheduler.on_result(record, step, {"acc": value})


def hyperband(**settings: float) -> HyperbandScheduler:
    return HyperbandScheduler("acc", **{"min_resource": 1, "max_resource": 9, **settings})


def ids_in(scheduler: HyperbandScheduler, bracket: int, count: int) -> list[int]:
    return [i for i in range(1000) if scheduler.bracket_of(i) == bracket][:count]


@pytest.mark.parametrize(
    ("settings", "starts", "weights"),
    [
        ({"max_resource": 9}, [1, 3, 9], [9, 5, 3]),
        ({"max_resource": 10}, [1, 3, 9], [9, 5, 3]),
        ({"max_resource": 27}, [1, 3, 9, 27], [27, 12, 6, 4]),
        ({"min_resource": 0.5, "max_resource": 4, "reduction_factor": 2}, [0.5, 1, 2, 4], [8, 6, 4, 4]),
        ({"max_resource": 2}, [1], [1]),
    ],
)
def test_brackets_and_their_budget_weights(settings, starts, weights):
    scheduler = hyperband(**settings)
    assert scheduler.bracket_min_resources() == starts
    assert scheduler.bracket_weights() == weights  # Optuna: ceil(n * rf**s / (s + 1))


def test_assignment_is_a_fixed_function_of_the_trial_id():
    # Golden values: the same in every process (no salted hash()) and in any order of arrival.
    golden = [0, 1, 0, 2, 0, 0, 1, 0, 2, 1, 0, 1, 0, 0, 1, 0, 2, 0]
    first, second = hyperband(), hyperband()
    assert [first.bracket_of(i) for i in range(18)] == golden
    for i in reversed(range(18)):
        feed(second, i, 1, 0.5)
    assert [second.bracket_of(i) for i in range(18)] == golden


def test_assignment_spreads_trials_by_bracket_budget():
    scheduler = hyperband(max_resource=27)
    assert Counter(scheduler.bracket_of(i) for i in range(49)) == {0: 27, 1: 12, 2: 6, 3: 4}
    counts = Counter(scheduler.bracket_of(i) for i in range(4900))
    assert all(abs(counts[b] - 100 * w) <= 5 for b, w in enumerate(scheduler.bracket_weights()))


def test_trials_compete_only_within_their_bracket():
    scheduler = hyperband()
    early, late = ids_in(scheduler, 0, 3), ids_in(scheduler, 1, 2)
    # Bracket 1 starts halving at step 3: a poor value at step 1 is not judged there.
    assert [feed(scheduler, t, 1, v) for t, v in zip(early, (0.8, 0.9, 0.95))] == [C, C, C]
    assert feed(scheduler, late[0], 1, 0.01) is C
    # At step 3 the late trial meets only bracket 1, which is empty: it goes on.
    assert [feed(scheduler, t, 3, v) for t, v in zip(early, (0.9, 0.95, 0.97))] == [C, C, C]
    assert feed(scheduler, late[0], 3, 0.2) is C
    assert feed(scheduler, late[1], 3, 0.1) is S  # worse than its bracket mate
    assert feed(scheduler, early[0], 1, 0.0) is C  # already judged at rung 1


def test_the_last_bracket_runs_every_trial_to_the_end():
    scheduler = hyperband()
    last = ids_in(scheduler, 2, 5)
    assert [feed(scheduler, t, step, 1.0 / (t + 1)) for t in last for step in (1, 3, 9)] == [C] * 15


def test_each_bracket_decides_like_an_asha_with_its_min_resource():
    scheduler = HyperbandScheduler("score", min_resource=1, max_resource=9)
    configs = [{"a": 0.5 + 0.05 * (i * 7 % 10), "b": 0.05 + 0.1 * (i * 3 % 10)} for i in range(40)]
    run = replay(scheduler, configs, workers=4)
    for bracket, start in enumerate(scheduler.bracket_min_resources()[:2]):
        members = [i for i in range(40) if scheduler.bracket_of(i) == bracket]
        alone = ASHAScheduler("score", min_resource=start, max_resource=9)
        # Feed the bracket's reports, in the order they came, to a lone ASHA.
        expected = [
            (tid, step, alone.on_result(run.records[tid], step, {"score": curve(configs[tid], step)}))
            for tid, step, _ in run.decisions if tid in members
        ]
        assert [d for d in run.decisions if d[0] in members] == expected
        assert any(d is S for *_, d in expected)


def test_replay_is_deterministic_and_mirrored():
    configs = [{"a": 0.5 + 0.05 * (i * 7 % 10), "b": 0.05 + 0.1 * (i * 3 % 10)} for i in range(30)]
    runs = [
        replay(HyperbandScheduler("score", mode, max_resource=9), configs, lambda c, s, k=sign: k * curve(c, s))
        for mode, sign in (("maximize", 1), ("maximize", 1), ("minimize", -1))
    ]
    assert runs[0].stopped() and runs[0].log() == runs[1].log()
    assert runs[0].decisions == runs[2].decisions


def test_hyperband_needs_max_resource():
    with pytest.raises(ConfigError, match="max_resource"):
        HyperbandScheduler("acc")
    with pytest.raises(ConfigError, match="reduction_factor"):
        HyperbandScheduler("acc", max_resource=9, reduction_factor=1)


def test_to_dict_shows_the_settings():
    assert hyperband().to_dict() == {"type": "hyperband", "min_resource": 1, "max_resource": 9, "reduction_factor": 3}
