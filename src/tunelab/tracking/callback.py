"""A tuner callback that turns the study's events into tracker records (see ``writer``).

Every tracker (MLflow, W&B, TensorBoard) is one of these with its own ``Writer``; beneath it
each has a sender thread and an outage spool in ``<trial_dir>/<study>/.<name>/``, which
``tunelab sync`` replays. Tracking never stops or slows a study: hooks only queue records.

A study resumed after a crash (``kill -9``) first brings its tracker up to date from the
study's storage: a finished trial that an earlier run with this tracker state ran, and whose end
never reached the tracker (nor waits in its spool), is sent again, marked ``replay``, with only
the reports the tracker does not hold. Trials of other drivers (another machine, with its own
state) are theirs to send.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from tunelab.driver import this_driver
from tunelab.tracking.sender import Sender
from tunelab.tracking.spool import RunMap, Spool
from tunelab.tracking.writer import Writer, trial_key
from tunelab.trial import State

if TYPE_CHECKING:
    from tunelab.study import StudyView, TrialInfo

logger = logging.getLogger("tunelab.tracking")

STUDY_KEY = "study"


def run_status(state: State, failure_kind: str | None) -> str:
    """Status of a finished trial: pruning is a normal end, failures are failures."""
    if state in (State.COMPLETE, State.PRUNED):
        return "FINISHED"
    return "KILLED" if failure_kind == "interrupted" else "FAILED"


def ms(when: Any = None) -> int:
    return int(when.timestamp() * 1000) if when is not None else int(time.time() * 1000)


class TrackerCallback:
    """The study's events as records for one tracker. Subclasses name the tracker and its writer."""

    name: ClassVar[str] = "tracker"  # state dir ``.<name>``, study attribute ``tunelab.<name>``
    label: ClassVar[str] = "tracker"  # as messages name it

    def __init__(self, state_dir: str | Path, *, target: str, experiment: str, probe_interval_s: float = 10.0,
                 retry_delays: tuple[float, ...] = (0.25, 1.0), close_timeout_s: float = 30.0) -> None:
        self.state_dir = Path(state_dir)
        self.target, self.experiment = target, experiment
        self.close_timeout_s = close_timeout_s
        self.runs = RunMap(self.state_dir)
        self.sender = Sender(self.make_writer, Spool(self.state_dir), uri=target, label=self.label,
                             probe_interval_s=probe_interval_s, retry_delays=retry_delays)
        self._study: "StudyView | None" = None
        self._uid = ""
        self._reports: dict[int, int] = {}

    # ---- what a tracker adds ---------------------------------------------------------------------

    def make_writer(self) -> Writer:
        """Runs in the sender thread (opening a store can take seconds)."""
        raise NotImplementedError

    def attr(self) -> dict[str, Any]:
        """What ``tunelab sync`` needs to open this tracker again, kept on the study."""
        return {"uri": self.target, "experiment": self.experiment, "state_dir": str(self.state_dir.resolve())}

    def study_record(self, study: "StudyView") -> dict[str, Any]:
        return {"op": "study", "key": STUDY_KEY, "name": study.name, "start_ms": ms(), "params": {},
                "tags": {"tunelab.key": f"{self._uid}/{STUDY_KEY}", "study": study.name}}

    def finish_record(self, study: "StudyView", interrupted: bool) -> dict[str, Any]:
        return {"op": "finish", "key": STUDY_KEY, "status": "KILLED" if interrupted else "FINISHED",
                "end_ms": ms(), "metrics": [], "tags": {}}

    # ---- hooks -----------------------------------------------------------------------------------

    def on_study_start(self, study: "StudyView") -> None:
        self._study = study
        self._adopt_state(study)
        self._uid = self.runs.ids.get("uid", "")
        self.submit(self.study_record(study))
        self._catch_up(study)
        self.runs.add_driver(this_driver())  # before any trial: a kill -9 of this run is caught up next time
        self.sender.start()

    def on_trial_start(self, number: int, config: Mapping[str, Any]) -> None:
        self._reports[number] = 0
        self.submit(self.trial_record(number, config, ms()))

    def on_result(self, number: int, step: float, metrics: Mapping[str, float]) -> None:
        index = self._reports.get(number, 0)
        self._reports[number] = index + 1
        self.submit({"op": "log", "key": trial_key(number), "metrics": log_rows(metrics, step, index, ms())})

    def on_trial_end(self, trial: "TrialInfo") -> None:
        self.submit(self.end_record(trial))
        self._reports.pop(trial.number, None)

    def on_study_end(self, study: "StudyView") -> None:
        # Stopped by Ctrl-C or SIGTERM (the tuner calls this hook from a `finally`): be quick.
        interrupted = isinstance(sys.exc_info()[1], (KeyboardInterrupt, SystemExit))
        self.submit(self.finish_record(study, interrupted))
        self.sender.close(3.0 if interrupted else self.close_timeout_s)

    # ---- records ---------------------------------------------------------------------------------

    def submit(self, record: dict[str, Any]) -> None:
        self.sender.put(record)

    def trial_record(self, number: int, config: Mapping[str, Any], start_ms: int) -> dict[str, Any]:
        study_name = self._study.name if self._study is not None else ""
        return {"op": "trial", "key": trial_key(number), "number": number, "name": f"trial_{number:04d}",
                "start_ms": start_ms, "config": dict(config),
                "tags": {"tunelab.key": f"{self._uid}/{trial_key(number)}", "study": study_name,
                         "trial": str(number), "state": "running"}}

    def end_record(self, trial: "TrialInfo") -> dict[str, Any]:
        now = ms(trial.end)
        index = len(trial.history)
        last: dict[str, float] = {}
        for report in trial.history:
            last.update(report.metrics)
        rows = [[name, float(value), now, index] for name, value in trial.metrics.items()
                if name not in last or last[name] != value]
        if trial.duration is not None:
            rows.append(["duration_s", trial.duration, now, 0])
        tags = {"state": trial.state.value}
        for name, value in (("failure_kind", trial.failure_kind), ("failure_message", trial.message if
                            trial.failure_kind else None), ("slot", trial.slot), ("parent_trial", trial.parent),
                            ("retry_of", trial.retry_of), ("feasible", trial.feasible if trial.values else None)):
            if value is not None:
                tags[name] = str(value)
        return {"op": "end", "key": trial_key(trial.number), "number": trial.number,
                "status": run_status(trial.state, trial.failure_kind), "start_ms": ms(trial.start) if trial.start else now,
                "end_ms": now, "metrics": rows, "tags": tags,
                "config": dict(trial.config), "summary": self.best_evaluation(trial)}

    def best_evaluation(self, trial: "TrialInfo") -> dict[str, float]:
        """The metrics of the trial's best evaluation: its result, else its best report."""
        if trial.metrics:
            return {k: float(v) for k, v in trial.metrics.items()}
        study = self._study
        if study is None or not trial.history:
            return {}
        primary = study.metrics.primary
        report = trial.best_report(primary.name, primary.goal or "minimize") or trial.history[-1]
        return {k: float(v) for k, v in report.metrics.items()}

    # ---- study state -----------------------------------------------------------------------------

    def _adopt_state(self, study: "StudyView") -> None:
        """Take up this tracker's state from an earlier session of the study, for the same target."""
        if self.runs.uri != self.target or self.runs.experiment != self.experiment:
            spool = self.sender.spool
            if spool.path.exists():
                old = spool.path.with_name(f"spool-{int(time.time())}.jsonl")
                os.replace(spool.path, old)
                self.sender.queued = 0
                logger.warning("%s: the study now tracks to %s (%s); the records queued for %s were moved to %s.",
                               self.label, self.target, self.experiment, self.runs.uri, old)
            uid = self.runs.ids.get("uid") or os.urandom(8).hex()
            self.runs.reset(self.target, self.experiment)
            self.runs.set("uid", uid)
            self.recall(study)
        self.save_attr(study)

    def recall(self, study: "StudyView") -> None:
        """The state dir was lost or is for another target: what the study itself remembers."""

    def save_attr(self, study: "StudyView") -> None:
        key, attr = f"tunelab.{self.name}", self.attr()
        if study.optuna_study.user_attrs.get(key) != attr:
            study.optuna_study.set_user_attr(key, attr)

    def _catch_up(self, study: "StudyView") -> None:
        """Finished trials whose records never reached the tracker (a crash lost them in memory),
        sent again from storage: only the reports it does not hold, nor waits to send from the spool."""
        queued: dict[tuple[Any, Any], int] = {}
        for r in self.sender.spool.records():
            count = 1 + max((int(row[3]) for row in r.get("metrics") or []), default=-1) if r.get("op") == "log" else 0
            queued[(r.get("op"), r.get("key"))] = max(queued.get((r.get("op"), r.get("key")), 0), count)
        drivers = {t.number: (t.user_attrs.get("run") or {}).get("driver")
                   for t in study.optuna_study.get_trials(deepcopy=False)}
        for trial in study.trials():
            key = trial_key(trial.number)
            if trial.state in (State.RUNNING, State.WAITING) or trial.failure_kind == "cancelled":
                continue  # running elsewhere, or never started
            if drivers.get(trial.number) not in self.runs.drivers and key not in self.runs.ids:
                continue  # not ours: run before tracking was on, or by a driver with its own state
            if key in self.runs.ended or ("end", key) in queued:
                continue
            if key not in self.runs.ids and ("trial", key) not in queued:
                self.submit({**self.trial_record(trial.number, trial.config, ms(trial.start)), "replay": True})
            held = max(self.runs.logged.get(key, 0), queued.get(("log", key), 0))
            for index, report in enumerate(trial.history[held:], start=held):
                self.submit({"op": "log", "key": key, "replay": True,
                             "metrics": log_rows(report.metrics, report.step, index, ms(trial.end))})
            self.submit({**self.end_record(trial), "replay": True})


def log_rows(metrics: Mapping[str, float], step: float, index: int, now: int) -> list[list[Any]]:
    """A report's rows at ``index``; the reported (maybe fractional) step itself as metric ``step``."""
    rows = [[name, float(value), now, index] for name, value in metrics.items()]
    if "step" not in metrics:
        rows.append(["step", float(step), now, index])
    return rows
