"""The Spark executor on real Spark: a local[2] session shared by the module (as a notebook's
`spark`), drivers started as `tunelab run --backend spark`, and a standalone master with
workers on 127.0.0.1 whose worker is killed mid-study."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

if importlib.util.find_spec("pyspark") is None:
    pytest.skip("pyspark is not installed: pip install 'tunelab[spark]'", allow_module_level=True)

from cluster_fixtures import session_pids  # noqa: E402
from spark_fixtures import Standalone, local_session, spark_env  # noqa: E402

import tunelab  # noqa: E402
from tunelab.errors import ConfigError  # noqa: E402
from tunelab.study import load_study  # noqa: E402
from tunelab.testing.executor_conformance import alive, wait_gone  # noqa: E402

STUDY = """
name: {name}
objective: {{type: function, function: "tl_test_objectives:{fn}"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: [0.0, 1.0]}}
  {extra}
search: {{sampler: random, seed: 0}}
budget: {{trials: {trials}}}
execution: {{backend: spark, workers: {workers}, trial_dir: {trial_dir}}}
"""


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = local_session(2)
    try:
        yield session
    finally:
        session.stop()


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def write_study(directory: Path, *, name: str, fn: str, trials: int, workers: int, extra: str = "") -> Path:
    trial_dir = directory / "runs"
    (directory / "study.yaml").write_text(STUDY.format(name=name, fn=fn, trials=trials, workers=workers,
                                                       extra=extra, trial_dir=trial_dir))
    return trial_dir / name


def driver(cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml", "--backend", "spark",
                             "--no-mlflow", *extra], cwd=cwd, env={**os.environ, **spark_env()},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def trial_pids(runs: Path) -> list[int]:
    return [int(p) for f in runs.glob("trial_*/pid") for p in f.read_text().split()]


# ---- on the module's local[2] session --------------------------------------------------------


def test_spark_executor_conforms(spark: Any, tmp_path: Path) -> None:
    from tunelab.executors.spark import SparkExecutor
    from tunelab.testing.executor_conformance import check_executor_conformance

    check_executor_conformance(lambda objective, workers: SparkExecutor(objective, workers), tmp_path)
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []
    assert spark.sparkContext.master == "local[2]"  # the active session was used, and left running


def test_asha_study_on_the_active_session_prunes_running_tasks(spark: Any, study_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(study_dir)
    monkeypatch.syspath_prepend(str(study_dir))
    import tl_test_objectives

    study = tunelab.tune(
        tl_test_objectives.curve, {"quality": {"float": [0.0, 1.0]}, "epochs": {"fixed": 4}},
        metrics=[{"name": "score", "goal": "maximize"}], sampler="random", seed=0, trials=8, workers=2,
        backend="spark", scheduler={"type": "asha", "min_resource": 1, "max_resource": 4, "reduction_factor": 2},
        storage=str(study_dir / "s.journal"), study_name="asha", progress=False,
    )
    trials = study.trials()
    assert len(trials) == 8 and {t.state.value for t in trials} <= {"complete", "pruned"}, trials
    pruned = [t for t in trials if t.state.value == "pruned"]
    assert pruned, "ASHA pruned nothing"
    assert all(len(t.history) < 4 for t in pruned)  # the decision reached the running task
    assert all([r.step for r in t.history] == [1.0, 2.0, 3.0, 4.0] for t in trials if t.state.value == "complete")
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []


def test_failure_kinds_on_spark(spark: Any, study_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(study_dir)
    monkeypatch.syspath_prepend(str(study_dir))
    import tl_test_objectives

    kinds = ["ok", "exit", "hang", "raise", "nan", "memory", "infeasible", "oom"]
    study = tunelab.tune(
        tl_test_objectives.fails_by_kind, {"kind": {"choice": kinds}},
        metrics=[{"name": "score", "goal": "maximize"}], sampler="grid", workers=2, backend="spark",
        timeout=3, storage=str(study_dir / "s.journal"), study_name="kinds", progress=False,
    )
    by_kind = {t.config["kind"]: t for t in study.trials()}
    assert set(by_kind) == set(kinds) and by_kind["ok"].state.value == "complete"
    expected = {"exit": "crash", "hang": "timeout", "raise": "crash", "nan": "nan", "memory": "oom",
                "infeasible": "infeasible", "oom": "oom"}
    for kind, failure in expected.items():
        assert (by_kind[kind].state.value, by_kind[kind].failure_kind) == ("failed", failure), by_kind[kind]
    assert "exited with code 3" in by_kind["exit"].message
    assert "ValueError: boom" in by_kind["raise"].message
    assert "boom" in (Path(by_kind["raise"].trial_dir) / "trial.log").read_text()


def test_shutdown_cancels_the_jobs_and_ends_the_trials(spark: Any, study_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(study_dir))
    import tl_test_objectives

    from tunelab.executors.base import TrialSpec
    from tunelab.executors.spark import SparkExecutor

    executor = SparkExecutor(tl_test_objectives.spawns_child, 2)
    try:
        for i in range(2):
            executor.launch(TrialSpec(i, {}, study_dir / f"t{i}"))
        deadline = time.monotonic() + 120
        while not all((study_dir / f"t{i}" / "pid").exists() for i in range(2)):
            assert time.monotonic() < deadline, "the trials did not start"
            assert executor.poll(0.2) == []
        pids = [int(p) for i in range(2) for p in (study_dir / f"t{i}" / "pid").read_text().split()]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        assert len(spark.sparkContext.statusTracker().getActiveJobsIds()) == 2
    finally:
        executor.shutdown()
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []
    assert wait_gone(pids) == []


def test_text_classification_token_cache_travels_once_per_executor(spark: Any, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    import nlp_fixtures

    from tunelab.api import run_study
    from tunelab.config import load_config

    nlp_fixtures.build_tiny_model(tmp_path / "model")
    nlp_fixtures.make_dataset(tmp_path / "data", n_train=96, n_val=32)
    (tmp_path / "study.yaml").write_text(f"""
