"""The objective's YAML form and its checks before any trial (``from_config`` and ``validate``)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet
from tunelab.nlp.settings import TUNABLE, resolve
from tunelab.objectives.text_classification import TextClassification
from tunelab.space import Space

ACCURACY = MetricSet.parse([{"name": "accuracy", "goal": "maximize"}])


def _raw(model: Path, data: dict[str, Path], **extra: Any) -> dict[str, Any]:
    return {"type": "text_classification", "model": str(model),
            "data": {"train": str(data["train"]), "validation": str(data["validation"]), "text": "text",
                     "label": "label"}, **extra}


def test_from_config_reads_options_and_flat_defaults(tiny_model: Path, tiny_data: dict[str, Path]) -> None:
    obj = TextClassification.from_config(_raw(tiny_model, tiny_data, max_length=64, eval_steps=10,
                                              num_train_epochs=2, batch_size=16, model_kwargs={"num_hidden_layers": 1}))
    assert obj.max_length == 64 and obj.eval_steps == 10
    assert obj.defaults == {"num_train_epochs": 2.0, "per_device_train_batch_size": 16}
    assert obj.data.text == "text" and Path(obj.data.train).is_absolute()
    assert pickle.loads(pickle.dumps(obj)) == obj


@pytest.mark.parametrize("extra, field, words", [
    ({"learning_rte": 1e-3}, "objective.learning_rte", "learning_rate"),
    ({"num_train_epochs": 0}, "objective.num_train_epochs", "(0, 10000]"),
    ({"lr_scheduler_type": "step"}, "objective.lr_scheduler_type", "cosine"),
    ({"eval_steps": 0}, "objective.eval_steps", "positive"),
    ({"fault_injection": {"segfault": 1}}, "objective.fault_injection.segfault", "oom_above_micro_batch"),
    ({"type": "function"}, "objective.type", "text_classification"),
])
def test_from_config_errors(tiny_model: Path, tiny_data: dict[str, Path], extra: dict, field: str,
                            words: str) -> None:
    with pytest.raises(ConfigError) as err:
        TextClassification.from_config(_raw(tiny_model, tiny_data, **extra))
    assert err.value.field == field and words in str(err.value)


def test_missing_model_and_data_keys(tiny_data: dict[str, Path]) -> None:
    with pytest.raises(ConfigError) as err:
        TextClassification.from_config({"data": {"train": "x.csv", "validation_split": 0.1}})
    assert err.value.field == "objective.model"
    with pytest.raises(ConfigError) as err:
        TextClassification.from_config({"model": "./m"})
    assert err.value.field == "objective.data"


def test_model_from_a_package(tiny_data: dict[str, Path]) -> None:
    obj = TextClassification.from_config({"model": {"package": "json"}, "data": {"train": "a.csv",
                                                                                 "validation_split": 0.1}})
    assert Path(obj.model_source()).name == "json"
    with pytest.raises(ConfigError, match="not installed"):
        TextClassification.from_config({"model": {"package": "no_such_pkg_xyz"}, "data": {"train": "a.csv",
                                                                                       "validation_split": 0.1}})


def _validate(obj: TextClassification, space: dict[str, Any], metrics: MetricSet = ACCURACY) -> None:
    obj.validate(Space(space), metrics)


def test_validate_accepts_every_tunable_setting(tiny_model: Path, tiny_data: dict[str, Path]) -> None:
    obj = TextClassification.from_config(_raw(tiny_model, tiny_data))
    space = {
        "learning_rate": {"float": [1e-5, 1e-3], "log": True}, "batch_size": {"choice": [16, 32]},
        "weight_decay": {"float": [1e-6, 1e-2], "log": True}, "warmup_ratio": {"float": [0.0, 0.2]},
        "num_train_epochs": {"int": [1, 3]}, "max_grad_norm": {"float": [0.5, 2.0]},
        "gradient_accumulation_steps": {"choice": [1, 2]}, "lr_scheduler_type": {"choice": ["linear", "cosine"]},
        "adam_beta1": 0.9, "adam_beta2": {"float": [0.98, 0.999]}, "adam_epsilon": 1e-8,
        "label_smoothing_factor": {"float": [0.0, 0.2]}, "seed": {"int": [0, 5]},
        "hidden_dropout_prob": {"float": [0.0, 0.3]}, "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": {"float": [0.0, 0.5]}, "max_length": {"choice": [16, 32]},
    }
    _validate(obj, space, MetricSet.parse([{"name": "f1", "goal": "maximize"},
                                           {"name": "train_seconds", "strategy": "store"}]))
    assert obj._select == ("f1", "maximize") and obj._lengths == (16, 32)
    assert set(space) - {"batch_size"} | {"per_device_train_batch_size"} == set(TUNABLE)


@pytest.mark.parametrize("space, field, words", [
    ({"learning_rte": {"float": [1e-5, 1e-3]}}, "space.learning_rte", "per_device_train_batch_size"),
    ({"batch_size": {"float": [8, 32]}}, "space.batch_size", "int"),
    ({"batch_size": [8, 16], "per_device_train_batch_size": 8}, "space.per_device_train_batch_size", "second"),
    ({"lr_scheduler_type": {"choice": ["linear", "polynomial"]}}, "space.lr_scheduler_type.choice", "cosine"),
    ({"warmup_ratio": {"float": [0.0, 1.5]}}, "space.warmup_ratio.high", "[0, 1]"),
    ({"max_length": {"choice": [64, 256]}}, "space.max_length", "128 positions"),
])
def test_validate_rejects_bad_spaces(tiny_model: Path, tiny_data: dict[str, Path], space: dict, field: str,
                                     words: str) -> None:
    obj = TextClassification.from_config(_raw(tiny_model, tiny_data))
    with pytest.raises(ConfigError) as err:
        _validate(obj, space)
    assert err.value.field == field and words in str(err.value)


def test_validate_checks_metrics_model_and_data(tmp_path: Path, tiny_model: Path, tiny_data: dict[str, Path]) -> None:
    space = {"learning_rate": {"float": [1e-5, 1e-3]}}
    obj = TextClassification.from_config(_raw(tiny_model, tiny_data))
    with pytest.raises(ConfigError, match="f1_macro") as err:
        _validate(obj, space, MetricSet.parse([{"name": "bleu"}]))
    assert err.value.field == "metrics"
    with pytest.raises(ConfigError) as err:
        _validate(TextClassification.from_config(_raw(tmp_path / "no-model", tiny_data)), space)
    assert err.value.field == "objective.model" and "does not exist" in str(err.value)
    bad_data = {**tiny_data, "validation": tmp_path / "missing.csv"}
    with pytest.raises(ConfigError) as err:
        _validate(TextClassification.from_config(_raw(tiny_model, bad_data)), space)
    assert err.value.field == "objective.data.validation"
    raw = _raw(tiny_model, tiny_data)
    raw["data"]["text"] = "review"
    with pytest.raises(ConfigError) as err:
        _validate(TextClassification.from_config(raw), space)
    assert err.value.field == "objective.data.text" and "['text', 'label']" in str(err.value)
    with pytest.raises(ConfigError) as err:
        _validate(TextClassification.from_config(_raw(tiny_model, tiny_data, model_kwargs={"num_layerz": 1})), space)
    assert err.value.field == "objective.model_kwargs.num_layerz"


def test_trial_settings_merge_defaults_and_config() -> None:
    s = resolve({"num_train_epochs": 2.0, "max_length": 64}, {"batch_size": 32, "learning_rate": "1e-4"})
    assert s.per_device_train_batch_size == 32 and s.learning_rate == 1e-4
    assert s.num_train_epochs == 2.0 and s.max_length == 64 and s.seed == 42
