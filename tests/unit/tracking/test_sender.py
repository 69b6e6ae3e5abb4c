"""The background sender: records go out while the study runs; the end says what it still sends."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from fake_mlflow import FakeClient
from tunelab.api import run_study
from tunelab.config import parse_config
from tunelab.tracking.mlflow import MlflowTracker, MlflowWriter
from tunelab.tracking.sender import Sender
from tunelab.tracking.settings import MlflowSettings
from tunelab.tracking.spool import RunMap, Spool

URI = "http://127.0.0.1:9/"  # never contacted: the fake client stands in


class Gate:
    """A client whose calls wait until the gate opens (a slow store, or MLflow still starting)."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.open = threading.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            assert self.open.wait(120), "the gate never opened"
            self.calls += 1
            return method(*args, **kwargs)

        return call


def _sender(tmp_path: Path, client: Any, **kw: Any) -> Sender:
    runs = RunMap(tmp_path)
    runs.reset(URI, "exp")
    return Sender(lambda: MlflowWriter(client, runs), Spool(tmp_path), uri=URI, probe_interval_s=60.0,
                  retry_delays=(), **kw)


def _start_study_run(sender: Sender) -> None:
    sender.put({"op": "study", "key": "study", "name": "s", "experiment": "exp", "tags": {}, "params": {}})
    sender.put({"op": "trial", "key": "trial:0", "number": 0, "name": "trial_0000", "config": {"x": 1},
                "tags": {"trial": "0"}})


def test_records_are_sent_while_the_study_runs_not_at_its_end(tmp_path: Path) -> None:
    client = FakeClient()
    seen_finished: list[bool] = []

    def objective(config: dict, reporter: Any) -> dict:
        if reporter.trial_id > 0:  # the previous trial's run reaches MLflow while this one runs
            seen_finished.append(_wait_for(lambda: _finished(client, reporter.trial_id - 1)))
        reporter.report(1, loss=config["x"])
        return {"loss": config["x"]}

    raw = {"name": "live", "objective": objective, "metrics": [{"name": "loss", "goal": "minimize"}],
           "space": {"x": {"float": [0, 1]}}, "search": {"sampler": "random", "seed": 0}, "budget": {"trials": 4},
           "execution": {"backend": "inprocess", "workers": 1}, "storage": str(tmp_path / "s.journal"),
           "tracking": {"mlflow": False}}
    tracker = MlflowTracker(MlflowSettings(URI, "exp"), tmp_path / "state", client=client, probe_interval_s=0.0,
                            retry_delays=())
    run_study(parse_config(raw, base_dir=tmp_path), callbacks=[tracker])
    assert seen_finished == [True, True, True]
    assert set(client.children()) == {0, 1, 2, 3}


def _finished(client: FakeClient, number: int) -> bool:
    return any(r.status == "FINISHED" for n, r in list(client.children().items()) if n == number)


def _wait_for(condition: Any, timeout_s: float = 120.0) -> bool:
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not done.is_set():
            if condition():
                return True
            done.wait(0.01)
        return condition()
    finally:
        deadline.cancel()


def test_the_end_says_what_is_still_being_sent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate(FakeClient())
    sender = _sender(tmp_path, gate)
    sender.start()
    _start_study_run(sender)
    for i in range(10):
        sender.put({"op": "log", "key": "study", "metrics": [["loss", float(i), 0, i]]})

    class OpenOnMessage(logging.Handler):  # the store answers once the user has been told
        def emit(self, record: logging.LogRecord) -> None:
            if "sending" in record.getMessage():
                gate.open.set()

    handler = OpenOnMessage()
    logging.getLogger("tunelab.tracking").addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="tunelab.tracking"):
            sender.close(timeout_s=120.0)
    finally:
        logging.getLogger("tunelab.tracking").removeHandler(handler)
    messages = [r.getMessage() for r in caplog.records]
    assert any("sending 12 tracking record(s) to MLflow" in m for m in messages), messages
    assert [v for _, v in gate.client.parent().history("loss")] == [float(i) for i in range(10)]
    assert not Spool(tmp_path).path.exists()


def test_the_end_waits_a_bounded_time_then_leaves_the_rest_for_sync(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    gate = Gate(FakeClient())  # never opens while the study ends
    sender = _sender(tmp_path, gate)
    sender.start()
    _start_study_run(sender)
    for i in range(5):
        sender.put({"op": "log", "key": "study", "metrics": [["loss", float(i), 0, i]]})
    with caplog.at_level(logging.INFO, logger="tunelab.tracking"):
        sender.close(timeout_s=0.5)
    gate.open.set()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "sending" in messages and "tunelab sync" in messages
    spooled = Spool(tmp_path).records()
    assert [r["op"] for r in spooled][-5:] == ["log"] * 5  # what was not sent waits, in order


def test_reports_queued_behind_a_slow_store_go_out_in_fewer_calls(tmp_path: Path) -> None:
    gate = Gate(FakeClient())
    sender = _sender(tmp_path, gate)
    sender.start()
    _start_study_run(sender)
    for i in range(50):  # many reports of one trial, queued while the store is slow
        sender.put({"op": "log", "key": "study", "metrics": [["loss", float(i), 0, i]]})
    gate.open.set()
    sender.close(timeout_s=120.0)
    assert [v for _, v in gate.client.parent().history("loss")] == [float(i) for i in range(50)]
    assert gate.calls < 20  # not one call per report
