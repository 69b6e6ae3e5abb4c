"""A study tracked to MLflow, W&B (offline) and TensorBoard at once, killed with kill -9 and run
again: each tracker ends with one record per trial and nothing twice (read back from what each wrote)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_resume_and_signals import alive, trial_pids, wait_for
from tracker_files import tensorboard_runs, wandb_runs
from tunelab.study import load_study

pytest.importorskip("mlflow")
pytest.importorskip("wandb")
pytest.importorskip("tensorboard")

STUDY = """
name: slow
objective: {type: function, function: "tl_test_objectives:slow"}
metrics: [{name: score, goal: maximize}]
space:
  quality: {float: [0.0, 1.0]}
  seconds: {fixed: 0.4}
search: {sampler: random, seed: 0}
budget: {trials: 8}
execution: {workers: 2}
tracking:
  mlflow: {uri: "sqlite:///mlflow.db"}
  wandb: {project: slow, mode: offline, dir: wb}
  tensorboard: {dir: tb}
"""

#: Nothing leaves the machine: W&B offline whatever the file says, MLflow's telemetry off.
ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_DISABLE_GIT": "true",
       "WANDB_CONSOLE": "off", "WANDB_API_KEY": "", "MLFLOW_DISABLE_TELEMETRY": "true"}


def tunelab(cwd: Path) -> subprocess.Popen:
    # Not WANDB_SERVICE: W&B exports it once a test in this process has used W&B, and a driver
    # that inherits it sends its runs to this process's W&B service instead of its own.
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml"], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**env, **ENV})


def states(cwd: Path) -> list[str]:
    try:
        return [t.state.value for t in load_study(str(cwd / "tunelab.journal"), "slow").trials()]
    except Exception:  # not created yet
        return []


def every_report(t) -> list[int]:
    """The steps a complete trial's score has: each report's index (its result equals the last report)."""
    assert t.metrics["score"] == t.history[-1].metrics["score"]
    return list(range(len(t.history)))


def mlflow_children(db: Path) -> dict[int, list]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("slow")
    out: dict[int, list] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        if "mlflow.parentRunId" in run.data.tags:
            out.setdefault(int(run.data.tags["trial"]), []).append(run)
    parents = [r for r in client.search_runs([exp.experiment_id], max_results=1000)
               if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    return out


def test_kill_9_mid_study_then_resume_leaves_one_record_per_trial_in_each_tracker(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY)
    driver = tunelab(study_dir)
    wait_for(lambda: states(study_dir).count("complete") >= 3 and "running" in states(study_dir), timeout=240,
             what="3 complete trials and one running")
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate(timeout=60)
    wait_for(lambda: not any(alive(p) for p in trial_pids(study_dir)), timeout=30, what="trial processes to exit")

    again = tunelab(study_dir)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out

    trials = {t.number: t for t in load_study(str(study_dir / "tunelab.journal"), "slow").trials()
              if t.failure_kind != "cancelled"}  # a trial taken but never started has no record anywhere
    assert any(t.failure_kind == "interrupted" for t in trials.values())
    complete = [n for n, t in trials.items() if t.state.value == "complete"]

    # MLflow: a nested run per trial, ended with the trial's state; no report logged twice.
    from mlflow import MlflowClient

    children = mlflow_children(study_dir / "mlflow.db")
    assert {n: len(runs) for n, runs in children.items()} == {n: 1 for n in trials}
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    for number, (run,) in children.items():
        t = trials[number]
        assert run.data.tags["state"] == t.state.value and run.info.status != "RUNNING"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "score")]
        assert len(steps) == len(set(steps)), (number, steps)
        if number in complete:
            assert sorted(steps) == every_report(t)

    # W&B: one run id per trial (a resumed run adds a file, not a run); no step logged twice.
    runs = wandb_runs(study_dir / "wb")
    by_trial: dict[int, list] = {}
    for run in runs.values():
        by_trial.setdefault(int(run["name"].split("_")[1]), []).append(run)
    assert {n: len(r) for n, r in by_trial.items()} == {n: 1 for n in trials}
    for number, (run,) in by_trial.items():
        t = trials[number]
        assert run["summary"]["state"] == t.state.value
        steps = [h["_step"] for h in run["history"] if "score" in h]
        assert len(steps) == len(set(steps)), (number, steps)
        if number in complete:
            assert sorted(steps) == every_report(t)
        if t.failure_kind:
            assert run["summary"]["failure_kind"] == t.failure_kind

    # TensorBoard: a run directory per trial with one HParams session; no scalar step twice.
    boards = tensorboard_runs(study_dir / "tb" / "slow")
    assert set(boards) == {f"trial_{n:04d}" for n in trials}
    for number, t in trials.items():
        board = boards[f"trial_{number:04d}"]
        assert len(board["hparams"]) == 1 and board["hparams"][0]["state"] == t.state.value
        steps = [step for step, _ in board["scalars"].get("score", [])]
        assert len(steps) == len(set(steps)), (number, steps)
        if number in complete:
            assert sorted(steps) == every_report(t)
