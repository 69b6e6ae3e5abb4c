"""MLflow: a parent run per study, a nested run per trial (the ``mlflow`` tracker).

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

Records go through the shared sender and spool (``callback``, ``sender``, ``spool``): queued on
disk in ``<trial_dir>/<study>/.mlflow/spool.jsonl`` while the store is unreachable, sent in order
when it answers again (tried every ``probe_interval_s``) or by ``tunelab sync``. At the end of the
study the tracker waits (at most ``close_timeout_s``) for what is left, saying how many records it
still sends when that takes more than a moment; the rest waits on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from tunelab.errors import MissingDependencyError
from tunelab.tracking.callback import STUDY_KEY, TrackerCallback, ms
from tunelab.tracking.local_store import prepare_local_store
from tunelab.tracking.settings import MlflowSettings, mlflow_installed
from tunelab.tracking.spool import RunMap
from tunelab.tracking.writer import RecordRejected, TrackingUnavailable, Writer, _short, trial_key
from tunelab.trial import State

if TYPE_CHECKING:
    from tunelab.config import StudyConfig
    from tunelab.study import StudyView, TrialInfo

logger = logging.getLogger("tunelab.tracking")

STUDY_ATTR = "tunelab.mlflow"

#: MLflow's limits (mlflow.utils.validation): longer values are cut, bigger batches split.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

#: Error codes that say the record itself is wrong: sending it again cannot help.
_PERMANENT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                              "INVALID_STATE", "BAD_REQUEST"})

#: MLflow's HTTP client retries a refused connection for minutes by default (7 retries,
#: exponential backoff). A study must not wait that long, so around our calls these apply unless
#: the user set them; we retry a few times ourselves and queue what still fails.
_FAST_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


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


class MlflowTracker(TrackerCallback):
    """Tuner callback: study and trials to MLflow, queued on disk while MLflow is unreachable."""

    name = "mlflow"
    label = "MLflow"

    def __init__(self, settings: MlflowSettings, state_dir: str | Path, *, config: "StudyConfig | None" = None,
                 report_path: str | Path | None = None, client: Any = None, **kw: Any) -> None:
        if not mlflow_installed():
            raise MissingDependencyError("MLflow tracking is configured but `mlflow` is not installed. "
                                         "Install it with: pip install 'tunelab[mlflow]' (or use --no-mlflow).")
        preload_mlflow(settings.uri)
        self.settings = settings
        self.config = config
        self.report_path = Path(report_path) if report_path else None
        self._client = client
        self._started: set[int] = set()
        self._best: float | None = None
        super().__init__(state_dir, target=settings.uri, experiment=settings.experiment, **kw)

    def make_writer(self) -> "MlflowWriter":
        client = self._client if self._client is not None else make_client(self.settings.uri)
        return MlflowWriter(client, self.runs, on_study_run=self._remember_study_run)

    # ---- the study -------------------------------------------------------------------------------

    def on_study_start(self, study: "StudyView") -> None:
        best = study.best_trial
        if best is not None and best.values and not study.metrics.is_multi_objective:
            self._best = best.values[0]
        super().on_study_start(study)
        if self.config is not None and self.config.raw:
            self._submit_file("study.yaml", _yaml(self.config.raw))

    def study_record(self, study: "StudyView") -> dict[str, Any]:
        record = super().study_record(study)
        meta = study.optuna_study.user_attrs.get("tunelab") or {}
        params = {"sampler": str(meta.get("sampler")), "seed": str(meta.get("seed")),
                  "scheduler": str(meta.get("scheduler"))}
        params.update({f"space.{k}": json.dumps(v, default=str) for k, v in study.space_dict.items()})
        for m in study.metrics.metrics:
            spec = {"goal": m.goal} if m.strategy == "optimize" else {"strategy": m.strategy}
            spec.update({k: v for k, v in (("min", m.min), ("max", m.max)) if v is not None})
            params[f"metric.{m.name}"] = json.dumps(spec)
        tags = record["tags"]
        if self.config is not None:
            cfg = self.config
            params.update({f"search.{k}": json.dumps(v, default=str) for k, v in cfg.search.options.items()})
            tags["objective"] = repr(cfg.objective)
            for section, value in (("budget", cfg.budget), ("execution", cfg.execution)):
                for name, item in vars(value).items():
                    if item is not None:
                        tags[f"{section}.{name}"] = str(item)
        return {**record, "params": params, "experiment": self.settings.experiment,
                "artifact_location": artifact_location(self.settings.uri)}

    def on_trial_start(self, number: int, config: Mapping[str, Any]) -> None:
        self._started.add(number)
        super().on_trial_start(number, config)

    def on_trial_end(self, trial: "TrialInfo") -> None:
        super().on_trial_end(trial)
        study = self._study
        if study is None or study.metrics.is_multi_objective or trial.state != State.COMPLETE:
            return
        if not trial.values or not trial.feasible:
            return
        value, primary = trial.values[0], study.metrics.primary
        if self._best is None or primary.better(value, self._best):
            self._best = value
            self.submit({"op": "log", "key": STUDY_KEY,
                         "metrics": [[f"best.{primary.name}", value, ms(trial.end), trial.number]]})

    def finish_record(self, study: "StudyView", interrupted: bool) -> dict[str, Any]:
        trials = study.trials()
        counts = {state: sum(t.state == state for t in trials) for state in (State.COMPLETE, State.PRUNED, State.FAILED)}
        now = ms()
        rows = [[f"trials.{s.value}", float(n), now, 0] for s, n in counts.items()]
        rows.append(["compute_s", float(sum(t.duration or 0.0 for t in trials)), now, 0])
        tags: dict[str, str] = {}
        best = study.best_among(trials)
        if best and not study.metrics.is_multi_objective:
            b = best[0]
            tags["best.trial"] = str(b.number)
            tags.update({f"best.{k}": _param_value(v) for k, v in b.config.items()})
            rows += [[f"best.{k}", float(v), ms(b.end), b.number] for k, v in b.metrics.items()]
        elif best:
            tags["pareto_front"] = ",".join(str(t.number) for t in best)
        if not interrupted:  # artifacts go before the run ends (a quick stop skips them)
            payload = [{"trial": t.number, "config": dict(t.config), "metrics": dict(t.metrics)} for t in best]
            self._submit_file("best.json", json.dumps(payload, indent=2, default=str))
            self._submit_report(study)
            if self.settings.log_checkpoints:
                for t in trials:  # the kept trials still have theirs; retention deleted the rest
                    checkpoint = Path(t.trial_dir) / "checkpoint" if t.trial_dir else None
                    tracked = t.number in self._started or trial_key(t.number) in self.runs.ids
                    if tracked and checkpoint is not None and checkpoint.is_dir() and any(checkpoint.iterdir()):
                        self.submit({"op": "artifact", "key": trial_key(t.number), "path": str(checkpoint),
                                     "dir": "checkpoint"})
        return {**super().finish_record(study, interrupted), "metrics": rows, "tags": tags}

    def _submit_file(self, name: str, text: str) -> None:
        path = self.state_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.submit({"op": "artifact", "key": STUDY_KEY, "path": str(path), "dir": None})

    def _submit_report(self, study: "StudyView") -> None:
        path = self.report_path
        if path is not None and path.exists():
            self.submit({"op": "artifact", "key": STUDY_KEY, "path": str(path), "dir": None})
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

    # ---- study state -----------------------------------------------------------------------------

    def attr(self) -> dict[str, Any]:
        return {"uri": self.settings.uri, "experiment": self.settings.experiment,
                "run_id": self.runs.get(STUDY_KEY), "state_dir": str(self.state_dir.resolve())}

    def recall(self, study: "StudyView") -> None:
        stored = study.optuna_study.user_attrs.get(STUDY_ATTR) or {}
        if stored.get("uri") == self.settings.uri and stored.get("experiment") == self.settings.experiment \
                and stored.get("run_id"):
            self.runs.set(STUDY_KEY, stored["run_id"])  # state dir lost, the study remembers its run

    def _remember_study_run(self, run_id: str) -> None:
        if self._study is not None:
            self.save_attr(self._study)


class MlflowWriter(Writer):
    """Sends records through an ``MlflowClient``-like object, resolving run keys with ``runs``."""

    def __init__(self, client: Any, runs: RunMap, *, on_study_run: Any = None) -> None:
        super().__init__(runs)
        self.client = client
        self.on_study_run = on_study_run

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        added = [k for k in _FAST_HTTP if k not in os.environ]
        for key in added:
            os.environ[key] = _FAST_HTTP[key]
        try:
            yield
        finally:
            for key in added:
                os.environ.pop(key, None)

    def classify(self, exc: BaseException) -> Exception:
        code = getattr(exc, "error_code", None)
        if code in _PERMANENT_CODES:
            return RecordRejected(f"{code}: {_short(exc)}")
        return TrackingUnavailable(f"{type(exc).__name__}: {_short(exc)}")

    def _run_id(self, key: str) -> str:
        run_id = self.runs.get(key)
        if run_id is None:
            raise RecordRejected(f"no MLflow run for {key!r} (its creation was rejected)")
        return run_id

    # ---- the protocol ----------------------------------------------------------------------------

    def study(self, record: Mapping[str, Any], replay: bool) -> None:
        if self.runs.get("experiment") is None:
            self._experiment(record["experiment"], record.get("artifact_location"))
        if self.runs.get(STUDY_KEY) is None:
            self._create(record, None, replay)
            return
        # A resumed study goes on in its run; MLflow params never change, so only new ones are added.
        self.client.update_run(self._run_id(STUDY_KEY), status="RUNNING")
        self.log({"key": STUDY_KEY, "params": record.get("params"), "new_params_only": True,
                  "tags": record.get("tags")}, replay)

    def trial(self, record: Mapping[str, Any], replay: bool) -> None:
        params = {k: _param_value(v) for k, v in (record.get("config") or {}).items()}
        self._create({**record, "params": params}, STUDY_KEY, replay)

    def log(self, record: Mapping[str, Any], replay: bool) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._run_id(record["key"])
        params = {k: clip(v, MAX_PARAM_LENGTH) for k, v in (record.get("params") or {}).items()}
        if params and record.get("new_params_only"):
            existing = self.client.get_run(run_id).data.params
            params = {k: v for k, v in params.items() if k not in existing}
        tags = [RunTag(k, clip(v, MAX_TAG_LENGTH)) for k, v in (record.get("tags") or {}).items()]
        metrics = [Metric(name, float(value), int(ts), int(step))
                   for name, value, ts, step in record.get("metrics") or [] if value is not None]
        for chunk in _chunks([Param(k, v) for k, v in params.items()], MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk, synchronous=True)
        for chunk in _chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)

    def end(self, record: Mapping[str, Any], replay: bool) -> None:
        self.log({"key": record["key"], "metrics": record.get("metrics"), "tags": record.get("tags")}, replay)
        self.client.set_terminated(self._run_id(record["key"]), status=record["status"], end_time=record.get("end_ms"))
        self.runs.mark_ended(record["key"])

    finish = end

    def artifact(self, record: Mapping[str, Any], replay: bool) -> None:
        run_id = self._run_id(record["key"])
        path = Path(record["path"])
        if not path.exists():
            raise RecordRejected(f"{path} no longer exists")
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), record.get("dir"))
        else:
            self.client.log_artifact(run_id, str(path), record.get("dir"))

    # ---- runs ------------------------------------------------------------------------------------

    def _experiment(self, name: str, location: str | None) -> None:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=location)
            except Exception as exc:  # noqa: BLE001 - created meanwhile by another process
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise exc
                experiment_id = experiment.experiment_id
        elif experiment.lifecycle_stage == "deleted":
            raise RecordRejected(f"MLflow experiment {name!r} is deleted; restore it (`mlflow experiments restore`) "
                                 "or track to another experiment")
        else:
            experiment_id = experiment.experiment_id
        self.runs.set("experiment", experiment_id)

    def _create(self, record: Mapping[str, Any], parent: str | None, replay: bool) -> None:
        """A run for the record's key (nested under ``parent``'s), looked up first on a replay."""
        key = record["key"]
        experiment_id = self._run_id("experiment")
        tags = {k: clip(v, MAX_TAG_LENGTH) for k, v in (record.get("tags") or {}).items()}
        if parent:
            tags["mlflow.parentRunId"] = self._run_id(parent)
        run_id = self.runs.get(key)
        if run_id is None and replay and tags.get("tunelab.key"):
            found = self.client.search_runs(
                [experiment_id], filter_string=f"tags.`tunelab.key` = '{tags['tunelab.key']}'", max_results=1)
            run_id = found[0].info.run_id if found else None
        if run_id is None:
            run = self.client.create_run(experiment_id, start_time=record.get("start_ms"), tags=tags,
                                         run_name=record.get("name"))
            run_id = run.info.run_id
            self.runs.set(key, run_id)
            if key == STUDY_KEY and self.on_study_run is not None:
                self.on_study_run(run_id)
        elif key not in self.runs.ids:
            self.runs.set(key, run_id)
        if record.get("params"):
            self.log({"key": key, "params": record["params"]}, replay)


def clip(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _param_value(value: Any) -> str:
    """A config value as MLflow shows it: the value itself (``32``, ``0.001``, ``adamw``)."""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _yaml(raw: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(json.loads(json.dumps(dict(raw), default=str)), sort_keys=False)
