"""A real `tunelab run` of a function objective with a typo: the KeyError is shown in the run's
output, `trials`, `status`, `best` and the report, and the run exits 1."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tunelab_cli

STUDY = """\
name: typo
objective: {type: function, function: "typo_objective:train"}
metrics: [{name: loss, goal: minimize}]
space:
  learning_rate: {float: [1.0e-3, 1.0e-1], log: true}
search: {sampler: random, seed: 0}
budget: {trials: 3}
execution: {backend: local, workers: 1}
"""

OBJECTIVE = """\
def train(config, reporter):
    return {"loss": config["learning_rat"]}
"""


def test_a_run_where_every_trial_fails_says_why_everywhere(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(STUDY)
    (tmp_path / "typo_objective.py").write_text(OBJECTIVE)
    run = tunelab_cli("run", "study.yaml", "--no-mlflow", "--report", "report.html", "--debug", cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    for n in range(3):  # each failure on its own line, with the command that shows the whole log
        assert f"trial {n} failed: crash: KeyError: 'learning_rat' (tunelab logs {n})" in run.stdout
    assert ("error: no trial completed: 3 of 3 failed; all with crash, the latest (trial 2): "
            "KeyError: 'learning_rat' (tunelab logs 2)") in run.stderr
    assert "constraint" not in output and "~00:00 left" not in output

    rows = json.loads(tunelab_cli("trials", "--format", "json", cwd=tmp_path).stdout)
    assert [(r["failure_kind"], r["failure_message"]) for r in rows] == [("crash", "KeyError: 'learning_rat'")] * 3
    table = tunelab_cli("trials", cwd=tmp_path).stdout
    assert table.splitlines()[1].split()[:2] == ["0", "failed"] and "KeyError: 'learning_rat'" in table

    status = tunelab_cli("status", cwd=tmp_path).stdout
    assert "crash  3  trial 2: KeyError: 'learning_rat' (tunelab logs 2)" in status

    best = tunelab_cli("best", cwd=tmp_path)
    assert best.returncode == 1
    assert best.stdout.strip() == "no trial completed yet (3 failed: crash; see tunelab status)"

    logs = tunelab_cli("logs", "0", cwd=tmp_path)
    assert "KeyError: 'learning_rat'" in logs.stdout  # the whole traceback is there

    report = (tmp_path / "report.html").read_text()
    assert "id='failures'" in report and "KeyError: &#x27;learning_rat&#x27;" in report
