"""A trial's whole process tree ends with the trial: its children, their children, and a
daemon that left the trial's session with ``setsid`` (double fork), after a normal finish and
after ``kill -9`` of the driver. Real processes; every wait polls towards a generous deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tunelab_cli

# The training command: a child (`sleep`), a setsid daemon (double fork, its stdio closed),
# their pids in files; then a metric, then it hangs when asked to.
SPAWN = """
import os, subprocess, sys, time
pids, mode = sys.argv[1], sys.argv[2]

def note(name, pid):
    with open(os.path.join(pids, name + ".tmp"), "w") as f:
        f.write(str(pid))
    os.replace(os.path.join(pids, name + ".tmp"), os.path.join(pids, name))

note("command", os.getpid())
with open("/proc/self/cgroup") as f:
    note("cgroup", f.read().strip())
note("trial", os.getppid())
child = subprocess.Popen(["sleep", "300"], stdout=subprocess.DEVNULL)
note("grandchild", child.pid)
first = os.fork()
if first == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        note("daemon", os.getpid())
        time.sleep(300)
    os._exit(0)
os.waitpid(first, 0)
while not os.path.exists(os.path.join(pids, "daemon")):
    time.sleep(0.01)
print("f1 = 0.5", flush=True)
if mode == "hang":
    time.sleep(300)
"""

STUDY = """
name: tree
objective:
  type: command
  command: ["{python}", "spawn.py", "{pids}", "{mode}"]
  metrics: [{{name: f1, regex: 'f1 = ([0-9.]+)'}}]
metrics: [{{name: f1, goal: maximize}}]
space:
  x: {{float: [0.0, 1.0]}}
budget: {{trials: 1}}
execution: {{workers: 1{timeout}}}
tracking: {{mlflow: false}}
"""

NAMES = ("command", "trial", "grandchild", "daemon")


def alive(pid: int) -> bool:
    """Running, and not a zombie (an orphan's zombie may wait for an init that never reaps)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until(condition, deadline_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def setup(tmp_path: Path, mode: str, timeout: str = "") -> Path:
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "spawn.py").write_text(SPAWN)
    (tmp_path / "study.yaml").write_text(STUDY.format(python=sys.executable, pids=pids, mode=mode,
                                                      timeout=f", timeout: {timeout}" if timeout else ""))
    return pids


def read_pids(pids: Path) -> dict[str, int]:
    return {name: int((pids / name).read_text()) for name in NAMES if (pids / name).exists()}


def kill_leftovers(pids: dict[str, int]) -> None:
    for pid in pids.values():
        if not alive(pid):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def assert_all_end(pids: dict[str, int]) -> None:
    """Every process a trial started is gone (polled, with a generous deadline)."""
    assert wait_until(lambda: not any(alive(p) for p in pids.values())), \
        {n: p for n, p in pids.items() if alive(p)}


def test_everything_a_trial_started_ends_with_a_normal_finish(tmp_path: Path) -> None:
    pids_dir = setup(tmp_path, "finish")
    try:
        run = tunelab_cli("run", "study.yaml", cwd=tmp_path)
        pids = read_pids(pids_dir)
        assert run.returncode == 0, run.stderr
        rows = json.loads(tunelab_cli("trials", "--format", "json", cwd=tmp_path).stdout)
        assert [r["state"] for r in rows] == ["complete"]
        assert set(pids) == set(NAMES)
        assert_all_end(pids)
    finally:
        kill_leftovers(read_pids(pids_dir))


def test_everything_a_trial_started_ends_after_kill_9_of_the_driver(tmp_path: Path) -> None:
    pids_dir = setup(tmp_path, "hang")
    driver = subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: len(read_pids(pids_dir)) == len(NAMES), 120), read_pids(pids_dir)
        pids = read_pids(pids_dir)
        assert all(alive(p) for p in pids.values())
        driver.kill()  # SIGKILL to the driver alone: no chance to clean up
        driver.wait()
        assert_all_end(pids)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        kill_leftovers(read_pids(pids_dir))


def test_everything_a_trial_started_ends_when_it_times_out(tmp_path: Path) -> None:
    pids_dir = setup(tmp_path, "hang", timeout="15s")
    try:
        run = tunelab_cli("run", "study.yaml", cwd=tmp_path)
        pids = read_pids(pids_dir)
        assert run.returncode in (0, 1), run.stderr
        rows = json.loads(tunelab_cli("trials", "--format", "json", cwd=tmp_path).stdout)
        assert [r["state"] for r in rows] == ["failed"]
        assert set(pids) == set(NAMES)
        assert_all_end(pids)
    finally:
        kill_leftovers(read_pids(pids_dir))


def test_with_a_cgroup_even_a_killed_supervisor_leaves_nothing_behind(tmp_path: Path) -> None:
    """Where the machine offers a writable cgroup v2, the trial runs in one of its own; `kill -9`
    of the trial's supervisor (the driver alive) then still ends the daemon, and the cgroup goes."""
    pids_dir = setup(tmp_path, "hang")
    driver = subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: len(read_pids(pids_dir)) == len(NAMES), 120), read_pids(pids_dir)
        pids = read_pids(pids_dir)
        cgroup = (pids_dir / "cgroup").read_text()
        if "tunelab-trial-" not in cgroup:
            pytest.skip(f"no writable cgroup v2 here (the trial ran in {cgroup!r}): the subreaper alone applies")
        with open(f"/proc/{pids['trial']}/stat") as f:
            supervisor = int(f.read().rsplit(")", 1)[1].split()[1])
        os.kill(supervisor, signal.SIGKILL)
        assert driver.wait(timeout=120) in (0, 1)
        assert_all_end(pids)
        name = cgroup.rsplit("/", 1)[1]
        assert not any(name in d for _, dirs, _ in os.walk("/sys/fs/cgroup") for d in dirs)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        kill_leftovers(read_pids(pids_dir))
