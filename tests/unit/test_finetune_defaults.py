"""Defaults for fine-tuning (issue 13.5): a text_classification study with no space."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pytest

from tunelab.config import parse_config
from tunelab.display import start_line
from tunelab.errors import ConfigError
from tunelab.finetune_defaults import (COMPACT_START_POINTS, DEFAULT_SPACE, START_POINTS, enqueue_start_points,
                                       fit_to_budget, layer_parameters)
from tunelab.metrics import MetricSet
from tunelab.samplers import make_sampler
from tunelab.schedulers import make_scheduler
from tunelab.space import Space
from tunelab.study import StudyView
from tunelab.testing.simulate import simulated_tuner
from tunelab.trial import State

ACCURACY = [{"name": "accuracy", "goal": "maximize"}]


def fine_tuning(**objective: Any) -> dict[str, Any]:
    return {"name": "ft", "metrics": ACCURACY, "objective": {
        "type": "text_classification", "model": "./models/tiny",
        "data": {"train": "train.csv", "validation": "dev.csv", "text": "text", "label": "label"}, **objective}}


def test_a_fine_tuning_study_without_a_space_gets_the_defaults(tmp_path: Path) -> None:
    cfg = parse_config(fine_tuning(), base_dir=tmp_path)
    assert cfg.space.to_dict() == Space.from_dict(DEFAULT_SPACE).to_dict()
    assert sorted(cfg.space.searched) == ["batch_size", "learning_rate", "warmup_ratio", "weight_decay"]
    assert cfg.scheduler == {"type": "asha", "min_resource": 1, "max_resource": 3, "reduction_factor": 2}
    assert cfg.start_points == START_POINTS and cfg.defaulted == ("space", "scheduler")
    assert "fine-tuning defaults for space and scheduler (ASHA over epochs 1..3, reduction factor 2)" in start_line(cfg)
    # the objective's epochs are the scheduler's resource
    assert parse_config(fine_tuning(num_train_epochs=4), base_dir=tmp_path).scheduler["max_resource"] == 4


def test_what_the_user_gives_is_kept(tmp_path: Path) -> None:
    own = parse_config({**fine_tuning(), "space": {"learning_rate": {"float": [1e-5, 1e-3], "log": True}}},
                       base_dir=tmp_path)
    assert list(own.space.params) == ["learning_rate"] and own.scheduler is None and own.start_points == ()
    fifo = parse_config({**fine_tuning(), "scheduler": "fifo"}, base_dir=tmp_path)
    assert fifo.scheduler == "fifo" and fifo.defaulted == ("space",) and fifo.start_points == START_POINTS
    with pytest.raises(ConfigError) as err:  # other objectives have no default space
        parse_config({"metrics": ACCURACY, "objective": {"type": "function", "function": "m:f"}}, base_dir=tmp_path)
    assert err.value.field == "space"


def test_the_start_points_are_the_classic_bert_grid_inside_the_space() -> None:
    space = Space.from_dict(DEFAULT_SPACE)
    from tunelab.identity import config_in_space

    assert all(config_in_space(space, p) for p in START_POINTS)
    assert {(p["learning_rate"], p["batch_size"]) for p in START_POINTS} == {
        (lr, b) for lr in (2e-5, 3e-5, 5e-5) for b in (16, 32)}
    assert len(fit_to_budget(START_POINTS, 20)) == 6 and len(fit_to_budget(START_POINTS, 9)) == 3
    assert len(fit_to_budget(START_POINTS, 2)) == 1 and len(fit_to_budget(START_POINTS, None)) == 6


def model_dir(path: Path, **config: Any) -> str:
    import json

    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return str(path)


BERT_BASE = {"model_type": "bert", "num_hidden_layers": 12, "hidden_size": 768, "intermediate_size": 3072}
MINILM = {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384, "intermediate_size": 1536}
DISTILBERT = {"model_type": "distilbert", "n_layers": 6, "dim": 768, "hidden_dim": 3072}


def test_compact_encoders_start_from_the_compact_grid(tmp_path: Path) -> None:
    # BERT's 2e-5..5e-5 left the demo's 2-layer MiniLM at chance (outcome.md): compact models
    # start from the compact BERTs' grid (Turc et al. 2019), base-size ones from BERT's.
    assert layer_parameters(BERT_BASE) == 84_934_656 and layer_parameters(DISTILBERT) == 42_467_328
    assert layer_parameters(MINILM, {"num_hidden_layers": 2}) == 3_538_944
    assert layer_parameters({"model_type": "t5"}) is None
    for i, (config, kwargs, grid) in enumerate([(MINILM, {}, COMPACT_START_POINTS), (MINILM, {"num_hidden_layers": 2}, COMPACT_START_POINTS),
                                 (BERT_BASE, {}, START_POINTS), (BERT_BASE, {"num_hidden_layers": 2}, COMPACT_START_POINTS),
                                 (DISTILBERT, {}, START_POINTS), ({"model_type": "t5"}, {}, START_POINTS)]):
        model = model_dir(tmp_path / f"model{i}", **config)
        cfg = parse_config(fine_tuning(model=model, model_kwargs=kwargs), base_dir=tmp_path)
        assert cfg.start_points == grid, (config, kwargs)
    assert parse_config(fine_tuning(model="bert-base-uncased"), base_dir=tmp_path).start_points == START_POINTS
    space = Space.from_dict(DEFAULT_SPACE)
    from tunelab.identity import config_in_space

    assert all(config_in_space(space, p) for p in COMPACT_START_POINTS)
    assert [(p["learning_rate"], p["batch_size"]) for p in COMPACT_START_POINTS[:3]] == [
        (1e-4, 32), (3e-4, 32), (5e-5, 32)]


def accuracy(config: Mapping[str, Any], step: float) -> dict[str, float]:
    # Higher learning rates learn faster at first and end lower: early stopping's trap.
    lr = config["learning_rate"]
    return {"accuracy": 0.5 + 0.4 * min(1.0, step * lr / 6e-5) - 2000 * max(0.0, lr - 5e-5) * step / 3}


def test_start_points_run_first_and_no_trial_stops_before_one_epoch() -> None:
    metrics = MetricSet.parse(ACCURACY)
    space = Space.from_dict(DEFAULT_SPACE)
    spec = {"type": "asha", "min_resource": 1, "max_resource": 3, "reduction_factor": 2}
    scheduler = make_scheduler(spec, "accuracy", "maximize")
    sampler = make_sampler("tpe", space=space, seed=0, workers=1, multi_objective=False)
    sim = simulated_tuner(curve=accuracy, steps=(0.5, 1, 1.5, 2, 2.5, 3), scheduler=scheduler, metrics=metrics,
                          space=space, sampler=sampler, trials=12)
    assert enqueue_start_points(sim.study, fit_to_budget(START_POINTS, 12)) == 4
    assert enqueue_start_points(sim.study, START_POINTS) == 0  # once: the study has trials now
    sim.tuner.run()
    trials = sorted(StudyView(sim.study).trials(), key=lambda t: t.number)
    assert [dict(t.config) for t in trials[:4]] == [dict(p) for p in START_POINTS[:4]]
    assert len(trials) == 12
    pruned = [t for t in trials if t.state == State.PRUNED]
    assert pruned  # early stopping does stop some ...
    assert all(t.history[-1].step >= 1 for t in pruned)  # ... never before a full epoch


def test_a_setting_the_objective_fixes_is_not_searched(tmp_path: Path) -> None:
    cfg = parse_config(fine_tuning(weight_decay=0.01, per_device_train_batch_size=8), base_dir=tmp_path)
    assert sorted(cfg.space.searched) == ["learning_rate", "warmup_ratio"]
    assert cfg.start_points == ({"learning_rate": 2e-5, "warmup_ratio": 0.0}, {"learning_rate": 3e-5, "warmup_ratio": 0.0},
                                {"learning_rate": 5e-5, "warmup_ratio": 0.0})
    with pytest.raises(ConfigError) as err:
        parse_config(fine_tuning(weight_decay=0.01, batch_size=8, learning_rate=1e-4, warmup_ratio=0.0),
                     base_dir=tmp_path)
    assert err.value.field == "space" and "fixes every setting" in err.value.problem
