"""The command objective, run in this process: regex hints and the `{python}` placeholder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

import pytest

from tunelab.errors import ConfigError, TrialFailed
from tunelab.metrics import MetricSet
from tunelab.objectives.command import CommandObjective
from tunelab.space import Space
from tunelab.worker import Reporter


class _Sink:
    def __init__(self) -> None:
        self.results: list[tuple[float, dict[str, float]]] = []

    def send_result(self, step: float, metrics: Mapping[str, float]) -> bool:
        self.results.append((step, dict(metrics)))
        return False


def _run(objective: CommandObjective, tmp_path: Path, config: dict | None = None) -> tuple[dict, _Sink]:
    sink = _Sink()
    reporter = Reporter(0, dict(config or {"x": 0.5}), tmp_path / "trial", sink)
    return objective(dict(reporter.config), reporter), sink


SPACE = Space.from_dict({"x": {"float": [0.0, 1.0]}})
METRICS = MetricSet.parse([{"name": "f1", "goal": "maximize"}, {"name": "loss", "strategy": "store"}])


def test_a_regex_that_matched_nothing_is_named_with_the_last_lines(tmp_path: Path) -> None:
    objective = CommandObjective([sys.executable, "-c", "print('epoch 1'); print('F1: 0.7')"],
                                 [{"name": "f1", "regex": "f1 = ([0-9.]+)"}, {"name": "loss", "regex": "loss ([0-9.]+)"}])
    objective.validate(SPACE, METRICS)
    with pytest.raises(TrialFailed) as info:
        _run(objective, tmp_path)
    message = str(info.value)
    assert info.value.kind == "crash"
    assert "f1 = ([0-9.]+)" in message and "`f1`" in message and "matched no line" in message
    assert "F1: 0.7" in message and "epoch 1" in message  # the output's last lines
    assert "loss" not in message  # a stored metric may be absent: not what failed


def test_the_regex_hint_needs_no_validate_and_a_match_still_completes(tmp_path: Path) -> None:
    objective = CommandObjective([sys.executable, "-c", "print('f1 = 0.25')"], [{"name": "f1", "regex": "f1 = ([0-9.]+)"}])
    assert _run(objective, tmp_path)[0] == {"f1": 0.25}
    silent = CommandObjective([sys.executable, "-c", "print('nothing')"], [{"name": "f1", "regex": "f1 = ([0-9.]+)"}])
    with pytest.raises(TrialFailed, match="matched no line"):
        _run(silent, tmp_path)


def test_python_placeholder_is_the_interpreter_tunelab_runs_under(tmp_path: Path) -> None:
    objective = CommandObjective(["{python}", "-c", "import sys; print('f1 =', 1.0 if sys.executable == {exe!r} else 0.0)"
                                  .replace("{exe!r}", repr(sys.executable).replace("{", "{{").replace("}", "}}"))],
                                 [{"name": "f1", "regex": "f1 = ([0-9.]+)"}])
    objective.validate(SPACE, METRICS)
    reporter = Reporter(0, {"x": 0.5}, tmp_path / "trial", _Sink())
    assert objective.argv({"x": 0.5}, reporter)[0] == sys.executable
    assert _run(objective, tmp_path)[0] == {"f1": 1.0}


def test_a_parameter_named_like_a_placeholder_is_a_config_error() -> None:
    objective = CommandObjective(["{python}", "train.py", "--python", "{python}"], [{"name": "f1", "regex": "f1 = ([0-9.]+)"}])
    with pytest.raises(ConfigError) as info:
        objective.validate(Space.from_dict({"python": {"choice": ["3.10", "3.11"]}}), METRICS)
    assert "space.python" in str(info.value) and "{python}" in str(info.value)
