"""Median stopping: the median of the others' best-so-far, warmup, min_trials, interval."""

from __future__ import annotations

import pytest

from tunelab.errors import ConfigError
from tunelab.schedulers import Decision, MedianStoppingScheduler
from tunelab.testing.scheduler_contract import curve, replay
from tunelab.trial import Report, State, TrialRecord

C, S = Decision.CONTINUE, Decision.STOP

#: Three finished curves; the medians of their best values are 0.5 at step 1, 0.6 at 2, 0.7 at 3.
OTHERS = {0: [0.5, 0.6, 0.7], 1: [0.4, 0.5, 0.6], 2: [0.6, 0.7, 0.8]}


class Trials:
    """Feeds reports as the tuner does: each record holds the trial's whole history so far."""

    def __init__(self, scheduler: MedianStoppingScheduler, sign: float = 1.0) -> None:
        self.scheduler, self.sign = scheduler, sign
        self.history: dict[int, tuple[Report, ...]] = {}

    def report(self, trial_id: int, step: float, value: float) -> Decision:
        metrics = {"acc": self.sign * value}
        self.history[trial_id] = self.history.get(trial_id, ()) + (Report(step, metrics),)
        return self.scheduler.on_result(TrialRecord(trial_id, {}, history=self.history[trial_id]), step, metrics)

    def run(self, trial_id: int, values: list[float], steps: list[float] | None = None) -> list[Decision]:
        return [self.report(trial_id, s, v) for s, v in zip(steps or range(1, len(values) + 1), values)]

    def finish(self, trial_id: int, state: State = State.COMPLETE) -> None:
        self.scheduler.on_end(TrialRecord(trial_id, {}, state, self.history.get(trial_id, ())))


def with_others(others: dict[int, list[float]] = OTHERS, sign: float = 1.0, **settings: float) -> Trials:
    mode = "maximize" if sign > 0 else "minimize"
    trials = Trials(MedianStoppingScheduler("acc", mode, **{"min_trials": 3, **settings}), sign)
    for trial_id, values in others.items():
        trials.run(trial_id, values)
        trials.finish(trial_id)
    return trials


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["maximize", "minimize"])
def test_stops_a_trial_worse_than_the_median_of_the_others(sign):
    trials = with_others(sign=sign)
    assert trials.run(3, [0.55, 0.58]) == [C, S]  # 0.55 >= 0.5, then best 0.58 < 0.6
    assert with_others(sign=sign).run(4, [0.5, 0.6, 0.7]) == [C, C, C]  # equal to the median goes on


def test_judges_the_trials_best_value_so_far():
    assert with_others().run(3, [0.9, 0.1, 0.1]) == [C, C, C]


def test_others_count_from_the_step_they_reach_with_their_best_up_to_it():
    trials = with_others({0: [0.5], 1: [0.4], 2: [0.6]})  # still running, at step 1
    assert trials.run(3, [0.45, 0.1]) == [S, C]  # at step 2 no other has arrived yet
    for trial_id, value in ((0, 0.3), (1, 0.3), (2, 0.3)):  # a dip: their best stays at step 1
        trials.report(trial_id, 2, value)
    assert trials.report(3, 3, 0.45) is C  # nobody has reached step 3
    # Bests at <= 2 are 0.5, 0.4, 0.6 and trial 3's 0.45: median 0.475 (their 0.3 dips would give 0.3).
    assert trials.report(4, 2, 0.47) is S


def test_warmup_steps_protect_early_reports():
    assert with_others(warmup_steps=2).run(3, [0.0, 0.0, 0.0]) == [C, S, S]
    assert with_others(warmup_steps=1.5).run(3, [0.0, 0.0], [1, 1.5]) == [C, S]


def test_min_trials_others_are_needed():
    trials = with_others({0: [0.5], 1: [0.6]}, min_trials=3)
    assert trials.run(3, [0.1]) == [C]
    trials.run(2, [0.7])
    assert trials.report(4, 1, 0.1) is S
    assert with_others({0: [0.5]}, min_trials=1).run(3, [0.1]) == [S]


@pytest.mark.parametrize(
    ("settings", "decisions"),
    [
        ({"interval": 1}, [S, S, S, S, S, S]),
        ({"interval": 0}, [S, S, S, S, S, S]),
        ({"interval": 2}, [S, S, C, S, C, S]),  # checks where steps reach 0, 2, 4, 6
        ({"interval": 2, "warmup_steps": 1}, [S, C, S, C, S, C]),  # 1, 3, 5
        ({"interval": 3, "warmup_steps": 2}, [C, S, C, C, S, C]),  # 2, 5
    ],
)
def test_interval_sets_the_check_points(settings, decisions):
    others = {t: [0.5 + 0.01 * t] * 6 for t in range(3)}
    assert with_others(others, **settings).run(9, [0.1] * 6) == decisions


def test_fractional_steps():
    steps = [0.5, 1.0, 1.5, 2.0]
    trials = Trials(MedianStoppingScheduler("acc", min_trials=2))
    for trial_id in range(2):
        trials.run(trial_id, [0.5] * 4, steps)
    assert trials.run(2, [0.1] * 4, steps) == [S, S, C, S]


def test_histories_given_only_at_the_end_count():
    trials = Trials(MedianStoppingScheduler("acc", min_trials=2))
    for trial_id in range(2):
        trials.history[trial_id] = (Report(1, {"acc": 0.8}), Report(2, {"acc": 0.9}))
        trials.finish(trial_id, State.PRUNED if trial_id else State.COMPLETE)
    trials.finish(7, State.FAILED)  # died before reporting: no curve, no effect
    assert trials.run(3, [0.7]) == [S]


def test_missing_metric_and_nan_are_ignored():
    trials = with_others()
    record = TrialRecord(3, {}, history=(Report(1, {"loss": 2.0}),))
    assert trials.scheduler.on_result(record, 1, {"loss": 2.0}) is C
    trials.report(4, 1, float("nan"))
    trials.report(5, 1, float("nan"))
    assert trials.report(6, 1, 0.49) is S  # the NaN trials did not dilute the median


def test_replay_is_deterministic_mirrored_and_spares_the_best():
    configs = [{"a": 0.5 + 0.05 * (i * 7 % 10), "b": 0.05 + 0.1 * (i * 3 % 10)} for i in range(20)]
    configs[11] = {"a": 1.2, "b": 0.01}
    runs = [
        replay(MedianStoppingScheduler("score", mode, min_trials=3), configs, lambda c, s, k=sign: k * curve(c, s))
        for mode, sign in (("maximize", 1), ("maximize", 1), ("minimize", -1))
    ]
    assert runs[0].stopped() and runs[0].log() == runs[1].log()
    assert runs[0].decisions == runs[2].decisions
    assert 11 not in runs[0].stopped()


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"min_trials": 0}, "min_trials"), ({"warmup_steps": -1}, "warmup_steps"), ({"interval": "2"}, "interval")],
)
def test_bad_settings_raise_config_errors(settings, field):
    with pytest.raises(ConfigError) as caught:
        MedianStoppingScheduler("acc", **settings)
    assert caught.value.field == field


def test_to_dict_and_repr():
    scheduler = MedianStoppingScheduler("loss", "minimize", warmup_steps=2, min_trials=3, interval=0.5)
    assert scheduler.to_dict() == {"type": "median", "warmup_steps": 2, "min_trials": 3, "interval": 0.5}
    assert "warmup_steps=2" in repr(scheduler) and "mode='minimize'" in repr(scheduler)
