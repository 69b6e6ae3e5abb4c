"""A study never silently answers for a different question (issue 9.1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tunelab
from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet
from tunelab.space import Space

LOSS = [{"name": "loss", "goal": "minimize"}]
IDENTITY_ATTR = "tunelab.identity"


def train(config, reporter):
    return {"loss": (config["x"] - 2) ** 2}


def other_train(config, reporter):
    return {"loss": (config["x"] + 2) ** 2}


def _tune(space, tmp_path: Path, **kw):
    kw = {"metrics": LOSS, "trials": 5, "seed": 0, "backend": "inprocess", "progress": False, **kw}
    return tunelab.tune(kw.pop("objective", train), space, storage=str(tmp_path / "s.journal"),
                        trial_dir=str(tmp_path / "runs"), **kw)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_a_changed_range_stops_before_any_work_and_names_the_change(tmp_path) -> None:
    """The reproducer: the second call ran 0 trials and answered {'x': 2.15}, outside [10, 20]."""
    first = _tune({"x": {"float": [-5, 5]}}, tmp_path)
    assert len(first.trials()) == 5
    runs_before = sorted(p.name for p in (tmp_path / "runs" / first.name).iterdir())
    with pytest.raises(ConfigError) as err:
        _tune({"x": {"float": [10, 20]}}, tmp_path, seed=1, trials=10)
    text = str(err.value)
    assert "space.x: float [-5, 5] -> float [10, 20]" in text
    assert "study_name=" in text and 'on_change="restart"' in text and 'on_change="continue"' in text
    assert "\n" not in text
    again = tunelab.load_study(str(tmp_path / "s.journal"), first.name)
    assert len(again.trials()) == 5  # no trial created
    assert sorted(p.name for p in (tmp_path / "runs" / first.name).iterdir()) == runs_before


def test_the_same_definition_resumes(tmp_path) -> None:
    _tune({"x": {"float": [-5, 5]}}, tmp_path, trials=3)
    study = _tune({"x": {"float": [-5, 5]}}, tmp_path, trials=6, seed=1)
    assert len(study.trials()) == 6


def test_goal_change_added_and_removed_parameters_are_named(tmp_path) -> None:
    _tune({"x": {"float": [-5, 5]}, "z": {"choice": [1, 2]}}, tmp_path, trials=2)
    with pytest.raises(ConfigError) as err:
        _tune({"x": {"float": [-5, 5]}, "y": {"int": [0, 4], "step": 2}}, tmp_path, trials=2,
              metrics=[{"name": "loss", "goal": "maximize"}])
    text = str(err.value)
    assert "space.y: added (int [0, 4] step 2)" in text
    assert "space.z: removed (was choice [1, 2])" in text
    assert "metrics.loss.goal: minimize -> maximize" in text


def test_restart_deletes_the_study_and_moves_its_directory_aside(tmp_path) -> None:
    first = _tune({"x": {"float": [-5, 5]}}, tmp_path)
    old_dirs = sorted(p.name for p in (tmp_path / "runs" / first.name).iterdir())
    with pytest.warns(tunelab.TunelabWarning, match="5 old trial.s. deleted from the storage, their directory moved"):
        study = _tune({"x": {"float": [10, 20]}}, tmp_path, trials=3, on_change="restart")
    assert len(study.trials()) == 3
    assert all(10 <= t.config["x"] <= 20 for t in study.trials())
    moved = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(f"{first.name}.replaced-")]
    assert len(moved) == 1 and sorted(p.name for p in moved[0].iterdir()) == old_dirs
    # the new definition is now the stored one: the same call resumes
    assert len(_tune({"x": {"float": [10, 20]}}, tmp_path, trials=4).trials()) == 4


def test_continue_keeps_old_trials_but_never_ranks_one_outside_the_new_space(tmp_path) -> None:
    _tune({"x": {"float": [-5, 5]}}, tmp_path)
    with pytest.warns(tunelab.TunelabWarning, match="5 of its 5 old trials lie outside the new space") as caught:
        study = _tune({"x": {"float": [10, 20]}}, tmp_path, trials=8, seed=1, on_change="continue")
    assert caught[0].filename == __file__  # attributed to the caller's line
    assert len(study.trials()) == 8
    assert 10 <= study.best_config["x"] <= 20
    # a continued study stores the new identity: next time it simply resumes
    assert len(_tune({"x": {"float": [10, 20]}}, tmp_path, trials=9).trials()) == 9


def test_continue_cannot_change_directions(tmp_path) -> None:
    _tune({"x": {"float": [-5, 5]}}, tmp_path, trials=2)
    with pytest.raises(ConfigError, match='on_change="restart"'):
        _tune({"x": {"float": [-5, 5]}}, tmp_path, trials=2, on_change="continue",
              metrics=[{"name": "loss", "goal": "maximize"}])


def test_a_study_without_identity_stores_one_and_continues(tmp_path) -> None:
    import optuna

    first = _tune({"x": {"float": [-5, 5]}}, tmp_path, trials=2)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.load_study(study_name=first.name, storage=storage)
    study.set_user_attr(IDENTITY_ATTR, None)  # what an older tunelab left
    resumed = _tune({"x": {"float": [-3, 3]}}, tmp_path, trials=3)
    assert len(resumed.trials()) == 3
    assert resumed.optuna_study.user_attrs[IDENTITY_ATTR]["space.x"] == "float [-3, 3]"


def test_source_code_is_not_part_of_the_identity() -> None:
    """Fixing a bug in the objective keeps the study: only its module:qualname and file count."""
    from tunelab.identity import identity_changes, study_identity

    a = study_identity(Space.from_dict({"x": {"float": [0, 1]}}), MetricSet.parse(LOSS), train)
    b = study_identity(Space.from_dict({"x": {"float": [0, 1]}}), MetricSet.parse(LOSS), other_train)
    assert identity_changes(a, b) == [f"objective.function: {__name__}:train -> {__name__}:other_train"]
    assert a["objective.file"].endswith("test_identity.py")
    assert not any("return" in v for v in a.values())


def test_space_identity_is_readable() -> None:
    from tunelab.identity import space_identity

    space = Space.from_dict({"lr": {"float": [1e-5, 1e-3], "log": True}, "bs": {"choice": [16, 32]},
                             "opt": {"choice": ["sgd", "adam"]}, "m": {"float": [0.8, 0.99], "when": {"opt": "sgd"}},
                             "w": {"int": [0, 500], "step": 50}, "epochs": 3})
    assert space_identity(space) == {
        "space.lr": "float [1e-05, 0.001] log", "space.bs": "choice [16, 32]", "space.opt": 'choice ["sgd", "adam"]',
        "space.m": 'float [0.8, 0.99] when {"opt": "sgd"}', "space.w": "int [0, 500] step 50",
        "space.epochs": "fixed 3"}


def test_command_and_yaml_function_objectives_are_identified(tmp_path) -> None:
    from tunelab.identity import study_identity

    from tunelab.objectives.command import CommandObjective
    from tunelab.objectives.function import FunctionObjective

    cmd = CommandObjective(["python", "t.py", "--x", "{x}"], [{"name": "loss", "regex": r"loss=([0-9.]+)"}],
                           step_regex=r"epoch (\d+)")
    ident = study_identity(Space.from_dict({"x": {"float": [0, 1]}}), MetricSet.parse(LOSS), cmd, tmp_path)
    assert ident["objective.command"] == '["python", "t.py", "--x", "{x}"]'
    assert ident["objective.metrics.loss"] == r"loss=([0-9.]+)" and ident["objective.step_regex"] == r"epoch (\d+)"
    (tmp_path / "objmod_identity.py").write_text("def fit(config, reporter):\n    return 1.0\n")
    fn = FunctionObjective("objmod_identity:fit", tmp_path)
    ident = study_identity(Space.from_dict({"x": {"float": [0, 1]}}), MetricSet.parse(LOSS), fn, tmp_path)
    assert (ident["objective.function"], ident["objective.file"]) == ("objmod_identity:fit", "objmod_identity.py")


def test_config_in_space() -> None:
    from tunelab.identity import config_in_space

    space = Space.from_dict({"x": {"float": [0, 1]}, "n": {"int": [0, 10], "step": 2}, "o": {"choice": ["a", "b"]},
                             "m": {"float": [0, 1], "when": {"o": "a"}}, "e": 3})
    assert config_in_space(space, {"x": 0.5, "n": 4, "o": "a", "m": 0.1, "e": 3})
    assert config_in_space(space, {"x": 0.5, "n": 4, "o": "b", "e": 3})
    assert not config_in_space(space, {"x": 1.5, "n": 4, "o": "b", "e": 3})  # out of bounds
    assert not config_in_space(space, {"x": 0.5, "n": 3, "o": "b", "e": 3})  # off the step
    assert not config_in_space(space, {"x": 0.5, "n": 4, "o": "c", "e": 3})  # not a choice
    assert not config_in_space(space, {"x": 0.5, "n": 4, "o": "b", "e": 4})  # another fixed value
    assert not config_in_space(space, {"x": 0.5, "n": 4, "o": "b", "m": 0.1, "e": 3})  # inactive m given
    assert not config_in_space(space, {"x": 0.5, "n": 4, "o": "a", "e": 3})  # active m missing


def test_on_change_values() -> None:
    from tunelab.identity import parse_on_change

    assert [parse_on_change(v) for v in ("error", "restart", "continue")] == ["error", "restart", "continue"]
    with pytest.raises(ConfigError, match="on_change"):
        parse_on_change("overwrite")
    with pytest.raises(ConfigError, match="on_change"):
        tunelab.tune(train, {"x": {"float": [0, 1]}}, metrics=LOSS, on_change="yes", storage="memory")


def test_yaml_accepts_on_change(tmp_path) -> None:
    from tunelab.config import parse_config

    raw = {"objective": train, "space": {"x": {"float": [0, 1]}}, "metrics": LOSS, "on_change": "continue"}
    assert parse_config(raw, base_dir=tmp_path).on_change == "continue"
    assert parse_config({k: v for k, v in raw.items() if k != "on_change"}, base_dir=tmp_path).on_change == "error"
    with pytest.raises(ConfigError, match="^on_change"):
        parse_config({**raw, "on_change": "never"}, base_dir=tmp_path)


# ---- default names and memory storage -------------------------------------------------------


def test_default_names_do_not_collide_between_functions(tmp_path) -> None:
    a = tunelab.tune(train, {"x": {"float": [-5, 5]}}, metrics=LOSS, trials=2, backend="inprocess", progress=False)
    b = tunelab.tune(other_train, {"x": {"float": [-5, 5]}}, metrics=LOSS, trials=2, backend="inprocess",
                     progress=False)
    assert a.name != b.name and a.name.startswith("train-") and b.name.startswith("other_train-")

    c = tunelab.tune(_another_train(), {"x": {"float": [-5, 5]}}, metrics=LOSS, trials=2, backend="inprocess", progress=False)
    assert c.name.startswith("train-") and c.name != a.name
    assert len(c.trials()) == 2
    # the same function resumes under the same default name
    assert tunelab.tune(train, {"x": {"float": [-5, 5]}}, metrics=LOSS, trials=3,
                        backend="inprocess", progress=False).name == a.name
    lam = tunelab.tune(lambda c, r: c["x"], {"x": {"float": [0, 1]}}, metrics=LOSS, trials=1,
                       backend="inprocess", storage="memory", progress=False)
    assert lam.name.startswith("lambda-")


def _another_train():
    def train(config, reporter):  # another function with the same __name__, elsewhere
        return {"loss": config["x"]}

    return train


def test_memory_storage_belongs_to_one_call() -> None:
    kw = {"metrics": LOSS, "trials": 3, "backend": "inprocess", "storage": "memory", "study_name": "m",
          "progress": False}
    first = tunelab.tune(train, {"x": {"float": [-5, 5]}}, seed=0, **kw)
    second = tunelab.tune(train, {"x": {"float": [10, 20]}}, seed=1, **kw)
    assert len(first.trials()) == 3 and len(second.trials()) == 3
    assert all(10 <= t.config["x"] <= 20 for t in second.trials())
    assert not os.path.exists("tunelab.journal")


def test_text_classification_identity_names_model_data_and_settings_not_device(tmp_path) -> None:
    from tunelab.identity import objective_identity
    from tunelab.objectives.text_classification import TextClassification

    for name in ("train.csv", "dev.csv"):
        (tmp_path / name).write_text("text,label\na,0\nb,1\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    raw = {"type": "text_classification", "model": "m", "data": {"train": "train.csv", "validation": "dev.csv"},
           "num_train_epochs": 2, "max_length": 64}
    a = objective_identity(TextClassification.from_config(raw, base_dir=tmp_path), tmp_path)
    assert (a["model"], a["data.train"], a["data.text"], a["max_length"]) == ("m", "train.csv", "text", "64")
    assert a["defaults.num_train_epochs"] == "2.0"
    b = objective_identity(TextClassification.from_config({**raw, "device": "cpu", "cache_dir": str(tmp_path)},
                                                          base_dir=tmp_path), tmp_path)
    assert a == b  # where it runs is not what it computes
    c = objective_identity(TextClassification.from_config({**raw, "max_length": 128}, base_dir=tmp_path), tmp_path)
    assert c["max_length"] == "128"


def test_a_study_that_never_ran_a_trial_is_simply_redefined(tmp_path) -> None:
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal")))
    empty = optuna.create_study(storage=storage, study_name="empty", direction="maximize")
    empty.set_user_attr(IDENTITY_ATTR, {"version": "1", "space.x": "float [0, 1]"})
    study = _tune({"x": {"float": [-5, 5]}}, tmp_path, study_name="empty", trials=2)  # minimize now
    assert len(study.trials()) == 2 and study.optuna_study.direction.name == "MINIMIZE"
