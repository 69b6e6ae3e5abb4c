"""The Python API speaks Python (issue 9.6): progress, a closing summary, warnings at the caller's
line in API terms, logging through ``logging``, and Optuna kept quiet without lasting changes."""

from __future__ import annotations

import logging
import warnings

import pytest

import tunelab

LOSS = [{"name": "loss", "goal": "minimize"}]


def bowl(config, reporter):
    return {"loss": (config["x"] - 0.3) ** 2}


def _tune(**kw):
    kw = {"metrics": LOSS, "trials": 4, "seed": 0, "backend": "inprocess", "storage": "memory", **kw}
    return tunelab.tune(bowl, {"x": {"float": [0.0, 1.0]}}, **kw)


def test_progress_bar_start_line_and_summary(capsys) -> None:
    study = _tune(study_name="shown")
    out, err = capsys.readouterr()
    assert "study shown: 1 worker(s), sampler auto: gp (1 parameter, 4 trials); minimize loss" in out
    assert "4/4" in err and "best loss" in err  # the tqdm bar, with the CLI line's counts
    best = study.best_trial
    assert "study shown: 4 trials (4 complete)" in out
    assert f"best trial {best.number}: loss" in out and "(minimize)" in out and "config {'x': " in out


def test_progress_false_shows_nothing_but_keeps_on_progress_and_logs(capsys, caplog) -> None:
    seen = []
    with caplog.at_level(logging.INFO, logger="tunelab"):
        _tune(study_name="quiet", progress=False, on_progress=seen.append)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert seen and seen[-1].complete == 4
    messages = [r.getMessage() for r in caplog.records if r.name == "tunelab"]
    assert any(m.startswith("study quiet: 1 worker(s)") for m in messages)
    assert any(m.startswith("study quiet: 4 trials") for m in messages)


def test_parallelism_warning_points_at_the_callers_line_in_api_terms() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _tune(study_name="par", workers=2, progress=False)  # the warning must name this line
    [warning] = [w for w in caught if issubclass(w.category, tunelab.TunelabWarning)]
    assert warning.filename == __file__
    assert "workers=1" in str(warning.message) and "--workers" not in str(warning.message)


def test_optuna_is_quiet_and_its_settings_are_restored(capsys) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)
    level = logging.getLogger("optuna").level
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Optuna's QMC sampler is an experimental feature: it warns when created
        _tune(study_name="optuna-quiet", sampler="qmc", progress=False)
    out, err = capsys.readouterr()
    assert "A new study created" not in out + err
    assert not [w for w in caught if w.category.__name__ == "ExperimentalWarning"]
    assert logging.getLogger("optuna").level == level
    assert warnings.filters == filters


def test_the_cli_quiets_optuna_too(tmp_path, capsys) -> None:
    from tunelab.cli.main import main

    (tmp_path / "tl_api_obj.py").write_text("def f(config, reporter):\n    return {'loss': config['x']}\n")
    (tmp_path / "study.yaml").write_text(
        "objective: {type: function, function: 'tl_api_obj:f'}\nmetrics: [loss]\nspace: {x: {float: [0, 1]}}\n"
        "budget: {trials: 2}\nexecution: {backend: inprocess}\ntracking: {mlflow: false}\n")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["run", "study.yaml"]) == 0
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    assert "A new study created" not in out + err
    assert "minimize loss (goal from its name)" in out


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"storage": 123}, "storage"),
    ({"study_name": 123}, "study_name"),
    ({"study_name": "../../x"}, "study_name"),
    ({"study_name": ".."}, "study_name"),
    ({"study_name": "/tmp/abs"}, "study_name"),
    ({"study_name": "a/b"}, "study_name"),
    ({"metrics": 42}, "metrics"),
    ({"metrics": [object()]}, "metrics[0]"),
    ({"metrics": [{"name": "loss", "goal": ["min"]}]}, "metrics[0].goal"),
    ({"trials": 2.5}, "trials"),
    ({"workers": 0}, "workers"),
    ({"backend": "gpu"}, "backend"),
    ({"seed": "x"}, "seed"),
    ({"trial_dir": 5}, "trial_dir"),
    ({"progress": "yes"}, "progress"),
    ({"on_progress": 3}, "on_progress"),
])
def test_bad_arguments_are_config_errors_naming_the_argument(tmp_path, monkeypatch, kwargs, field) -> None:
    monkeypatch.chdir(tmp_path)
    args = {"metrics": LOSS, "trials": 2, "backend": "inprocess", **kwargs}
    with pytest.raises(tunelab.ConfigError) as err:
        tunelab.tune(bowl, {"x": {"float": [0, 1]}}, **args)
    assert err.value.field == field, str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing written: no journal, no trial directory


def test_a_non_callable_objective_is_a_config_error(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tunelab.ConfigError) as err:
        tunelab.tune("train", {"x": {"float": [0, 1]}}, metrics=LOSS)
    assert err.value.field == "objective" and "not callable" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_tune_where_no_trial_completed_warns_at_the_callers_line_naming_the_failure(tmp_path) -> None:
    import warnings as _warnings

    def typo(config, reporter):
        return {"loss": config["learning_rat"]}

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        study = tunelab.tune(typo, {"x": {"float": [0.0, 1.0]}}, metrics="loss", trials=2, backend="inprocess",
                             storage="memory", progress=False, trial_dir=str(tmp_path))
    assert study.best_config is None
    said = [w for w in caught if "no trial completed" in str(w.message)]
    assert len(said) == 1 and "KeyError" in str(said[0].message) and said[0].filename == __file__
