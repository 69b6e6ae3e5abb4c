"""W&B (offline) and TensorBoard on real in-process studies, read back from the files they wrote."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from tracker_files import tensorboard_runs, wandb_runs
from tunelab.api import run_study
from tunelab.config import parse_config
from tunelab.errors import TrialFailed
from tunelab.tracking.sync import sync_study

pytest.importorskip("wandb")
pytest.importorskip("tensorboard")


@pytest.fixture(autouse=True)
def wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B never goes online here, whatever a study file says, and stays quiet."""
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true",
                       "WANDB_DISABLE_GIT": "true", "WANDB_CONSOLE": "off", "WANDB_API_KEY": ""}.items():
        monkeypatch.setenv(key, value)


def objective(config: dict, reporter: Any) -> dict:
    """Half-epoch reports; trial 1 runs out of memory after one report."""
    accuracy = 0.0
    for i in range(1, 4):
        accuracy = round(0.5 + 0.1 * i + 0.01 * config["layers"], 4)
        reporter.report(i * 0.5, accuracy=accuracy, loss=round(1 - accuracy, 4))
        if reporter.trial_id == 1:
            raise TrialFailed("oom", "CUDA out of memory (simulated)")
    return {"accuracy": accuracy + 0.001}


def study(tmp_path: Path, tracking: dict, trials: int = 4) -> Any:
    raw = {"name": "tracked", "objective": objective, "metrics": [{"name": "accuracy", "goal": "maximize"}],
           "space": {"lr": {"float": [1e-4, 1e-1], "log": True}, "batch_size": {"choice": [16, 32]},
                     "layers": {"int": [1, 4]}, "optim": {"choice": ["adamw", "sgd"]}},
           "search": {"sampler": "random", "seed": 0}, "budget": {"trials": trials},
           "execution": {"backend": "inprocess", "workers": 1}, "storage": str(tmp_path / "s.journal"),
           "tracking": tracking}
    return run_study(parse_config(raw, base_dir=tmp_path))


def test_wandb_a_run_per_trial_grouped_with_config_history_summary_and_state(tmp_path: Path) -> None:
    # mode: online in the file; WANDB_MODE=offline in the environment wins, so nothing leaves the machine
    result = study(tmp_path, {"wandb": {"project": "proj", "group": "grp", "mode": "online", "dir": "wb"}})
    # On a busy machine W&B may not take every record within the study's 30 s at its end: the rest
    # waits in the spool for `tunelab sync`, which is part of the contract (nothing is lost).
    sync_study(result, tracker="wandb")
    runs = wandb_runs(tmp_path / "wb")
    trials = {t.number: t for t in result.trials()}
    by_trial = {int(r["name"].split("_")[1]): r for r in runs.values()}
    assert set(by_trial) == set(trials) and len(runs) == len(trials)  # one run per trial
    for number, run in by_trial.items():
        t = trials[number]
        assert (run["project"], run["group"]) == ("proj", "grp")
        assert {k: run["config"][k] for k in t.config} == dict(t.config)  # values, typed as they are
        assert isinstance(run["config"]["layers"], int) and run["config"]["optim"] in ("adamw", "sgd")
        logged = [(h["_step"], h["accuracy"], h["step"]) for h in run["history"] if "loss" in h]
        assert logged == [(i, r.metrics["accuracy"], r.step) for i, r in enumerate(t.history)]
        assert run["summary"]["state"] == t.state.value
        assert run["summary"]["duration_s"] == pytest.approx(t.duration)
    ok, failed = by_trial[0], by_trial[1]
    assert ok["summary"]["accuracy"] == trials[0].metrics["accuracy"]  # the best evaluation, not the last report
    assert ok["exit_codes"] == [0] and "failure_kind" not in ok["summary"]
    assert failed["summary"]["failure_kind"] == "oom" and failed["exit_codes"] == [1]
    assert failed["summary"]["accuracy"] == trials[1].history[0].metrics["accuracy"]  # its only evaluation


