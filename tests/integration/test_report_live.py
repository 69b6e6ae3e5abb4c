"""While a study runs: `tunelab run --report` keeps the report current (and tracks to the default
local MLflow store); `tunelab dashboard` serves the study with optuna-dashboard on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tunelab.api import run_study
from tunelab.cli.main import main as tunelab_main
from tunelab.config import load_config
from tunelab.report.live import LiveReport

STUDY = """
name: live
objective: {type: function, function: "live_report_objective:train"}
metrics: [{name: score, goal: maximize}]
space:
  x: {float: [0.0, 1.0]}
  n: {int: [1, 3]}
search: {sampler: random, seed: 0}
budget: {trials: 5}
execution: {backend: inprocess, workers: 1}
"""

OBJECTIVE = '''
def train(config, reporter):
    for epoch in (1, 2):
        reporter.report(epoch, score=config["x"] * epoch / config["n"])
    return {"score": config["x"] * 2 / config["n"]}
'''


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    (tmp_path / "study.yaml").write_text(STUDY)
    (tmp_path / "live_report_objective.py").write_text(OBJECTIVE)
    return tmp_path


def trial_count(html: str) -> int:
    return int(re.search(r"<b>(\d+)</b><span>trials</span>", html).group(1))


class ReadReport:
    """After the live report's hook: what a reader of the file sees at each trial end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[tuple[int, bool]] = []

    def on_trial_end(self, trial: Any) -> None:
        html = self.path.read_text()
        self.seen.append((trial_count(html), "http-equiv='refresh'" in html))


def test_report_refreshes_as_trials_end(study_dir: Path) -> None:
    path = study_dir / "live.html"
    reader = ReadReport(path)
    config = load_config(study_dir / "study.yaml").with_overrides(trials=3)
    run_study(config, callbacks=[LiveReport(path, min_interval_s=0), reader])
    assert reader.seen == [(1, True), (2, True), (3, True)]  # live, and reloading
    html = path.read_text()
    assert trial_count(html) == 3 and "http-equiv='refresh'" not in html  # the final report
    assert [p.name for p in study_dir.iterdir() if p.name.startswith(".live")] == []  # atomic replace
    out = study_dir / "cli.html"
    assert tunelab_main(["report", "--config", str(study_dir / "study.yaml"), "--out", str(out)]) == 0
    assert trial_count(out.read_text()) == 3


def test_run_with_report_and_default_mlflow_store(study_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(study_dir)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert tunelab_main(["run", "study.yaml", "--report", "report.html"]) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)  # `tunelab run` turns SIGTERM into a clean stop
    assert "http-equiv='refresh'" not in (study_dir / "report.html").read_text()
    # No `tracking:` in the study and MLflow installed: a local SQLite store beside the study.
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{study_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("live")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 6
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"report.html", "study.yaml", "best.json"}
    assert experiment.artifact_location.endswith(f"{study_dir.name}/mlartifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study(study_dir: Path) -> None:
    config = load_config(study_dir / "study.yaml")
    run_study(config)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "dashboard", "--port", str(port)],
                            cwd=study_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            if proc.poll() is not None:
                pytest.fail(f"tunelab dashboard exited: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.2)
        assert body is not None, "optuna-dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["live"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
