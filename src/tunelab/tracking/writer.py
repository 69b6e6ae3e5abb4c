"""Records to MLflow calls: the one place that talks to an MLflow tracking store.

A record is a plain JSON-ready dict, so what could not be sent can wait on disk (see
``spool``) and be sent later, by this process or by ``tunelab sync``:

- ``{"op": "experiment", "name", "artifact_location"}``
- ``{"op": "run", "key", "name", "parent", "start_ms", "tags", "params"}``: create a run
  (nested under ``parent``'s run when given) and log its first params and tags;
- ``{"op": "log", "key", "metrics": [[name, value, timestamp_ms, step], ...], "params",
  "tags", "new_params_only"}``;
- ``{"op": "status", "key", "status", "end_ms"}``: RUNNING again, or terminated;
- ``{"op": "artifact", "key", "path", "dir"}``: a local file or directory.

Runs are named by tunelab keys (``study``, ``trial:3``); ``RunMap`` holds their MLflow ids.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from tunelab.tracking.spool import RunMap

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


class TrackingUnavailable(Exception):
    """The tracking store could not be reached; the record may be sent again later."""


class RecordRejected(Exception):
    """The store refused the record (bad value, deleted run): sending it again cannot help."""


@contextlib.contextmanager
def fast_failing_http() -> Iterator[None]:
    added = [k for k in _FAST_HTTP if k not in os.environ]
    for key in added:
        os.environ[key] = _FAST_HTTP[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def classify(exc: BaseException) -> Exception:
    """An MLflow or network error as ``RecordRejected`` or ``TrackingUnavailable``."""
    code = getattr(exc, "error_code", None)
    if code in _PERMANENT_CODES:
        return RecordRejected(f"{code}: {_short(exc)}")
    return TrackingUnavailable(f"{type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def clip(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class MlflowWriter:
    """Sends records through an ``MlflowClient``-like object, resolving run keys with ``runs``."""

    def __init__(self, client: Any, runs: RunMap, *, on_study_run: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.runs = runs
        self.on_study_run = on_study_run

    def send(self, record: Mapping[str, Any], *, replay: bool = False) -> None:
        """Send one record. Raises ``TrackingUnavailable`` or ``RecordRejected``.

        ``replay``: the record may have reached the store before (a lost reply), so a run is
        looked up by its key before one is created.
        """
        op = record["op"]
        try:
            with fast_failing_http():
                getattr(self, f"_{op}")(record, replay)
        except (TrackingUnavailable, RecordRejected):
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow, requests, SQLAlchemy, OS errors alike
            raise classify(exc) from exc

    def send_retrying(self, record: Mapping[str, Any], delays: tuple[float, ...] = (0.25, 1.0),
                      sleep: Callable[[float], None] = time.sleep) -> None:
        """``send`` with a few short retries when the store is unreachable."""
        for delay in (*delays, None):
            try:
                self.send(record)
                return
            except TrackingUnavailable:
                if delay is None:
                    raise
                sleep(delay)

    # ---- records ------------------------------------------------------------------------------

    def _run_id(self, key: str) -> str:
        run_id = self.runs.get(key)
        if run_id is None:
            raise RecordRejected(f"no MLflow run for {key!r} (its creation was rejected)")
        return run_id

    def _experiment(self, record: Mapping[str, Any], replay: bool) -> None:
        name = record["name"]
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(name, artifact_location=record.get("artifact_location"))
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

    def _run(self, record: Mapping[str, Any], replay: bool) -> None:
        key = record["key"]
        experiment_id = self._run_id("experiment")
        tags = {k: clip(v, MAX_TAG_LENGTH) for k, v in (record.get("tags") or {}).items()}
        if record.get("parent"):
            tags["mlflow.parentRunId"] = self._run_id(record["parent"])
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
            if key == "study" and self.on_study_run is not None:
                self.on_study_run(run_id)
        elif key not in self.runs.ids:
            self.runs.set(key, run_id)
        if record.get("params"):
            self._log({"key": key, "params": record["params"]}, replay)

    def _log(self, record: Mapping[str, Any], replay: bool) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._run_id(record["key"])
        params = {k: clip(v, MAX_PARAM_LENGTH) for k, v in (record.get("params") or {}).items()}
        if params and record.get("new_params_only"):
            # Params never change in MLflow; a resumed study only adds the ones it did not log yet.
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

    def _status(self, record: Mapping[str, Any], replay: bool) -> None:
        key = record["key"]
        run_id = self._run_id(key)
        if record["status"] == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
            return
        self.client.set_terminated(run_id, status=record["status"], end_time=record.get("end_ms"))
        self.runs.mark_ended(key)

    def _artifact(self, record: Mapping[str, Any], replay: bool) -> None:
        run_id = self._run_id(record["key"])
        path = Path(record["path"])
        if not path.exists():
            raise RecordRejected(f"{path} no longer exists")
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), record.get("dir"))
        else:
            self.client.log_artifact(run_id, str(path), record.get("dir"))
