"""A fine-tuning study with no space (issue 13.5), with seed repeats (13.3), run by the CLI on a
tiny model: the default space and start points, the training seed reaching the trainer, and
export taking the best-mean config's best seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])  # nlp_fixtures lives in tests/
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

pytest.importorskip("torch")
pytest.importorskip("transformers")

import nlp_fixtures  # noqa: E402
from conftest import tunelab_cli  # noqa: E402

STUDY = """
name: defaults
objective:
  type: text_classification
  model: model
  data: {train: data/train.csv, validation: data/validation.csv, text: text, label: label}
  max_length: 32
  num_train_epochs: 2
  device: cpu
  cache_dir: cache
metrics: [{name: accuracy, goal: maximize}]
search: {sampler: tpe, seed: 0, repeats: {top: 1, seeds: 1}}
budget: {trials: 3}
execution: {backend: inprocess, workers: 1}
tracking: {mlflow: false}
"""


def test_a_fine_tuning_study_with_no_space_and_seed_repeats(tmp_path: Path) -> None:
    nlp_fixtures.build_tiny_model(tmp_path / "model")
    nlp_fixtures.make_dataset(tmp_path / "data")
    (tmp_path / "study.yaml").write_text(STUDY)
    run = tunelab_cli("run", "study.yaml", cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "tunelab's fine-tuning defaults for space and scheduler (ASHA over epochs 1..2, reduction factor 2)" \
        in run.stdout
    rows = {r["number"]: r for r in json.loads(tunelab_cli("trials", "--format", "json", cwd=tmp_path).stdout)}
    assert len(rows) == 4
    first = rows[0]  # the start point (a third of a 3-trial budget: one), from the compact grid:
    # the tiny model has far fewer than 30M parameters in its layers
    assert (first["params.learning_rate"], first["params.batch_size"], first["params.warmup_ratio"],
            first["params.weight_decay"]) == (1e-4, 32, 0.0, 0.0)
    for r in rows.values():
        assert 1e-5 <= r["params.learning_rate"] <= 3e-4 and r["params.batch_size"] in (16, 32)
    repeat = rows[3]
    assert repeat["repeat_of"] is not None and rows[repeat["repeat_of"]]["state"] == "complete"
    assert repeat["params.seed"] == 43  # the trainer's default 42, plus one: the config the trial trained with

    best = json.loads(tunelab_cli("best", "--format", "json", cwd=tmp_path).stdout)
    assert best["seeds"]["n"] == 2 and [s["seed"] for s in best["seeds"]["seeds"]] == [42, 43]
    assert "seed" not in best["config"]
    export = tunelab_cli("export", "--out", "exported", cwd=tmp_path, timeout=300)
    assert export.returncode == 0, export.stderr
    assert f"exported trial {best['trial']}" in export.stdout
    record = json.loads((tmp_path / "exported" / "tunelab.json").read_text())
    assert record["trial"] == best["seeds"]["best_trial"]
