"""Issue 11, "Bad input": a PBT study that could not work is refused before any trial, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.errors import ConfigError
from tunelab.schedulers import make_scheduler
from tunelab.space import Space

GOOD = """\
name: demo
objective: {type: function, function: "mod:fn"}
metrics: [{name: acc, goal: maximize}]
space:
  lr: {float: [1.0e-5, 1.0e-3], log: true}
  epochs: 3
budget: {trials: 20}
execution: {backend: inprocess, workers: 2}
scheduler: {type: pbt, population: 4, perturbation_interval: 1, quantile: 0.25, resample_probability: 0.25, seed: 1}
"""


def load(tmp_path: Path, text: str):
    (tmp_path / "mod.py").write_text("def fn(config, reporter):\n    return 1.0\n")
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return load_config(path)


def refused(tmp_path: Path, text: str, field: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert err.value.field == field, str(err.value)
    assert err.value.fix and "\n" not in str(err.value)
    assert not (tmp_path / "trials").exists()
    return err.value


def test_good_pbt_study_loads(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD)
    assert config.scheduler["type"] == "pbt"


@pytest.mark.parametrize(("setting", "field"), [
    ("population: 1", "scheduler.population"),
    ("population: 2.5", "scheduler.population"),
    ("quantile: 0.6", "scheduler.quantile"),
    ("quantile: 0", "scheduler.quantile"),
    ("quantile: -0.1", "scheduler.quantile"),
    ("perturbation_interval: 0", "scheduler.perturbation_interval"),
    ("resample_probability: 1.5", "scheduler.resample_probability"),
    ("seed: -1", "scheduler.seed"),
    ("mutations: {nope: [1, 2]}", "scheduler.mutations.nope"),
    ("mutations: {epochs: [1, 2]}", "scheduler.mutations.epochs"),
    ("mutations: {lr: {float: [1.0, 0.1]}}", "scheduler.mutations.lr"),
    ("mutations: {lr: 0.1}", "scheduler.mutations.lr"),
    ("mutations: {}", "scheduler.mutations"),
    ("reduction_factor: 3", "scheduler.reduction_factor"),
    ("max_resource: 0", "scheduler.max_resource"),
    ("max_resource: -3", "scheduler.max_resource"),
    ("max_resource: .inf", "scheduler.max_resource"),
    ("max_resource: .nan", "scheduler.max_resource"),
    ("max_resource: true", "scheduler.max_resource"),
    ("max_resource: six", "scheduler.max_resource"),
    ("max_resource: 0.5", "scheduler.max_resource"),  # shorter than the interval (1): never perturbed
])
def test_bad_settings(tmp_path: Path, setting: str, field: str) -> None:
    key = setting.split(":")[0]
    text = GOOD.replace(f"{key}: ", f"_old_{key}: ") if f" {key}: " in GOOD else GOOD
    text = text.replace("scheduler: {type: pbt, ", f"scheduler: {{type: pbt, {setting}, ")
    text = "\n".join(line if not line.startswith("scheduler:") else _drop_old(line) for line in text.splitlines())
    refused(tmp_path, text + "\n", field)


def _drop_old(line: str) -> str:
    parts = [p for p in line.split(", ") if not p.startswith("_old_")]
    out = ", ".join(parts)
    return out if out.endswith("}") else out + "}"


def test_nothing_mutable_in_the_space(tmp_path: Path) -> None:
    text = GOOD.replace("  lr: {float: [1.0e-5, 1.0e-3], log: true}\n", "  lr: 0.001\n")
    err = refused(tmp_path, text, "scheduler.mutations")
    assert "nothing to mutate" in err.problem


def test_a_command_objective_must_use_its_checkpoint_and_restore_dirs(tmp_path: Path) -> None:
    command = 'objective: {type: command, command: ["python", "train.py", "--lr", "{lr}"], ' \
              "metrics: [{name: acc, regex: 'acc=([0-9.]+)'}]}"
    text = GOOD.replace('objective: {type: function, function: "mod:fn"}', command)
    err = refused(tmp_path, text, "objective.command")
    assert "{checkpoint_dir}" in err.problem
    saves = text.replace('"--lr", "{lr}"', '"--lr", "{lr}", "--ckpt", "{checkpoint_dir}"')
    err = refused(tmp_path, saves, "objective.command")  # it saves, but a clone would not restore
    assert "{restore_dir}" in err.problem
    ok = saves.replace('"{checkpoint_dir}"', '"{checkpoint_dir}", "--restore", "{restore_dir}"')
    assert load(tmp_path, ok).scheduler["type"] == "pbt"


def text_classification(tmp_path: Path, epochs_line: str, space_extra: str = "") -> str:
    (tmp_path / "train.csv").write_text("text,label\na,0\nb,1\n")
    objective = ("objective: {type: text_classification, model: org/model, "
                 "data: {train: train.csv, validation_split: 0.5}" + epochs_line + "}")
    text = GOOD.replace('objective: {type: function, function: "mod:fn"}', objective)
    text = text.replace("  epochs: 3\n", space_extra)
    return text.replace("perturbation_interval: 1", "perturbation_interval: 3")


def test_an_interval_longer_than_the_training_is_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, text_classification(tmp_path, ", num_train_epochs: 2"), "scheduler.perturbation_interval")
    assert "at most 2 epochs" in err.problem
    # The default is 3 epochs (as Hugging Face's), so an interval of 3 fits.
    assert load(tmp_path, text_classification(tmp_path, "")).scheduler["type"] == "pbt"
    # The space may set the epochs: its largest value counts.
    refused(tmp_path, text_classification(tmp_path, "", "  num_train_epochs: {choice: [1, 2]}\n"),
            "scheduler.perturbation_interval")
    assert load(tmp_path, text_classification(tmp_path, "", "  num_train_epochs: {int: [1, 4]}\n"))


def test_function_objectives_cannot_be_checked_so_they_pass() -> None:
    """A function objective's length is unknown before it runs: no check, documented in the README."""
    scheduler = make_scheduler({"type": "pbt", "perturbation_interval": 1000}, "acc", "maximize",
                               space=Space({"lr": {"float": [0.1, 1.0]}}), objective=lambda c, r: 1.0)
    assert scheduler.perturbation_interval == 1000


