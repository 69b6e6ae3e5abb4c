"""ASHA: rungs, the top-1/rf rule, jumps over rungs, mode mirror, determinism."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from tunelab.errors import ConfigError
from tunelab.schedulers import ASHAScheduler, Decision
from tunelab.testing.scheduler_contract import curve, replay
from tunelab.trial import Report, State, TrialRecord

C, S = Decision.CONTINUE, Decision.STOP


def feed(scheduler: ASHAScheduler, trial_id: int, step: float, value: float, metric: str = "acc") -> Decision:
    record = TrialRecord(trial_id, {}, history=(Report(step, {metric: value}),))
    return scheduler.on_result(record, step, {metric: value})


def asha(mode: str = "maximize", **settings: float) -> ASHAScheduler:
    return ASHAScheduler("acc", mode, **{"min_resource": 1, "max_resource": 27, **settings})


@pytest.mark.parametrize(
    ("settings", "levels"),
    [
        ({"min_resource": 1, "max_resource": 9, "reduction_factor": 3}, [1, 3]),  # no rung at max: trials end there
        ({"min_resource": 1, "max_resource": 10, "reduction_factor": 3}, [1, 3, 9]),
        ({"min_resource": 1, "max_resource": 3, "reduction_factor": 3}, [1]),
        ({"min_resource": 0.5, "max_resource": 4, "reduction_factor": 2}, [0.5, 1, 2]),
    ],
)
def test_rungs_lie_below_max_resource(settings, levels):
    assert ASHAScheduler("acc", **settings).rung_levels() == levels


def test_unbounded_rungs_need_a_limit_to_list():
    unbounded = ASHAScheduler("acc", reduction_factor=2)
    assert unbounded.rung_levels(up_to=8) == [1, 2, 4, 8]
    with pytest.raises(ValueError):
        unbounded.rung_levels()


def test_keeps_the_top_third_in_arrival_order():
    values = [0.5, 0.6, 0.4, 0.7, 0.3, 0.8]
    # n=1..6 recorded -> keep ceil(n/3) = 1, 1, 1, 2, 2, 2 best, the trial itself included.
    scheduler = asha()
    assert [feed(scheduler, i, 1, v) for i, v in enumerate(values)] == [C, C, S, C, S, C]


def test_minimize_mirrors_maximize():
    values = [0.5, 0.6, 0.4, 0.7, 0.3, 0.8, 0.55, 0.65, 0.45]
    up, down = asha("maximize"), asha("minimize")
    assert [feed(up, i, 1, v) for i, v in enumerate(values)] == [feed(down, i, 1, -v) for i, v in enumerate(values)]
    assert down.recorded(0)[3] == -0.7  # recorded values keep the metric's own sign


def test_fewer_than_rf_values_only_the_best_so_far_goes_on_and_ties_go_on():
    scheduler = asha()
    assert feed(scheduler, 0, 1, 0.5) is C
    assert feed(scheduler, 1, 1, 0.5) is C  # a tie with the cutoff continues
    assert feed(scheduler, 2, 1, 0.49) is S


def linear_percentile(values: list[float], q: Fraction) -> Fraction:
    """numpy's default (linear) percentile, in exact arithmetic: position (n - 1) * q."""
    ranked = sorted(Fraction(v) for v in values)
    position = (len(ranked) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ranked) - 1)
    return ranked[low] + (position - low) * (ranked[high] - ranked[low])


@pytest.mark.parametrize("rf", [2, 3, 4])
def test_rule_equals_the_percentile_cutoff_including_the_trial(rf):
    rng = random.Random(rf)
    scheduler, seen = asha(reduction_factor=rf), []
    for trial_id in range(60):
        value = rng.random()
        seen.append(value)
        # Ray's _Bracket.cutoff, nanpercentile(values, 100 * (1 - 1/rf)), over values including this one.
        cutoff = linear_percentile(seen, 1 - Fraction(1, rf))
        assert feed(scheduler, trial_id, 1, value) is (C if value >= cutoff else S)
        assert sum(v >= cutoff for v in seen) == math.ceil(len(seen) / rf)


def test_numpy_float_percentile_can_drop_a_trial_the_rank_rule_keeps():
    # 31 values, rf=3: the exact position is 30 * 2/3 = 20, numpy's is 20.000000000000004, so its
    # cutoff lies just above the 21st value. Ranking keeps ceil(31/3) = 11; numpy would keep 10.
    values = [float(v) for v in range(31)]
    assert np.percentile(values, 100 * (1 - 1 / 3)) > 20.0
    scheduler = asha()
    for v in values:
        if v != 20.0:
            feed(scheduler, int(v), 1, v)
    assert feed(scheduler, 20, 1, 20.0) is C  # the 11th best of 31


def test_a_report_jumping_over_rungs_is_checked_at_each_lowest_first():
    scheduler = asha()  # rungs 1, 3, 9
    for trial_id, value in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]):
        assert feed(scheduler, trial_id, 1, value) is C  # each is the best so far
    assert feed(scheduler, 6, 3, 0.9) is C  # first report at step 3: recorded at rungs 1 and 3
    assert scheduler.recorded(1) == {6: 0.9}
    # Step 4: passes rung 1 (top 3 of 8) but fails rung 3 (top 1 of 2).
    assert feed(scheduler, 7, 4, 0.7) is S
    assert scheduler.recorded(0)[7] == 0.7 and scheduler.recorded(1) == {6: 0.9, 7: 0.7}
    # Fails rung 1 already: never promoted, so not recorded at rung 3.
    assert feed(scheduler, 8, 5, 0.05) is S
    assert 8 in scheduler.recorded(0) and 8 not in scheduler.recorded(1)


