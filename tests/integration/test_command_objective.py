"""A training command with regex metrics, run without a shell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import tunelab_cli

TRAIN = """
import sys, time
lr = float(sys.argv[sys.argv.index("--lr") + 1])
bs = int(sys.argv[sys.argv.index("--bs") + 1])
if bs == 64:
    print("CUDA error: something broke", flush=True)
    sys.exit(7)
for epoch in range(1, 4):
    print(f"epoch {epoch}", flush=True)
    print(f"eval: loss = {1.0 / (epoch * lr):.4f} f1 = {min(1.0, lr * epoch / 3):.4f}", flush=True)
"""

STUDY = """
name: cmd
objective:
  type: command
  command: ["{python}", "train.py", "--lr", "{{learning_rate}}", "--bs", "{{batch_size}}"]
  step_regex: 'epoch (\\d+)'
  metrics:
    - {{name: f1, regex: 'f1 = ([0-9.]+)'}}
    - {{name: loss, regex: 'loss = ([0-9.]+)'}}
metrics: [{{name: f1, goal: maximize}}, {{name: loss, strategy: store}}]
space:
  learning_rate: {{float: [0.5, 1.0]}}
  batch_size: {{choice: [16, 64]}}
search: {{sampler: random, seed: 1}}
budget: {{trials: 6}}
execution: {{workers: 2}}
tracking: {{mlflow: false}}
"""


def test_command_objective_reports_each_value(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "study.yaml").write_text(STUDY.format(python=sys.executable))
    run = tunelab_cli("run", "study.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = json.loads(tunelab_cli("trials", "--format", "json", cwd=tmp_path).stdout)
    assert len(rows) == 6
    from tunelab.study import load_study

    study = load_study(str(tmp_path / "tunelab.journal"), "cmd")
    for t in study.trials():
        if t.config["batch_size"] == 64:
            assert (t.state.value, t.failure_kind) == ("failed", "crash")
            assert "code 7" in t.message and "CUDA error: something broke" in t.message
            continue
        lr = t.config["learning_rate"]
        assert t.state.value == "complete"
        assert [r.step for r in t.history if "f1" in r.metrics] == [1.0, 2.0, 3.0]
        assert t.metrics["f1"] == round(min(1.0, lr), 4)  # the last value is final
        assert t.metrics["loss"] == round(1.0 / (3 * lr), 4)
        assert "epoch 3" in (Path(t.trial_dir) / "trial.log").read_text()


def test_unknown_placeholder_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "study.yaml").write_text(STUDY.format(python=sys.executable).replace("{batch_size}", "{bs}"))
    run = tunelab_cli("run", "study.yaml", cwd=tmp_path)
    assert run.returncode == 2 and "objective.command" in run.stderr and "`{bs}`" in run.stderr


LEAVES_STDOUT_OPEN = """
name: open
objective:
  type: command
  command: ["{python}", "-c", "import subprocess; p = subprocess.Popen(['sleep', '300']); print('child', p.pid); print('f1 = 0.6')"]
  metrics: [{{name: f1, regex: 'f1 = ([0-9.]+)'}}]
metrics: [{{name: f1, goal: maximize}}]
space:
  x: {{float: [0.0, 1.0]}}
budget: {{trials: 1}}
execution: {{workers: 1, timeout: 60}}
tracking: {{mlflow: false}}
"""


def test_a_command_that_exits_but_leaves_its_stdout_open_completes(tmp_path: Path) -> None:
    import os
    import re
    import time

    (tmp_path / "study.yaml").write_text(LEAVES_STDOUT_OPEN.format(python=sys.executable))
    run = tunelab_cli("run", "study.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    from tunelab.study import load_study

    (trial,) = load_study(str(tmp_path / "tunelab.journal"), "open").trials()
    assert (trial.state.value, trial.failure_kind, trial.metrics.get("f1")) == ("complete", None, 0.6), trial.message
    child = int(re.search(r"child (\d+)", (Path(trial.trial_dir) / "trial.log").read_text()).group(1))

    def alive() -> bool:
        try:
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    end = time.monotonic() + 20
    while alive() and time.monotonic() < end:
        time.sleep(0.1)
    if alive():
        os.kill(child, 9)
        raise AssertionError(f"the command's child {child} outlived the trial")
