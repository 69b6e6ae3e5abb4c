"""Warm start from the CLI (issue 13.4): the copies are not listed unless asked for."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tunelab_cli

STUDY = """
name: {name}
objective: {{type: function, function: "tl_test_objectives:curve"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: [0.0, 1.0]}}
  epochs: {{fixed: 2}}
search: {{sampler: tpe, seed: 0{extra}}}
budget: {{trials: 3}}
execution: {{backend: inprocess}}
tracking: {{mlflow: false}}
"""


def test_the_copies_are_listed_only_when_asked_for(study_dir: Path) -> None:
    (study_dir / "a.yaml").write_text(STUDY.format(name="first", extra=""))
    (study_dir / "b.yaml").write_text(STUDY.format(name="second", extra=", warm_start: [first]"))
    assert tunelab_cli("run", "a.yaml", cwd=study_dir).returncode == 0
    run = tunelab_cli("run", "b.yaml", cwd=study_dir)
    assert run.returncode == 0, run.stderr
    assert "sampler warm-started from first" in run.stdout
    assert "warm start: 3 trial(s) of study first given to the sampler" in run.stderr
    own = json.loads(tunelab_cli("trials", "--study", "second", "--format", "json", cwd=study_dir).stdout)
    copies = json.loads(tunelab_cli("trials", "--study", "second", "--warm-start", "--format", "json",
                                    cwd=study_dir).stdout)
    assert [r["number"] for r in own] == [3, 4, 5] and [r["number"] for r in copies] == [0, 1, 2]
    status = tunelab_cli("status", "--study", "second", cwd=study_dir).stdout
    assert "3 trials" in status
    missing = tunelab_cli("run", "b.yaml", cwd=study_dir)  # resumed: nothing copied twice
    assert "warm start" not in missing.stderr
    (study_dir / "c.yaml").write_text(STUDY.format(name="third", extra=", warm_start: [nope]"))
    bad = tunelab_cli("run", "c.yaml", cwd=study_dir)
    assert bad.returncode == 2 and "search.warm_start[0].study: 'nope' is not a study in" in bad.stderr
