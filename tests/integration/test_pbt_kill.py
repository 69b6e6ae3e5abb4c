"""kill -9 of a PBT driver mid-population, then the same command again (issue 11.4): the members
and clones it left continue from their checkpoints (not from scratch), lineage intact, no member
lost or run twice, the trial budget kept, and the best trial valid.

The objective saves a state per step (save, then report) and, in the first run, holds every
trial after its report at step ``HOLD`` until a file ``release`` exists: the driver is killed
once every running trial is held there, so what it leaves is known whatever the timing. Its
``score`` is the config's ``x`` at every step (PBT's ranking does not depend on who is ahead)
and ``total`` sums ``x`` over the steps trained, so a continuation that restored its parent's
state reports the parent's total plus its own ``x``.
"""

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

OBJECTIVE = '''
import json, os, time
from pathlib import Path

HOLD, STEPS, POPULATION = 5, 8, 3

def train(config, reporter):
    study_dir = reporter.trial_dir.parents[2]
    step, total = 0, 0.0
    if reporter.restore_dir is not None:
        step = int(reporter.start_step)
        state = json.loads((reporter.restore_dir / f"state_{step}.json").read_text())
        total = state["total"]
    while step < STEPS:
        step += 1
        total += config["x"]
        tmp = reporter.checkpoint_dir / ".state.tmp"
        tmp.write_text(json.dumps({"step": step, "total": total}))
        os.replace(tmp, reporter.checkpoint_dir / f"state_{step}.json")
        reached = study_dir / "reached"  # before the report: an exploited trial stops in it
        reached.mkdir(exist_ok=True)
        (reached / f"{reporter.trial_dir.name}_{step}").write_text("")
        reporter.report(step, score=config["x"], total=total)
        # Before the hold, the population advances in step: a trial goes on once POPULATION trials
        # reached this step, so each report is judged against the others' (an exploit is certain,
        # whatever the speeds). Marks outside the trial directories: retention may remove those.
        # From HOLD on, every trial waits for the release.
        deadline = time.monotonic() + 10  # a lost peer (its driver killed) must not stop the rest
        while step < HOLD and len(list(reached.glob(f"*_{step}"))) < POPULATION and time.monotonic() < deadline:
            time.sleep(0.02)
        while step >= HOLD and not (study_dir / "release").exists():
            time.sleep(0.05)
    return {"score": config["x"], "total": total}
'''

STUDY = """
name: pbtkill
objective: {type: function, function: "pbt_kill_objective:train"}
metrics: [{name: score, goal: maximize}, {name: total, strategy: store}]
space:
  x: {float: [0.0, 1.0]}
search: {sampler: random, seed: 0}
scheduler: {type: pbt, population: 3, perturbation_interval: 1, quantile: 0.25, seed: 0}
budget: {trials: 10}
execution: {workers: 3}
tracking: {mlflow: false}
"""
TRIALS, HOLD = 10, 5


def frozen(cwd: Path, storage: str = "tunelab.journal") -> list:
    """The study's trials as stored (a journal file, or a sqlite URL, in ``cwd``)."""
    import optuna

    if storage.startswith("sqlite:///"):
        if not (cwd / storage[len("sqlite:///"):]).exists():
            return []
        # Through tunelab's opener: it takes the file's creation lock, so this poll cannot race the
        # driver creating the tables (a bare RDBStorage here made the driver's creation fail).
        from tunelab.storage import open_storage

        opened: object = open_storage(f"sqlite:///{cwd / storage[len('sqlite:///'):]}")
    elif (cwd / storage).exists():
        opened = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(cwd / storage)))
    else:
        return []
    try:
        return optuna.load_study(study_name="pbtkill", storage=opened).get_trials(deepcopy=False)
    except Exception:  # the study is being created
        return []


def run_of(t) -> dict:
    return t.user_attrs.get("run") or {}


