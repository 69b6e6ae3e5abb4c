"""Weights & Biases: a run per trial, grouped by study (the ``wandb`` tracker).

Each trial is a run named ``trial_0003`` in the study's group (``group``, default the study
name), with the trial's config as its config (values), every report logged at W&B step = the
report's index in the trial (the reported step itself as ``step``), and a summary of its best
evaluation with ``state``, ``failure_kind`` (and ``failure_message``) and ``duration_s``. A run's
id is fixed by the study and the trial number, so a resumed study, a replayed record or
``tunelab sync`` goes on in the same run. ``mode: offline`` keeps the runs on this machine
(``<dir>/wandb/offline-run-*``; ``wandb sync`` uploads them); so does ``WANDB_MODE=offline`` or
``disabled`` in the environment, whatever the study file says.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from tunelab.errors import require
from tunelab.tracking.callback import STUDY_KEY, TrackerCallback
from tunelab.tracking.settings import WandbSettings
from tunelab.tracking.spool import RunMap
from tunelab.tracking.wandb_files import steps_held
from tunelab.tracking.writer import RecordRejected, Writer, _short


class WandbTracker(TrackerCallback):
    name = "wandb"
    label = "W&B"

    def __init__(self, settings: WandbSettings, state_dir: str | Path, **kw: Any) -> None:
        require("wandb", "wandb")  # imported here, not raced by the sender thread
        self.settings = settings
        super().__init__(state_dir, target=f"wandb:{settings.entity or ''}/{settings.project}",
                         experiment=settings.group, **kw)

    def make_writer(self) -> "WandbWriter":
        return WandbWriter(self.settings, self.runs)

    def attr(self) -> dict[str, Any]:
        return {**super().attr(), "settings": asdict(self.settings)}


class WandbWriter(Writer):
    #: W&B writes a run's offline file when the run finishes: a kill -9 before that loses it all.
    durable_logs = False

    def __init__(self, settings: WandbSettings, runs: RunMap) -> None:
        super().__init__(runs)
        self.settings = settings
        self.wandb = require("wandb", "wandb")
        self._live: dict[str, Any] = {}
        self._held: dict[str, int] = {}  # steps a run's files held when it was taken up again

    def classify(self, exc: BaseException) -> Exception:
        if isinstance(exc, self.wandb.errors.UsageError):  # a bad project name, say: it stays bad
            return RecordRejected(f"{type(exc).__name__}: {_short(exc)}")
        return super().classify(exc)

    def _open(self, key: str, record: Mapping[str, Any]) -> Any:
        """The trial's run: started now, or taken up again (a resume, a replay, ``tunelab sync``)."""
        run = self._live.get(key)
        if run is not None:
            return run
        number = int(key.split(":", 1)[1])
        run_id = f"{self.runs.get('uid') or 'run'}-{number}"
        mode = os.environ.get("WANDB_MODE") if os.environ.get("WANDB_MODE") in ("offline", "disabled") \
            else self.settings.mode
        Path(self.settings.dir).mkdir(parents=True, exist_ok=True)
        if self.runs.get(key) is not None:  # taken up again (a resume after a kill -9): what does it hold?
            self._held[key] = steps_held(self.settings.dir, run_id)  # those steps are not logged twice
        run = self.wandb.init(
            project=self.settings.project, entity=self.settings.entity, group=self.settings.group,
            name=f"trial_{number:04d}", id=run_id, job_type="trial", config=dict(record.get("config") or {}),
            dir=self.settings.dir, mode=mode, resume="allow", reinit="create_new",
            settings=self.wandb.Settings(silent=True, console="off", disable_code=True, disable_git=True,
                                         x_disable_stats=True, x_disable_meta=True))
        self._live[key] = run
        self.runs.set(key, run_id)
        return run

    # ---- the protocol ----------------------------------------------------------------------------

    def study(self, record: Mapping[str, Any], replay: bool) -> None:
        """No run of its own: the study is the group of its trials' runs."""

    def trial(self, record: Mapping[str, Any], replay: bool) -> None:
        self._open(record["key"], record)

    def log(self, record: Mapping[str, Any], replay: bool) -> None:
        if record["key"] == STUDY_KEY:
            return
        by_step: dict[int, dict[str, float]] = {}
        for name, value, _, step in record.get("metrics") or []:
            if value is not None and name != "duration_s":
                by_step.setdefault(int(step), {})[name] = float(value)
        run = self._open(record["key"], record)
        held = self._held.get(record["key"], 0)
        for step in sorted(by_step):
            if step >= held:
                run.log(by_step[step], step=step, commit=True)  # out now, before a summary that follows

    def end(self, record: Mapping[str, Any], replay: bool) -> None:
        run = self._open(record["key"], record)
        self.log(record, replay)
        tags = record.get("tags") or {}
        summary: dict[str, Any] = dict(record.get("summary") or {})
        summary.update({k: v for k, v in tags.items() if k in ("state", "failure_kind", "failure_message")})
        summary.update({name: value for name, value, _, _ in record.get("metrics") or [] if name == "duration_s"})
        run.summary.update(summary)
        run.finish(exit_code=0 if record.get("status") == "FINISHED" else 1)
        self._live.pop(record["key"], None)
        self._held.pop(record["key"], None)
        self.runs.mark_ended(record["key"])

    def finish(self, record: Mapping[str, Any], replay: bool) -> None:
        self.close()

    def close(self) -> None:
        for key in list(self._live):  # trials the study did not see end (a quick stop)
            self._live.pop(key).finish(exit_code=1)


def sync_writer(attr: Mapping[str, Any], runs: RunMap, uri: str | None = None) -> Writer:
    return WandbWriter(WandbSettings(**attr["settings"]), runs)
