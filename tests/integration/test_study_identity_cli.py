"""`tunelab run` after the study file's definition changed (issue 9.1): exit 2, one line that
names the change and the fixes, no trial run; `--on-change` chooses explicitly."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tunelab_cli

STUDY = """
name: ident
objective: {{type: function, function: "tl_test_objectives:curve"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: {bounds}}}
  epochs: {{fixed: 2}}
search: {{sampler: random, seed: 0}}
budget: {{trials: {trials}}}
execution: {{backend: inprocess}}
tracking: {{mlflow: false}}
"""


def _trials(cwd: Path) -> list[dict]:
    return json.loads(tunelab_cli("trials", "--format", "json", cwd=cwd).stdout)


def test_an_edited_range_stops_the_run_before_any_trial(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY.format(bounds="[0.0, 1.0]", trials=3))
    first = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert first.returncode == 0, first.stderr
    assert "maximize score" in first.stdout  # the start line names the direction
    runs = sorted(p.name for p in (study_dir / "tunelab_runs" / "ident").iterdir())

    (study_dir / "study.yaml").write_text(STUDY.format(bounds="[2.0, 3.0]", trials=6))
    changed = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert changed.returncode == 2 and changed.stdout == ""
    lines = changed.stderr.strip().splitlines()
    assert len(lines) == 1, changed.stderr
    assert "space.quality: float [0, 1] -> float [2, 3]" in lines[0]
    assert "--on-change restart" in lines[0] and "--on-change continue" in lines[0] and "name:" in lines[0]
    assert len(_trials(study_dir)) == 3
    assert sorted(p.name for p in (study_dir / "tunelab_runs" / "ident").iterdir()) == runs

    kept = tunelab_cli("run", "study.yaml", "--on-change", "continue", cwd=study_dir)
    assert kept.returncode == 0, kept.stderr
    assert "3 of its 3 old trials lie outside the new space" in kept.stderr
    best = json.loads(tunelab_cli("best", "--format", "json", cwd=study_dir).stdout)
    assert 2.0 <= best["config"]["quality"] <= 3.0  # an old trial outside the new space is never best
    assert len(_trials(study_dir)) == 6

    (study_dir / "study.yaml").write_text(STUDY.format(bounds="[4.0, 5.0]", trials=2))
    restarted = tunelab_cli("run", "study.yaml", "--on-change", "restart", cwd=study_dir)
    assert restarted.returncode == 0, restarted.stderr
    assert [4.0 <= r["params.quality"] <= 5.0 for r in _trials(study_dir)] == [True, True]
    [moved] = [p for p in (study_dir / "tunelab_runs").iterdir() if p.name.startswith("ident.replaced-")]
    assert f"moved to {moved}" in restarted.stderr


def test_a_bad_study_name_in_the_cli_is_a_config_error(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY.format(bounds="[0.0, 1.0]", trials=1))
    assert tunelab_cli("run", "study.yaml", cwd=study_dir).returncode == 0
    bad = tunelab_cli("status", "--study", "../x", cwd=study_dir)
    assert bad.returncode == 2 and bad.stderr.startswith("config error: --study:")
