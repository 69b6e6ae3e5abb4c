"""Seed repeats end to end (issue 13.3): a real local study, its repeats in real trial processes,
and what ``status``, ``best`` and ``trials`` then say."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tunelab_cli

STUDY = """
name: seeds
objective: {type: function, function: "tl_test_objectives:seeded"}
metrics: [{name: score, goal: maximize}]
space:
  quality: {float: [0.0, 1.0]}
search: {sampler: random, seed: 3, repeats: {top: 2, seeds: 2}}
budget: {trials: 4}
execution: {backend: local, workers: 2}
tracking: {mlflow: false}
"""


def test_a_local_study_repeats_its_best_configs_with_other_seeds(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY)
    run = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert run.returncode == 0, run.stderr
    assert "then the best 2 config(s) again with 2 more seed(s) each" in run.stdout  # the start line
    assert "seeds: mean " in run.stdout and "is the best seed (export takes it)" in run.stdout

    rows = json.loads(tunelab_cli("trials", "--format", "json", cwd=study_dir).stdout)
    assert len(rows) == 4 + 4 and all(r["state"] == "complete" for r in rows)
    search = sorted((r for r in rows if r["number"] < 4), key=lambda r: -r["score"])[:2]
    repeats = [r for r in rows if r["number"] >= 4]
    assert {r["repeat_of"] for r in repeats} == {s["number"] for s in search}
    assert all(r["repeat_of"] is None for r in rows if r["number"] < 4)
    for r in repeats:  # the seed reached the trial process through its config
        config = json.loads((study_dir / "tunelab_runs" / "seeds" / f"trial_{r['number']:04d}" / "config.json").read_text())
        assert config["seed"] in (1, 2)
        assert config["quality"] in {s["params.quality"] for s in search}
        assert r["score"] == config["quality"] + ((config["seed"] * 7919) % 11 - 5) / 1000

    best = json.loads(tunelab_cli("best", "--format", "json", cwd=study_dir).stdout)
    assert best["seeds"]["n"] == 3 and [s["seed"] for s in best["seeds"]["seeds"]] == [0, 1, 2]
    means = {}
    for top in search:
        values = [top["score"]] + [r["score"] for r in repeats if r["params.quality"] == top["params.quality"]]
        means[top["params.quality"]] = sum(values) / len(values)
    assert best["config"] == {"quality": max(means, key=means.get)}
    assert best["seeds"]["mean"] == max(means.values())
    status = tunelab_cli("status", cwd=study_dir)
    assert "seeds    mean" in status.stdout

    # Run again: search and repeats are done; nothing more runs.
    assert tunelab_cli("run", "study.yaml", cwd=study_dir).returncode == 0
    assert len(json.loads(tunelab_cli("trials", "--format", "json", cwd=study_dir).stdout)) == 8
