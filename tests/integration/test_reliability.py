"""The reliability suite (benchmarks/reliability.py) as slow tests, with small numbers, and fast
tests of its checker (that it does catch what it counts).

Each slow test runs real `tunelab run` processes on a real storage and asserts every zero-goal of
issue 10: nothing lost, no retry lost, nothing left running, nothing duplicated, no orphan
process, no crashed driver, every injected fault of its right kind, the budget exact. The
restart time is measured by the benchmark, never asserted here (timing belongs to benchmarks).
Run them with `make test-slow` or `pytest -m slow tests/integration/test_reliability.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import reliability as R  # noqa: E402


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


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_kill_9_at_random_moments_then_resume(kind: str, tmp_path: Path) -> None:
    row = R.run_kill(kind, tmp_path, kills=8, budget=42, seed=0)
    assert row["kills"] >= 1  # the schedule killed running drivers (not only finished ones)
    assert R.violations(row) == [], explain(row)
    assert row["trials"] >= 42


@pytest.mark.slow
def test_injected_faults_get_their_kind_and_leave_no_process(tmp_path: Path) -> None:
    row = R.run_faults("journal", tmp_path, trials=24, timeout=3.0, seed=0)
    assert set(row["injected"]) - {"ok"}, "seed 0 injects faults into 24 trials"
    assert R.violations(row) == [], explain(row)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgres"])
def test_eight_workers_lose_and_duplicate_nothing(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres").new_database("contention") if kind == "postgres" else None
    row = R.run_contention(kind, tmp_path, trials=80, workers=8, seed=0, store_url=url)
    assert R.violations(row) == [], explain(row)
    assert row["states"] == {"complete": 80}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgres"])
def test_three_drivers_on_a_new_storage_share_one_budget(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    new_url = request.getfixturevalue("postgres").new_database if kind == "postgres" else None
    row = R.run_drivers(kind, tmp_path, runs=3, budget=16, new_url=new_url)
    assert R.violations(row) == [], explain(row)


# ---- the checker itself (fast) -----------------------------------------------------------------


def trial(number: int, state: str, x: float, kind: str | None = None, retry_of: int | None = None) -> dict[str, Any]:
    return {"number": number, "state": state, "kind": kind, "params": {"x": x},
            "values": [x] if state == "complete" else None, "retry_of": retry_of}


def runs(*numbers: int) -> dict[str, Any]:
    starts: dict[int, int] = {}
    for n in numbers:
        starts[n] = starts.get(n, 0) + 1
    return {"starts": starts, "done": {}, "faults": {}}


def test_judge_counts_every_violation() -> None:
    final = [
        trial(0, "failed", 0.1, "crash"),  # was complete: lost
        trial(1, "failed", 0.2, "interrupted"),  # never retried: a lost retry
        trial(2, "running", 0.3),  # left running
        trial(3, "complete", 0.4), trial(4, "complete", 0.4),  # one config complete twice
        trial(5, "complete", 0.5),  # its objective ran twice
    ]
    seen = {0: trial(0, "complete", 0.1)}
    verdict = R.judge(final, executions=runs(0, 1, 2, 3, 4, 5, 5), budget=5, snapshots=seen, check_done=False)
    assert (verdict["lost"], verdict["lost_retries"], verdict["left_running"]) == (1, 1, 1)
    assert verdict["examples"]["duplicated"] == [4, 5]
    assert verdict["budget"] == {"expected": 5, "counted": 5, "ok": True}  # 0, 2, 3, 4, 5 count
    assert R.judge(final, executions=runs(), budget=4)["budget"]["ok"] is False


def test_judge_allows_exactly_one_retry_of_an_interrupted_trial() -> None:
    final = [trial(0, "failed", 0.1, "interrupted"), trial(1, "complete", 0.1, retry_of=0)]
    ok = R.judge(final, executions=runs(0, 1), budget=1, snapshots={}, check_done=False)
    assert (ok["lost_retries"], ok["duplicated"], ok["budget"]["ok"]) == (0, 0, True)
    # A retry claimed but never run, then another: one execution of the retry, still fine.
    final = [trial(0, "failed", 0.1, "interrupted"), trial(1, "failed", 0.1, "cancelled", retry_of=0),
             trial(2, "complete", 0.1, retry_of=0)]
    assert R.judge(final, executions=runs(0, 2), budget=1, check_done=False)["duplicated"] == 0
    # A config run a third time is a duplicate.
    assert R.judge(final, executions=runs(0, 1, 2), budget=1, check_done=False)["duplicated"] == 1


def test_judge_without_kills_wants_every_returned_execution_complete() -> None:
    final = [trial(0, "complete", 0.25), trial(1, "failed", 0.5, "crash")]
    executions = {"starts": {0: 1, 1: 1}, "done": {0: repr(0.25), 1: repr(0.5)}, "faults": {}}
    assert R.judge(final, executions=executions, budget=2)["examples"]["lost"] == [1]


def test_faults_are_seeded_and_near_their_rate() -> None:
    drawn = [R.fault_of(0, R.FAULT_RATE, n)[0] for n in range(4000)]
    assert drawn == [R.fault_of(0, R.FAULT_RATE, n)[0] for n in range(4000)]
    assert abs(sum(k != "ok" for k in drawn) / len(drawn) - R.FAULT_RATE) < 0.03
    assert set(drawn) == {"ok", "crash", "nan", "hang", "oom"}
    assert drawn != [R.fault_of(1, R.FAULT_RATE, n)[0] for n in range(4000)]


def test_orphans_are_counted_by_pid_and_start_time_then_ended(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        ticks = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        lines = [f"0 grandchild {sleeper.pid} {ticks}",
                 f"1 daemon {sleeper.pid} {int(ticks) + 1}",  # the same pid with another start: reused, not ours
                 f"2 trial {os.getpid() + 10**7} 1"]  # gone
        (tmp_path / "pids.log").write_text("\n".join(lines) + "\n")
        result = R.count_orphans([tmp_path], grace=0.2)
        assert (result["orphans"], result["by_role"]) == (1, {"grandchild": 1})
        assert sleeper.wait(timeout=10) == -9  # the orphan was ended
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
