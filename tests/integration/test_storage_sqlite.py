"""Several drivers starting at once on a SQLite file that does not exist yet."""

from __future__ import annotations

import multiprocessing
import traceback
from pathlib import Path
from typing import Any

import optuna

from tunelab.storage import open_storage, resolve_storage_url

DRIVERS = 3
ROUNDS = 4


def _start_driver(url: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=120)
        storage = open_storage(url)  # creates the tables when nobody has yet
        study = optuna.create_study(storage=storage, study_name="shared", load_if_exists=True)
        study.enqueue_trial({"x": 1.0})
        results.put("ok")
    except BaseException:  # noqa: BLE001 - the parent reports what went wrong
        results.put(traceback.format_exc())


def test_drivers_starting_together_on_a_new_sqlite_file_all_start(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")  # optuna and SQLAlchemy already imported: starts fast
    failures = []
    for round_ in range(ROUNDS):
        url = resolve_storage_url(f"sqlite:///{tmp_path}/round{round_}.db")
        barrier, results = ctx.Barrier(DRIVERS), ctx.Queue()
        procs = [ctx.Process(target=_start_driver, args=(url, barrier, results)) for _ in range(DRIVERS)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=180) for _ in procs]
        for p in procs:
            p.join(60)
        failures += [o for o in outcomes if o != "ok"]
        if not failures:
            study = optuna.load_study(study_name="shared", storage=open_storage(url))
            assert len(study.trials) == DRIVERS
    assert failures == [], failures[0]
