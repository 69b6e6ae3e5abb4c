from __future__ import annotations

import math

import pytest

from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet


def test_objectives_constraints_and_store() -> None:
    ms = MetricSet.parse([
        {"name": "accuracy", "goal": "maximize"},
        {"name": "latency_ms", "strategy": "constraint", "max": 20},
        {"name": "train_seconds", "strategy": "store"},
    ])
    assert [m.name for m in ms.objectives] == ["accuracy"]
    assert not ms.is_multi_objective
    assert ms.feasible({"accuracy": 0.9, "latency_ms": 19.0})
    assert ms.violations({"latency_ms": 25.0}) == [5.0]
    assert ms.violations({}) == [math.inf]  # a constraint never reported is violated


def test_two_objectives_make_a_multi_objective_study() -> None:
    ms = MetricSet.parse(["accuracy", {"name": "latency", "goal": "minimize"}])
    assert ms.is_multi_objective and ms.directions == ["maximize", "minimize"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ([{"name": "a", "goal": "max"}], "metrics[0].goal"),
        ([{"name": "a", "strategy": "constraint"}], "metrics[0]"),
        ([{"name": "a", "min": 3, "max": 1}], "metrics[0]"),
        ([{"goal": "maximize"}], "metrics[0].name"),
        ([{"name": "a", "treshold": 1}], "metrics[0]"),
        ([{"name": "a", "strategy": "store"}], "metrics"),
        ([{"name": "a", "goal": "minimize"}, {"name": "a", "goal": "minimize"}], "metrics"),
        ([], "metrics"),
    ],
)
def test_bad_metrics_name_the_field(raw: list, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        MetricSet.parse(raw)
    assert err.value.field == field


# ---- no silent direction (issue 9.2) -----------------------------------------------------------


@pytest.mark.parametrize("name", ["loss", "val_loss", "error", "mse", "mae", "rmse", "perplexity", "latency",
                                  "latency_ms", "seconds", "train_seconds", "time", "wall_time", "eval/loss",
                                  "loss_mean"])
def test_lower_is_better_names_are_minimized(name: str) -> None:
    metric = MetricSet.parse(name).primary
    assert (metric.goal, metric.goal_inferred) == ("minimize", True)


@pytest.mark.parametrize("name", ["accuracy", "acc", "f1", "f1_macro", "test_accuracy", "auc", "roc_auc",
                                  "precision", "recall", "mcc", "r2", "reward", "samples_per_second"])
def test_higher_is_better_names_are_maximized(name: str) -> None:
    assert MetricSet.parse([{"name": name}]).primary.goal == "maximize"


def test_loss_is_minimized_end_to_end() -> None:
    """The reproducer: `metrics="loss"` used to maximize the loss."""
    import tunelab

    study = tunelab.tune(lambda c, r: {"loss": (c["x"] - 1) ** 2}, {"x": {"float": [-10, 10]}}, metrics="loss",
                         trials=12, seed=0, backend="inprocess", storage="memory", progress=False)
    losses = [t.metrics["loss"] for t in study.trials()]
    assert study.best_trial.metrics["loss"] == min(losses)


@pytest.mark.parametrize("name", ["x2", "score", "value", "neg_mse", "quality"])
def test_a_name_that_tells_nothing_needs_a_goal(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        MetricSet.parse([{"name": "accuracy"}, {"name": name}])
    assert err.value.field == "metrics[1].goal"
    assert "goal: maximize" in str(err.value) and "goal: minimize" in str(err.value)


def test_a_given_goal_wins_and_constraints_need_none() -> None:
    ms = MetricSet.parse([{"name": "loss", "goal": "maximize"}, {"name": "quality", "max": 3},
                          {"name": "notes", "strategy": "store"}])
    assert ms.primary.goal == "maximize" and not ms.primary.goal_inferred
    assert ms.describe_goals() == "maximize loss"
    assert MetricSet.parse(["accuracy", "val_loss"]).describe_goals() == (
        "maximize accuracy (goal from its name), minimize val_loss (goal from its name)")


def test_a_metric_object_without_goal_is_resolved_too() -> None:
    from tunelab.metrics import Metric

    assert MetricSet.parse([Metric("loss")]).primary.goal == "minimize"
    with pytest.raises(ConfigError, match=r"metrics\[0\].goal"):
        MetricSet.parse([Metric("quality")])


@pytest.mark.parametrize("bound", [math.nan, math.inf, -math.inf, ".nan", True])
def test_bounds_must_be_finite_numbers(bound) -> None:
    with pytest.raises(ConfigError) as err:
        MetricSet.parse([{"name": "accuracy"}, {"name": "latency", "max": bound}])
    assert err.value.field == "metrics[1].max"
