"""The executor conformance suite: what every backend (local, Ray, Spark, ...) must do.

``check_executor_conformance(make, tmp_path)`` drives a real executor through its protocol
with the objective of this module (importable wherever tunelab is, so it travels by name) and
checks, with real trial processes:

- a report reaches the driver as it happens and the reply reaches the trial: a trial told to
  stop at step 2 ends ``pruned`` and never runs step 3; one never stopped completes with its
  metrics and every report in order;
- failures keep their kinds: an exception is ``crash`` with its message, a NaN metric ``nan``,
  ``MemoryError`` ``oom``;
- a time limit is enforced (``timeout``), ``stop`` ends a trial as ``interrupted`` and the
  processes it started are gone;
- the trial directory holds ``config.json`` and ``trial.log`` (with what the trial printed);
- ``shutdown`` leaves no process of a running trial behind.

In a test::

    def test_conformance(tmp_path):
        check_executor_conformance(lambda objective, workers: LocalExecutor(objective, workers), tmp_path)
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from tunelab.executors._running import LOG_NAME
from tunelab.executors.base import Executor, TrialSpec
from tunelab.trial import Ended, Result, State

MakeExecutor = Callable[[Any, int], Executor]  # (objective, workers) -> a fresh executor
PRINTED = "conformance: the trial's stdout"
WAIT_S = 180.0  # generous: a busy machine, a cluster that starts workers on demand


def conformance_objective(config: Mapping[str, Any], reporter: Any) -> dict[str, float]:
    """What each check asks of a trial, by ``config["mode"]``."""
    mode = config["mode"]
    trial_dir = Path(reporter.trial_dir)
    print(PRINTED, flush=True)
    if mode == "steps":
        for step in range(1, int(config["steps"]) + 1):
            (trial_dir / "last_step").write_text(str(step))
            reporter.report(step, score=float(step))
        return {"score": float(config["steps"])}
    if mode == "raise":
        raise ValueError("conformance boom")
    if mode == "nan":
        return {"score": math.nan}
    if mode == "oom":
        raise MemoryError("conformance out of memory")
    if mode == "hang":  # a grandchild too: stopping the trial must end everything it started
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (trial_dir / "pids.tmp").write_text(f"{os.getpid()} {child.pid}")
        os.replace(trial_dir / "pids.tmp", trial_dir / "pids")
        time.sleep(600)
        return {"score": 0.0}
    raise AssertionError(f"unknown mode {mode!r}")


def drive(executor: Executor, specs: Iterable[TrialSpec], *, stop_at: float | None = None,
          during: Callable[[], None] | None = None, wait_s: float = WAIT_S) -> tuple[dict[int, Ended], list[Result]]:
    """Launch ``specs`` as capacity allows, answer every result (stop from step ``stop_at`` on),
    call ``during()`` at each turn; return the trials' ends and the results, in arrival order."""
    queue = list(specs)
    expected = {s.trial_id for s in queue}
    ended: dict[int, Ended] = {}
    results: list[Result] = []
    deadline = time.monotonic() + wait_s
    while set(ended) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"trials {sorted(expected - set(ended))} did not end within {wait_s:g} s")
        while queue and executor.capacity() > 0:
            executor.launch(queue.pop(0))
        if during is not None:
            during()
        for event in executor.poll(0.2):
            if isinstance(event, Result):
                results.append(event)
                executor.reply(event.trial_id, stop_at is not None and event.step >= stop_at)
            else:
                assert event.trial_id not in ended, f"trial {event.trial_id} ended twice"
                ended[event.trial_id] = event
    return ended, results


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: Iterable[int], wait_s: float = 60.0) -> list[int]:
    """The pids still alive after ``wait_s`` (a killed tree may take a moment to be reaped)."""
    deadline = time.monotonic() + wait_s
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


def _pids(trial_dir: Path) -> list[int] | None:
    path = trial_dir / "pids"
    return [int(p) for p in path.read_text().split()] if path.is_file() else None