def all_held(cwd: Path, storage: str = "tunelab.journal") -> bool:
    """Every running trial has reported step HOLD or later (it waits for the release), and one
    clone of an exploit has reported: the population is mid-way, and still."""
    from tunelab.study import reports_of

    trials = frozen(cwd, storage)
    running = [t for t in trials if t.state.name == "RUNNING"]
    clone = any(run_of(t).get("mutations") and reports_of(t) for t in trials)
    return clone and bool(running) and all(reports_of(t) and reports_of(t)[-1].step >= HOLD for t in running)


def test_kill_9_mid_pbt_then_the_same_command_continues_the_population(tmp_path: Path) -> None:
    from tunelab.study import reports_of

    (tmp_path / "pbt_kill_objective.py").write_text(OBJECTIVE)
    (tmp_path / "study.yaml").write_text(STUDY)
    driver = subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not all_held(tmp_path):
            if driver.poll() is not None:
                pytest.fail(f"the driver ended before the population was held:\n{driver.stdout.read()}")
            assert time.monotonic() < deadline, "the population never reached the hold with a clone"
            time.sleep(0.1)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    at_kill = {t.number: t for t in frozen(tmp_path)}
    left = {n: reports_of(t)[-1].step for n, t in at_kill.items() if t.state.name == "RUNNING" and reports_of(t)}
    assert left, "the driver left no member running"

    (tmp_path / "release").write_text("")
    rerun = tunelab_cli("run", "study.yaml", cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    trials = {t.number: t for t in frozen(tmp_path)}
    assert not [t for t in trials.values() if t.state.name in ("RUNNING", "WAITING")]
    for number, step in left.items():  # each member or clone left running continues, once, from its state
        left_trial = trials[number]
        assert left_trial.user_attrs["failure"]["kind"] == "interrupted"
        (cont,) = [t for t in trials.values() if run_of(t).get("replaces") == number]
        assert (run_of(cont)["parent"], run_of(cont)["start_step"], run_of(cont)["mutations"]) == (number, step, {})
        x = run_of(cont)["config"]["x"]
        assert x == {**left_trial.params, **run_of(left_trial).get("config", {})}["x"]  # its own config
        first = reports_of(cont)[0]
        parent_total = next(r.metrics["total"] for r in reports_of(left_trial) if r.step == step)
        assert first.step == step + 1 and first.metrics["total"] == pytest.approx(parent_total + x)
        assert not [t for t in trials.values() if t.user_attrs.get("retry_of") == number]  # no cold rerun
    # Lineage: every clone names its parent and the step it continued from, and reports after it.
    for t in trials.values():
        run = run_of(t)
        if run.get("parent") is not None and reports_of(t):
            assert reports_of(t)[0].step > run["start_step"] and run["parent"] in trials
    # No member replaced twice (exploited or interrupted), nothing run beyond the budget.
    from tunelab.tuner import _never_trained

    replaced = [run_of(t)["replaces"] for t in trials.values() if "replaces" in run_of(t) and not _never_trained(t)]
    assert len(replaced) == len(set(replaced))
    kinds = [(t.user_attrs.get("failure") or {}).get("kind") for t in trials.values()]
    # PBT samples its population once (a cold retry takes the place of a member cut off before
    # reporting), then only clones; the study ends with the population's training, within budget.
    assert sum(k not in ("interrupted", "cancelled") for k in kinds) <= TRIALS
    originals = [t for t in trials.values() if run_of(t).get("parent") is None]
    assert len(originals) == 3 + sum("retry_of" in t.user_attrs for t in originals)
    study = load_study(str(tmp_path / "tunelab.journal"), "pbtkill")
    best = study.best_trial
    assert best is not None and best.state.value == "complete"
    assert best.metrics["score"] == pytest.approx(best.config["x"])



# A driver through tune(), whose PBT waits at its first suggestion until both drivers have made
# theirs (when given "--barrier"): both then launch the same continuation from the same stored
# state, for certain, and only the storage-side claim keeps it from running twice.
DRIVER = '''
import os, sys, time
from pathlib import Path

sys.path.insert(0, os.getcwd())
import tunelab
from tunelab.schedulers import PBTScheduler
from pbt_kill_objective import train


class BarrierPBT(PBTScheduler):
    waited = False

    def suggest(self, history):
        suggestion = super().suggest(history)
        if suggestion is not None and "--barrier" in sys.argv and not self.waited:
            self.waited = True
            Path(f"arrived_{os.getpid()}").write_text("")
            deadline = time.monotonic() + 120
            while len(list(Path().glob("arrived_*"))) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
        return suggestion


tunelab.tune(train, {"x": {"float": [0.0, 1.0]}}, metrics=[{"name": "score", "goal": "maximize"},
             {"name": "total", "strategy": "store"}], sampler="random", seed=0,
             scheduler=BarrierPBT("score", "maximize", population=3, perturbation_interval=1, quantile=0.25, seed=0),
             trials=12, workers=3, storage=sys.argv[1], study_name="pbtkill", progress=False)
'''


@pytest.mark.parametrize("storage", ["tunelab.journal", "sqlite:///study.db"])
def test_two_drivers_continue_one_pbt_population_without_running_a_member_twice(tmp_path: Path,
                                                                               storage: str) -> None:
    """The population a killed driver left, continued by two drivers: both read the same members
    owed from storage and both launch the first one's continuation; each member continues in
    exactly one trial (the first created; the twin ends ``cancelled`` before it runs)."""
    from tunelab.study import reports_of
    from tunelab.tuner import _never_trained

    (tmp_path / "pbt_kill_objective.py").write_text(OBJECTIVE)
    (tmp_path / "driver.py").write_text(DRIVER)
    with open(tmp_path / "first_driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "driver.py", storage], cwd=tmp_path, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not all_held(tmp_path, storage):
            assert driver.poll() is None and time.monotonic() < deadline, (
                "the population never reached the hold", (tmp_path / "first_driver.log").read_text()[-3000:])
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the driver may have exited on its own (reported above)
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    left = {t.number for t in frozen(tmp_path, storage) if t.state.name == "RUNNING" and reports_of(t)}
    assert left

    (tmp_path / "release").write_text("")
    drivers = [subprocess.Popen([sys.executable, "driver.py", storage, "--barrier"], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [d.communicate(timeout=300)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    assert len(list(tmp_path.glob("arrived_*"))) == 2  # both made the same first suggestion

    trials = {t.number: t for t in frozen(tmp_path, storage)}
    assert not [t for t in trials.values() if t.state.name in ("RUNNING", "WAITING")]
    ran = [t for t in trials.values() if not _never_trained(t)]
    for number in left:
        continued = [t for t in ran if run_of(t).get("replaces") == number]
        assert len(continued) == 1, (number, [t.number for t in continued])
    replaced = [run_of(t)["replaces"] for t in ran if "replaces" in run_of(t)]
    assert len(replaced) == len(set(replaced))  # no exploit cloned twice either
    for t in trials.values():  # a twin that lost the claim never ran: no report, no process output
        if (t.user_attrs.get("failure") or {}).get("kind") == "cancelled" and "replaces" in run_of(t):
            assert not reports_of(t) and not (tmp_path / "tunelab_runs" / "pbtkill" / f"trial_{t.number:04d}"
                                              / "checkpoint").exists()
    kinds = [(t.user_attrs.get("failure") or {}).get("kind") for t in trials.values()]
    assert sum(k not in ("interrupted", "cancelled") for k in kinds) <= 12  # the population's training, in budget
    originals = [t for t in trials.values() if run_of(t).get("parent") is None]
    assert len(originals) == 3 + sum("retry_of" in t.user_attrs for t in originals)
    assert "already (another driver launched it first)" in " ".join(
        t.user_attrs["failure"]["message"] for t in trials.values() if kinds[t.number] == "cancelled")
