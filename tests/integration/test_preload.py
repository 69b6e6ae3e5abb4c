"""Trials forked from the preloaded worker (the fork server) are the trials a fresh interpreter
runs: same results, same process shape (session, supervisor, streams, environment, threads),
and the server dies with the driver. Real processes; every wait has a generous deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import preload_objectives
from tunelab.executors import _preload
from tunelab.executors.base import TrialSpec
from tunelab.executors.local import LocalExecutor
from tunelab.trial import Ended, Result, State

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(_preload.supported() is not None, reason="fork server needs Linux")


def run_trials(executor: LocalExecutor, specs: list[TrialSpec], before_launch=None,  # type: ignore[no-untyped-def]
               deadline_s: float = 300.0) -> dict[int, Ended]:
    """Launch every spec as capacity allows, answer every report with 'go on'; the Ended events."""
    queue, ended = list(specs), {}
    end = time.monotonic() + deadline_s
    try:
        while len(ended) < len(specs):
            assert time.monotonic() < end, f"trials did not end: {ended}"
            while queue and executor.capacity() > 0:
                spec = queue.pop(0)
                if before_launch is not None:
                    before_launch(spec)
                executor.launch(spec)
            for event in executor.poll(1.0):
                if isinstance(event, Result):
                    executor.reply(event.trial_id, False)
                elif isinstance(event, Ended):
                    ended[event.trial_id] = event
    finally:
        executor.shutdown()
    return ended


def specs(tmp: Path, configs: list[dict]) -> list[TrialSpec]:
    return [TrialSpec(i, c, tmp / f"trial{i}") for i, c in enumerate(configs)]


def probe(spec: TrialSpec) -> dict:
    return json.loads((spec.trial_dir / "probe.json").read_text())


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wait_until(condition, deadline_s: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(autouse=True)
def _on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # the trial imports preload_objectives from the driver's path


def _run_probes(tmp: Path, preload: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalExecutor, list, dict]:
    executor = LocalExecutor(preload_objectives.probe, workers=2, gpus=[3, 5], gpus_per_trial=1, cpus_per_trial=2,
                             preload=preload)
    trials = specs(tmp, [{"x": 0.25, "torch": True}, {"x": 0.5, "torch": True}, {"x": 0.75, "torch": True}])

    def mark(spec: TrialSpec) -> None:  # the environment of the launch, not of the server's start
        monkeypatch.setenv("PRELOAD_TEST_MARK", f"launch-{spec.trial_id}")

    ended = run_trials(executor, trials, mark)
    return executor, trials, ended


def test_forked_trials_are_fresh_trials_but_for_their_imports(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    import numpy  # noqa: F401 - the driver uses them: the server preloads them
    import torch  # noqa: F401

    outcomes = {}
    for preload in (True, False):
        executor, trials, ended = _run_probes(tmp_path / str(preload), preload, monkeypatch)
        assert {e.state for e in ended.values()} == {State.COMPLETE}
        outcomes[preload] = (executor, trials, ended, [probe(s) for s in trials])
    forked, fresh = outcomes[True], outcomes[False]
    # Same results.
    assert {i: e.metrics for i, e in forked[2].items()} == {i: e.metrics for i, e in fresh[2].items()}
    server = forked[0]._preloader.info["pid"]
    for (_, trials, _, records), preload in ((forked, True), (fresh, False)):
        for spec, rec in zip(trials, records):
            # Forked from the server (which imported torch), or started by the driver without it.
            assert rec["supervisor_parent"] == (server if preload else os.getpid())
            assert ("torch" in rec["preloaded"]) if preload else rec["preloaded"] == []
            # Its own session (led by its supervisor) and process group; stdin null; the log.
            assert rec["sid"] == rec["supervisor"] != os.getsid(0)
            assert rec["pgid"] == rec["pid"]
            assert rec["stdin"] == "/dev/null"
            assert rec["stdout"] == rec["stderr"] == str(spec.trial_dir / "trial.log")
            assert "probe says hello" in (spec.trial_dir / "trial.log").read_text()
            assert rec["cwd"] == os.getcwd()
            # The environment of its launch and its slot; 2 threads, set before torch used any.
            assert rec["env"]["PRELOAD_TEST_MARK"] == f"launch-{spec.trial_id}"
            assert rec["env"]["OMP_NUM_THREADS"] == rec["env"]["MKL_NUM_THREADS"] == "2"
            assert rec["env"]["TOKENIZERS_PARALLELISM"] == "false"
            assert rec["env"]["JE_ARROW_MALLOC_CONF"] == os.environ.get("JE_ARROW_MALLOC_CONF")
            assert rec["torch_threads"] == 2
            # Nothing open but the trial's socket (no descriptor of the server leaks in).
            assert rec["fds"] == ["socket"], rec["fds"]
        assert sorted(r["env"]["CUDA_VISIBLE_DEVICES"] for r in records[:2]) == ["3", "5"]
    # numpy's global generator is seeded per trial, as in a fresh interpreter.
    draws = [r["numpy_draw"] for r in forked[3]]
    assert len(set(draws)) == len(draws)


def test_the_server_imports_torch_and_transformers_and_runs_no_thread() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    preloader = _preload.Preloader(list(_preload.BASE_MODULES + _preload.NLP_MODULES))
    try:
        assert preloader.start(), preloader.unavailable
        assert {"torch", "transformers", "tunelab.nlp.train"} <= set(preloader.info["loaded"])
        pid = preloader.info["pid"]
        assert len(os.listdir(f"/proc/{pid}/task")) == 1
        # Its own session: a Ctrl-C at the terminal reaches the driver only.
        assert os.getsid(pid) == pid
    finally:
        preloader.close()
    assert preloader.proc is None and not alive(pid)


def test_an_import_that_starts_a_thread_means_fresh_interpreters(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "starts_a_thread.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("tunelab.executors.local.modules_for",
                        lambda objective: [*_preload.BASE_MODULES, "starts_a_thread"])
    executor = LocalExecutor(preload_objectives.probe, workers=1)
    trials = specs(tmp_path, [{"x": 0.5}])
    ended = run_trials(executor, trials)
    assert ended[0].state == State.COMPLETE and ended[0].metrics["score"] == 1.0
    assert "threads" in executor._preloader.unavailable
    assert probe(trials[0])["supervisor_parent"] == os.getpid()  # started as a fresh interpreter


def test_where_fork_is_unsafe_trials_start_as_fresh_interpreters(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    executor = LocalExecutor(preload_objectives.probe, workers=1)
    monkeypatch.undo()  # the trial itself runs on this Linux
    monkeypatch.syspath_prepend(str(HERE))
    trials = specs(tmp_path, [{"x": 0.5}])
    ended = run_trials(executor, trials)
    assert ended[0].state == State.COMPLETE
    assert "darwin" in executor._preloader.unavailable and executor._preloader.proc is None
    assert probe(trials[0])["supervisor_parent"] == os.getpid()


def test_failure_kinds_and_stop_in_forked_trials(tmp_path: Path) -> None:
    import tl_test_objectives

    executor = LocalExecutor(tl_test_objectives.fails_by_kind, workers=2)
    kinds = ["ok", "exit", "raise", "nan", "memory", "infeasible"]
    ended = run_trials(executor, specs(tmp_path, [{"kind": k} for k in kinds]))
    got = {kinds[i]: (e.state, e.kind) for i, e in ended.items()}
    assert got == {"ok": (State.COMPLETE, None), "exit": (State.FAILED, "crash"), "raise": (State.FAILED, "crash"),
                   "nan": (State.FAILED, "nan"), "memory": (State.FAILED, "oom"),
                   "infeasible": (State.FAILED, "infeasible")}
    assert "exited with code 3" in ended[1].message
    # Stopped by the driver, and killed by its time limit: the whole tree, the right kind.
    executor = LocalExecutor(preload_objectives.probe, workers=2)
    hang = [TrialSpec(0, {"x": 0.1, "hang": True}, tmp_path / "stop"),
            TrialSpec(1, {"x": 0.2, "hang": True}, tmp_path / "late", timeout=20.0)]
    ended = {}
    for spec in hang:
        executor.launch(spec)
    try:
        end = time.monotonic() + 300
        while len(ended) < 2 and time.monotonic() < end:
            for event in executor.poll(1.0):
                if isinstance(event, Result):
                    executor.reply(event.trial_id, False)
                    if event.trial_id == 0:
                        executor.stop(0)
                elif isinstance(event, Ended):
                    ended[event.trial_id] = event
    finally:
        executor.shutdown()
    assert (ended[0].kind, ended[1].kind) == ("interrupted", "timeout")
    for spec in hang:
        rec = probe(spec)
        assert wait_until(lambda: not alive(rec["pid"]) and not alive(rec["supervisor"]))
    assert executor._preloader.proc is None  # shut down with the executor


DRIVER = """
import sys, time
sys.path[:0] = {paths!r}
import preload_objectives
from tunelab.executors.base import TrialSpec
from tunelab.executors.local import LocalExecutor
from tunelab.trial import Result

