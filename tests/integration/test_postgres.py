"""PostgreSQL storage: a real server (Debian's `postgresql`, initdb into a temp dir, a free port
on 127.0.0.1) shared by two drivers, as drivers on two machines would share it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from cluster_fixtures import Postgres, free_ports, postgres_bin
from tunelab.errors import ConfigError
from tunelab.storage import rdb_engine_options

HERE = Path(__file__).parent

STUDY = """
name: shared
storage: {url}
objective: {{type: function, function: "tl_test_objectives:curve"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: [0.0, 1.0]}}
  epochs: {{fixed: 1}}
search: {{sampler: random, seed: 0}}
budget: {{trials: 40}}
execution: {{backend: local, workers: 2}}
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is None:
        pytest.skip("no PostgreSQL driver: pip install 'tunelab[postgres]' (psycopg 3; psycopg2 works too)")
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server not installed: apt-get install postgresql (scripts/system-deps.sh does it)")
    server = Postgres.start()
    try:
        yield server
    finally:
        server.stop()


def test_two_drivers_share_one_study_and_its_budget(postgres: Postgres, tmp_path: Path) -> None:
    import optuna

    from tunelab.study import load_study

    drivers = []
    for name in ("host-a", "host-b"):  # two working directories, as on two machines
        cwd = tmp_path / name
        cwd.mkdir()
        shutil.copy(HERE / "tl_test_objectives.py", cwd / "tl_test_objectives.py")
        (cwd / "study.yaml").write_text(STUDY.format(url=postgres.url))
        drivers.append(subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml", "--no-mlflow"],
                                        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in drivers:
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out

    study = load_study(postgres.url, "shared")
    trials = study.trials()
    assert len(trials) == 40
    assert all(t.state.value == "complete" for t in trials), [(t.number, t.state, t.message) for t in trials]
    assert len({t.number for t in trials}) == 40
    raw = study.optuna_study.get_trials(deepcopy=False)
    assert not [t for t in raw if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    cancelled = [t for t in raw if (t.user_attrs.get("failure") or {}).get("kind") == "cancelled"]
    assert len(raw) == 40 + len(cancelled)
    assert all(not t.params and not t.intermediate_values for t in cancelled)  # yielded before running
    ran_by = {t.user_attrs["run"]["driver"] for t in raw if t not in cancelled}
    assert len(ran_by) == 2  # both drivers ran trials of the one study


def test_storage_url_options() -> None:
    url, kwargs = rdb_engine_options("postgresql://u:secret@db.example:5432/tl?sslmode=require&pool_size=2"
                                     "&max_overflow=0&pool_recycle=1800&pool_pre_ping=false&connect_timeout=5")
    assert url.startswith(("postgresql+psycopg://", "postgresql+psycopg2://"))
    assert "u:secret@db.example:5432/tl" in url
    assert "sslmode=require" in url and "connect_timeout=5" in url and "pool_size" not in url
    assert kwargs == {"pool_pre_ping": False, "pool_size": 2, "max_overflow": 0, "pool_recycle": 1800}
    explicit, _ = rdb_engine_options("postgresql+psycopg2://u@h/db")
    assert explicit == "postgresql+psycopg2://u@h/db"
    with pytest.raises(ConfigError, match="pool_size=many"):
        rdb_engine_options("postgresql://u@h/db?pool_size=many")


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is None:
        pytest.skip("no PostgreSQL driver: pip install 'tunelab[postgres]' (psycopg 3; psycopg2 works too)")
    from tunelab.storage import open_storage

    port = free_ports(1)[0]  # nothing listens there
    with pytest.raises(ConfigError, match=f"cannot connect to postgresql.*{port}") as info:
        open_storage(f"postgresql://tunelab:pw@127.0.0.1:{port}/nope?connect_timeout=3")
    assert ":pw@" not in str(info.value)  # the password is never printed