name: tc
storage: {tmp_path / "s.journal"}
objective:
  type: text_classification
  model: model
  data: {{train: data/train.csv, validation: data/validation.csv, text: text, label: label}}
  max_length: 32
  cache_dir: {tmp_path / "cache"}
  device: cpu
  num_train_epochs: 1
  per_device_train_batch_size: 16
metrics: [{{name: accuracy, goal: maximize}}]
space:
  learning_rate: {{float: [1.0e-3, 1.0e-2], log: true}}
search: {{sampler: random, seed: 0}}
budget: {{trials: 2}}
execution: {{backend: spark, workers: 2, trial_dir: {tmp_path / "runs"}}}
""")
    view = run_study(load_config(tmp_path / "study.yaml"))
    trials = view.trials()
    assert [t.state.value for t in trials] == ["complete", "complete"], [t.message for t in trials]
    [entry] = [p for p in (tmp_path / "cache").iterdir() if (p / "meta.json").is_file()]
    for t in trials:  # each trial read its executor's copy, not the driver's cache directory
        log = (Path(t.trial_dir) / "trial.log").read_text()
        copy = log.split("[tunelab] token cache: ", 1)[1].split(" ", 1)[0]
        assert Path(copy).name == entry.name and Path(copy).parent.parent != entry.parent, copy
        assert (Path(copy) / "meta.json").read_bytes() == (entry / "meta.json").read_bytes()
    assert spark.sparkContext.statusTracker().getActiveJobsIds() == []


def test_the_drivers_opt_outs_reach_the_trial(spark: Any, study_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set after the session started (its executors never saw them), as tunelab sets MLflow's."""
    import json

    monkeypatch.syspath_prepend(str(study_dir))
    import tl_test_objectives

    from tunelab.executors.base import TrialSpec
    from tunelab.executors.spark import SparkExecutor
    from tunelab.testing.executor_conformance import drive

    monkeypatch.setenv("DO_NOT_TRACK", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    executor = SparkExecutor(tl_test_objectives.environment, 1)
    try:
        ended, _ = drive(executor, [TrialSpec(0, {"names": ["DO_NOT_TRACK", "HF_HUB_DISABLE_TELEMETRY"]},
                                              study_dir / "t0")])
    finally:
        executor.shutdown()
    assert ended[0].state.value == "complete", ended[0]
    assert json.loads((study_dir / "t0" / "env.json").read_text()) == {"DO_NOT_TRACK": "1",
                                                                      "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_spark_execution_config() -> None:
    from tunelab.config import parse_execution

    e = parse_execution({"backend": "spark", "master": "local[2]", "workers": 2, "cpus_per_trial": 1})
    assert (e.backend, e.master, e.workers) == ("spark", "local[2]", 2)
    assert parse_execution({"backend": "spark", "master": "spark://10.0.0.1:7077"}).master == "spark://10.0.0.1:7077"
    assert parse_execution({"backend": "spark"}).master is None
    with pytest.raises(ConfigError, match="execution.master.*only the `spark` backend"):
        parse_execution({"backend": "ray", "master": "local[2]"})
    with pytest.raises(ConfigError, match="execution.master.*not a Spark master URL"):
        parse_execution({"backend": "spark", "master": "localhost:7077"})
    with pytest.raises(ConfigError, match="execution.gpus"):
        parse_execution({"backend": "spark", "gpus": [0]})


def test_the_readme_ray_study_file_takes_backend_spark_unchanged(tmp_path: Path) -> None:
    """The study file of the README's Ray section, with `--backend spark` (run in full by hand:
    30 trials on local[4], 9 complete and 21 pruned by ASHA)."""
    from tunelab.config import load_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("cat > $SHARED/logreg/study.yaml <<EOF\n", 1)[1].split("\nEOF\n", 1)[0]
    for name, value in {"$HEAD_IP": "10.0.0.10", "$DB_HOST": "10.0.0.20", "$SHARED": str(tmp_path)}.items():
        block = block.replace(name, value)
    (tmp_path / "study.yaml").write_text(block)
    config = load_config(tmp_path / "study.yaml").with_execution(backend="spark")
    e = config.execution
    assert (e.backend, e.master, e.address, e.workers, e.cpus_per_trial) == ("spark", None, None, 4, 1)


# ---- drivers of their own ----------------------------------------------------------------------


def test_ctrl_c_and_kill_9_of_a_driver_leave_nothing_running(study_dir: Path) -> None:
    runs = write_study(study_dir, name="stop", fn="spawns_child", trials=4, workers=2)
    for sig in (signal.SIGINT, signal.SIGKILL):
        for f in runs.glob("trial_*/pid"):
            f.unlink()
        proc = driver(study_dir, "--master", "local[2]")
        wait_for(lambda: len(list(runs.glob("trial_*/pid"))) == 2 if runs.exists() else False, 180,
                 "two trials to start")
        pids = trial_pids(runs)
        os.killpg(proc.pid, signal.SIGINT) if sig == signal.SIGINT else os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)
        assert wait_gone(pids) == [], (sig, out)
        # The driver's JVM and its Python workers are gone too (they share the driver's session).
        left = wait_for(lambda: session_pids(proc.pid) == [] or None, 60, "the driver's processes to exit") \
            if session_pids(proc.pid) else None
        assert session_pids(proc.pid) == [], left
    trials = load_study(str(study_dir / "tunelab.journal"), "stop").trials()
    assert [t.failure_kind for t in trials if t.state.value != "waiting"].count("interrupted") >= 2


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        out.append(pid)
    return out


@pytest.mark.slow  # a master and two workers of their own
def test_a_lost_worker_interrupts_its_trial_and_the_config_runs_again(study_dir: Path) -> None:
    cluster = Standalone.start(study_dir / "spark")
    try:
        workers = [cluster.add_worker(cores=1), cluster.add_worker(cores=1)]
        runs = write_study(study_dir, name="lost", fn="slow", trials=4, workers=2, extra="seconds: {fixed: 3.0}")
        proc = driver(study_dir, "--master", cluster.url)
        pid_file = wait_for(lambda: next(runs.glob("trial_*/pid"), None) if runs.exists() else None, 180,
                            "a trial to start")
        pid = int(wait_for(lambda: pid_file.read_text().strip(), 10, "its pid"))
        # The trial has a session of its own, under a Python worker of one Spark worker's executor.
        worker = next(w for w in workers if set(ancestors(pid)) & set(session_pids(w.pid)))
        assert pid not in session_pids(worker.pid)
        cluster.kill(worker)  # the worker, its executor and Python workers: the trial dies with them
        assert wait_gone([pid]) == []
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    finally:
        assert cluster.stop() == []
    trials = load_study(str(study_dir / "tunelab.journal"), "lost").trials()
    lost = next(t for t in trials if Path(t.trial_dir) == pid_file.parent)
    assert (lost.state.value, lost.failure_kind) == ("failed", "interrupted"), lost
    assert "executor" in lost.message and "lost" in lost.message, lost.message
    retries = [r for r in trials if r.retry_of == lost.number]
    assert len(retries) == 1 and retries[0].config == lost.config and retries[0].state.value == "complete"
    counted = [t for t in trials if t.failure_kind != "interrupted"]
    assert len(counted) == 4 and all(t.state.value == "complete" for t in counted)