executor = LocalExecutor(preload_objectives.probe, workers=1)
executor.launch(TrialSpec(0, {{"x": 0.5, "hang": True}}, __import__("pathlib").Path({trial_dir!r})))
with open({server_file!r}, "w") as f:
    f.write(str(executor._preloader.info["pid"]))
while True:
    for event in executor.poll(1.0):
        if isinstance(event, Result):
            executor.reply(event.trial_id, False)
"""


def test_the_server_and_its_trials_die_with_a_killed_driver(tmp_path: Path) -> None:
    trial_dir, server_file = tmp_path / "trial", tmp_path / "server"
    (tmp_path / "driver.py").write_text(DRIVER.format(paths=[str(HERE), *sys.path], trial_dir=str(trial_dir),
                                                      server_file=str(server_file)))
    driver = subprocess.Popen([sys.executable, str(tmp_path / "driver.py")], cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rec: dict = {}
    try:
        assert wait_until(lambda: (trial_dir / "probe.json").exists() and server_file.exists(), 180), \
            driver.stderr.read().decode() if driver.poll() is not None else "no trial"
        rec = probe(TrialSpec(0, {}, trial_dir))
        server = int(server_file.read_text())
        assert rec["supervisor_parent"] == server
        assert all(alive(p) for p in (server, rec["supervisor"], rec["pid"]))
        driver.kill()  # SIGKILL: the driver cleans up nothing
        driver.wait()
        assert wait_until(lambda: not any(alive(p) for p in (server, rec["supervisor"], rec["pid"])))
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in (rec.get("pid"), rec.get("supervisor")):
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_text_classification_trial_forked_equals_fresh(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    sys.path.insert(0, str(HERE.parent))
    import nlp_fixtures
    from tunelab.metrics import MetricSet
    from tunelab.space import Space

    model = nlp_fixtures.build_tiny_model(tmp_path / "model")
    files = nlp_fixtures.make_dataset(tmp_path / "data", n_train=96, n_val=32)
    objective = nlp_fixtures.tiny_objective(model, files, tmp_path / "cache", defaults={"num_train_epochs": 2})
    objective.validate(Space({"learning_rate": {"float": [1e-3, 1e-2], "log": True}}),
                       MetricSet.parse([{"name": "accuracy", "goal": "maximize"}]))
    objective.prepare(tmp_path)
    assert "torch" in _preload.modules_for(objective)
    results = {}
    for preload in (True, False):
        executor = LocalExecutor(objective, workers=1, cpus_per_trial=1, preload=preload)
        ended = run_trials(executor, specs(tmp_path / str(preload), [{"learning_rate": 3e-3}]))
        assert ended[0].state == State.COMPLETE, ended[0].message
        assert (executor._preloader is not None and executor._preloader.info.get("pid") is not None) == preload
        results[preload] = ended[0].metrics
    timing = {"train_seconds", "samples_per_second"}
    assert {k: v for k, v in results[True].items() if k not in timing} == \
        {k: v for k, v in results[False].items() if k not in timing}
    assert results[True]["accuracy"] >= 0.0



def test_a_refused_fork_leaves_running_trials_alone(tmp_path: Path) -> None:
    """Once the server cannot fork (here: a request it cannot take), later trials start fresh,
    and the trials it forked before keep running (the server stays until shutdown)."""
    executor = LocalExecutor(preload_objectives.probe, workers=2)
    first = TrialSpec(0, {"x": 0.1, "hang": True}, tmp_path / "first")
    second = TrialSpec(1, {"x": 0.2}, tmp_path / "second")
    ended: dict[int, Ended] = {}
    try:
        executor.launch(first)
        assert wait_until(lambda: (first.trial_dir / "probe.json").exists(), 180)  # it then waits for a reply
        rec = probe(first)
        assert rec["supervisor_parent"] == executor._preloader.info["pid"]
        assert executor._preloader.spawn(999_999, 999_998, {}) is None  # descriptors that do not exist
        assert executor._preloader.unavailable and executor._preloader.sock is not None
        executor.launch(second)
        end = time.monotonic() + 180
        while 1 not in ended and time.monotonic() < end:
            for event in executor.poll(1.0):
                if isinstance(event, Result):
                    executor.reply(event.trial_id, False)
                elif isinstance(event, Ended):
                    ended[event.trial_id] = event
        assert ended[1].state == State.COMPLETE
        assert probe(second)["supervisor_parent"] == os.getpid()  # a fresh interpreter
        assert 0 not in ended and alive(rec["pid"])  # the forked trial runs on
    finally:
        executor.shutdown()
    assert wait_until(lambda: not alive(rec["pid"]))


@pytest.mark.parametrize("preload", [True, False])
def test_a_trial_exits_as_a_fresh_interpreter_would(tmp_path: Path, preload: bool) -> None:
    executor = LocalExecutor(preload_objectives.exits, workers=2, preload=preload)
    configs = [{"how": "exit", "code": 7}, {"how": "exit", "code": None}, {"how": "interrupt", "code": 0}]
    trials = specs(tmp_path, configs)
    ended = run_trials(executor, trials)
    assert "exited with code 7" in ended[0].message
    assert "exited with code 0" in ended[1].message
    assert "killed by signal 2" in ended[2].message and "KeyboardInterrupt" in ended[2].message
    for spec in trials:
        assert (spec.trial_dir / "atexit").read_text() == "ran"
        assert (spec.trial_dir / "thread").read_text() == "ran"
    assert (executor._preloader is not None and executor._preloader.info.get("pid") is not None) == preload


def test_a_killed_server_ends_its_trials_and_later_ones_start_fresh(tmp_path: Path) -> None:
    executor = LocalExecutor(preload_objectives.probe, workers=2)
    first = TrialSpec(0, {"x": 0.1, "hang": True}, tmp_path / "first")
    second = TrialSpec(1, {"x": 0.2}, tmp_path / "second")
    ended: dict[int, Ended] = {}
    try:
        executor.launch(first)
        assert wait_until(lambda: (first.trial_dir / "probe.json").exists(), 180)
        rec = probe(first)
        os.kill(executor._preloader.info["pid"], signal.SIGKILL)
        end = time.monotonic() + 180
        while 0 not in ended and time.monotonic() < end:
            ended.update((e.trial_id, e) for e in executor.poll(1.0) if isinstance(e, Ended))
        assert ended[0].state == State.FAILED and ended[0].kind == "crash"
        assert wait_until(lambda: not alive(rec["pid"]) and not alive(rec["supervisor"]))
        executor.launch(second)
        while 1 not in ended and time.monotonic() < end:
            for event in executor.poll(1.0):
                if isinstance(event, Result):
                    executor.reply(event.trial_id, False)
                elif isinstance(event, Ended):
                    ended[event.trial_id] = event
        assert ended[1].state == State.COMPLETE
        assert probe(second)["supervisor_parent"] == os.getpid()
    finally:
        executor.shutdown()
