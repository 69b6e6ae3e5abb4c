"""The save/restore contract for function objectives, the clone's copy, and retention's pins."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
import pytest

from tunelab.executors._run_trial import make_reporter
from tunelab.executors.base import TrialSpec, copy_parent_checkpoint
from tunelab.executors.inprocess import InProcessExecutor
from tunelab.metrics import MetricSet
from tunelab.schedulers.base import FIFOScheduler, Suggestion
from tunelab.space import Space
from tunelab.study import StudyView
from tunelab.trial import TrialRecord
from tunelab.tuner import Tuner

LOSS = MetricSet.parse([{"name": "loss", "goal": "minimize"}])
PLANE = {"x": {"float": [0.0, 1.0]}, "y": {"float": [0.0, 1.0]}}


def counting(config: dict[str, Any], reporter: Any) -> dict[str, float]:
    """The README's example: a state in JSON, saved each step, restored by a clone."""
    state, start = {"total": 0.0}, 0.0
    if reporter.restore_dir is not None:
        state = json.loads((reporter.restore_dir / "state.json").read_text())
        start = reporter.start_step
    for step in (start + 1, start + 2):
        state["total"] += config["x"]
        tmp = reporter.checkpoint_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, reporter.checkpoint_dir / "state.json")
        reporter.report(step, loss=state["total"], restored_from=-1.0 if reporter.restore_dir is None else 1.0)
    return {"loss": state["total"]}


@dataclass(frozen=True)
class _Clone(Suggestion):
    start_step: float | None = None


class CloneFirst(FIFOScheduler):
    """Once trial 0 has finished, clones it once with x = 0.5."""

    def __init__(self) -> None:
        super().__init__("loss", "minimize")
        self.cloned = False

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        parent = next((r for r in history if r.trial_id == 0 and r.history), None)
        if parent is None or self.cloned:
            return None
        self.cloned = True
        return _Clone({"x": 0.5, "y": 0.5}, from_checkpoint=0, start_step=parent.history[-1].step)


def test_the_reporter_gets_the_restore_point_and_start_step(tmp_path: Path) -> None:
    spec = TrialSpec(3, {"x": 1}, tmp_path / "t", tmp_path / "t" / "restore", None, 0, 4.0)
    reporter = make_reporter(spec, channel=None, resources=None)  # type: ignore[arg-type]
    assert reporter.restore_dir == tmp_path / "t" / "restore" and reporter.start_step == 4.0
    fresh = make_reporter(TrialSpec(4, {}, tmp_path / "u"), channel=None, resources=None)  # type: ignore[arg-type]
    assert fresh.restore_dir is None and fresh.start_step is None


def test_a_clone_restores_its_own_copy_and_continues_the_steps(tmp_path: Path) -> None:
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s")
    root = tmp_path / "runs"
    Tuner(study=study, space=Space.from_dict(PLANE), metrics=LOSS, executor=InProcessExecutor(counting, 1),
          scheduler=CloneFirst(), trial_root=root, trials=2).run()
    parent, clone = study.get_trials(deepcopy=False)
    assert clone.user_attrs["run"]["parent"] == 0
    steps = [r.step for r in StudyView(study).trials()[1].history]
    assert steps == [3.0, 4.0]  # continues at the parent's step 2
    assert clone.value == pytest.approx(parent.value + 1.0)  # the parent's total, then 2 x 0.5
    # The clone wrote its own checkpoint; its copy of the parent's is gone with the trial (retention).
    assert json.loads((root / "trial_0001" / "checkpoint" / "state.json").read_text())["total"] == clone.value
    assert not (root / "trial_0001" / "restore").exists()
    assert (root / "trial_0000" / "checkpoint" / "state.json").is_file()  # the parent's, kept (top k)


