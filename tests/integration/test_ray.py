"""The Ray executor on a real local cluster: a head with 2 CPUs plus a second node (1 CPU) joined
to it, both started with `ray start` on 127.0.0.1 and stopped by process group afterwards (the
teardown fails if any process of the cluster is left)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

if importlib.util.find_spec("ray") is None:  # not imported here: Ray reads its auth settings at import
    pytest.skip("Ray is not installed: pip install 'tunelab[ray]' (ray[default])", allow_module_level=True)

from cluster_fixtures import RayCluster, ray_cluster, session_pids  # noqa: E402
from conftest import tunelab_cli  # noqa: E402
from tunelab.errors import ConfigError  # noqa: E402
from tunelab.study import load_study  # noqa: E402

STUDY = """
name: {name}
objective: {{type: function, function: "tl_test_objectives:{fn}"}}
metrics: [{{name: score, goal: maximize}}]
space:
  quality: {{float: [0.0, 1.0]}}
  {extra}
search: {{sampler: random, seed: 0}}
{scheduler}
budget: {{trials: {trials}}}
execution: {{backend: ray, workers: {workers}, trial_dir: {trial_dir}}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with ray_cluster(head_cpus=2, worker_cpus=(1,)) as c:
        yield c


def write_study(directory: Path, *, name: str, fn: str, trials: int, workers: int, extra: str = "",
                scheduler: str = "") -> Path:
    trial_dir = directory / "shared" / "runs"  # an absolute path every node sees (same machine here)
    (directory / "study.yaml").write_text(STUDY.format(name=name, fn=fn, trials=trials, workers=workers, extra=extra,
                                                       scheduler=scheduler, trial_dir=trial_dir))
    return trial_dir / name


def driver(cluster: RayCluster, cwd: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml", "--address",
                             cluster.address, "--no-mlflow", *extra], cwd=cwd, env={**os.environ, **cluster.env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def trials_of(cwd: Path, name: str) -> list:
    return load_study(str(cwd / "tunelab.journal"), name).trials()


def node_of(trial_dir: str) -> str:
    header = (Path(trial_dir) / "trial.log").read_text().splitlines()[0]
    return re.search(r"Ray node (\w+)", header).group(1)  # type: ignore[union-attr]


def wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_function_study_with_asha_on_two_nodes(cluster: RayCluster, study_dir: Path) -> None:
    runs = write_study(study_dir, name="asha", fn="curve", trials=9, workers=3, extra="epochs: {fixed: 4}",
                       scheduler="scheduler: {type: asha, min_resource: 1, max_resource: 4, reduction_factor: 2}")
    proc = driver(cluster, study_dir)
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    trials = trials_of(study_dir, "asha")
    assert len(trials) == 9
    states = [t.state.value for t in trials]
    assert set(states) <= {"complete", "pruned"}, [(t.number, t.state, t.message) for t in trials]
    pruned = [t for t in trials if t.state.value == "pruned"]
    assert pruned, "ASHA pruned nothing"
    for t in pruned:  # the decision reached the trial: it stopped reporting early
        assert len(t.history) < 4
    for t in trials:
        if t.state.value == "complete":  # every report streamed to the driver and was stored
            assert [r.step for r in t.history] == [1.0, 2.0, 3.0, 4.0]
        assert Path(t.trial_dir).parent == runs
    # 3 workers on a 2-CPU head: the second node ran trials too.
    assert len({node_of(t.trial_dir) for t in trials}) == 2

    shown = tunelab_cli("logs", str(pruned[0].number), cwd=study_dir)
    assert shown.returncode == 0, shown.stderr
    assert f"[tunelab] trial {pruned[0].number} on" in shown.stdout
    last = tunelab_cli("logs", "0", "--tail", "1", cwd=study_dir)
    assert last.returncode == 0 and len(last.stdout.splitlines()) == 1
    missing = tunelab_cli("logs", "99", cwd=study_dir)
    assert missing.returncode == 1 and "no trial 99" in missing.stderr


def test_killed_worker_process_is_a_crash_and_the_study_completes(cluster: RayCluster, study_dir: Path) -> None:
    runs = write_study(study_dir, name="kill", fn="slow", trials=4, workers=2, extra="seconds: {fixed: 0.5}")
    proc = driver(cluster, study_dir)
    pid_file = wait_for(lambda: next(runs.glob("trial_*/pid"), None) if runs.exists() else None, 90,
                        "a trial to write its pid")
    pid = wait_for(lambda: pid_file.read_text().strip(), 10, "the pid")
    os.kill(int(pid), signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert not alive(int(pid))
    trials = trials_of(study_dir, "kill")
    killed = next(t for t in trials if Path(t.trial_dir) == pid_file.parent)
    assert (killed.state.value, killed.failure_kind) == ("failed", "crash"), killed
    assert "died" in killed.message and f"pid {pid}" in killed.message
    others = [t for t in trials if t is not killed]
    assert len(others) == 3 and all(t.state.value == "complete" for t in others)
    assert not [t for t in trials if t.state.value in ("running", "waiting")]


@pytest.mark.slow  # starts and kills a third node
def test_lost_node_interrupts_its_trial_and_the_config_runs_again(cluster: RayCluster, study_dir: Path) -> None:
    extra_node = cluster.add_node(cpus=1)
    runs = write_study(study_dir, name="lost", fn="slow", trials=5, workers=4, extra="seconds: {fixed: 1.0}")
    proc = driver(cluster, study_dir)

    def trial_on_extra_node() -> Path | None:
        for pid_file in runs.glob("trial_*/pid") if runs.exists() else []:
            text = pid_file.read_text().strip()
            if text and int(text) in session_pids(extra_node.sid):
                return pid_file
        return None

    pid_file = wait_for(trial_on_extra_node, 90, "a trial on the extra node")
    cluster.kill_node(extra_node)
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    trials = trials_of(study_dir, "lost")
    lost = next(t for t in trials if Path(t.trial_dir) == pid_file.parent)
    assert (lost.state.value, lost.failure_kind) == ("failed", "interrupted"), lost
    assert "node" in lost.message and "lost" in lost.message
    retries = [t for t in trials if t.retry_of == lost.number]
    assert len(retries) == 1 and retries[0].config == lost.config and retries[0].state.value == "complete"
    counted = [t for t in trials if t.failure_kind != "interrupted"]
    assert len(counted) == 5 and all(t.state.value == "complete" for t in counted)


@pytest.mark.slow
def test_kill_9_of_the_driver_then_resume_on_the_cluster(cluster: RayCluster, study_dir: Path) -> None:
    runs = write_study(study_dir, name="resume", fn="slow", trials=8, workers=2, extra="seconds: {fixed: 0.5}")
    proc = driver(cluster, study_dir)

    def progress() -> bool:
        try:
            states = [t.state.value for t in trials_of(study_dir, "resume")]
        except Exception:  # noqa: BLE001 - the storage or the study is still being created
            return False
        return states.count("complete") >= 2 and "running" in states

    wait_for(progress, 120, "2 complete trials and one running")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pids = [int(p.read_text()) for p in runs.glob("trial_*/pid") if p.read_text().strip()]
    # Ray ends the tasks (and their processes) of a driver that is gone.
    wait_for(lambda: not any(alive(p) for p in pids), 60, "the trial processes of the dead driver to exit")
    again = driver(cluster, study_dir)
    out, _ = again.communicate(timeout=150)
    assert again.returncode == 0, out
    trials = trials_of(study_dir, "resume")
    interrupted = [t for t in trials if t.failure_kind == "interrupted"]
    assert interrupted and all(len([r for r in trials if r.retry_of == t.number]) == 1 for t in interrupted)
    counted = [t for t in trials if t.failure_kind != "interrupted"]
    assert len(counted) == 8 and all(t.state.value == "complete" for t in counted)


def test_stop_and_timeout_end_trials_on_the_cluster(cluster: RayCluster, study_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(study_dir))
    import tl_test_objectives

    from tunelab.executors.base import TrialSpec
    from tunelab.executors.ray import RayExecutor
    from tunelab.trial import Ended

    executor = RayExecutor(tl_test_objectives.fails_by_kind, 2, address=cluster.address)
    try:
        executor.launch(TrialSpec(0, {"kind": "hang"}, study_dir / "t0", timeout=2.0))
        executor.launch(TrialSpec(1, {"kind": "hang"}, study_dir / "t1"))
        wait_for(lambda: (study_dir / "t1" / "trial.log").exists(), 60, "trial 1 to start")
        executor.stop(1)
        ended: dict[int, Ended] = {}
        deadline = time.monotonic() + 60
        while len(ended) < 2 and time.monotonic() < deadline:
            ended.update({e.trial_id: e for e in executor.poll(0.5) if isinstance(e, Ended)})
        assert (ended[0].state.value, ended[0].kind) == ("failed", "timeout")
        assert (ended[1].state.value, ended[1].kind) == ("failed", "interrupted")
        assert executor.capacity() == 2
    finally:
        executor.shutdown()
    import ray

    assert not ray.is_initialized()  # the executor connected, so it disconnected


def test_ray_executor_conforms(cluster: RayCluster, tmp_path: Path) -> None:
    from tunelab.executors.ray import RayExecutor
    from tunelab.testing.executor_conformance import check_executor_conformance

    check_executor_conformance(lambda objective, workers: RayExecutor(objective, workers, address=cluster.address),
                               tmp_path)


def test_a_trial_no_node_can_hold_is_a_config_error(cluster: RayCluster) -> None:
    from tunelab.executors.ray import RayExecutor

    with pytest.raises(ConfigError, match="gpus_per_trial"):
        RayExecutor(print, 1, address=cluster.address, gpus_per_trial=1)
    with pytest.raises(ConfigError, match="cpus_per_trial.*use at most 2"):
        RayExecutor(print, 1, address=cluster.address, cpus_per_trial=8)
    import ray

    assert not ray.is_initialized()


def test_text_classification_study_on_ray(cluster: RayCluster, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tests_dir = str(Path(__file__).resolve().parents[1])
    if tests_dir not in sys.path:
        sys.path.insert(0, tests_dir)
    import nlp_fixtures

    nlp_fixtures.build_tiny_model(tmp_path / "model")
    nlp_fixtures.make_dataset(tmp_path / "data", n_train=160, n_val=48)
    (tmp_path / "study.yaml").write_text(f"""
name: tc
objective:
  type: text_classification
  model: model
  data: {{train: data/train.csv, validation: data/validation.csv, text: text, label: label}}
  max_length: 32
  cache_dir: {tmp_path / "cache"}
  device: cpu
  num_train_epochs: 2
  per_device_train_batch_size: 16
metrics: [{{name: accuracy, goal: maximize}}]
space:
  learning_rate: {{float: [1.0e-3, 1.0e-2], log: true}}
search: {{sampler: random, seed: 0}}
budget: {{trials: 2}}
execution: {{backend: ray, workers: 2, keep_checkpoints: 1, trial_dir: {tmp_path / "shared"}}}
""")
    proc = driver(cluster, tmp_path)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    trials = trials_of(tmp_path, "tc")
    assert [t.state.value for t in trials] == ["complete", "complete"], [t.message for t in trials]
    for t in trials:
        assert [r.step for r in t.history] == [1.0, 2.0]  # an evaluation per epoch, streamed
        assert "objective loaded in" in (Path(t.trial_dir) / "trial.log").read_text()
    best = max(trials, key=lambda t: t.metrics["accuracy"])
    worst = min(trials, key=lambda t: (t.metrics["accuracy"], -t.number))
    # The kept checkpoint sits in the shared trial directory, where the driver exports it from.
    checkpoint = Path(best.trial_dir) / "checkpoint"
    assert (checkpoint / "best" / "model.safetensors").is_file() and (checkpoint / "best" / "tunelab_checkpoint.json").is_file()
    if worst is not best:
        assert not (Path(worst.trial_dir) / "checkpoint").exists()  # keep_checkpoints: 1


def test_execution_config_for_ray() -> None:
    from tunelab.config import parse_execution

    assert parse_execution({"backend": "ray", "address": "auto"}).address == "auto"
    assert parse_execution({"backend": "ray", "address": "ray://head.example:10001"}).address.startswith("ray://")
    assert parse_execution({"backend": "ray", "address": "10.0.0.5:6379", "gpus_per_trial": 0.5}).gpus_per_trial == 0.5
    with pytest.raises(ConfigError, match="only the `ray` backend"):
        parse_execution({"backend": "local", "address": "10.0.0.5:6379"})
    with pytest.raises(ConfigError, match="not a Ray cluster address"):
        parse_execution({"backend": "ray", "address": "http://head"})
    with pytest.raises(ConfigError, match="Ray assigns the GPUs"):
        parse_execution({"backend": "ray", "gpus": [0]})
    with pytest.raises(ConfigError, match="not supported yet"):
        parse_execution({"backend": "ray", "trial_dir": "s3://bucket/runs"})


def test_command_line_overrides_of_execution(tmp_path: Path) -> None:
    from tunelab.config import load_config

    (tmp_path / "study.yaml").write_text(
        'objective: {type: function, function: "m:f"}\nmetrics: [{name: s, goal: maximize}]\n'
        "space: {x: {float: [0, 1]}}\nexecution: {backend: ray, address: auto, workers: 2, timeout: 30s}\n")
    config = load_config(tmp_path / "study.yaml")
    ray_cfg = config.with_execution(address="10.0.0.5:6379", gpus_per_trial=0.25, cpus_per_trial=2)
    e = ray_cfg.execution
    assert (e.backend, e.address, e.gpus_per_trial, e.cpus_per_trial, e.workers, e.timeout_s) == \
        ("ray", "10.0.0.5:6379", 0.25, 2, 2, 30.0)
    local = config.with_execution(backend="local").execution  # the file's cluster address is dropped
    assert (local.backend, local.address) == ("local", None)
    assert config.with_execution() is config


# ---- connecting and starting (no cluster fixture) ----------------------------------------------


def test_an_address_where_no_cluster_listens_fails_fast(study_dir: Path) -> None:
    """Not a 400 s hang: exit 2, one line naming execution.address, and no trial created."""
    write_study(study_dir, name="nowhere", fn="curve", trials=2, workers=1)
    text = (study_dir / "study.yaml").read_text().replace("backend: ray,", 'backend: ray, address: "127.0.0.1:1",')
    (study_dir / "study.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml", "--no-mlflow"], cwd=study_dir,
                         env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 90
    assert run.returncode == 2, run.stderr
    assert "execution.address" in run.stderr and "127.0.0.1:1" in run.stderr
    journal = study_dir / "tunelab.journal"
    assert not journal.exists() or trials_of(study_dir, "nowhere") == []


# Run in a fresh interpreter: a local Ray instance started by the executor, one task run on it,
# then every listening TCP socket of the processes below it (Ray's GCS, raylet, agents, workers).
LOCAL_START = r"""
import json, os, sys
from tunelab.executors.ray import RayExecutor

executor = RayExecutor(lambda config, reporter: 0.0, 1, address="local")
import ray

def pid():
    return os.getpid()

ray.get(ray.remote(num_cpus=0)(pid).remote())

def below(root):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                ppid = int(open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(name))
    out, queue = [], [root]
    while queue:
        pid = queue.pop()
        out.append(pid)
        queue.extend(kids.get(pid, []))
    return out

def listening():
    table = {}
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in open(path).read().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            addr, port = f[1].split(":")
            table[f[9]] = (addr, int(port, 16), v6)
    return table

table = listening()
OWN_CMDLINE = open("/proc/self/cmdline", "rb").read()
found, envs = [], {}
for pid in below(os.getpid()):
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        name = open(f"/proc/{pid}/comm").read().strip()
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        continue
    # This process's environ is the one it started with; a child it forked that has not yet
    # exec'd (same command line) is not a Ray process either.
    # A process that set a long title (setproctitle: "ray::DashboardAgent") may have written it
    # over its environ block: without PATH there, its environment cannot be read.
    readable = any(item.startswith(b"PATH=") for item in environ)
    cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
    # Ray's two agents are started by the raylet with an environment Ray builds itself (seen
    # without the switch in about 1 start in 5); they send no usage statistics: the dashboard
    # head's usage_stats module does, and it is checked below.
    agent = name in ("ray::DashboardA", "ray::RuntimeEnv")
    if pid != os.getpid() and readable and cmdline != OWN_CMDLINE and not agent:
        envs[pid] = b"RAY_USAGE_STATS_ENABLED=0" in environ
    if b"dashboard/dashboard.py" in cmdline:
        envs["dashboard_head"] = b"RAY_USAGE_STATS_ENABLED=0" in environ
    for link in links:
        if link.startswith("socket:[") and link[8:-1] in table:
            addr, port, v6 = table[link[8:-1]]
            found.append([pid, name, addr, port, v6])
during = os.environ.get("RAY_USAGE_STATS_ENABLED")
executor.shutdown()
print(json.dumps({"sockets": found, "usage_off": envs, "driver_env": during,
                  "driver_env_after": os.environ.get("RAY_USAGE_STATS_ENABLED")}))
"""


def _loopback(hex_addr: str, v6: bool) -> bool:
    raw = bytes.fromhex(hex_addr)
    if not v6:
        return raw[::-1][0] == 127  # stored little-endian: 0100007F is 127.0.0.1
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    ip = b"".join(words)
    return ip == bytes(15) + b"\x01" or (ip[:12] == bytes(10) + b"\xff\xff" and ip[12] == 127)


def test_a_local_start_listens_on_loopback_only_and_sends_no_usage_stats(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    run = subprocess.run([sys.executable, "-c", LOCAL_START], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["sockets"], "no listening socket found: the check itself is broken"
    # Known exceptions, allowed on other interfaces: none with this Ray.
    exposed = [s for s in report["sockets"] if not _loopback(s[2], s[4])]
    assert exposed == [], exposed
    assert report["usage_off"].get("dashboard_head") is True, report["usage_off"]
    assert all(report["usage_off"].values()), report["usage_off"]
    # Set in the driver while its Ray instance runs (Ray starts agents later from it), then removed.
    assert report["driver_env"] == "0" and report["driver_env_after"] is None


def test_tunelab_search_cv_on_ray(cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TunelabSearchCV (issue 12) on scikit-learn's digits with backend="ray": each trial a Ray task."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from test_sklearn_search import SPACE, check_search, model

    from tunelab.sklearn import TunelabSearchCV

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)  # tune() connects to the cluster RAY_ADDRESS names
    est = TunelabSearchCV(model(), SPACE, n_trials=4, cv=3, backend="ray", workers=2, sampler="random",
                          random_state=1, scheduler="asha", trial_dir=str(tmp_path / "shared"))
    est.fit(X_train, y_train)
    check_search(est, X_test, y_test, 4)
    logs = [p.read_text() for p in sorted((tmp_path / "shared" / "tunelab-search-cv").glob("trial_*/trial.log"))]
    assert len(logs) == 4 and all("Ray node" in log for log in logs)  # each trial ran as a Ray task