# ---- max_resource: where training ends, for an objective whose end tunelab cannot read ----------

def test_max_resource_sets_where_training_ends(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD.replace("seed: 1}", "seed: 1, max_resource: 6}"))
    scheduler = make_scheduler(config.scheduler, "acc", "maximize", space=Space({"lr": {"float": [0.1, 1.0]}}))
    assert scheduler.end_step == 6.0
    assert make_scheduler({"type": "pbt", "perturbation_interval": 2, "max_resource": 2}, "acc", "maximize",
                          space=Space({"lr": {"float": [0.1, 1.0]}})).end_step == 2.0  # one interval is enough


def test_a_bad_max_resource_says_what_it_must_be(tmp_path: Path) -> None:
    err = refused(tmp_path, GOOD.replace("seed: 1}", "seed: 1, max_resource: 0.5}"), "scheduler.max_resource")
    assert "0.5" in err.problem and "perturbation_interval (1)" in err.problem and "steps" in err.fix


def test_a_bad_max_resource_is_one_line_and_exit_2_from_the_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    from tunelab.cli.main import main

    (tmp_path / "mod.py").write_text("def fn(config, reporter):\n    return 1.0\n")
    (tmp_path / "study.yaml").write_text(GOOD.replace("seed: 1}", "seed: 1, max_resource: -1}"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "study.yaml", "--no-mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert "scheduler.max_resource" in err and "\n" not in err, err
    assert not (tmp_path / "tunelab.journal").exists() and not (tmp_path / "trials").exists()


def test_text_classification_needs_no_max_resource_and_refuses_another_end(tmp_path: Path) -> None:
    with_max = text_classification(tmp_path, ", num_train_epochs: 3").replace("seed: 1}", "seed: 1, max_resource: 5}")
    err = refused(tmp_path, with_max, "scheduler.max_resource")
    assert "5" in err.problem and "num_train_epochs" in err.problem and "3" in err.problem
    # The same end as the epochs it trains: fine.
    assert load(tmp_path, with_max.replace("max_resource: 5", "max_resource: 3")).scheduler["max_resource"] == 3
    # The default (3 epochs) is read as well.
    refused(tmp_path, text_classification(tmp_path, "").replace("seed: 1}", "seed: 1, max_resource: 4}"),
            "scheduler.max_resource")
    # Searched epochs: members end at different steps, so no single end holds for all.
    searched = text_classification(tmp_path, "", "  num_train_epochs: {int: [3, 4]}\n")
    err = refused(tmp_path, searched.replace("seed: 1}", "seed: 1, max_resource: 4}"), "scheduler.max_resource")
    assert "searched" in err.problem