def test_tensorboard_scalars_per_trial_and_hparams_sessions(tmp_path: Path) -> None:
    result = study(tmp_path, {"tensorboard": {"dir": "tb"}})
    runs = tensorboard_runs(tmp_path / "tb" / "tracked")
    trials = {t.number: t for t in result.trials()}
    assert set(runs) == {f"trial_{n:04d}" for n in trials}
    from tensorboard.plugins.hparams import api_pb2

    for number, t in trials.items():
        run = runs[f"trial_{number:04d}"]
        assert run["scalars"]["loss"] == [(i, pytest.approx(r.metrics["loss"])) for i, r in enumerate(t.history)]
        assert run["scalars"]["step"] == [(i, r.step) for i, r in enumerate(t.history)]
        (hparams,) = run["hparams"]  # one HParams session per trial
        assert hparams["state"] == t.state.value
        assert hparams["optim"] == t.config["optim"] and hparams["layers"] == t.config["layers"]
        assert math.isclose(hparams["lr"], t.config["lr"])
        expected = api_pb2.STATUS_FAILURE if t.state.value == "failed" else api_pb2.STATUS_SUCCESS
        assert run["status"] == [expected]
    ok = runs["trial_0000"]["scalars"]["accuracy"]
    assert ok[-1] == (3, pytest.approx(trials[0].metrics["accuracy"]))  # the result, last: the HParams tab's value
    assert runs["trial_0001"]["hparams"][0]["failure_kind"] == "oom"


def test_three_trackers_at_once_and_sync_for_each(tmp_path: Path) -> None:

    result = study(tmp_path, {"mlflow": {"uri": "sqlite:///mlflow.db"}, "wandb": {"mode": "offline", "dir": "wb"},
                              "tensorboard": {"dir": "tb"}}, trials=2)
    attrs = result.optuna_study.user_attrs
    assert {k for k in attrs if k.startswith("tunelab.")} >= {"tunelab.mlflow", "tunelab.wandb", "tunelab.tensorboard"}
    assert len(wandb_runs(tmp_path / "wb")) == 2 and len(tensorboard_runs(tmp_path / "tb")) == 2
    from tunelab.tracking.sync import tracked_with

    assert tracked_with(result) == ["mlflow", "wandb", "tensorboard"]
    assert [sync_study(result, tracker=t).sent for t in tracked_with(result)] == [0, 0, 0]  # nothing was queued
    assert json.loads(json.dumps(attrs["tunelab.wandb"]))["settings"]["mode"] == "offline"


def test_a_resume_sends_what_a_crash_lost_in_memory_once(tmp_path: Path) -> None:
    """Records still queued in memory die with a kill -9; the next run sends them from storage,
    and only the reports the tracker does not hold (no point twice, no second run)."""
    from fake_mlflow import FakeClient
    from tunelab.tracking.mlflow import MlflowTracker
    from tunelab.tracking.settings import MlflowSettings

    class Lossy(MlflowTracker):
        def submit(self, record: dict) -> None:
            lost = record.get("key") == "trial:2" and (
                record["op"] == "end" or (record["op"] == "log" and record["metrics"][0][3] >= 1))
            if not lost:  # trial 2's run exists with its first report; the rest was in memory
                super().submit(record)

    def config(trials: int) -> Any:
        raw = {"name": "lossy", "objective": objective, "metrics": [{"name": "accuracy", "goal": "maximize"}],
               "space": {"layers": {"int": [1, 4]}}, "search": {"sampler": "random", "seed": 0},
               "budget": {"trials": trials}, "execution": {"backend": "inprocess", "workers": 1},
               "storage": str(tmp_path / "s.journal"), "tracking": {"mlflow": False}}
        return parse_config(raw, base_dir=tmp_path)

    client = FakeClient()
    kw = {"client": client, "probe_interval_s": 0.0, "retry_delays": ()}
    run_study(config(3), callbacks=[Lossy(MlflowSettings("http://127.0.0.1:9/", "exp"), tmp_path / "st", **kw)])
    assert client.children()[2].status == "RUNNING" and len(client.children()[2].history("loss")) == 1
    result = run_study(config(4), callbacks=[MlflowTracker(MlflowSettings("http://127.0.0.1:9/", "exp"),
                                                           tmp_path / "st", **kw)])
    trials = {t.number: t for t in result.trials()}
    assert len(client.runs) == 1 + len(trials)  # the parent and one run per trial, none twice
    run = client.children()[2]
    assert (run.status, run.tags["state"]) == ("FINISHED", "complete")
    assert run.history("loss") == [(i, r.metrics["loss"]) for i, r in enumerate(trials[2].history)]
    assert run.history("accuracy")[-1] == (3, trials[2].metrics["accuracy"])