def test_only_the_first_report_at_a_rung_counts():
    scheduler = asha()
    assert feed(scheduler, 0, 1, 0.9) is C
    assert feed(scheduler, 1, 1, 0.95) is C
    assert feed(scheduler, 0, 1.5, 0.01) is C  # between rungs: nothing to judge
    assert scheduler.recorded(0) == {0: 0.9, 1: 0.95}


def test_missing_metric_continues_and_records_nothing():
    scheduler = asha()
    record = TrialRecord(0, {}, history=(Report(1, {"loss": 0.3}),))
    assert scheduler.on_result(record, 1, {"loss": 0.3}) is C
    assert scheduler.recorded(0) == {}


def test_a_stopped_trial_stays_stopped_and_nan_is_stopped():
    scheduler = asha()
    feed(scheduler, 0, 1, 0.9)
    assert feed(scheduler, 1, 1, 0.1) is S
    assert feed(scheduler, 1, 2, 0.99) is S  # a late report does not revive it
    assert feed(scheduler, 2, 1, float("nan")) is S


def test_records_known_only_at_their_end_fill_the_rungs_as_if_seen_live():
    histories = {0: [(1, 0.5), (3, 0.6)], 1: [(1, 0.7), (3, 0.8)], 2: [(1, 0.2)]}
    live, resumed = asha(), asha()
    for trial_id, reports in histories.items():
        history = tuple(Report(step, {"acc": v}) for step, v in reports)
        for n, (step, v) in enumerate(reports, 1):
            live.on_result(TrialRecord(trial_id, {}, history=history[:n]), step, {"acc": v})
        record = TrialRecord(trial_id, {}, State.COMPLETE, history)
        live.on_end(record)  # seen live already: changes nothing
        resumed.on_end(record)
    assert [live.recorded(k) for k in (0, 1)] == [resumed.recorded(k) for k in (0, 1)]
    assert live.recorded(1) == {0: 0.6, 1: 0.8}  # trial 2 stopped at rung 1 before step 3
    assert feed(live, 3, 3, 0.65) is feed(resumed, 3, 3, 0.65) is S


def test_fractional_steps_reach_rungs_despite_float_rounding():
    scheduler = ASHAScheduler("acc", min_resource=0.1, max_resource=1, reduction_factor=3)
    assert scheduler.rung_levels()[1] == 0.1 * 3 != 0.3
    feed(scheduler, 0, 0.3, 0.5)
    assert scheduler.recorded(1) == {0: 0.5}


def test_trials_are_not_stopped_at_max_resource():
    scheduler = ASHAScheduler("acc", min_resource=1, max_resource=3)
    assert [feed(scheduler, 0, 1, 0.5), feed(scheduler, 1, 1, 0.6)] == [C, C]
    assert [feed(scheduler, 1, 3, 0.9), feed(scheduler, 0, 3, 0.55)] == [C, C]


def test_synchronous_curves_stop_the_expected_trials_at_the_expected_rungs():
    # v = a - 0.1/step ranks trials the same at every step; nine workers at one speed report
    # rung 1 in id order: keep ceil(n/3) -> stop 2, 4, 6, 8; rung 3 sees 0, 1, 3, 5, 7 -> stop 7.
    configs = [{"a": a, "b": 0.1} for a in (0.6, 0.7, 0.5, 0.8, 0.4, 0.9, 0.65, 0.75, 0.55)]
    run = replay(ASHAScheduler("score", max_resource=9), configs, workers=9, step_seconds=lambda _: 1.0)
    assert run.stopped() == {2: 1, 4: 1, 6: 1, 8: 1, 7: 3}


def test_async_replay_is_deterministic_mirrored_and_spares_the_best():
    configs = [{"a": 0.5 + 0.05 * (i * 7 % 10), "b": 0.02 + 0.1 * (i * 3 % 10)} for i in range(20)]
    configs[13] = {"a": 1.2, "b": 0.01}  # best at every step

    def run(mode: str, sign: float):
        return replay(
            ASHAScheduler("score", mode, min_resource=1, max_resource=9), configs, lambda c, s: sign * curve(c, s)
        )

    first, again, mirrored = run("maximize", 1.0), run("maximize", 1.0), run("minimize", -1.0)
    assert first.log() == again.log()
    assert first.decisions == mirrored.decisions
    assert 13 not in first.stopped()
    assert set(first.stopped().values()) <= {1, 3}  # only ever at a rung
    assert 6 <= len(first.stopped()) < 20


def test_bad_settings_raise_config_errors_naming_the_setting():
    with pytest.raises(ConfigError, match="reduction_factor"):
        ASHAScheduler("acc", reduction_factor=1)
    with pytest.raises(ConfigError, match="min_resource"):
        ASHAScheduler("acc", min_resource=-1)
    with pytest.raises(ConfigError, match="max_resource"):
        ASHAScheduler("acc", min_resource=2, max_resource=2)


def test_to_dict_and_repr_show_the_settings():
    scheduler = ASHAScheduler("acc", "minimize", min_resource=0.5, max_resource=4, reduction_factor=2)
    assert scheduler.to_dict() == {"type": "asha", "min_resource": 0.5, "max_resource": 4, "reduction_factor": 2}
    assert repr(scheduler) == (
        "ASHAScheduler(metric='acc', mode='minimize', min_resource=0.5, max_resource=4, reduction_factor=2)"
    )
