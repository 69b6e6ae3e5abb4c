from __future__ import annotations

import optuna
import pytest

from tunelab.errors import ConfigError
from tunelab.space import Choice, Fixed, Float, Int, Space


def test_yaml_forms_parse_to_params() -> None:
    space = Space.from_dict({
        "lr": {"float": ["1e-5", 1.0e-3], "log": True},  # YAML 1.1 reads 1e-5 as a string
        "layers": {"int": [1, 6]},
        "warmup": {"int": [0, 500], "step": 50},
        "bs": {"choice": [16, 32]},
        "epochs": {"fixed": 3},
        "shorthand_fixed": 7,
        "shorthand_choice": ["a", "b"],
    })
    assert space.params["lr"] == Float(1e-5, 1e-3, log=True)
    assert space.params["layers"] == Int(1, 6)
    assert space.params["warmup"] == Int(0, 500, step=50)
    assert space.params["bs"] == Choice([16, 32])
    assert space.params["epochs"] == Fixed(3)
    assert space.params["shorthand_fixed"] == Fixed(7)
    assert space.params["shorthand_choice"] == Choice(["a", "b"])
    assert Space.from_dict(space.to_dict()).params == space.params


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"x": {"float": [1.0, 0.5]}}, "space.x", "lower than `high`"),
        ({"x": {"float": [1.0, 1.0]}}, "space.x", "lower than `high`"),
        ({"x": {"float": [0.0, 1.0], "log": True}}, "space.x.low", "low > 0"),
        ({"x": {"int": [-1, 4], "log": True}}, "space.x.low", "low > 0"),
        ({"x": {"choice": []}}, "space.x.choice", "empty"),
        ({"x": {"choice": [1, 1]}}, "space.x.choice", "twice"),
        ({"x": {"float": [0, 1], "scale": "log"}}, "space.x", "unknown keys ['scale']"),
        ({"x": {"floats": [0, 1]}}, "space.x", "exactly one of"),
        ({"x": {"float": [0, 1], "when": {"y": 1}}}, "space.x.when", "`y`, which is not a parameter"),
        ({"x": {"int": [0, 10], "step": 3}}, "space.x.step", "does not divide"),
        ({"x": {"int": [0.5, 3]}}, "space.x.low", "whole numbers"),
        ({"x": {"float": [0, "abc"]}}, "space.x.high", "not a number"),
        ({"x": {"float": [1e-3, 1.0], "log": True, "step": 0.1}}, "space.x.step", "cannot be combined"),
        ({"a": {"choice": [1, 2], "when": {"b": 1}}, "b": {"choice": [1, 2], "when": {"a": 1}}}, ".when", "cycle"),
    ],
)
def test_validation_names_the_parameter(spec: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        Space.from_dict(spec)
    assert field in err.value.field
    assert words in str(err.value)


def test_choices_keep_their_types() -> None:
    space = Space.from_dict({"x": {"choice": [None, True, 1, 1.5, "a"]}})
    seen = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        value = space.sample(trial)["x"]
        seen.add((type(value).__name__, value))
        study.tell(trial, 0.0)
    assert seen == {("NoneType", None), ("bool", True), ("int", 1), ("float", 1.5), ("str", "a")}


def test_values_not_indices_and_ints_stay_ints() -> None:
    space = Space.from_dict({"batch_size": {"choice": [16, 32]}, "layers": {"int": [1, 6]},
                             "epochs": {"fixed": 3}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        config = space.sample(trial)
        assert config["batch_size"] in (16, 32)
        assert isinstance(config["layers"], int)
        assert config["epochs"] == 3
        study.tell(trial, 0.0)


def test_conditional_parameters_only_when_active() -> None:
    space = Space.from_dict({
        "momentum": {"float": [0.8, 0.99], "when": {"optimizer": "sgd"}},
        "optimizer": {"choice": ["sgd", "adam"]},
        "nesterov": {"choice": [True, False], "when": {"optimizer": "sgd"}},
    })
    assert space.order.index("optimizer") < space.order.index("momentum")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(20):
        trial = study.ask()
        config = space.sample(trial)
        kinds.add(config["optimizer"])
        if config["optimizer"] == "sgd":
            assert set(config) == {"momentum", "optimizer", "nesterov"}
        else:
            assert set(config) == {"optimizer"}
        study.tell(trial, 0.0)
    assert kinds == {"sgd", "adam"}


def test_grid_lists_every_value() -> None:
    space = Space.from_dict({"bs": {"choice": [16, 32]}, "w": {"int": [0, 100], "step": 50},
                             "d": {"float": [0.0, 0.2], "step": 0.1}})
    assert space.grid() == {"bs": [16, 32], "w": [0, 50, 100], "d": [0.0, 0.1, 0.2]}
    assert space.grid_size() == 18
    with pytest.raises(ConfigError, match="continuous"):
        Space.from_dict({"lr": {"float": [0.1, 1.0]}}).grid()