def test_the_copy_is_the_clones_own(tmp_path: Path) -> None:
    parent = tmp_path / "trial_0000" / "checkpoint"
    parent.mkdir(parents=True)
    (parent / "state.json").write_text('{"total": 1}')
    (parent / ".state.json.tmp").write_text("half written")
    restore, step = copy_parent_checkpoint(parent, tmp_path / "trial_0001")
    assert restore == tmp_path / "trial_0001" / "restore" and step is None
    assert sorted(p.name for p in restore.iterdir()) == ["state.json"]  # no staging files
    (parent / "state.json").write_text('{"total": 2}')  # the parent goes on ...
    import shutil

    shutil.rmtree(parent)  # ... and retention deletes its checkpoint
    assert json.loads((restore / "state.json").read_text()) == {"total": 1}
    assert copy_parent_checkpoint(parent, tmp_path / "trial_0002") == (None, None)


def test_a_latest_copy_made_while_the_parent_saves_is_one_version(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent swaps in a new latest/ during the first copy: the copy is taken again."""
    import shutil

    from tunelab.nlp import checkpoint as ck

    def publish(step: float) -> None:
        staging = tmp_path / f"new{step}"
        staging.mkdir()
        (staging / "model.safetensors").write_text(f"weights at {step}")
        ck.write_json(staging / ck.STATE, {"step": step, "token": f"v{step}"})
        if (tmp_path / "checkpoint" / "latest").exists():
            shutil.rmtree(tmp_path / "checkpoint" / "latest")
        os.replace(staging, tmp_path / "checkpoint" / "latest")

    (tmp_path / "checkpoint").mkdir()
    publish(1.0)
    real_copytree, calls = shutil.copytree, []

    def copy_during_a_save(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        out = real_copytree(src, dst, *args, **kwargs)
        calls.append(src)
        if len(calls) == 1:
            publish(2.0)  # after the files were copied, before the token is read again
        return out

    monkeypatch.setattr(ck.shutil, "copytree", copy_during_a_save)
    restore, step = copy_parent_checkpoint(tmp_path / "checkpoint", tmp_path / "clone")
    assert len(calls) == 2 and step == 2.0
    assert (restore / "latest" / "model.safetensors").read_text() == "weights at 2.0"


def test_retention_keeps_a_checkpoint_a_queued_clone_needs(tmp_path: Path) -> None:
    from optuna.trial import TrialState

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name="s")
    root = tmp_path / "runs"
    tuner = Tuner(study=study, space=Space.from_dict(PLANE), metrics=LOSS, executor=InProcessExecutor(counting, 1),
                  scheduler=FIFOScheduler("loss", "minimize"), trial_root=root, trials=3, keep_checkpoints=1)
    dirs = []
    for number in range(3):
        d = root / f"trial_{number:04d}"
        for part in ("checkpoint/best", "checkpoint/latest", "restore"):
            (d / part).mkdir(parents=True)
        dirs.append(d)
    study.enqueue_trial({"x": 0.5, "y": 0.5}, user_attrs={"parent": 1})  # a clone of trial 1, not started yet
    tuner._apply_retention(0, str(dirs[0]), [1.0])  # the best so far: keeps best/ only
    assert (dirs[0] / "checkpoint" / "best").is_dir()
    assert not (dirs[0] / "checkpoint" / "latest").exists() and not (dirs[0] / "restore").exists()
    tuner._apply_retention(1, str(dirs[1]), [5.0])  # not in the top 1, but pinned by the queued clone
    assert (dirs[1] / "checkpoint" / "latest").is_dir() and (dirs[1] / "checkpoint" / "best").is_dir()
    # The clone starts (it has its copy): the next retention pass deletes what was held back.
    study.ask()  # takes the queued trial
    assert not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    tuner._apply_retention(2, str(dirs[2]), [9.0])
    assert not (dirs[1] / "checkpoint").exists() and not (dirs[2] / "checkpoint").exists()
    assert (dirs[0] / "checkpoint" / "best").is_dir()
