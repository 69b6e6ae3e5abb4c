"""Nothing lost: kill -9 of the driver, then run again; Ctrl-C / SIGTERM leave no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tunelab_cli
from tunelab.study import load_study

STUDY = """
name: slow
objective: {{type: function, function: "tl_test_objectives:{fn}"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: [0.0, 1.0]}}
  seconds: {{fixed: {seconds}}}
search: {{sampler: tpe, seed: 0}}
budget: {{trials: {trials}}}
execution: {{workers: 2}}
tracking: {{mlflow: false}}
"""


# The driver as a terminal starts it: Ctrl-C delivered. When `make test` itself runs in the
# background of a non-interactive shell (`make test &`), POSIX has it ignore SIGINT and SIGQUIT
# (seen in /proc: SigIgn ...1006), every child inherits that, and a plain Popen driver never heard
# the test's Ctrl-C; tunelab rightly keeps a SIGINT its parent chose to ignore.
DRIVER = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "sys.argv = ['tunelab', 'run', 'study.yaml']; runpy.run_module('tunelab.cli.main', run_name='__main__')")


def start_driver(cwd: Path) -> subprocess.Popen:
    # PYTHONFAULTHANDLER: a driver that hangs is sent SIGABRT and prints where each thread was.
    return subprocess.Popen([sys.executable, "-c", DRIVER], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll a condition on real state (files, storage); fail with a message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def states(cwd: Path) -> list[str]:
    path = cwd / "tunelab.journal"
    if not path.exists():
        return []
    try:
        return [t.state.value for t in load_study(str(path), "slow").trials()]
    except Exception:  # the study is being created
        return []


def trial_pids(cwd: Path) -> list[int]:
    pids = []
    for f in (cwd / "tunelab_runs").rglob("pid"):
        pids += [int(p) for p in f.read_text().split()]
    return pids


def signal_masks(pid: int) -> str:
    """The kernel's view of a process's signals: blocked, ignored, caught (hex masks)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return ", ".join(line.strip() for line in f if line.startswith(("SigBlk", "SigIgn", "SigCgt")))
    except OSError:
        return "no /proc entry"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_then_resume(study_dir: Path) -> None:
    (study_dir / "study.yaml").write_text(STUDY.format(fn="slow", seconds=0.4, trials=10))
    driver = start_driver(study_dir)
    wait_for(lambda: states(study_dir).count("complete") >= 3 and "running" in states(study_dir),
             what="3 complete trials and one running")
    before = {t.number: t for t in load_study(str(study_dir / "tunelab.journal"), "slow").trials()}
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    # The trial processes die with the driver (parent-death signal), even on SIGKILL.
    wait_for(lambda: not any(alive(p) for p in trial_pids(study_dir)), timeout=10, what="trial processes to exit")

    run = tunelab_cli("run", "study.yaml", cwd=study_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    after = load_study(str(study_dir / "tunelab.journal"), "slow").trials()
    assert not [t for t in after if t.state.value in ("running", "waiting")]
    interrupted = [t for t in after if t.failure_kind == "interrupted"]
    assert interrupted, "the trials running at the kill are marked interrupted"
    counted = [t for t in after if t.failure_kind != "interrupted"]
    assert len(counted) == 10  # the requested count is reached
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers))
    for number, old in before.items():  # completed trials are kept as they were
        if old.state.value == "complete":
            new = next(t for t in after if t.number == number)
            assert (new.state, new.metrics, new.config) == (old.state, old.metrics, old.config)
    for t in interrupted:  # re-queued once, with the same config
        retries = [r for r in after if r.retry_of == t.number]
        assert len(retries) == 1 and retries[0].config["quality"] == t.config["quality"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_every_child(study_dir: Path, sig: int) -> None:
    (study_dir / "study.yaml").write_text(STUDY.format(fn="spawns_child", seconds=0, trials=4))
    driver = start_driver(study_dir)
    wait_for(lambda: len(trial_pids(study_dir)) >= 4, what="two trials with their grandchildren")
    pids = trial_pids(study_dir)
    assert all(alive(p) for p in pids)
    os.kill(driver.pid, sig)
    try:
        out, _ = driver.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # say where the driver hung; leave nothing running behind
        masks = signal_masks(driver.pid)
        os.kill(driver.pid, signal.SIGABRT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the driver did not stop within 30 s of the signal ({masks}; the test process: "
                    f"{signal_masks(os.getpid())}):\n{driver.communicate()[0]}")
    assert driver.returncode == 130, out
    assert [p for p in pids if alive(p)] == []  # zero processes left, grandchildren included
    trials = load_study(str(study_dir / "tunelab.journal"), "slow").trials()
    assert {t.failure_kind for t in trials if t.state.value == "failed"} == {"interrupted"}
    assert not [t for t in trials if t.state.value == "running"]
    assert "will run again" in out
