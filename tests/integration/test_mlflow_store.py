"""The local MLflow store after a kill -9 during its creation: whole or absent, and repaired."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mlflow")

from tunelab.tracking.mlflow import make_client  # noqa: E402

#: Creates a store and kills itself (SIGKILL, no cleanup) at its ``at``-th SQL statement.
#: A new store takes some 1,700 statements; ``how`` is ``mlflow`` (MLflow creating it in place,
#: as tunelab did before) or ``tunelab`` (``make_client``).
_CREATOR = textwrap.dedent("""
    import os, signal, sys
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    uri, at, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    count = 0

    @event.listens_for(Engine, "before_cursor_execute")
    def kill_at(*args):
        global count
        count += 1
        if count == at:
            os.kill(os.getpid(), signal.SIGKILL)

    if how == "mlflow":
        import mlflow
        mlflow.MlflowClient(tracking_uri=uri)
    else:
        from tunelab.tracking.mlflow import make_client
        make_client(uri)
    print("created all", count)
""")


def killed_while_creating(db: Path, at: int, how: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _CREATOR, f"sqlite:///{db}", str(at), how], cwd=db.parent,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stdout + proc.stderr[-2000:]  # killed before it was done


def works(uri: str) -> None:
    """A store that takes an experiment and a run, and finds them again."""
    client = make_client(uri)
    experiment = client.create_experiment("exp")
    run = client.create_run(experiment, run_name="r")
    client.log_metric(run.info.run_id, "loss", 0.5)
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run.info.run_id]


@pytest.mark.parametrize("at", [40, 900])
def test_a_store_half_created_by_a_killed_process_is_set_aside_and_created_anew(tmp_path: Path, at: int) -> None:
    db = tmp_path / "mlflow.db"
    killed_while_creating(db, at, "mlflow")
    assert db.exists()  # half made: MLflow creates it in place
    works(f"sqlite:///{db}")
    aside = [p for p in tmp_path.glob("mlflow.db.broken-*") if not p.name.endswith(("-journal", "-wal", "-shm"))]
    assert len(aside) == 1  # kept, with SQLite's journal of it when there was one


@pytest.mark.parametrize("at", [40, 1000])
def test_a_kill_while_tunelab_creates_the_store_leaves_no_half_store(tmp_path: Path, at: int) -> None:
    db = tmp_path / "mlflow.db"
    killed_while_creating(db, at, "tunelab")
    assert not db.exists()
    works(f"sqlite:///{db}")
    assert not list(tmp_path.glob("*.broken-*")) and not list(tmp_path.glob(".mlflow.db.creating-*"))


def test_a_store_that_holds_runs_is_never_set_aside(tmp_path: Path) -> None:
    import sqlite3

    from tunelab.tracking.local_store import prepare_local_store

    db = tmp_path / "mlflow.db"
    works(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:  # as an older MLflow's store: MLflow migrates it, tunelab keeps it
        conn.execute("UPDATE alembic_version SET version_num = 'an-older-one'")
    prepare_local_store(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    assert not list(tmp_path.glob("*.broken-*"))


def _spooled_study(tmp_path: Path, uri: str) -> Any:
    """A study whose MLflow records all waited in the spool (the store could not be opened)."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "unit" / "tracking"))
    try:
        from fake_mlflow import FakeClient
    finally:
        sys.path.pop(0)
    from tunelab.api import run_study
    from tunelab.config import parse_config
    from tunelab.tracking.mlflow import MlflowTracker
    from tunelab.tracking.settings import MlflowSettings

    raw = {"name": "tracked", "objective": _objective, "metrics": [{"name": "loss", "goal": "minimize"}],
           "space": {"x": {"float": [0, 1]}}, "search": {"sampler": "random", "seed": 0}, "budget": {"trials": 3},
           "execution": {"backend": "inprocess", "workers": 1}, "storage": str(tmp_path / "s.journal"),
           "tracking": {"mlflow": False}}
    client = FakeClient()
    client.down = True
    tracker = MlflowTracker(MlflowSettings(uri, "exp"), tmp_path / "state", client=client, probe_interval_s=60.0,
                            retry_delays=())
    return run_study(parse_config(raw, base_dir=tmp_path), callbacks=[tracker])


def _objective(config: dict, reporter: Any) -> dict:
    return {"loss": config["x"]}


def test_sync_sends_to_a_store_a_kill_left_half_created(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    killed_while_creating(db, 700, "mlflow")
    _spooled_study(tmp_path, f"sqlite:///{db}")
    assert (tmp_path / "state" / "spool.jsonl").exists()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    sync = subprocess.run([sys.executable, "-m", "tunelab.cli.main", "sync", "--storage", str(tmp_path / "s.journal"),
                           "--study", "tracked"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert "sent" in sync.stdout and not (tmp_path / "state" / "spool.jsonl").exists()
    client = make_client(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("exp")
    assert len(client.search_runs([experiment.experiment_id])) == 4  # the study's run and its 3 trials
