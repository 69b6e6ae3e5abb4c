"""`tunelab run` interrupted and run again continues the search: no completed config again,
and options that cannot work are refused before any trial starts."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import tunelab_cli

STUDY = """
name: again
objective: {{type: function, function: "tl_test_objectives:curve"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: [0.0, 1.0]}}
  epochs: {{fixed: 1}}
search: {{sampler: tpe, seed: 1{extra}}}
budget: {{trials: 8}}
execution: {{workers: 1}}
tracking: {{mlflow: false}}
"""


def completed(cwd: Path) -> list[float]:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(cwd / "tunelab.journal")))
    study = optuna.load_study(study_name="again", storage=storage)
    return [t.params["quality"] for t in study.get_trials(states=(TrialState.COMPLETE,))]


def test_a_rerun_after_stops_at_several_points_never_repeats_a_completed_config(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY.format(extra=""))
    for trials in ("2", "5", "8"):  # each run stops early; the next continues with the same seed
        result = tunelab_cli("run", "study.yaml", "--trials", trials, cwd=study_dir, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    values = completed(study_dir)
    assert len(values) == 8 and len(set(values)) == 8, values


def test_a_sampler_option_that_fails_past_start_up_is_refused_before_any_trial(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY.format(extra=", gamma: x"))
    result = tunelab_cli("run", "study.yaml", cwd=study_dir, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "search.gamma" in result.stdout + result.stderr
    journal = study_dir / "tunelab.journal"
    assert not journal.exists() or not completed(study_dir)
