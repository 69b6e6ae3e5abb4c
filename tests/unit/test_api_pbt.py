"""tune() speaks PBT like the YAML (issue 11): ``epochs=`` is ``budget: {epochs: N}``, and a PBT
study that could not work is a ConfigError naming the argument before anything is written."""

from __future__ import annotations

import pytest

import tunelab
from tunelab.objectives.command import CommandObjective

SCORE = [{"name": "score", "goal": "maximize"}]
PBT = {"type": "pbt", "population": 2, "perturbation_interval": 1, "quantile": 0.5, "seed": 0}


def climb(config, reporter):
    """Reports one step at a time, four steps; restores a clone's step from its restore_dir."""
    step = 0
    if reporter.restore_dir is not None and (reporter.restore_dir / "step").is_file():
        step = int((reporter.restore_dir / "step").read_text())
    total = 0.0
    while step < 4:
        step += 1
        total += config["x"]
        (reporter.checkpoint_dir / "step").write_text(str(step))
        reporter.report(step, score=total)
    return {"score": total}


def test_epochs_bounds_the_steps_trained_over_all_trials(tmp_path) -> None:
    study = tunelab.tune(climb, {"x": {"float": [0.0, 1.0]}}, metrics=SCORE, epochs=10, seed=0,
                         backend="inprocess", storage="memory", trial_dir=str(tmp_path / "runs"), progress=False)
    trials = study.trials()
    # Four steps a trial: the budget of 10 is used up during the third trial, which then ends.
    assert len(trials) == 3
    assert sum(max(r.step for r in t.history) for t in trials) == 12


@pytest.mark.parametrize("epochs", [0, -1, "many", True, float("nan")])
def test_bad_epochs_is_a_config_error_naming_the_argument(tmp_path, monkeypatch, epochs) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tunelab.ConfigError) as err:
        tunelab.tune(climb, {"x": {"float": [0, 1]}}, metrics=SCORE, epochs=epochs, backend="inprocess")
    assert err.value.field == "epochs", str(err.value)
    assert list(tmp_path.iterdir()) == []


def _refused(tmp_path, objective, space, scheduler) -> tunelab.ConfigError:
    with pytest.raises(tunelab.ConfigError) as err:
        tunelab.tune(objective, space, metrics=SCORE, scheduler=scheduler, trials=4, backend="inprocess",
                     trial_dir=str(tmp_path / "runs"), storage=str(tmp_path / "j.log"), progress=False)
    assert list(tmp_path.iterdir()) == [], "something was written before the error"
    return err.value


def test_pbt_with_nothing_mutable_is_refused_by_tune(tmp_path) -> None:
    err = _refused(tmp_path, climb, {"x": 0.5, "epochs": 3}, PBT)
    assert err.field == "scheduler.mutations" and "nothing to mutate" in err.problem


def test_pbt_with_a_command_that_cannot_checkpoint_is_refused_by_tune(tmp_path) -> None:
    command = CommandObjective(["{python}", "train.py", "--x", "{x}"], [{"name": "score", "regex": "s=([0-9.]+)"}])
    err = _refused(tmp_path, command, {"x": {"float": [0.0, 1.0]}}, PBT)
    assert err.field == "objective.command" and "{checkpoint_dir}" in err.problem


def test_pbt_with_an_interval_longer_than_the_training_is_refused_by_tune(tmp_path) -> None:
    pytest.importorskip("transformers")
    from tunelab.objectives.text_classification import TextClassification

    (tmp_path.parent / "train.csv").write_text("text,label\na,0\nb,1\n")
    objective = TextClassification.from_config(
        {"type": "text_classification", "model": "org/model", "num_train_epochs": 2,
         "data": {"train": str(tmp_path.parent / "train.csv"), "validation_split": 0.5}}, base_dir=tmp_path.parent)
    err = _refused(tmp_path, objective, {"learning_rate": {"float": [1e-5, 1e-3], "log": True}},
                   {**PBT, "perturbation_interval": 3})
    assert err.field == "scheduler.perturbation_interval" and "at most 2 epochs" in err.problem
