"""Export a trial's best checkpoint as a standard Hugging Face model dir, reload it, score it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nlp_fixtures
from tunelab.errors import TunelabError
from tunelab.nlp.export import evaluate_model, export_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tiny_data: dict,
            shared_cache: Path) -> tuple[Path, dict]:
    trial_dir = tmp_path_factory.mktemp("trial")
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache)
    rep = nlp_fixtures.make_reporter(trial_dir, {"learning_rate": 3e-3, "batch_size": 16}, trial_id=7)
    return rep.checkpoint_dir, obj(rep.config, rep)


def test_export_loads_with_pipeline_and_auto_model(tmp_path: Path, trained: tuple[Path, dict],
                                                   tiny_data: dict) -> None:
    from transformers import AutoModelForSequenceClassification, pipeline

    checkpoint, result = trained
    info = {"study": "demo", "trial": 7, "hyperparameters": {"learning_rate": 3e-3, "batch_size": 16},
            "chosen_by": {"accuracy": result["accuracy"]}}
    out = export_checkpoint(checkpoint, tmp_path / "best", info)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "tunelab.json"} <= names
    assert "tunelab_checkpoint.json" not in names
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}
    classify = pipeline("text-classification", model=str(out), device="cpu")
    predictions = classify(["the movie was excellent and the music great", "a terrible boring plot"])
    assert [p["label"] for p in predictions] == ["pos", "neg"]
    record = json.loads((out / "tunelab.json").read_text())
    assert record["study"] == "demo" and record["hyperparameters"] == {"learning_rate": 3e-3, "batch_size": 16}
    assert record["data"]["fingerprint"] and record["versions"]["transformers"] and record["max_length"] == 32
    assert record["checkpoint"]["metrics"]["accuracy"] == result["accuracy"]


def test_evaluate_model_matches_the_trials_validation_metrics(tmp_path: Path, trained: tuple[Path, dict],
                                                              tiny_data: dict) -> None:
    checkpoint, result = trained
    out = export_checkpoint(checkpoint, tmp_path / "best", {})
    metrics = evaluate_model(out, tiny_data["validation"], text="text", label="label")
    assert metrics["examples"] == 64
    for name in ("accuracy", "f1", "mcc"):
        assert metrics[name] == pytest.approx(result[name], abs=1e-9)
    assert metrics["loss"] == pytest.approx(result["loss"], rel=1e-5)


def test_evaluate_model_takes_integer_labels(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    checkpoint, _ = trained
    files = nlp_fixtures.make_dataset(tmp_path / "ints", n_train=4, n_val=20, int_labels=True)
    metrics = evaluate_model(checkpoint, files["validation"])  # ids 0/1 = neg/pos
    assert metrics["accuracy"] >= 0.9


def test_export_refuses_a_non_empty_dir_and_a_missing_checkpoint(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    checkpoint, _ = trained
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(TunelabError, match="not empty"):
        export_checkpoint(checkpoint, tmp_path / "out", {})
    export_checkpoint(checkpoint, tmp_path / "out", {}, overwrite=True)
    assert not (tmp_path / "out" / "notes.txt").exists()
    with pytest.raises(TunelabError, match="no complete tunelab checkpoint"):
        export_checkpoint(tmp_path / "empty", tmp_path / "out2", {})


def test_export_takes_best_not_latest_and_still_reads_the_old_layout(tmp_path: Path, trained: tuple[Path, dict]) -> None:
    import shutil

    from safetensors.torch import load_file

    checkpoint, _ = trained
    assert (checkpoint / "best" / "model.safetensors").is_file() and (checkpoint / "latest").is_dir()
    out = export_checkpoint(checkpoint, tmp_path / "new", {})
    best = load_file(str(checkpoint / "best" / "model.safetensors"))
    exported = load_file(str(out / "model.safetensors"))
    assert all((best[k] == exported[k]).all() for k in best)
    assert json.loads((out / "tunelab.json").read_text())["checkpoint"]["step"] == json.loads(
        (checkpoint / "best" / "tunelab_checkpoint.json").read_text())["step"]
    old = tmp_path / "old_trial" / "checkpoint"  # a trial from before best/ and latest/
    shutil.copytree(checkpoint / "best", old)
    out_old = export_checkpoint(old, tmp_path / "from_old", {})
    assert {"config.json", "model.safetensors", "tunelab.json"} <= {p.name for p in out_old.iterdir()}