def test_tensorboard_unwritable_for_the_whole_study_then_tunelab_sync(tmp_path: Path, monkeypatch, capsys) -> None:
    from tunelab.cli.main import main as tunelab_main
    from tunelab.tracking.tensorboard import TensorboardTracker

    def unwritable(self: Any) -> Any:
        raise OSError("No space left on device")

    with monkeypatch.context() as m:
        m.setattr(TensorboardTracker, "make_writer", unwritable)
        study(tmp_path, {"tensorboard": {"dir": "tb"}}, trials=3)
    spool = tmp_path / "tunelab_runs" / "tracked" / ".tensorboard" / "spool.jsonl"
    assert spool.exists() and not (tmp_path / "tb").exists()  # the study went on; its records wait on disk
    assert tunelab_main(["sync", "--storage", str(tmp_path / "s.journal"), "--study", "tracked"]) == 0
    assert "sent" in capsys.readouterr().out and not spool.exists()
    runs = tensorboard_runs(tmp_path / "tb" / "tracked")
    assert set(runs) == {"trial_0000", "trial_0001", "trial_0002"}
    assert all(len(r["hparams"]) == 1 for r in runs.values())
    assert tunelab_main(["sync", "--storage", str(tmp_path / "s.journal"), "--study", "tracked"]) == 0  # idempotent
    assert all(len(r["hparams"]) == 1 for r in tensorboard_runs(tmp_path / "tb" / "tracked").values())


def test_trials_run_before_tracking_was_on_are_not_sent(tmp_path: Path) -> None:
    """Catching up is for this tracker's own lost records, not for a study's untracked past."""
    from fake_mlflow import FakeClient
    from tunelab.tracking.mlflow import MlflowTracker
    from tunelab.tracking.settings import MlflowSettings

    study(tmp_path, {}, trials=2)
    client = FakeClient()
    tracker = MlflowTracker(MlflowSettings("http://127.0.0.1:9/", "exp"), tmp_path / "st", client=client,
                            probe_interval_s=0.0, retry_delays=())
    raw = {"name": "tracked", "objective": objective, "metrics": [{"name": "accuracy", "goal": "maximize"}],
           "space": {"lr": {"float": [1e-4, 1e-1], "log": True}, "batch_size": {"choice": [16, 32]},
                     "layers": {"int": [1, 4]}, "optim": {"choice": ["adamw", "sgd"]}},
           "search": {"sampler": "random", "seed": 0}, "budget": {"trials": 3},
           "execution": {"backend": "inprocess", "workers": 1}, "storage": str(tmp_path / "s.journal"),
           "tracking": {}}
    run_study(parse_config(raw, base_dir=tmp_path), callbacks=[tracker])
    assert set(client.children()) == {2}


