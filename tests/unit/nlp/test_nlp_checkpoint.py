"""Full checkpoints of the built-in trainer: ``latest/`` apart from ``best/``, exact resume, clones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nlp_fixtures
from tunelab.errors import TrialPruned

TWO_EPOCHS = {"num_train_epochs": 2, "warmup_ratio": 0.3, "lr_scheduler_type": "linear",
              "hidden_dropout_prob": 0.1}


def _reporter(trial_dir: Path, config: dict, restore: Path | None = None, start_step: float | None = None,
              stop_at: float | None = None) -> Any:
    rep = nlp_fixtures.make_reporter(trial_dir, config, stop_when=(lambda s, m: s >= stop_at) if stop_at else None)
    rep.from_checkpoint, rep.start_step = restore, start_step
    return rep


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _strip(reports: list) -> list:
    return [(s, {k: v for k, v in m.items() if "second" not in k}) for s, m in reports]


@pytest.mark.parametrize("fast_path", [True, False])  # dropout from the fast path's generator, or torch's
def test_one_epoch_then_resume_equals_two_epochs_straight(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                          shared_cache: Path, fast_path: bool) -> None:
    import torch

    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults=TWO_EPOCHS, fast_path=fast_path)
    config = {"learning_rate": 2e-3, "seed": 5}
    straight = _reporter(tmp_path / "straight", config)
    obj(straight.config, straight)

    first = _reporter(tmp_path / "first", config, stop_at=1.0)
    with pytest.raises(TrialPruned):
        obj(first.config, first)
    latest = tmp_path / "first" / "checkpoint" / "latest"
    state = json.loads((latest / "trainer_state.json").read_text())
    assert state["step"] == 1.0 and state["update"] == 20 and state["scheduler"]["last_epoch"] == 20
    assert {"model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors"} <= {
        p.name for p in latest.iterdir()}

    resumed = _reporter(tmp_path / "resumed", config, restore=tmp_path / "first" / "checkpoint", start_step=1.0)
    obj(resumed.config, resumed)
    assert [s for s, _ in resumed.channel.results] == [2.0]  # the step count continues
    assert _strip(resumed.channel.results) == _strip(straight.channel.results[1:])  # bit for bit
    a = _weights(tmp_path / "straight" / "checkpoint" / "latest")
    b = _weights(tmp_path / "resumed" / "checkpoint" / "latest")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    end = json.loads((tmp_path / "resumed" / "checkpoint" / "latest" / "trainer_state.json").read_text())
    assert end["update"] == 40 and end["scheduler"]["last_epoch"] == 40


def test_a_clone_with_a_new_learning_rate_continues_the_schedule(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                                  shared_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.nlp import train

    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults=TWO_EPOCHS)
    parent = _reporter(tmp_path / "parent", {"learning_rate": 2e-3}, stop_at=1.0)
    with pytest.raises(TrialPruned):
        obj(parent.config, parent)
    saved = json.loads((tmp_path / "parent" / "checkpoint" / "latest" / "trainer_state.json").read_text())
    parent_lr = saved["scheduler"]["_last_lr"][0]
    assert 0 < parent_lr < 2e-3  # past the warmup, decaying

    seen: dict[str, Any] = {}
    original = train.TrainLoop._restore

    def spy(self: Any, directory: Path) -> None:
        original(self, directory)
        seen.update(lr=[g["lr"] for g in self.optimizer.param_groups], step=self.scheduler.last_epoch,
                    update=self.update)

    monkeypatch.setattr(train.TrainLoop, "_restore", spy)
    clone = _reporter(tmp_path / "clone", {"learning_rate": 4e-3}, restore=tmp_path / "parent" / "checkpoint",
                      start_step=1.0)
    obj(clone.config, clone)
    assert seen["step"] == 20 and seen["update"] == 20  # no second warmup: the schedule is at update 20
    assert seen["lr"] == [pytest.approx(2 * parent_lr, rel=1e-9)] * 2  # the new peak, scaled as the schedule is
    assert [s for s, _ in clone.channel.results] == [2.0]
    best = json.loads((tmp_path / "clone" / "checkpoint" / "best" / "tunelab_checkpoint.json").read_text())
    assert best["step"] == 2.0 and best["config"]["learning_rate"] == 4e-3  # the clone's own best


def test_best_is_kept_apart_from_latest(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                        shared_cache: Path) -> None:
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache,
                                      defaults={"num_train_epochs": 3, "learning_rate": 3e-3})
    rep = _reporter(tmp_path / "t", {})
    obj(rep.config, rep)
    best_step = max(rep.channel.results, key=lambda r: r[1]["accuracy"])[0]
    checkpoint = tmp_path / "t" / "checkpoint"
    assert json.loads((checkpoint / "best" / "tunelab_checkpoint.json").read_text())["step"] == best_step
    assert json.loads((checkpoint / "latest" / "trainer_state.json").read_text())["step"] == 3.0
    assert not (checkpoint / "model.safetensors").exists()
    assert not [p for p in checkpoint.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_nothing_read_back_is_unpickled(tmp_path: Path, tiny_model: Path, tiny_data: dict, shared_cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    import torch

    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults={"num_train_epochs": 2})
    first = _reporter(tmp_path / "a", {}, stop_at=1.0)
    with pytest.raises(TrialPruned):
        obj(first.config, first)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("unpickling")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    resumed = _reporter(tmp_path / "b", {}, restore=tmp_path / "a" / "checkpoint", start_step=1.0)
    obj(resumed.config, resumed)
    assert [s for s, _ in resumed.channel.results] == [2.0]


def test_flatten_round_trips_optimizer_like_structures() -> None:
    import numpy as np
    import torch

    from tunelab.nlp.checkpoint import flatten, unflatten

    obj = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2, 3)}},
           "param_groups": [{"betas": (0.9, 0.999), "params": [0, 1], "lr": 1e-3, "fused": None}],
           "np": np.arange(4, dtype=np.uint64), "__odd": 1}
    tensors: dict = {}
    data = json.loads(json.dumps(flatten(obj, tensors)))
    back = unflatten(data, tensors)
    assert back["param_groups"][0]["betas"] == (0.9, 0.999) and list(back["state"]) == [0]
    assert torch.equal(back["state"][0]["exp_avg"], torch.ones(2, 3))
    assert back["np"].dtype == np.uint64 and back["np"].tolist() == [0, 1, 2, 3] and back["__odd"] == 1


def test_a_restore_point_with_weights_only_warm_starts(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                       shared_cache: Path) -> None:
    """The old layout (weights directly in checkpoint/): the weights load, the schedule starts over."""
    import shutil

    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults={"num_train_epochs": 1})
    rep = _reporter(tmp_path / "a", {})
    result = obj(rep.config, rep)
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "a" / "checkpoint" / "best", old)
    warm = _reporter(tmp_path / "b", {"learning_rate": 1e-9}, restore=old)
    obj(warm.config, warm)
    assert [s for s, _ in warm.channel.results] == [1.0]
    assert warm.channel.results[0][1]["accuracy"] == pytest.approx(result["accuracy"], abs=0.05)


def test_the_fp16_grad_scaler_state_round_trips_through_json() -> None:
    import torch

    from tunelab.nlp.checkpoint import unflatten
    from tunelab.nlp.train import _jsonable

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler.scale(param.sum()).backward()
    scaler.step(optimizer)
    scaler.update()
    stored = json.loads(json.dumps(_jsonable(scaler.state_dict())))
    restored = torch.amp.GradScaler("cpu")
    restored.load_state_dict(unflatten(stored, {}))
    assert restored.state_dict() == scaler.state_dict() and restored.get_scale() == 1024.0