def check_reports_and_pruning(executor: Executor, root: Path) -> None:
    spec = TrialSpec(0, {"mode": "steps", "steps": 5}, root / "prune")
    ended, results = drive(executor, [spec], stop_at=2)
    assert ended[0].state is State.PRUNED, ended[0]
    assert [r.step for r in results] == [1.0, 2.0], results
    assert results[0].metrics == {"score": 1.0}
    assert (spec.trial_dir / "last_step").read_text() == "2", "the stop decision did not reach the trial"

    spec = TrialSpec(1, {"mode": "steps", "steps": 3}, root / "complete")
    ended, results = drive(executor, [spec])
    assert ended[1].state is State.COMPLETE and ended[1].metrics.get("score") == 3.0, ended[1]
    assert [r.step for r in results] == [1.0, 2.0, 3.0]


def check_failure_kinds(executor: Executor, root: Path, *, oom: bool = True) -> None:
    modes = ["raise", "nan"] + (["oom"] if oom else [])
    specs = [TrialSpec(10 + i, {"mode": m}, root / m) for i, m in enumerate(modes)]
    ended, _ = drive(executor, specs)
    kinds = {s.config["mode"]: (ended[s.trial_id].state, ended[s.trial_id].kind) for s in specs}
    assert kinds["raise"] == (State.FAILED, "crash"), ended
    assert "ValueError: conformance boom" in ended[10].message, ended[10].message
    assert kinds["nan"] == (State.FAILED, "nan"), ended
    if oom:
        assert kinds["oom"] == (State.FAILED, "oom"), ended


def check_trial_directory(root: Path) -> None:
    """After ``check_reports_and_pruning``: what a trial's directory must hold."""
    trial_dir = root / "complete"
    assert json.loads((trial_dir / "config.json").read_text()) == {"mode": "steps", "steps": 3}
    assert PRINTED in (trial_dir / LOG_NAME).read_text(errors="replace")


def check_timeout(executor: Executor, root: Path) -> None:
    spec = TrialSpec(20, {"mode": "hang"}, root / "timeout", timeout=2.0)
    ended, _ = drive(executor, [spec])
    assert (ended[20].state, ended[20].kind) == (State.FAILED, "timeout"), ended[20]
    assert "time limit" in ended[20].message
    assert wait_gone(_pids(spec.trial_dir) or []) == [], "a timed-out trial left processes running"


def check_stop(executor: Executor, root: Path) -> None:
    spec = TrialSpec(30, {"mode": "hang"}, root / "stop")
    asked: list[bool] = []

    def stop_once_started() -> None:
        if not asked and _pids(spec.trial_dir):
            executor.stop(30)
            asked.append(True)

    ended, _ = drive(executor, [spec], during=stop_once_started)
    assert asked, "the trial ended before it could be stopped"
    assert (ended[30].state, ended[30].kind) == (State.FAILED, "interrupted"), ended[30]
    assert wait_gone(_pids(spec.trial_dir) or []) == [], "a stopped trial left processes running"


def check_shutdown(executor: Executor, root: Path, workers: int) -> None:
    """Ends ``executor``: a running trial's processes are gone after ``shutdown``."""
    spec = TrialSpec(40, {"mode": "hang"}, root / "shutdown")
    executor.launch(spec)
    deadline = time.monotonic() + WAIT_S
    while _pids(spec.trial_dir) is None:
        assert time.monotonic() < deadline, "the trial did not start"
        for event in executor.poll(0.2):
            assert not isinstance(event, Ended), event
    pids = _pids(spec.trial_dir) or []
    executor.shutdown()
    assert wait_gone(pids) == [], "shutdown left processes of a running trial behind"


def check_executor_conformance(make: MakeExecutor, tmp_path: Path, *, workers: int = 2, oom: bool = True) -> None:
    """Every check, on one executor made by ``make(conformance_objective, workers)``."""
    executor = make(conformance_objective, workers)
    root = Path(tmp_path)
    try:
        check_reports_and_pruning(executor, root)
        check_trial_directory(root)
        check_failure_kinds(executor, root, oom=oom)
        check_timeout(executor, root)
        check_stop(executor, root)
        assert executor.capacity() == workers, "ended trials still hold their slots"
    except BaseException:
        executor.shutdown()
        raise
    check_shutdown(executor, root, workers)


__all__ = ["check_executor_conformance", "conformance_objective", "drive", "MakeExecutor"]
