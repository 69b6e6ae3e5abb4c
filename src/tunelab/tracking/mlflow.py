"""The MLflow tracker: a tuner callback that logs a parent run per study, a nested run per trial.

Layout in MLflow (one experiment, named after the study unless configured):

- parent run, named after the study: params ``sampler``, ``seed``, ``scheduler``,
  ``space.<param>`` and ``metric.<name>`` (the search definition); tags ``budget.*``,
  ``execution.*``, ``objective``; metric ``best.<objective>`` each time a trial beats the best
  (step = that trial's number); at the end tags ``best.trial`` and ``best.<param>`` (tags, since
  MLflow params never change and a resumed study may find a better trial), metrics
  ``best.<metric>``, ``trials.complete|pruned|failed``, ``compute_s``, and artifacts
  ``study.yaml``, ``best.json`` and ``report.html``. Its id is kept on the Optuna study (user
  attr ``tunelab.mlflow``), so a resumed study goes on in the same run.
- a nested run per trial, named ``trial_0003`` like its directory (tag ``mlflow.parentRunId``):
  params = the config values; every reported metric at MLflow step = the report's index in the
  trial (0, 1, 2, ...: MLflow steps are integers, tunelab steps may be fractional epochs), with
  the reported step itself as metric ``step`` at the same index; the trial's final metrics,
  where they differ from the last report, one index later; ``duration_s``; tags ``state``,
  ``failure_kind``, ``failure_message``, ``slot``, ``parent_trial``, ``retry_of``; status
  FINISHED (complete, pruned), FAILED, or KILLED (interrupted); with ``log_checkpoints: true``
  the kept trials' ``checkpoint/`` directory as an artifact at the end of the study.

Tracking never stops or slows a study: hooks only queue records for a background thread (see
``sender``). A call that fails is retried a few times, the outage is reported once, and from
then on records are queued on disk (``<trial_dir>/<study>/.mlflow/spool.jsonl``) and sent in
order when the store answers again (tried every ``probe_interval_s``), or by ``tunelab sync``.
At the end of the study the tracker waits (at most ``close_timeout_s``) for what is left, saying
how many records it still sends when that takes more than a moment; the rest waits on disk.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tunelab.errors import MissingDependencyError
from tunelab.tracking.local_store import prepare_local_store
from tunelab.tracking.sender import Sender
from tunelab.tracking.settings import MlflowSettings, mlflow_installed
from tunelab.tracking.spool import RunMap, Spool
from tunelab.tracking.writer import MlflowWriter
from tunelab.trial import State

if TYPE_CHECKING:
    from tunelab.config import StudyConfig
    from tunelab.study import StudyView, TrialInfo

logger = logging.getLogger("tunelab.tracking")

STUDY_ATTR = "tunelab.mlflow"
STUDY_KEY = "study"


def trial_key(number: int) -> str:
    return f"trial:{number}"


def run_status(state: State, failure_kind: str | None) -> str:
    """MLflow run status of a finished trial: pruning is a normal end, failures are failures."""
    if state in (State.COMPLETE, State.PRUNED):
        return "FINISHED"
    return "KILLED" if failure_kind == "interrupted" else "FAILED"


def _ms(when: Any) -> int:
    return int(when.timestamp() * 1000) if when is not None else int(time.time() * 1000)


def preload_mlflow(uri: str) -> None:
    """Import what the sender thread will use, here in the calling thread.

    Python imports are not safe to race: a module imported by two threads at once (pandas by
    MLflow in the sender, and by the report or a trial in another thread) can come out half
    initialized. So the sender thread only opens the store (for a new SQLite file, seconds of
    schema migrations) and talks to it.
    """
    import importlib

    from tunelab.errors import require

    # MLflow reads its telemetry opt-out from the environment only, once the module is imported.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    require("mlflow", "mlflow")
    importlib.import_module("mlflow.entities")
    scheme = uri.split(":", 1)[0] if "://" in uri else "file"
    if scheme in ("http", "https"):
        importlib.import_module("mlflow.store.tracking.rest_store")
    elif scheme != "file":
        importlib.import_module("mlflow.store.tracking.sqlalchemy_store")
    # Creating a new SQLite store logs each schema migration at INFO: noise in the middle of a study.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def make_client(uri: str) -> Any:
    """An ``MlflowClient`` for ``uri``, with MLflow's telemetry off (it must not call out).

    A local SQLite store is created whole first, or repaired when a killed process left it half
    created (see ``local_store``).
    """
    preload_mlflow(uri)
    import mlflow

    prepare_local_store(uri)

    return mlflow.MlflowClient(tracking_uri=uri)


def artifact_location(uri: str) -> str | None:
    """For a local SQLite store, artifacts go to ``mlartifacts/`` beside the database (MLflow's
    own default would be relative to whatever directory the process runs in)."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri[len("sqlite:///"):]).parent / "mlartifacts")
    return None


