"""An in-memory stand-in for ``MlflowClient`` (the calls the tracker makes), with an off switch.

The real client is tested against a real ``mlflow server`` in ``tests/integration``; this one
makes the unit tests fast and lets them take the store down and up at will.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class StoreDown(ConnectionError):
    pass


class Rejected(Exception):
    error_code = "INVALID_PARAMETER_VALUE"


@dataclass
class FakeRun:
    run_id: str
    experiment_id: str
    name: str | None
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, timestamp, step
    status: str = "RUNNING"
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)

    def history(self, key: str) -> list[tuple[int, float]]:
        return [(step, value) for k, value, _, step in self.metrics if k == key]


class FakeClient:
    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.experiments: dict[str, str] = {}
        self.runs: dict[str, FakeRun] = {}
        self._ids = itertools.count()

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreDown("connection refused")

    def get_experiment_by_name(self, name: str) -> Any:
        self._call()
        if name not in self.experiments:
            return None
        return SimpleNamespace(experiment_id=self.experiments[name], lifecycle_stage="active")

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        self._call()
        self.experiments[name] = str(len(self.experiments) + 1)
        return self.experiments[name]

    def create_run(self, experiment_id: str, start_time: int | None = None, tags: dict | None = None,
                   run_name: str | None = None) -> Any:
        self._call()
        run = FakeRun(f"run{next(self._ids)}", experiment_id, run_name, dict(tags or {}))
        self.runs[run.run_id] = run
        return SimpleNamespace(info=SimpleNamespace(run_id=run.run_id))

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", max_results: int = 1000) -> list[Any]:
        self._call()
        key = filter_string.split("= '", 1)[1].rstrip("'")
        return [SimpleNamespace(info=SimpleNamespace(run_id=r.run_id)) for r in self.runs.values()
                if r.tags.get("tunelab.key") == key][:max_results]

    def get_run(self, run_id: str) -> Any:
        self._call()
        return SimpleNamespace(data=SimpleNamespace(params=dict(self.runs[run_id].params)))

    def log_batch(self, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), synchronous: Any = None) -> None:
        self._call()
        run = self.runs[run_id]
        for p in params:
            if p.key in run.params and run.params[p.key] != p.value:
                raise Rejected(f"param {p.key} changed")
            run.params[p.key] = p.value
        run.tags.update({t.key: t.value for t in tags})
        for m in metrics:
            entry = (m.key, m.value, m.timestamp, m.step)
            if entry not in run.metrics:  # like MLflow: the same point twice is kept once
                run.metrics.append(entry)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        self._call()
        self.runs[run_id].status = status or self.runs[run_id].status

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        self._call()
        self.runs[run_id].status = status or "FINISHED"

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._call()
        self.runs[run_id].artifacts.append((local_path, artifact_path))

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        self.log_artifact(run_id, local_dir, artifact_path)

    # ---- for assertions ---------------------------------------------------------------------

    def parent(self) -> FakeRun:
        (run,) = [r for r in self.runs.values() if "mlflow.parentRunId" not in r.tags]
        return run

    def children(self) -> dict[int, FakeRun]:
        return {int(r.tags["trial"]): r for r in self.runs.values() if "mlflow.parentRunId" in r.tags}
