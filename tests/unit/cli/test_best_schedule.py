"""`tunelab best` on a PBT study: the winner's hyperparameters by step, along its lineage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from pbt_study import write_pbt_study  # noqa: E402

from tunelab.cli.main import main  # noqa: E402


def test_best_shows_the_schedule_and_the_change_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = write_pbt_study(tmp_path / "pbt.db")
    assert main(["best", "--storage", url, "--study", "pbt"]) == 0
    out = capsys.readouterr().out
    lines = [line.rstrip() for line in out.splitlines()]
    assert "best trial: trial 4" in lines
    start = lines.index("  schedule (hyperparameters by step, along its lineage):")
    table = [line.split() for line in lines[start + 1:start + 5]]
    assert table == [["steps", "trial", "learning_rate", "batch_size"],
                     ["0-2", "0", "3e-05", "16"],
                     ["2-4", "3", "3.6e-05", "16"],
                     ["4-6", "4", "3.6e-05", "32"]]
    assert "  step 2: trial 3 cloned trial 0" in lines
    assert "    learning_rate: 3e-05 --- (* 1.2) --> 3.6e-05" in lines
    assert "  step 4: trial 4 cloned trial 3" in lines
    assert "    batch_size: 16 --- (resample) --> 32" in lines


def test_best_json_has_the_schedule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = write_pbt_study(tmp_path / "pbt.db")
    assert main(["best", "--storage", url, "--study", "pbt", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert [(s["trial"], s["from_step"], s["to_step"]) for s in payload["schedule"]] == [
        (0, 0.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 6.0)]
    assert payload["schedule"][2]["mutations"] == {"batch_size": "16 --- (resample) --> 32"}


def test_odd_lineage_attributes_are_read_defensively(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = write_pbt_study(tmp_path / "pbt.db", odd_attrs=True)
    assert main(["best", "--storage", url, "--study", "pbt", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    # No parent_step on trial 3: its handover from trial 0 is trial 0's last report before trial 3's first.
    assert [(s["trial"], s["from_step"], s["to_step"]) for s in payload["schedule"]] == [
        (0, 0.0, 2.0), (3, 2.0, 4.0), (4, 4.0, 6.0)]
    assert payload["schedule"][1]["mutations"] == {}


def test_a_trial_without_lineage_prints_no_schedule(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'plain.db'}"
    study = optuna.create_study(study_name="plain", storage=url, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert main(["best", "--storage", url, "--study", "plain", "--format", "json"]) == 0
    assert "schedule" not in json.loads(capsys.readouterr().out)


def test_a_continuation_is_said_to_continue_not_to_clone(capsys: pytest.CaptureFixture) -> None:
    from tunelab.cli.inspect import print_schedule

    entries = [{"trial": 0, "from_step": 0, "to_step": 3, "config": {"lr": 0.1}, "mutations": {}},
               {"trial": 5, "from_step": 3, "to_step": 6, "config": {"lr": 0.1}, "mutations": {}},
               {"trial": 7, "from_step": 6, "to_step": None, "config": {"lr": 0.12},
                "mutations": {"lr": "0.1 --- (* 1.2) --> 0.12"}}]
    print_schedule(entries)
    lines = capsys.readouterr().out.splitlines()
    assert "  step 3: trial 5 continued trial 0" in lines
    assert "  step 6: trial 7 cloned trial 5" in lines