class MlflowTracker:
    """Tuner callback: study and trials to MLflow, queued on disk while MLflow is unreachable."""

    def __init__(
        self,
        settings: MlflowSettings,
        state_dir: str | Path,
        *,
        config: "StudyConfig | None" = None,
        report_path: str | Path | None = None,
        client: Any = None,
        probe_interval_s: float = 10.0,
        retry_delays: tuple[float, ...] = (0.25, 1.0),
        close_timeout_s: float = 30.0,
    ) -> None:
        if not mlflow_installed():
            raise MissingDependencyError("MLflow tracking is configured but `mlflow` is not installed. "
                                         "Install it with: pip install 'tunelab[mlflow]' (or use --no-mlflow).")
        preload_mlflow(settings.uri)
        self.settings = settings
        self.state_dir = Path(state_dir)
        self.config = config
        self.report_path = Path(report_path) if report_path else None
        self.close_timeout_s = close_timeout_s
        self.runs = RunMap(self.state_dir)
        self.sender = Sender(self._make_writer, Spool(self.state_dir), uri=settings.uri,
                             probe_interval_s=probe_interval_s, retry_delays=retry_delays)
        self._client = client
        self._study: "StudyView | None" = None
        self._uid = ""
        self._reports: dict[int, int] = {}
        self._started: set[int] = set()
        self._best: float | None = None

    def _make_writer(self) -> MlflowWriter:
        """Runs in the sender thread: opening a store can take seconds (a new SQLite file)."""
        client = self._client if self._client is not None else make_client(self.settings.uri)
        return MlflowWriter(client, self.runs, on_study_run=self._remember_study_run)

    # ---- hooks ------------------------------------------------------------------------------

    def on_study_start(self, study: "StudyView") -> None:
        self._study = study
        self._adopt_state(study)
        self._uid = self.runs.ids.get("uid", "")
        if self.runs.get("experiment") is None:
            self._submit({"op": "experiment", "name": self.settings.experiment,
                          "artifact_location": artifact_location(self.settings.uri)})
        params, tags = self._study_fields(study)
        if self.runs.get(STUDY_KEY) is None:
            self._submit({"op": "run", "key": STUDY_KEY, "name": study.name, "parent": None,
                          "start_ms": _ms(None), "tags": tags, "params": params})
        else:  # a resumed study goes on in its run
            self._submit({"op": "status", "key": STUDY_KEY, "status": "RUNNING"})
            self._submit({"op": "log", "key": STUDY_KEY, "params": params, "new_params_only": True, "tags": tags})
        if self.config is not None and self.config.raw:
            self._submit_file("study.yaml", _yaml(self.config.raw))
        best = study.best_trial
        if best is not None and best.values and not study.metrics.is_multi_objective:
            self._best = best.values[0]
        for trial in study.trials():  # trials whose driver died: their runs still say RUNNING
            key = trial_key(trial.number)
            if trial.failure_kind == "interrupted" and key in self.runs.ids and key not in self.runs.ended:
                self._submit({"op": "log", "key": key, "tags": {"state": "failed", "failure_kind": "interrupted"}})
                self._submit({"op": "status", "key": key, "status": "KILLED", "end_ms": _ms(trial.end)})
        self.sender.start()

    def on_trial_start(self, number: int, config: Mapping[str, Any]) -> None:
        self._reports[number] = 0
        self._started.add(number)
        study_name = self._study.name if self._study is not None else ""
        self._submit({
            "op": "run", "key": trial_key(number), "name": f"trial_{number:04d}", "parent": STUDY_KEY,
            "start_ms": _ms(None), "params": {k: _param_value(v) for k, v in config.items()},
            "tags": {"tunelab.key": f"{self._uid}/{trial_key(number)}", "study": study_name,
                     "trial": str(number), "state": "running"},
        })

    def on_result(self, number: int, step: float, metrics: Mapping[str, float]) -> None:
        index = self._reports.get(number, 0)
        self._reports[number] = index + 1
        now = _ms(None)
        rows = [[name, float(value), now, index] for name, value in metrics.items()]
        if "step" not in metrics:
            rows.append(["step", float(step), now, index])
        self._submit({"op": "log", "key": trial_key(number), "metrics": rows})

    def on_trial_end(self, trial: "TrialInfo") -> None:
        key = trial_key(trial.number)
        now = _ms(trial.end)
        index = len(trial.history)
        last = {}
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
        self._submit({"op": "log", "key": key, "metrics": rows, "tags": tags})
        self._submit({"op": "status", "key": key, "status": run_status(trial.state, trial.failure_kind),
                      "end_ms": now})
        self._reports.pop(trial.number, None)
        self._log_best_so_far(trial)

    def on_study_end(self, study: "StudyView") -> None:
        # Stopped by Ctrl-C or SIGTERM (the tuner calls this hook from a `finally`): be quick.
        interrupted = isinstance(sys.exc_info()[1], (KeyboardInterrupt, SystemExit))
        trials = study.trials()
        counts = {state: sum(t.state == state for t in trials) for state in (State.COMPLETE, State.PRUNED, State.FAILED)}
        now = _ms(None)
        rows = [[f"trials.{s.value}", float(n), now, 0] for s, n in counts.items()]
        rows.append(["compute_s", float(sum(t.duration or 0.0 for t in trials)), now, 0])
        tags: dict[str, str] = {}
        best = study.best_among(trials)
        if best and not study.metrics.is_multi_objective:
            b = best[0]
            tags["best.trial"] = str(b.number)
            tags.update({f"best.{k}": _param_value(v) for k, v in b.config.items()})
            rows += [[f"best.{k}", float(v), _ms(b.end), b.number] for k, v in b.metrics.items()]
        elif best:
            tags["pareto_front"] = ",".join(str(t.number) for t in best)
        self._submit({"op": "log", "key": STUDY_KEY, "metrics": rows, "tags": tags})
        if not interrupted:
            payload = [{"trial": t.number, "config": dict(t.config), "metrics": dict(t.metrics)} for t in best]
            self._submit_file("best.json", json.dumps(payload, indent=2, default=str))
            self._submit_report(study)
            if self.settings.log_checkpoints:
                for t in trials:  # the kept trials still have theirs; retention deleted the rest
                    checkpoint = Path(t.trial_dir) / "checkpoint" if t.trial_dir else None
                    tracked = t.number in self._started or trial_key(t.number) in self.runs.ids
                    if tracked and checkpoint is not None and checkpoint.is_dir() and any(checkpoint.iterdir()):
                        self._submit({"op": "artifact", "key": trial_key(t.number), "path": str(checkpoint),
                                      "dir": "checkpoint"})
        self._submit({"op": "status", "key": STUDY_KEY, "status": "KILLED" if interrupted else "FINISHED",
                      "end_ms": _ms(None)})
        self.sender.close(3.0 if interrupted else self.close_timeout_s)

    # ---- sending ----------------------------------------------------------------------------

    def _submit(self, record: dict[str, Any]) -> None:
        self.sender.put(record)

    def _submit_file(self, name: str, text: str) -> None:
        path = self.state_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self._submit({"op": "artifact", "key": STUDY_KEY, "path": str(path), "dir": None})

    def _submit_report(self, study: "StudyView") -> None:
        path = self.report_path
        if path is not None and path.exists():
            self._submit({"op": "artifact", "key": STUDY_KEY, "path": str(path), "dir": None})
            return
        target = self.state_dir / "report.html"

        def write() -> bool:
            """In the sender thread: the study is over, and the end says it is still sending."""
            target.unlink(missing_ok=True)
            try:
                from tunelab.report import write_report

                write_report(study, target)
            except Exception as exc:  # noqa: BLE001 - e.g. plotly missing: the runs matter more
                logger.warning("MLflow: no report artifact (%s: %s).", type(exc).__name__, exc)
                return False
            return True

        self.sender.put({"op": "artifact", "key": STUDY_KEY, "path": str(target), "dir": None}, prepare=write)

    # ---- study state -------------------------------------------------------------------------

    def _adopt_state(self, study: "StudyView") -> None:
        """Take up the runs of an earlier session of this study, for the same store and experiment."""
        if self.runs.uri != self.settings.uri or self.runs.experiment != self.settings.experiment:
            spool = self.sender.spool
            if spool.path.exists():
                old = spool.path.with_name(f"spool-{int(time.time())}.jsonl")
                os.replace(spool.path, old)
                self.sender.queued = 0
                logger.warning("MLflow: the study now tracks to %s (%s); the records queued for %s were moved to %s.",
                               self.settings.uri, self.settings.experiment, self.runs.uri, old)
            uid = self.runs.ids.get("uid") or os.urandom(8).hex()
            self.runs.reset(self.settings.uri, self.settings.experiment)
            self.runs.set("uid", uid)
            stored = study.optuna_study.user_attrs.get(STUDY_ATTR) or {}
            if stored.get("uri") == self.settings.uri and stored.get("experiment") == self.settings.experiment \
                    and stored.get("run_id"):
                self.runs.set(STUDY_KEY, stored["run_id"])  # state dir lost, the study remembers its run
        self._save_attr(study)

    def _save_attr(self, study: "StudyView") -> None:
        attr = {"uri": self.settings.uri, "experiment": self.settings.experiment,
                "run_id": self.runs.get(STUDY_KEY), "state_dir": str(self.state_dir.resolve())}
        if study.optuna_study.user_attrs.get(STUDY_ATTR) != attr:
            study.optuna_study.set_user_attr(STUDY_ATTR, attr)

    def _remember_study_run(self, run_id: str) -> None:
        if self._study is not None:
            self._save_attr(self._study)

    def _study_fields(self, study: "StudyView") -> tuple[dict[str, str], dict[str, str]]:
        meta = study.optuna_study.user_attrs.get("tunelab") or {}
        params = {"sampler": str(meta.get("sampler")), "seed": str(meta.get("seed")),
                  "scheduler": str(meta.get("scheduler"))}
        params.update({f"space.{k}": json.dumps(v, default=str) for k, v in study.space_dict.items()})
        for m in study.metrics.metrics:
            spec = {"goal": m.goal} if m.strategy == "optimize" else {"strategy": m.strategy}
            spec.update({k: v for k, v in (("min", m.min), ("max", m.max)) if v is not None})
            params[f"metric.{m.name}"] = json.dumps(spec)
        tags = {"tunelab.key": f"{self._uid}/{STUDY_KEY}", "study": study.name}
        if self.config is not None:
            cfg = self.config
            params.update({f"search.{k}": json.dumps(v, default=str) for k, v in cfg.search.options.items()})
            tags["objective"] = repr(cfg.objective)
            for section, value in (("budget", cfg.budget), ("execution", cfg.execution)):
                for name, item in vars(value).items():
                    if item is not None:
                        tags[f"{section}.{name}"] = str(item)
        return params, tags

    def _log_best_so_far(self, trial: "TrialInfo") -> None:
        study = self._study
        if study is None or study.metrics.is_multi_objective or trial.state != State.COMPLETE:
            return
        if not trial.values or not trial.feasible:
            return
        value = trial.values[0]
        primary = study.metrics.primary
        if self._best is None or primary.better(value, self._best):
            self._best = value
            self._submit({"op": "log", "key": STUDY_KEY,
                          "metrics": [[f"best.{primary.name}", value, _ms(trial.end), trial.number]]})


def _param_value(value: Any) -> str:
    """A config value as MLflow shows it: the value itself (``32``, ``0.001``, ``adamw``)."""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _yaml(raw: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(dict(raw), default=str)), sort_keys=False)
