"""A scheduler's suggestion runs in the trial created for it (issue 11.3): never in a queued
retry's place, with its lineage (parent, parent step, mutations) stored, and not taught to the
sampler as an independent point."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from tunelab.executors.inprocess import InProcessExecutor
from tunelab.metrics import MetricSet
from tunelab.samplers import make_sampler
from tunelab.schedulers import BaseScheduler, Suggestion, make_scheduler
from tunelab.space import Space
from tunelab.trial import TrialRecord
from tunelab.tuner import Tuner

LOSS = MetricSet.parse([{"name": "loss", "goal": "minimize"}])
PLANE = {"x": {"float": [0.0, 1.0]}, "y": {"float": [0.0, 1.0]}}
CLONE = {"x": 0.9, "y": 0.9}
RETRY = {"x": 0.1, "y": 0.1}


class CloneOnce(BaseScheduler):
    """Asks once for a clone of trial 0, warm-started at its step 1."""

    def __init__(self) -> None:
        super().__init__("loss", "minimize")
        self.asked = False

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        if self.asked or not any(r.trial_id == 0 for r in history):
            return None
        self.asked = True
        return Suggestion(CLONE, from_checkpoint=0, start_step=1,
                          mutations={"x": "0.75 --- (* 1.2) --> 0.9"})


def tuner(study: optuna.Study, scheduler: Any, trials: int, root: Path, seen: list[Any]) -> Tuner:
    def objective(config: dict[str, Any], reporter: Any) -> dict[str, float]:
        restored = reporter.from_checkpoint
        seen.append((dict(config), restored, restored is not None and (restored / "state.json").exists()))
        (reporter.checkpoint_dir / "state.json").write_text("{}")  # something for a clone to continue from
        reporter.report(1, loss=config["x"] + config["y"])
        reporter.report(2, loss=config["x"] + config["y"])
        return {"loss": config["x"] + config["y"]}

    return Tuner(study=study, space=Space.from_dict(PLANE), metrics=LOSS, executor=InProcessExecutor(objective, 1),
                 scheduler=scheduler, trial_root=root, trials=trials)


def test_a_suggestion_runs_in_its_own_trial_not_in_a_queued_retrys_place(tmp_path: Path) -> None:
    sampler = make_sampler("tpe", space=Space.from_dict(PLANE), seed=0, workers=1, multi_objective=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler)
    seen: list[Any] = []
    tuner(study, make_scheduler(None, "loss", "minimize"), 1, tmp_path, seen).run()
    study.enqueue_trial(RETRY, user_attrs={"retry_of": 0})  # a retry waits in the queue
    tuner(study, CloneOnce(), 3, tmp_path, seen).run()

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    clones = [t for t in trials.values() if (t.user_attrs.get("run") or {}).get("parent") is not None]
    retries = [t for t in trials.values() if "retry_of" in t.user_attrs]
    assert len(clones) == 1 and len(retries) == 1
    clone, retry = clones[0], retries[0]
    # Before the fix the clone's config was queued and the retry popped in its place: the retry
    # ran with trial 0's checkpoint, recorded as its child, and the clone ran cold.
    run = clone.user_attrs["run"]
    assert run["config"] == CLONE and run["parent"] == 0
    assert run["start_step"] == 1 and run["mutations"] == {"x": "0.75 --- (* 1.2) --> 0.9"}
    assert "parent" not in retry.user_attrs["run"] and retry.params == RETRY
    by_config = {tuple(sorted(c.items())): ckpt for c, ckpt, _ in seen}
    copied = {tuple(sorted(c.items())): found for c, _, found in seen}
    # The clone restores from its own copy of trial 0's checkpoint, inside its own directory.
    restored = by_config[tuple(sorted(CLONE.items()))]
    assert restored is not None and restored.is_relative_to(tmp_path / f"trial_{clone.number:04d}")
    assert copied[tuple(sorted(CLONE.items()))]  # the copy held the parent's file when the clone ran
    assert by_config[tuple(sorted(RETRY.items()))] is None
    # The clone is told its result (it can win), but holds no Optuna params: TPE skips it.
    assert clone.state == TrialState.COMPLETE and clone.values == [1.8]
    assert clone.params == {} and clone.distributions == {}
    from tunelab.study import StudyView

    info = next(t for t in StudyView(study).trials() if t.number == clone.number)
    assert info.config == CLONE and info.parent == 0


def test_a_suggestion_without_a_parent_is_a_normal_trial_with_its_params(tmp_path: Path) -> None:
    class Once(BaseScheduler):
        def __init__(self) -> None:
            super().__init__("loss", "minimize")
            self.done = False

        def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
            if self.done:
                return None
            self.done = True
            return Suggestion({"x": 0.25, "y": 0.5})

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.enqueue_trial(RETRY, user_attrs={"retry_of": 7})
    seen: list[Any] = []
    tuner(study, Once(), 2, tmp_path, seen).run()
    params = sorted(tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False))
    assert params == sorted([tuple(sorted(RETRY.items())), (("x", 0.25), ("y", 0.5))])
    assert all(ckpt is None for _, ckpt, _ in seen)
