from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.config import load_config, parse_duration
from tunelab.errors import ConfigError

GOOD = """
name: demo
objective: {type: function, function: "mod:fn"}
metrics: [{name: accuracy, goal: maximize}]
space:
  lr: {float: [1.0e-5, 1.0e-3], log: true}
budget: {trials: 5, time: 1h30m}
execution: {workers: 2, timeout: 90s}
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mod.py").write_text("def fn(config, reporter):\n    return 1.0\n")
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_good_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.name == "demo" and cfg.budget.trials == 5 and cfg.budget.time_s == 5400
    assert cfg.execution.workers == 2 and cfg.execution.timeout_s == 90
    assert cfg.search.sampler == "auto"  # the default since issue 13
    assert cfg.with_overrides(workers=4, trials=9).execution.workers == 4


@pytest.mark.parametrize(
    ("replace", "with_", "field"),
    [
        ("budget: {trials: 5, time: 1h30m}", "budget: {trials: 0}", "budget.trials"),
        ("budget: {trials: 5, time: 1h30m}", "budget: {time: soon}", "budget.time"),
        ("execution: {workers: 2, timeout: 90s}", "execution: {workers: 2, gpu: 1}", "execution.gpu"),
        ("execution: {workers: 2, timeout: 90s}", "execution: {backend: dask}", "execution.backend"),
        ("name: demo", "name: demo\nsearch: {sampler: bayes}", "search.sampler"),
        ("name: demo", "name: demo\nscheduler: {type: asha, reduction_factor: 1}", "scheduler.reduction_factor"),
        ("name: demo", "name: demo\nspaces: {}", "spaces"),
        ('function: "mod:fn"', 'function: "mod:nothere"', "objective.function"),
        ('function: "mod:fn"', 'function: "nomodule:fn"', "objective.function"),
        ("lr: {float: [1.0e-5, 1.0e-3], log: true}", "lr: {float: [1.0e-5, 1.0e-3], log: true}\n  lr: {int: [1, 2]}", "lr"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, replace: str, with_: str, field: str) -> None:
    from tunelab.api import run_study

    text = GOOD.replace(replace, with_)
    assert text != GOOD
    with pytest.raises(ConfigError) as err:
        cfg = load_config(write(tmp_path, text))
        run_study(cfg)  # some errors surface while building the study, still before any trial
    assert err.value.field == field, str(err.value)
    assert not (tmp_path / "tunelab_runs").exists() or not any((tmp_path / "tunelab_runs").rglob("trial_*"))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200),
                                                ("1h30m", 5400), (45, 45), ("1d", 86400)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration("budget.time", text) == seconds
