"""A PBT clone whose batch size was mutated continues its parent's learning-rate schedule at the
same point of training (a found bug: the schedule kept the parent's update count, counted in the
parent's smaller batches, so a clone with twice the batch jumped to the end of its schedule and
trained at a learning rate of 0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nlp_fixtures
from tunelab.errors import TrialPruned

TWO_EPOCHS = {"num_train_epochs": 2, "warmup_ratio": 0.3, "lr_scheduler_type": "linear"}


def _reporter(trial_dir: Path, config: dict, restore: Path | None = None, start_step: float | None = None,
              stop_at: float | None = None) -> Any:
    rep = nlp_fixtures.make_reporter(trial_dir, config, stop_when=(lambda s, m: s >= stop_at) if stop_at else None)
    rep.from_checkpoint, rep.start_step = restore, start_step
    return rep


def test_a_clone_with_a_new_batch_size_continues_the_schedule_at_the_same_epoch(
        tmp_path: Path, tiny_model: Path, tiny_data: dict, shared_cache: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tunelab.nlp import train

    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults=TWO_EPOCHS)
    parent = _reporter(tmp_path / "parent", {"learning_rate": 2e-3, "batch_size": 16}, stop_at=1.0)
    with pytest.raises(TrialPruned):
        obj(parent.config, parent)
    saved = json.loads((tmp_path / "parent" / "checkpoint" / "latest" / "trainer_state.json").read_text())
    assert saved["update"] == 20 and saved["updates_per_epoch"] == 20
    parent_lr = saved["scheduler"]["_last_lr"][0]  # 2e-3 * (40 - 20) / (40 - 12): 5/7 of the peak
    assert parent_lr == pytest.approx(2e-3 * 20 / 28)

    seen: dict[str, Any] = {}
    original = train.TrainLoop._restore

    def spy(self: Any, directory: Path) -> None:
        original(self, directory)
        seen.update(lr=[g["lr"] for g in self.optimizer.param_groups], step=self.scheduler.last_epoch,
                    update=self.update, total=self.total_updates)

    monkeypatch.setattr(train.TrainLoop, "_restore", spy)
    clone = _reporter(tmp_path / "clone", {"learning_rate": 2e-3, "batch_size": 32},
                      restore=tmp_path / "parent" / "checkpoint", start_step=1.0)
    obj(clone.config, clone)
    # Batches of 32: 10 updates an epoch, 20 in all (6 of warmup); one epoch done is update 10.
    assert seen["total"] == 20 and seen["update"] == 10
    assert seen["step"] == 10  # the schedule at the same epoch, not at the parent's 20 updates (its end)
    assert seen["lr"] == [pytest.approx(2e-3 * 10 / 14)] * 2  # 5/7 of the peak, as the parent had
    assert [s for s, _ in clone.channel.results] == [2.0]
