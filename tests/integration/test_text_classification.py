"""The text-classification objective end to end: driver hooks, trials in fresh processes, export.

Each trial runs in a spawned process (as the local executor runs them) from the pickled
objective, memory-mapping the token cache the driver built in ``prepare``.
"""

from __future__ import annotations

import json
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])  # nlp_fixtures lives in tests/
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

pytest.importorskip("torch")
pytest.importorskip("transformers")

import nlp_fixtures  # noqa: E402
from tunelab.metrics import MetricSet  # noqa: E402
from tunelab.nlp.export import evaluate_model, export_checkpoint  # noqa: E402
from tunelab.objectives.text_classification import TextClassification  # noqa: E402
from tunelab.space import Space  # noqa: E402


def test_study_shaped_run_in_spawned_processes(tmp_path: Path) -> None:
    model = nlp_fixtures.build_tiny_model(tmp_path / "model")
    nlp_fixtures.make_dataset(tmp_path / "data")
    raw = {
        "type": "text_classification", "model": "model", "max_length": 32, "cache_dir": str(tmp_path / "cache"),
        "data": {"train": "data/train.csv", "validation": "data/validation.csv", "text": "text", "label": "label"},
        "num_train_epochs": 3, "batch_size": 16, "device": "cpu",
    }
    objective = TextClassification.from_config(raw, base_dir=tmp_path)  # paths relative to the study file
    assert objective.model_source() == str(model.absolute())
    objective.validate(Space({"learning_rate": {"float": [1e-3, 1e-2], "log": True},
                              "max_length": {"choice": [16, 32]}}),
                       MetricSet.parse([{"name": "accuracy", "goal": "maximize"}]))
    objective.prepare(tmp_path)
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert len(entries) == 2  # one per max_length the space can pick
    payload = pickle.dumps(objective)
    configs = [{"learning_rate": 3e-3, "max_length": 32}, {"learning_rate": 3e-3, "max_length": 16}]
    # One spawned worker runs both trials: importing torch and transformers dominates the cost.
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(nlp_fixtures.run_pickled_trial, payload, str(tmp_path / f"trial{i}"), c, i)
                   for i, c in enumerate(configs)]
        outcomes = [f.result(timeout=240) for f in futures]
    for outcome in outcomes:
        assert "result" in outcome, outcome
        assert [s for s, _ in outcome["reports"]] == [1.0, 2.0, 3.0]
    assert outcomes[0]["result"]["accuracy"] > 0.8
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()) == entries  # reused, not rebuilt

    out = export_checkpoint(tmp_path / "trial0" / "checkpoint", tmp_path / "export",
                            {"trial": 0, "hyperparameters": configs[0]})
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(out), device="cpu")
    assert classify("an excellent film")[0]["label"] in ("pos", "neg")
    record = json.loads((out / "tunelab.json").read_text())
    assert record["hyperparameters"] == configs[0] and record["max_length"] == 32
    scored = evaluate_model(out, tmp_path / "data" / "validation.csv")
    assert scored["accuracy"] == pytest.approx(outcomes[0]["result"]["accuracy"], abs=1e-9)
