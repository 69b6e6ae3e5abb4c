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
        ([{"name": "a"}, {"name": "a"}], "metrics"),
        ([], "metrics"),
    ],
)
def test_bad_metrics_name_the_field(raw: list, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        MetricSet.parse(raw)
    assert err.value.field == field
