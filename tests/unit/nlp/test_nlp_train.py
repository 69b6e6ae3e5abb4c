"""The training loop on a tiny BERT: reports, best checkpoint, failures, cache reuse, determinism."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import nlp_fixtures
from tunelab.errors import TrialFailed, TrialPruned
from tunelab.metrics import MetricSet
from tunelab.space import Space


def _run(obj: Any, trial_dir: Path, config: dict | None = None, **reporter: Any) -> tuple[dict, list]:
    rep = nlp_fixtures.make_reporter(trial_dir, config, **reporter)
    result = obj(rep.config, rep)
    return result, rep.channel.results


def test_trains_reports_each_epoch_and_keeps_the_best_checkpoint(
        tmp_path: Path, tiny_model: Path, tiny_data: dict, shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache)
    result, reports = _run(obj, tmp_path / "t0", {"learning_rate": 3e-3})
    assert [step for step, _ in reports] == [1.0, 2.0, 3.0]
    first = reports[0][1]
    for name in ("accuracy", "f1", "f1_macro", "mcc", "loss", "train_loss", "train_seconds", "samples_per_second"):
        assert name in first
    assert result["accuracy"] >= 0.9  # learnable by keyword; chance is 0.5
    best = max(reports, key=lambda r: r[1]["accuracy"])  # first best wins ties
    assert result["best_step"] == best[0] and result["accuracy"] == best[1]["accuracy"]
    ckpt = tmp_path / "t0" / "checkpoint" / "best"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tunelab_checkpoint.json"} <= {
        p.name for p in ckpt.iterdir()}
    record = json.loads((ckpt / "tunelab_checkpoint.json").read_text())
    assert record["step"] == best[0] and record["metrics"]["accuracy"] == result["accuracy"]
    assert record["settings"]["learning_rate"] == 3e-3 and record["labels"] == ["neg", "pos"]
    assert record["data"]["fingerprint"] and record["versions"]["torch"]
    config = json.loads((ckpt / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}


def test_eval_steps_report_fractional_epochs(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                             shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, eval_steps=5,
                                      defaults={"num_train_epochs": 1.5})
    _, reports = _run(obj, tmp_path / "t")
    assert [s for s, _ in reports] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]  # 20 updates per epoch


def test_evals_per_epoch_reach_each_fraction(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                            shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, evals_per_epoch=3,
                                      defaults={"num_train_epochs": 1, "per_device_train_batch_size": 32})
    _, reports = _run(obj, tmp_path / "t")
    assert [s for s, _ in reports] == [0.4, 0.7, 1.0]  # 10 updates an epoch: at or past 1/3, 2/3, 1


def test_the_best_evaluation_follows_the_studys_metric(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                        shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache)
    obj.validate(Space({"learning_rate": {"float": [1e-4, 1e-2]}}), MetricSet.parse([{"name": "loss", "goal":
                                                                                       "minimize"}]))
    result, reports = _run(obj, tmp_path / "t", {"learning_rate": 3e-3})
    assert result["loss"] == min(r[1]["loss"] for r in reports)


def test_sentence_pairs(tmp_path: Path, tiny_model: Path, pair_data: dict, shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, pair_data, shared_cache, pairs=True,
                                      defaults={"num_train_epochs": 4})
    result, reports = _run(obj, tmp_path / "t")
    assert len(reports) == 4 and result["accuracy"] >= 0.8


def test_pruned_trial_keeps_its_best_checkpoint(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache)
    with pytest.raises(TrialPruned):
        _run(obj, tmp_path / "t", stop_when=lambda step, metrics: step >= 1.0)
    record = json.loads((tmp_path / "t" / "checkpoint" / "best" / "tunelab_checkpoint.json").read_text())
    assert record["step"] == 1.0


def test_nan_loss_fails_the_trial_at_once(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                          shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, fault_injection={"nan_at_update": 3})
    rep = nlp_fixtures.make_reporter(tmp_path / "t")
    with pytest.raises(TrialFailed) as err:
        obj(rep.config, rep)
    assert err.value.kind == "nan" and "update 3" in str(err.value)
    assert rep.channel.results == []  # stopped before any evaluation


def _one_update(obj_options: dict, tiny_model: Path, tiny_data: dict, cache: Path, trial_dir: Path) -> dict:
    """Train exactly one update of 16 examples (dropout off) and return the saved weights."""
    from safetensors.torch import load_file

    options = dict(obj_options)
    defaults = {"num_train_epochs": 1, "per_device_train_batch_size": 16, "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0, "classifier_dropout": 0.0,
                # A large epsilon makes Adam's first step linear in the gradient, so the weights
                # compare gradients rather than their signs.
                "adam_epsilon": 1.0, "learning_rate": 0.5, **options.pop("defaults", {})}
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, cache, data={"max_train_samples": 16},
                                      defaults=defaults, **options)
    result, _ = _run(obj, trial_dir)
    weights = load_file(str(trial_dir / "checkpoint" / "best" / "model.safetensors"))
    record = json.loads((trial_dir / "checkpoint" / "best" / "tunelab_checkpoint.json").read_text())
    return {"weights": weights, "result": result, "micro": record["micro_batch"]}


def test_oom_halves_the_micro_batch_with_the_same_update(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                         shared_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    import torch
    from safetensors.torch import load_file

    whole = _one_update({}, tiny_model, tiny_data, shared_cache, tmp_path / "whole")
    with caplog.at_level(logging.WARNING, logger="tunelab.nlp"):
        split = _one_update({"fault_injection": {"oom_above_micro_batch": 5}}, tiny_model, tiny_data,
                            shared_cache, tmp_path / "split")
    accumulated = _one_update({"defaults": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4}},
                              tiny_model, tiny_data, shared_cache, tmp_path / "accumulated")
    assert whole["micro"] == 16 and split["micro"] == 4
    assert "micro-batch 8" in caplog.text and "micro-batch 4, accumulation x4" in caplog.text
    for name, before in whole["weights"].items():
        torch.testing.assert_close(split["weights"][name], before, atol=2e-6, rtol=1e-5)
        torch.testing.assert_close(accumulated["weights"][name], before, atol=2e-6, rtol=1e-5)
    assert whole["result"]["train_loss"] == pytest.approx(split["result"]["train_loss"], abs=1e-6)
    initial = load_file(str(tiny_model / "model.safetensors"))["embeddings.word_embeddings.weight"]
    moved = whole["weights"]["bert.embeddings.word_embeddings.weight"] - initial
    assert moved.abs().max() > 1e-3  # the update did move the weights, so the comparison means something


def test_oom_at_a_micro_batch_of_one_fails_as_oom(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                  shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache,
                                      fault_injection={"oom_above_micro_batch": 0})
    rep = nlp_fixtures.make_reporter(tmp_path / "t")
    with pytest.raises(TrialFailed) as err:
        obj(rep.config, rep)
    assert err.value.kind == "oom"


@pytest.mark.parametrize("fast_path", [True, False])
def test_same_seed_same_metrics(tmp_path: Path, tiny_model: Path, tiny_data: dict, shared_cache: Path,
                                fast_path: bool) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults={"num_train_epochs": 2},
                                      fast_path=fast_path)
    config = {"learning_rate": 2e-3, "seed": 3, "hidden_dropout_prob": 0.1}
    _, first = _run(obj, tmp_path / "a", config)
    _, second = _run(obj, tmp_path / "b", config)
    _, other_seed = _run(obj, tmp_path / "c", {**config, "seed": 4})
    strip = lambda reports: [(s, {k: v for k, v in m.items() if "second" not in k}) for s, m in reports]  # noqa: E731
    assert strip(first) == strip(second)  # bit for bit on CPU
    assert strip(first) != strip(other_seed)


def test_second_trial_reuses_the_token_cache(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer, PreTrainedTokenizerBase

    calls = {"call": 0, "load": 0}
    original_call, original_load = PreTrainedTokenizerBase.__call__, AutoTokenizer.from_pretrained

    def counting_call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["call"] += 1
        return original_call(self, *args, **kwargs)

    def counting_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["load"] += 1
        return original_load(*args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting_call)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", counting_load)
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, tmp_path / "cache", defaults={"num_train_epochs": 1})
    obj.prepare(tmp_path)
    assert calls["call"] > 0
    before = dict(calls)
    _run(obj, tmp_path / "t1")
    _run(obj, tmp_path / "t2", {"learning_rate": 1e-3})
    assert calls == before  # trials neither load nor call the tokenizer: they map the cache
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


def test_a_tuned_max_length_builds_its_cache_in_the_trial(tmp_path: Path, tiny_model: Path, tiny_data: dict) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, tmp_path / "cache", defaults={"num_train_epochs": 1})
    obj.prepare(tmp_path)
    _run(obj, tmp_path / "t", {"max_length": 12})
    record = json.loads((tmp_path / "t" / "checkpoint" / "best" / "tunelab_checkpoint.json").read_text())
    assert record["max_length"] == 12
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 2


def test_test_split_is_scored_with_the_best_checkpoint(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                       shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache,
                                      data={"test": str(tiny_data["validation"])})
    result, _ = _run(obj, tmp_path / "t")
    assert result["test_accuracy"] == pytest.approx(result["accuracy"], abs=1e-9)
    assert "test_accuracy" in obj.metric_names()
