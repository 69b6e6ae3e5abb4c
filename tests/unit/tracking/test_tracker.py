"""The MLflow tracker on real (in-process) studies, against an in-memory MLflow stand-in."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from fake_mlflow import FakeClient
from tunelab.api import run_study
from tunelab.config import parse_config
from tunelab.errors import TrialFailed
from tunelab.tracking.mlflow import STUDY_ATTR, MlflowTracker, MlflowWriter
from tunelab.tracking.sender import Sender
from tunelab.tracking.settings import MlflowSettings
from tunelab.tracking.spool import RunMap, Spool
from tunelab.tracking.sync import sync_study
from tunelab.tracking.writer import RecordRejected

URI = "http://127.0.0.1:9/"  # never contacted: the fake client stands in


def objective(config: dict, reporter: Any) -> dict:
    """Half-epoch reports; trial 1 runs out of memory."""
    if reporter.trial_id == 1:
        raise TrialFailed("oom", "CUDA out of memory (simulated)")
    accuracy = 0.0
    for i in range(1, 4):
        accuracy = round(0.5 + 0.1 * i + 0.01 * config["layers"], 4)
        reporter.report(i * 0.5, accuracy=accuracy, loss=1 - accuracy)
    return {"accuracy": accuracy + 0.001, "train_seconds": 0.5}  # the final differs from the last report


def config_for(tmp_path: Path, trials: int) -> Any:
    raw = {"name": "tracked", "objective": objective,
           "metrics": [{"name": "accuracy", "goal": "maximize"}, {"name": "train_seconds", "strategy": "store"}],
           "space": {"lr": {"float": [1e-4, 1e-1], "log": True}, "batch_size": {"choice": [16, 32]},
                     "layers": {"int": [1, 4]}, "epochs": {"fixed": 3}},
           "search": {"sampler": "random", "seed": 0}, "budget": {"trials": trials},
           "execution": {"backend": "inprocess", "workers": 1}, "storage": str(tmp_path / "s.journal"),
           "tracking": {"mlflow": False}}
    return parse_config(raw, base_dir=tmp_path)


def tracker_for(tmp_path: Path, client: FakeClient, **kw: Any) -> MlflowTracker:
    kw.setdefault("probe_interval_s", 0.0)
    kw.setdefault("retry_delays", ())
    return MlflowTracker(MlflowSettings(URI, "exp"), tmp_path / "state", client=client, **kw)


def test_parent_and_nested_runs_hold_values_histories_and_failures(tmp_path: Path) -> None:
    client = FakeClient()
    study = run_study(config_for(tmp_path, 4), callbacks=[tracker_for(tmp_path, client)])
    trials = {t.number: t for t in study.trials()}
    parent = client.parent()
    assert parent.name == "tracked" and parent.status == "FINISHED"
    assert parent.params["sampler"] == "random" and parent.params["seed"] == "0"
    assert json.loads(parent.params["space.lr"]) == {"float": [1e-4, 1e-1], "log": True}
    assert json.loads(parent.params["metric.accuracy"]) == {"goal": "maximize"}
    best = study.best_trial
    assert parent.tags["best.trial"] == str(best.number)
    assert parent.tags["best.batch_size"] == str(best.config["batch_size"])
    assert parent.history("best.accuracy")[-1] == (best.number, best.metrics["accuracy"])
    assert {a[0].rsplit("/", 1)[1] for a in parent.artifacts} >= {"best.json", "report.html"}
    assert study.optuna_study.user_attrs[STUDY_ATTR]["run_id"] == parent.run_id

    children = client.children()
    assert set(children) == set(trials) == {0, 1, 2, 3}
    for number, run in children.items():
        t = trials[number]
        assert run.tags["mlflow.parentRunId"] == parent.run_id
        assert run.name == f"trial_{number:04d}"
        assert run.params == {k: str(v) for k, v in t.config.items()}  # values, never indices
        assert int(run.params["layers"]) == t.config["layers"] and float(run.params["lr"]) == t.config["lr"]
        assert run.tags["state"] == t.state.value
    failed = children[1]
    assert (failed.status, failed.tags["failure_kind"]) == ("FAILED", "oom")
    assert "out of memory" in failed.tags["failure_message"]
    ok = children[0]
    assert ok.status == "FINISHED" and "failure_kind" not in ok.tags
    reports = trials[0].history
    # MLflow step = the report's index; the real (fractional) step is metric `step`.
    assert ok.history("step") == [(0, 0.5), (1, 1.0), (2, 1.5)]
    assert ok.history("loss") == [(i, r.metrics["loss"]) for i, r in enumerate(reports)]
    assert ok.history("accuracy") == [(i, r.metrics["accuracy"]) for i, r in enumerate(reports)] + [
        (3, trials[0].metrics["accuracy"])]  # the final value, one index after the last report
    assert ok.history("train_seconds") == [(3, 0.5)]
    assert ok.history("duration_s")[0][1] == pytest.approx(trials[0].duration)


def saves_checkpoints(config: dict, reporter: Any) -> dict:
    (reporter.checkpoint_dir / "model.bin").write_bytes(b"weights")
    reporter.report(1, accuracy=config["layers"] / 10)
    return {"accuracy": config["layers"] / 10, "train_seconds": 0.1}


def test_kept_checkpoints_are_logged_when_asked(tmp_path: Path) -> None:
    import dataclasses

    client = FakeClient()
    config = config_for(tmp_path, 4)
    config = dataclasses.replace(config, objective=saves_checkpoints,
                                 execution=dataclasses.replace(config.execution, keep_checkpoints=1))
    tracker = MlflowTracker(MlflowSettings(URI, "exp", log_checkpoints=True), tmp_path / "state", client=client,
                            probe_interval_s=0.0, retry_delays=())
    study = run_study(config, callbacks=[tracker])
    logged = {n: run.artifacts for n, run in client.children().items() if run.artifacts}
    assert list(logged) == [study.best_trial.number]  # only the kept checkpoint
    ((path, where),) = logged[study.best_trial.number]
    assert where == "checkpoint" and Path(path, "model.bin").exists()


class Flaky(FakeClient):
    """Down for the calls numbered in `broken` (counted from the first call)."""

    def __init__(self, broken: range) -> None:
        super().__init__()
        self.broken = broken
        self.failures = 0

    def _call(self) -> None:
        self.calls += 1
        if self.calls in self.broken:
            self.failures += 1
            raise ConnectionError("connection refused")


def test_an_outage_is_queued_on_disk_and_sent_in_order_when_the_store_is_back(tmp_path: Path, caplog) -> None:
    client = Flaky(range(12, 30))
    tracker = tracker_for(tmp_path, client)
    with caplog.at_level(logging.WARNING, logger="tunelab.tracking"):
        study = run_study(config_for(tmp_path, 4), callbacks=[tracker])
    assert client.failures > 0
    assert len([r for r in caplog.records if "cannot be reached" in r.getMessage()]) == 1  # reported once
    assert not tracker.sender.spool.path.exists()  # everything went out in the end
    children = client.children()
    assert set(children) == {t.number for t in study.trials()}
    for t in study.trials():
        run = children[t.number]
        assert run.status == ("FAILED" if t.number == 1 else "FINISHED")
        assert [v for _, v in run.history("loss")] == [r.metrics["loss"] for r in t.history]
    assert client.parent().status == "FINISHED"


def test_store_down_for_the_whole_study_then_sync(tmp_path: Path, caplog) -> None:
    client = FakeClient()
    client.down = True
    tracker = tracker_for(tmp_path, client, probe_interval_s=60.0)
    study = run_study(config_for(tmp_path, 3), callbacks=[tracker])
    assert [t.state.value for t in study.trials()] == ["complete", "failed", "complete"]  # the study went on
    spool = Spool(tmp_path / "state")
    assert len(spool) > 10 and not client.runs
    assert sync_study(study, client=client).left == len(spool)  # still down: nothing lost, nothing sent
    client.down = False
    result = sync_study(study, client=client)
    assert (result.left, result.rejected) == (0, 0) and result.sent > 10
    assert set(client.children()) == {0, 1, 2}
    assert client.parent().status == "FINISHED"
    assert study.optuna_study.user_attrs[STUDY_ATTR]["run_id"] == client.parent().run_id
    assert sync_study(study, client=client).sent == 0


def test_a_resumed_study_goes_on_in_its_parent_run(tmp_path: Path) -> None:
    client = FakeClient()
    run_study(config_for(tmp_path, 2), callbacks=[tracker_for(tmp_path, client)])
    first = client.parent().run_id
    study = run_study(config_for(tmp_path, 4), callbacks=[tracker_for(tmp_path, client)])
    assert client.parent().run_id == first
    assert set(client.children()) == {0, 1, 2, 3}
    assert client.parent().status == "FINISHED"
    assert study.optuna_study.user_attrs[STUDY_ATTR]["run_id"] == first


def test_a_rejected_record_is_dropped_not_retried(tmp_path: Path) -> None:
    client = FakeClient()
    runs = RunMap(tmp_path)
    runs.reset(URI, "exp")
    writer = MlflowWriter(client, runs)
    writer.send({"op": "study", "key": "study", "name": "s", "experiment": "exp", "params": {"seed": "0"}})
    with pytest.raises(RecordRejected):
        writer.send({"op": "log", "key": "study", "params": {"seed": "1"}})
    writer.send({"op": "log", "key": "study", "params": {"seed": "1", "new": "x"}, "new_params_only": True})
    assert client.parent().params == {"seed": "0", "new": "x"}  # a changed param is kept as it was


def test_close_queues_what_a_slow_store_has_not_taken(tmp_path: Path) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow_writer() -> MlflowWriter:  # like MLflow importing and migrating a new database
        started.set()
        release.wait(10)
        raise RuntimeError("gave up")

    sender = Sender(slow_writer, Spool(tmp_path), uri=URI, probe_interval_s=60.0)
    sender.start()
    for i in range(5):
        sender.put({"op": "log", "key": "study", "i": i})
    started.wait(5)
    threading.Timer(0.5, release.set).start()  # the store gives up a little after close() stops waiting
    sender.close(timeout_s=0.2)
    assert [r["i"] for r in Spool(tmp_path).records()] == [0, 1, 2, 3, 4]
