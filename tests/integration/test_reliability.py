"""The reliability suite (benchmarks/reliability.py) as slow tests, with small numbers.

Each test runs real `tunelab run` processes on a real storage and asserts every zero-goal of
issue 10: nothing lost, no retry lost, nothing left running, nothing duplicated, no orphan
process, no crashed driver, every injected fault of its right kind, the budget exact. The
restart time is measured by the benchmark, never asserted here (timing belongs to benchmarks).
Run them with `make test-slow` or `pytest -m slow tests/integration/test_reliability.py`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import reliability as R  # noqa: E402

pytestmark = pytest.mark.slow


def explain(row: dict[str, Any]) -> str:
    """What went wrong, for the assertion message: the violations, examples and crash output."""
    keep = {k: row.get(k) for k in ("examples", "states", "orphan_detail", "wrong", "budget")}
    crashes = "\n---\n".join(c["tail"] for c in row.get("crashes", [])[:3])
    return f"{R.violations(row)}\n{json.dumps(keep, default=str)[:3000]}\n{crashes}"


@pytest.fixture(scope="module")
def postgres() -> Iterator[R.PostgresServer]:
    why = R.PostgresServer.unavailable()
    if why:
        pytest.skip(why)
    server = R.PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_kill_9_at_random_moments_then_resume(kind: str, tmp_path: Path) -> None:
    row = R.run_kill(kind, tmp_path, kills=8, budget=42, seed=0)
    assert row["kills"] >= 1  # the schedule killed running drivers (not only finished ones)
    assert R.violations(row) == [], explain(row)
    assert row["trials"] >= 42


def test_injected_faults_get_their_kind_and_leave_no_process(tmp_path: Path) -> None:
    row = R.run_faults("journal", tmp_path, trials=24, timeout=3.0, seed=0)
    assert set(row["injected"]) - {"ok"}, "seed 0 injects faults into 24 trials"
    assert R.violations(row) == [], explain(row)


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgres"])
def test_eight_workers_lose_and_duplicate_nothing(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres").new_database("contention") if kind == "postgres" else None
    row = R.run_contention(kind, tmp_path, trials=80, workers=8, seed=0, store_url=url)
    assert R.violations(row) == [], explain(row)
    assert row["states"] == {"complete": 80}


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgres"])
def test_three_drivers_on_a_new_storage_share_one_budget(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    new_url = request.getfixturevalue("postgres").new_database if kind == "postgres" else None
    row = R.run_drivers(kind, tmp_path, runs=3, budget=16, new_url=new_url)
    assert R.violations(row) == [], explain(row)