def test_tensorboard_records_sent_again_after_a_crash_are_not_written_twice(tmp_path: Path) -> None:
    """A kill -9 after the event file got a report but before the spool marked it sent: the next
    run replays it. Each (metric, step) and the HParams session stay once in the run."""
    from tunelab.tracking.settings import TensorboardSettings
    from tunelab.tracking.spool import RunMap
    from tunelab.tracking.tensorboard import TensorboardWriter

    settings = TensorboardSettings(str(tmp_path / "tb"))
    trial = {"op": "trial", "key": "trial:2", "number": 2, "name": "trial_0002", "start_ms": 1000, "config": {"x": 1}}
    logs = [{"op": "log", "key": "trial:2", "metrics": [["score", 0.1 * i, 1000 + i, i]]} for i in range(3)]
    end = {"op": "end", "key": "trial:2", "number": 2, "status": "FINISHED", "end_ms": 5000,
           "metrics": [["score", 0.3, 5000, 3]], "tags": {"state": "complete", "failure_kind": ""},
           "config": {"x": 1}, "summary": {}}
    before_the_kill = TensorboardWriter(settings, RunMap(tmp_path / "state"))
    for record in (trial, *logs, end):
        before_the_kill.send(record)
    after = TensorboardWriter(settings, RunMap(tmp_path / "state"))  # the next run, sending the spool again
    for record in (trial, *logs, {**logs[2], "metrics": [["score", 0.25, 1003, 2], ["other", 1.0, 1003, 2]]}, end):
        after.send(record, replay=True)
    after.close()
    (run,) = tensorboard_runs(tmp_path / "tb").values()
    assert [step for step, _ in run["scalars"]["score"]] == [0, 1, 2, 3]
    assert [step for step, _ in run["scalars"]["other"]] == [2]  # what never reached the file is written
    assert len(run["hparams"]) == 1 and len(run["status"]) == 1


def test_wandb_records_replayed_after_a_crash_are_not_logged_twice(tmp_path: Path) -> None:
    """A kill -9 after W&B wrote a trial's run but before tunelab marked it ended: the next run
    replays the trial from storage. Each step stays once in the run's offline files (seen once in
    a fresh-clone `make test`: steps 0, 1, 2, 0, 1, 2 in test_trackers_resume)."""
    from tunelab.tracking.settings import WandbSettings
    from tunelab.tracking.spool import RunMap
    from tunelab.tracking.wandb import WandbWriter
    from tunelab.tracking.wandb_files import steps_held

    settings = WandbSettings(project="proj", group="tracked", mode="offline", dir=str(tmp_path / "wb"))
    trial = {"op": "trial", "key": "trial:2", "number": 2, "start_ms": 1000, "config": {"x": 1}}
    logs = [{"op": "log", "key": "trial:2", "metrics": [["score", 0.1 * i, 1000 + i, i]]} for i in range(3)]
    end = {"op": "end", "key": "trial:2", "number": 2, "status": "FINISHED", "end_ms": 5000,
           "metrics": [["score", 0.3, 5000, 3]], "tags": {"state": "complete", "failure_kind": ""},
           "config": {"x": 1}, "summary": {}}
    state = tmp_path / "state"
    before_the_kill = WandbWriter(settings, RunMap(state))
    for record in (trial, *logs):
        before_the_kill.send(record)
    before_the_kill._live.pop("trial:2").finish()  # written, then killed before `end` was marked
    # The scenario is a run W&B has written: older W&B (0.19) may still be writing after finish().
    run_id = RunMap(state).get("trial:2")
    deadline = time.monotonic() + 60
    while steps_held(tmp_path / "wb", run_id) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert steps_held(tmp_path / "wb", run_id) == 3
    # W&B names a run's directory by the second it started (older W&B: a run started in the same
    # second takes the same directory over); a resume comes later: name it as an earlier second's.
    (first,) = (tmp_path / "wb" / "wandb").glob("offline-run-*")
    first.rename(first.with_name("offline-run-20260101_000000-" + first.name.split("-", 3)[3]))  # -<run id>
    after = WandbWriter(settings, RunMap(state))  # the next run: the trial replayed from storage
    for record in (trial, *logs, end):
        after.send(record, replay=True)
    after.close()
    (run,) = wandb_runs(tmp_path / "wb").values()
    assert [h["_step"] for h in run["history"] if "score" in h] == [0, 1, 2, 3]
    assert run["summary"]["state"] == "complete"
