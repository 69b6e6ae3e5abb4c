"""A real 2-worker local study of a Python function with ASHA, and the CLI that reads it."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tunelab_cli

STUDY = """
name: curves
objective: {type: function, function: "tl_test_objectives:curve"}
metrics: [{name: score, goal: maximize}]
space:
  quality: {float: [0.0, 1.0]}
  batch_size: {choice: [16, 32]}
  epochs: {fixed: 9}
search: {sampler: random, seed: 3}
scheduler: {type: asha, min_resource: 1, max_resource: 9, reduction_factor: 3}
budget: {trials: 12}
execution: {backend: local, workers: 2}
tracking: {mlflow: false}
"""


def test_two_worker_local_study_with_asha(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY)
    run = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert run.returncode == 0, run.stderr
    assert "best trial" in run.stdout

    rows = json.loads(tunelab_cli("trials", "--format", "json", cwd=study_dir).stdout)
    assert len(rows) == 12
    states = {r["state"] for r in rows}
    assert states <= {"complete", "pruned"} and "pruned" in states and "complete" in states
    assert {r["slot"] for r in rows} == {0, 1}  # both workers were used
    for r in rows:
        assert r["params.batch_size"] in (16, 32)  # values, never indices
        assert r["params.epochs"] == 9
        if r["state"] == "pruned":
            assert r["best_step"] < 9
        trial_dir = study_dir / "tunelab_runs" / "curves" / f"trial_{r['number']:04d}"
        assert json.loads((trial_dir / "config.json").read_text())["batch_size"] == r["params.batch_size"]
        assert (trial_dir / "trial.log").exists()

    best = json.loads(tunelab_cli("best", "--format", "json", cwd=study_dir).stdout)
    complete = [r for r in rows if r["state"] == "complete"]
    assert best["metrics"]["score"] == max(r["score"] for r in complete)
    assert best["config"]["batch_size"] in (16, 32)
    assert isinstance(best["config"]["epochs"], int)

    status = tunelab_cli("status", cwd=study_dir)
    assert "12 trials" in status.stdout and "pruned" in status.stdout

    # Running the finished study again does nothing more: the budget is reached.
    again = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert again.returncode == 0
    assert len(json.loads(tunelab_cli("trials", "--format", "json", cwd=study_dir).stdout)) == 12


def test_config_error_exit_code_and_message(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY.replace("reduction_factor: 3", "reduction_factor: 1"))
    run = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert run.returncode == 2
    assert "scheduler.reduction_factor" in run.stderr and "Traceback" not in run.stderr
    assert not (study_dir / "tunelab_runs" / "curves").exists() or not list(
        (study_dir / "tunelab_runs" / "curves").glob("trial_*"))


def test_missing_study_is_exit_code_1(tmp_path: Path) -> None:
    run = tunelab_cli("status", "--storage", str(tmp_path / "none.journal"), cwd=tmp_path)
    assert run.returncode == 1 and "No study storage" in run.stderr
