"""The `tracking:` section and the `tunelab run` flags that change it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tunelab.cli.run import cli_tracking
from tunelab.errors import ConfigError, MissingDependencyError
from tunelab.tracking.settings import (
    DEFAULT_URI,
    MlflowSettings,
    TensorboardSettings,
    WandbSettings,
    parse_trackers,
    parse_tracking,
)


def parse(raw, default: bool = False, base: Path = Path("/study")) -> MlflowSettings | None:
    return parse_tracking(raw, base_dir=base, study_name="sst2", default_mlflow=default)


def test_nothing_configured_means_no_tracking_unless_defaulted() -> None:
    assert parse({}) is None
    assert parse({}, default=True) == MlflowSettings("sqlite:////study/mlflow.db", "sst2", False)
    assert parse({"mlflow": False}, default=True) is None


def test_values_and_relative_paths() -> None:
    got = parse({"mlflow": {"uri": "sqlite:///runs/m.db", "experiment": "exp", "log_checkpoints": True}})
    assert got == MlflowSettings("sqlite:////study/runs/m.db", "exp", True)
    assert parse({"mlflow": {"uri": "http://127.0.0.1:5000"}}).uri == "http://127.0.0.1:5000"
    assert parse({"mlflow": "http://127.0.0.1:5000"}).uri == "http://127.0.0.1:5000"
    assert parse({"mlflow": True}).uri == "sqlite:////study/mlflow.db"
    assert DEFAULT_URI == "sqlite:///mlflow.db"


@pytest.mark.parametrize(("raw", "field"), [
    ({"comet": {}}, "tracking.comet"),
    ({"wandb": 3}, "tracking.wandb"),
    ({"wandb": {"projekt": "p"}}, "tracking.wandb.projekt"),
    ({"wandb": {"mode": "sometimes"}}, "tracking.wandb.mode"),
    ({"wandb": {"project": ""}}, "tracking.wandb.project"),
    ({"tensorboard": {"logdir": "tb"}}, "tracking.tensorboard.logdir"),
    ({"tensorboard": {"dir": 5}}, "tracking.tensorboard.dir"),
    ({"mlflow": {"url": "x"}}, "tracking.mlflow.url"),
    ({"mlflow": {"uri": ""}}, "tracking.mlflow.uri"),
    ({"mlflow": {"uri": 5}}, "tracking.mlflow.uri"),
    ({"mlflow": {"experiment": ""}}, "tracking.mlflow.experiment"),
    ({"mlflow": {"log_checkpoints": "yes"}}, "tracking.mlflow.log_checkpoints"),
    ({"mlflow": 3}, "tracking.mlflow"),
    ([1], "tracking"),
])
def test_mistakes_name_the_field_and_the_fix(raw, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(raw)
    assert info.value.field == field
    assert info.value.fix


def flags(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"no_mlflow": False, "mlflow_uri": None, "mlflow_experiment": None, **kw})


def test_cli_flags_override_the_study_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_tracking({"mlflow": {"uri": "http://x"}}, flags(no_mlflow=True)) == {"mlflow": False}
    got = cli_tracking({"mlflow": {"uri": "http://x", "log_checkpoints": True}},
                       flags(mlflow_uri="sqlite:///here.db", mlflow_experiment="e"))
    assert got == {"mlflow": {"uri": f"sqlite:///{tmp_path}/here.db", "experiment": "e", "log_checkpoints": True}}
    assert cli_tracking({"mlflow": False}, flags(mlflow_uri="http://y")) == {"mlflow": {"uri": "http://y"}}
    assert cli_tracking({"mlflow": False}, flags()) == {"mlflow": False}


def test_cli_default_is_mlflow_when_installed(monkeypatch) -> None:
    import tunelab.tracking.settings as settings

    monkeypatch.setattr(settings, "mlflow_installed", lambda: True)
    assert cli_tracking({}, flags()) == {"mlflow": {}}
    monkeypatch.setattr(settings, "mlflow_installed", lambda: False)
    assert cli_tracking({}, flags()) == {}


def test_several_trackers_at_once_with_their_defaults() -> None:
    got = parse_trackers({"mlflow": {"uri": "http://127.0.0.1:5000"}, "wandb": {"mode": "offline", "entity": "team"},
                          "tensorboard": True}, base_dir=Path("/study"), study_name="sst2")
    assert got == [MlflowSettings("http://127.0.0.1:5000", "sst2"),
                   WandbSettings(project="sst2", group="sst2", dir="/study", entity="team", mode="offline"),
                   TensorboardSettings("/study/tensorboard/sst2")]
    assert parse({"wandb": {"project": "p"}, "tensorboard": {"dir": "tb"}}) is None  # no MLflow among them
    assert parse_trackers({"wandb": False, "tensorboard": None}, base_dir=Path("/s"), study_name="s") == []


@pytest.mark.parametrize(("section", "module", "extra"), [("wandb", "wandb", "wandb"),
                                                          ("tensorboard", "tensorboard", "tensorboard")])
def test_a_missing_package_names_its_extra(monkeypatch, section: str, module: str, extra: str) -> None:
    import importlib.util
    import tomllib

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(MissingDependencyError, match=rf"pip install 'tunelab\[{extra}\]'"):
        parse({section: {}})
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    assert extra in pyproject["project"]["optional-dependencies"]  # the extra the message names exists
