"""Reliability suite: kill -9 of the driver, injected trial faults, and contention on real storages.

Everything runs through tunelab's real CLI (``python -m tunelab.cli.main run study.yaml``, the
``local`` backend: a fresh trial process per trial) on real storages: the journal file, SQLite and
a PostgreSQL server that the script starts itself on 127.0.0.1 (Debian's ``postgresql`` binaries,
``tests/integration/cluster_fixtures.Postgres``). The objectives are written next to each study
(``rl_objectives.py``) and leave evidence outside tunelab: every execution is appended to
``executions.log``, every process a trial starts (itself, a grandchild in its session, a
``setsid`` daemon) to ``pids.log`` with its kernel start time, so pid reuse cannot fool the
orphan count. Storage is read with Optuna itself, from a copy of the file (reading never repairs
or locks what a driver left behind).

Scenarios (``--only`` picks some):

* ``kill``: ``tunelab run`` is killed with SIGKILL at K random moments (seeded: the schedule is
  reproducible), each followed by a restart; the last restart runs the study to its budget. Then:
  0 completed trials lost (every trial any snapshot showed complete is still complete with the
  same values), 0 retries lost (every interrupted trial's config ran again), 0 left running,
  0 duplicated, 0 orphan processes, 0 crashed drivers, the budget respected exactly; the time
  from each restart to its first progress line is measured (goal: no restart slower than 2 s).
* ``faults``: 30 % of trials crash (an exception or ``os._exit``), return NaN, hang past the
  trial timeout or run out of memory, drawn with a seeded RNG from the trial number; every
  trial's failure kind must be the one tunelab names (crash / nan / timeout / oom), 0 orphans.
* ``contention``: 8 workers x 1,000 trials of a trivial objective, one driver.
* ``drivers``: 3 drivers started together on a new storage, sharing one trial budget (R runs).

Contention and drivers run on the journal file, SQLite and PostgreSQL: 0 lost (every execution
that returned is a complete trial with that value), 0 duplicated, 0 crashed drivers, 0 left
running, and the budget respected exactly.

Usage::

    python benchmarks/reliability.py            # full run, writes benchmarks/results/reliability.{json,md}
    python benchmarks/reliability.py --quick    # smoke run (about 3 min on 2 cores), prints only (add --out DIR)
    python benchmarks/reliability.py --only kill --storages sqlite --kills 40 --seed 3
    python benchmarks/reliability.py --render benchmarks/results/reliability.json

The exit code is 1 when any zero-goal is violated (the restart time is a measurement, not a goal
checked in the exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
RESULTS = HERE.parent / "results"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(REPO / "tests" / "integration"))

import _common as C  # noqa: E402

STUDY = "rl"
SCENARIOS = ("kill", "faults", "contention", "drivers")
STORAGES = ("journal", "sqlite", "postgres")
#: The goal for a restart after a kill (issue 10, item 5): progress within this many seconds.
RESTART_GOAL_S = 2.0
#: How long processes a trial started may take to die after their trial (or driver) ended.
ORPHAN_GRACE_S = 5.0
PROGRESS_LINE = re.compile(r"^\[\d+:\d\d")

FULL = {"kills": 30, "kill_budget": 130, "fault_trials": 100, "fault_timeout": 3.0, "workers": 8,
        "contention_trials": 1000, "driver_runs": 7, "driver_budget": 60}
QUICK = {"kills": 5, "kill_budget": 30, "fault_trials": 24, "fault_timeout": 3.0, "workers": 8,
         "contention_trials": 40, "driver_runs": 2, "driver_budget": 16}

FAULT_RATE = 0.3
#: The failure kind tunelab must record for each injected fault (src/tunelab/executors/_run_trial.py
#: classifies exceptions, MemoryError and NaN; executors/local.py a process that exits without a
#: result and a trial past its timeout).
EXPECTED_KIND = {"ok": "complete", "crash": "crash", "nan": "nan", "hang": "timeout", "oom": "oom"}


def fault_of(seed: int, rate: float, number: int) -> tuple[str, int]:
    """The fault injected into trial ``number`` (and a variant), from a seeded RNG: the bench and
    the trial compute the same thing (this function's source is copied into the objectives)."""
    import random as _random

    rng = _random.Random(f"{seed}:{number}")
    u, variant = rng.random(), rng.randrange(2)
    if u >= rate:
        return "ok", 0
    kinds = ("crash", "nan", "hang", "oom")
    return kinds[min(int(u / rate * len(kinds)), len(kinds) - 1)], variant


OBJECTIVES = '''\
"""Objectives of the reliability suite (written next to each study by benchmarks/reliability.py).

They leave evidence outside tunelab: executions.log (every start and every return) and pids.log
(every process a trial starts, with its kernel start time)."""

import os
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "0"


def _log(name, line):
    # One short O_APPEND write per line: lines from concurrent trials never interleave.
    fd = os.open(HERE / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


def _spawn_descendants(number):
    """The trial's own pid, a grandchild in its session and a daemon in a new session."""
    _log("pids.log", f"{number} trial {os.getpid()} {_ticks(os.getpid())}")
    quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = subprocess.Popen(["sleep", "3600"], **quiet)
    _log("pids.log", f"{number} grandchild {child.pid} {_ticks(child.pid)}")
    daemon = subprocess.Popen(["sleep", "3600"], start_new_session=True, **quiet)
    _log("pids.log", f"{number} daemon {daemon.pid} {_ticks(daemon.pid)}")


def _exhaust_memory():
    """A real MemoryError without endangering the machine: cap this process's address space at
    its current size + 64 MiB (RLIMIT_AS), then ask for 1 GiB. The allocation is refused at once;
    no memory is touched."""
    import resource

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + 64 * 2**20
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    hog = bytearray(1 << 30)
    return len(hog)


def work(config, reporter):
    """0.2-1 s in three reports; starts descendants that must die with the trial."""
    n = reporter.trial_id
    _log("executions.log", f"start {n} {config['x']!r} {os.getpid()}")
    _spawn_descendants(n)
    for step in (1, 2, 3):
        time.sleep(config["seconds"] / 3)
        reporter.report(step, score=config["x"] * step / 3)
    _log("executions.log", f"done {n} {config['x']!r}")
    return {"score": config["x"]}


def faulty(config, reporter):
    """30 % of trials crash, return NaN, hang or run out of memory (seeded by the trial number)."""
    n = reporter.trial_id
    _log("executions.log", f"start {n} {config['x']!r} {os.getpid()}")
    _spawn_descendants(n)
    fault, variant = fault_of(config["fault_seed"], config["fault_rate"], n)
    _log("executions.log", f"fault {n} {fault} {variant}")
    time.sleep(0.1)
    if fault == "crash":
        if variant:
            os._exit(3)  # the process dies without a result
        raise RuntimeError("injected crash")
    if fault == "nan":
        return {"score": float("nan")}
    if fault == "hang":
        time.sleep(3600)
    if fault == "oom":
        _exhaust_memory()
    _log("executions.log", f"done {n} {config['x']!r}")
    return {"score": config["x"]}


def trivial(config, reporter):
    n = reporter.trial_id
    _log("executions.log", f"start {n} {config['x']!r} {os.getpid()}")
    if config.get("sleep"):
        time.sleep(config["sleep"])
    _log("executions.log", f"done {n} {config['x']!r}")
    return {"score": config["x"]}


'''

STUDY_YAML = """\
name: {name}
storage: {storage}
objective: {{type: function, function: "rl_objectives:{fn}"}}
metrics: [{{name: score, goal: maximize}}]
space:
{space}
search: {{sampler: random{seed}}}
budget: {{trials: {trials}}}
execution: {{backend: local, workers: {workers}{timeout}}}
tracking: {{mlflow: false}}
"""


# ---- storages -----------------------------------------------------------------------------------


@dataclass
class Store:
    """Where one study lives, and how this script reads it without touching it."""

    kind: str
    workdir: Path
    url: str | None = None  # PostgreSQL only

    @property
    def yaml_value(self) -> str:
        return {"journal": "tunelab.journal", "sqlite": "sqlite:///study.db"}.get(self.kind) or str(self.url)

    def read(self) -> list[dict[str, Any]] | None:
        """Every trial as a plain dict; [] when the study does not exist yet; None when unreadable."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        with tempfile.TemporaryDirectory(prefix="rl-read-") as tmp:
            storage: Any = None
            try:
                if self.kind == "journal":
                    source = self.workdir / "tunelab.journal"
                    if not source.exists():
                        return []
                    copy = Path(tmp) / "copy.journal"
                    shutil.copyfile(source, copy)
                    from optuna.storages.journal import JournalFileBackend

                    storage = optuna.storages.JournalStorage(JournalFileBackend(str(copy)))
                elif self.kind == "sqlite":
                    source = self.workdir / "study.db"
                    if not source.exists():
                        return []
                    for suffix in ("", "-journal", "-wal", "-shm"):  # a hot journal rolls back in the copy
                        if Path(str(source) + suffix).exists():
                            shutil.copyfile(str(source) + suffix, Path(tmp) / ("copy.db" + suffix))
                    storage = optuna.storages.RDBStorage(f"sqlite:///{Path(tmp) / 'copy.db'}")
                else:
                    from tunelab.storage import rdb_engine_options

                    sa_url, _ = rdb_engine_options(str(self.url))
                    storage = optuna.storages.RDBStorage(sa_url, engine_kwargs={"pool_size": 1})
                try:
                    study_id = storage.get_study_id_from_name(STUDY)
                except KeyError:
                    return []
                return [_trial_dict(t) for t in storage.get_all_trials(study_id, deepcopy=False)]
            except Exception as exc:  # noqa: BLE001 - a half-created storage is a finding, not a crash
                print(f"    (storage unreadable: {type(exc).__name__}: {str(exc)[:200]})", flush=True)
                return None
            finally:
                engine = getattr(storage, "engine", None)
                if engine is not None:
                    engine.dispose()


def _trial_dict(t: Any) -> dict[str, Any]:
    failure = t.user_attrs.get("failure") or {}
    state = {"COMPLETE": "complete", "RUNNING": "running", "WAITING": "waiting", "PRUNED": "pruned",
             "FAIL": "failed"}[t.state.name]
    if failure and state in ("pruned", "failed"):
        state = "failed"  # tunelab tells learnable failures (oom, nan) as pruned; it shows them failed
    return {"number": t.number, "state": state, "kind": failure.get("kind") if state == "failed" else None,
            "params": dict(t.params), "values": list(t.values) if t.values is not None else None,
            "retry_of": t.user_attrs.get("retry_of")}


class PostgresServer:
    """The test suite's throw-away PostgreSQL (tests/integration/cluster_fixtures.py), plus a fresh
    database per run (a new database is where creation races happen)."""

    def __init__(self) -> None:
        from cluster_fixtures import Postgres

        self.server = Postgres.start()
        self._n = 0

    @staticmethod
    def unavailable() -> str | None:
        try:
            from cluster_fixtures import postgres_bin
        except ImportError as exc:
            return f"tests/integration/cluster_fixtures.py not importable ({exc})"
        if postgres_bin() is None:
            return "PostgreSQL server binaries not found (apt-get install postgresql, or scripts/system-deps.sh)"
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is None:
            return "no PostgreSQL driver (pip install 'tunelab[postgres]')"
        return None

    def new_database(self, label: str) -> str:
        import sqlalchemy

        from tunelab.storage import rdb_engine_options

        self._n += 1
        name = f"rl_{re.sub(r'[^a-z0-9]', '_', label.lower())}_{self._n}"
        sa_url, _ = rdb_engine_options(self.server.url)
        engine = sqlalchemy.create_engine(sa_url, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        return self.server.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        self.server.stop()


# ---- drivers ------------------------------------------------------------------------------------


@dataclass
class Driver:
    """One ``tunelab run`` process, its output read line by line with arrival times."""

    proc: subprocess.Popen
    started: float
    lines: list[tuple[float, str]] = field(default_factory=list)
    killed: bool = False
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, workdir: Path) -> "Driver":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        env.update({k: v for k, v in C.QUIET_ENV.items() if k in ("PYTHONWARNINGS",)})
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml"], cwd=workdir,
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        driver = cls(proc, started)
        driver.reader = threading.Thread(target=driver._read, daemon=True)
        driver.reader.start()
        return driver

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL to the driver alone (not its session): what `kill -9 PID` does."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.killed = True
        self.proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)

    def first_progress_s(self) -> float | None:
        for t, line in list(self.lines):
            if PROGRESS_LINE.match(line):
                return t - self.started
        return None

    def tail(self, n: int = 15) -> str:
        if self.reader is not None:
            self.reader.join(timeout=5)
        return "\n".join(line for _, line in self.lines[-n:])


@contextlib.contextmanager
def reaping(drivers: list[Driver]) -> Iterator[None]:
    """Whatever happens, no driver of ours outlives the scenario."""
    try:
        yield
    finally:
        for d in drivers:
            if d.proc.poll() is None:
                d.kill()


def prepare(workdir: Path, store: Store, *, fn: str, trials: int, workers: int, space: dict[str, str],
            seed: int | None = None, timeout: float | None = None) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rl_objectives.py").write_text(OBJECTIVES + inspect.getsource(fault_of))
    (workdir / "study.yaml").write_text(STUDY_YAML.format(
        name=STUDY, storage=store.yaml_value, fn=fn, trials=trials, workers=workers,
        space="\n".join(f"  {k}: {v}" for k, v in space.items()),
        seed=f", seed: {seed}" if seed is not None else "", timeout=f", timeout: {timeout:g}" if timeout else ""))


# ---- evidence left by the objectives --------------------------------------------------------------


def read_executions(workdir: Path) -> dict[str, Any]:
    starts: dict[int, int] = {}
    done: dict[int, str] = {}
    faults: dict[int, str] = {}
    path = workdir / "executions.log"
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue  # a line cut by a kill
            number = int(parts[1])
            if parts[0] == "start":
                starts[number] = starts.get(number, 0) + 1
            elif parts[0] == "done":
                done[number] = parts[2]
            elif parts[0] == "fault":
                faults[number] = parts[2]
    return {"starts": starts, "done": done, "faults": faults}


def _alive(pid: int, ticks: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z" and fields[19] == ticks  # a zombie is dead; other ticks: the pid was reused


def count_orphans(workdirs: list[Path], grace: float = ORPHAN_GRACE_S) -> dict[str, Any]:
    """Processes that trials started and that are still alive ``grace`` seconds after everything
    ended; they are then killed (they are ours: descendants of this script's drivers)."""
    procs: list[tuple[str, int, str, int]] = []
    for workdir in workdirs:
        path = workdir / "pids.log"
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 4:
                    procs.append((parts[1], int(parts[2]), parts[3], int(parts[0])))
    deadline = time.monotonic() + grace
    alive = [p for p in procs if _alive(p[1], p[2])]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _alive(p[1], p[2])]
    by_role: dict[str, int] = {}
    for role, pid, ticks, _ in alive:
        by_role[role] = by_role.get(role, 0) + 1
        if _alive(pid, ticks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return {"recorded": len(procs), "orphans": len(alive), "by_role": by_role,
            "trials": sorted({n for *_, n in alive})[:20]}


# ---- judging ------------------------------------------------------------------------------------


def _config_key(t: dict[str, Any]) -> str:
    return json.dumps(t["params"], sort_keys=True)


def judge(final: list[dict[str, Any]] | None, *, executions: dict[str, Any], budget: int,
          snapshots: dict[int, dict[str, Any]] | None = None, check_done: bool = True) -> dict[str, Any]:
    """The zero-goals on the final state of one study."""
    out: dict[str, Any] = {"lost": 0, "lost_retries": 0, "left_running": 0, "duplicated": 0,
                           "budget": {"expected": budget, "counted": None, "ok": False}, "examples": {}}
    if final is None:
        out["lost"] = len(snapshots or {}) + len(executions["done"])
        out["examples"]["unreadable"] = "the storage could not be read at the end"
        return out
    by_number = {t["number"]: t for t in final}
    ex = out["examples"]
    # Lost: a trial once seen complete is no longer complete with the same values and config.
    lost = []
    for number, seen in (snapshots or {}).items():
        now = by_number.get(number)
        if now is None or now["state"] != "complete" or now["values"] != seen["values"] or now["params"] != seen["params"]:
            lost.append(number)
    # Without kills, an execution that returned must be a complete trial with its value.
    if check_done:
        for number, x in executions["done"].items():
            now = by_number.get(number)
            if now is None or now["state"] != "complete" or repr(now["params"].get("x")) != x:
                lost.append(number)
    out["lost"] = len(set(lost))
    ex["lost"] = sorted(set(lost))[:10]
    # Lost retries: an interrupted trial (not itself a retry) whose config never ran again.
    retried = {t["retry_of"] for t in final if t["retry_of"] is not None
               and t["state"] not in ("running", "waiting") and t["kind"] != "cancelled"}
    lost_retries = [t["number"] for t in final if t["kind"] == "interrupted" and t["retry_of"] is None
                    and t["number"] not in retried]
    out["lost_retries"] = len(lost_retries)
    ex["lost_retries"] = lost_retries[:10]
    if lost_retries:  # the evidence: the interrupted trial and every trial of its config
        keys = {_config_key(by_number[n]) for n in lost_retries[:5]}
        ex["lost_retry_trials"] = [t for t in final if t["params"] and _config_key(t) in keys]
    # Left running (or queued and never run).
    left = [t["number"] for t in final if t["state"] in ("running", "waiting")]
    out["left_running"] = len(left)
    ex["left_running"] = left[:10]
    # Duplicated: a trial whose objective started twice; a config whose objective started in more
    # trials than one (two when its first trial was interrupted: the single retry); a config
    # complete in more than one trial.
    starts = executions["starts"]
    dup = [n for n, k in starts.items() for _ in range(k - 1)]
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in final:
        if t["params"]:
            groups.setdefault(_config_key(t), []).append(t)
    for members in groups.values():
        members.sort(key=lambda t: t["number"])
        allowed = 2 if members[0]["kind"] == "interrupted" else 1
        extra = [t["number"] for t in members if starts.get(t["number"])][allowed:]
        extra += [t["number"] for t in members if t["state"] == "complete"][1:]
        dup += sorted(set(extra))
    out["duplicated"] = len(dup)
    ex["duplicated"] = sorted(dup)[:10]
    # The budget: trials that count (not interrupted, not cancelled) equal it exactly.
    counted = sum(1 for t in final if t["state"] != "waiting" and t["kind"] not in ("interrupted", "cancelled"))
    out["budget"] = {"expected": budget, "counted": counted, "ok": counted == budget}
    out["states"] = _tally(final)
    return out


def _tally(trials: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        key = t["state"] + (f":{t['kind']}" if t["kind"] else "")
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _restart_summary(restarts: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r["progress_s"] for r in restarts if r["progress_s"] is not None]
    censored = [r["killed_after_s"] for r in restarts if r["progress_s"] is None and r.get("killed_after_s")]
    slow = sum(1 for v in measured if v > RESTART_GOAL_S) + sum(1 for v in censored if v > RESTART_GOAL_S)
    return {"restarts": len(restarts), "measured": len(measured),
            "max_s": round(max(measured), 3) if measured else None,
            "median_s": round(statistics.median(measured), 3) if measured else None,
            "killed_before_progress": len(censored), "slower_than_goal": slow,
            "all_s": [None if v is None else round(v, 3) for v in (r["progress_s"] for r in restarts)]}


# ---- scenarios ----------------------------------------------------------------------------------


def run_kill(kind: str, root: Path, *, kills: int, budget: int, seed: int, workers: int = 2,
             store_url: str | None = None, final_timeout: float = 900) -> dict[str, Any]:
    """K kills of the driver at seeded random moments, a restart after each, then to completion."""
    workdir = root / f"kill-{kind}"
    store = Store(kind, workdir, store_url)
    prepare(workdir, store, fn="work", trials=budget, workers=workers,
            space={"x": "{float: [0.0, 1.0]}", "seconds": "{float: [0.2, 1.0]}"})
    # Moments from 0.2 s (before the study even exists) to 5 s (several trials in): start-up,
    # study creation, recovery of the last kill's trials, appends and trial ends are all hit.
    rng = random.Random(f"kill:{kind}:{seed}")
    schedule = [round(rng.uniform(0.2, 5.0), 3) for _ in range(kills)]
    snapshots: dict[int, dict[str, Any]] = {}
    restarts: list[dict[str, Any]] = []
    crashed: list[dict[str, Any]] = []
    unreadable = 0
    kills_done = 0
    drivers: list[Driver] = []
    started = time.monotonic()
    with reaping(drivers):
        finished_early = False
        for i, delay in enumerate(schedule):
            d = Driver.start(workdir)
            drivers.append(d)
            rc = d.wait(delay)
            if rc is None:
                d.kill()
                kills_done += 1
            else:
                d.kill()  # joins the reader
                if rc != 0:
                    crashed.append({"start": i, "rc": rc, "tail": d.tail()})
            if i > 0:
                restarts.append({"start": i, "progress_s": d.first_progress_s(),
                                 "killed_after_s": delay if d.killed else None})
            snap = store.read()
            if snap is None:
                unreadable += 1
            else:
                for t in snap:
                    if t["state"] == "complete":
                        snapshots.setdefault(t["number"], t)
            print(f"    kill {i + 1}/{kills} at {delay:.2f} s: "
                  + ("killed" if d.killed else f"exited {rc} first")
                  + (f", progress after {d.first_progress_s():.2f} s" if d.first_progress_s() is not None else "")
                  + f", {sum(1 for t in snap or [] if t['state'] == 'complete')} complete", flush=True)
            if rc == 0:
                finished_early = True  # the budget ran out before the kills did
                break
        final_driver = Driver.start(workdir)
        drivers.append(final_driver)
        rc = final_driver.wait(final_timeout)
        if rc is None:
            final_driver.kill()
            crashed.append({"start": "final", "rc": None, "tail": f"did not finish within {final_timeout:g} s\n"
                            + final_driver.tail()})
        else:
            final_driver.kill()
            if rc != 0:
                crashed.append({"start": "final", "rc": rc, "tail": final_driver.tail()})
        restarts.append({"start": "final", "progress_s": final_driver.first_progress_s(), "killed_after_s": None})
    wall = time.monotonic() - started
    final = store.read()
    executions = read_executions(workdir)
    verdict = judge(final, executions=executions, budget=budget, snapshots=snapshots, check_done=False)
    orphans = count_orphans([workdir])
    return {"scenario": "kill", "storage": kind, "runs": f"{kills_done} kills + final",
            "kills": kills_done, "schedule_s": schedule, "finished_early": finished_early,
            "trials": len(final or []), **verdict, "orphans": orphans["orphans"], "orphan_detail": orphans,
            "crashed_drivers": len(crashed), "crashes": crashed, "restart": _restart_summary(restarts),
            "snapshots_unreadable": unreadable, "wrong_kinds": None, "wall_s": round(wall, 1)}


def run_faults(kind: str, root: Path, *, trials: int, timeout: float, seed: int, workers: int = 2,
               store_url: str | None = None) -> dict[str, Any]:
    workdir = root / f"faults-{kind}"
    store = Store(kind, workdir, store_url)
    prepare(workdir, store, fn="faulty", trials=trials, workers=workers, seed=seed, timeout=timeout,
            space={"x": "{float: [0.0, 1.0]}", "fault_seed": f"{{fixed: {seed}}}",
                   "fault_rate": f"{{fixed: {FAULT_RATE}}}"})
    drivers: list[Driver] = []
    started = time.monotonic()
    crashed = []
    with reaping(drivers):
        d = Driver.start(workdir)
        drivers.append(d)
        rc = d.wait(60 + trials * (timeout + 2))
        d.kill()
        if rc != 0:
            crashed.append({"start": 0, "rc": rc, "tail": d.tail()})
    wall = time.monotonic() - started
    final = store.read()
    executions = read_executions(workdir)
    verdict = judge(final, executions=executions, budget=trials)
    wrong = []
    injected: dict[str, int] = {}
    for t in final or []:
        if t["kind"] == "cancelled":
            continue
        fault, _ = fault_of(seed, FAULT_RATE, t["number"])
        injected[fault] = injected.get(fault, 0) + 1
        got = t["kind"] if t["state"] == "failed" else t["state"]
        logged = executions["faults"].get(t["number"])
        if got != EXPECTED_KIND[fault] or (logged is not None and logged != fault):
            wrong.append({"trial": t["number"], "injected": fault, "expected": EXPECTED_KIND[fault], "got": got})
    orphans = count_orphans([workdir])
    return {"scenario": "faults", "storage": kind, "runs": "1 driver", "trials": len(final or []), **verdict,
            "orphans": orphans["orphans"], "orphan_detail": orphans, "crashed_drivers": len(crashed),
            "crashes": crashed, "restart": None, "wrong_kinds": len(wrong), "wrong": wrong[:20],
            "injected": dict(sorted(injected.items())), "fault_rate": FAULT_RATE, "trial_timeout_s": timeout,
            "wall_s": round(wall, 1)}


def run_contention(kind: str, root: Path, *, trials: int, workers: int, seed: int,
                   store_url: str | None = None) -> dict[str, Any]:
    workdir = root / f"contention-{kind}"
    store = Store(kind, workdir, store_url)
    prepare(workdir, store, fn="trivial", trials=trials, workers=workers, seed=seed,
            space={"x": "{float: [0.0, 1.0]}"})
    drivers: list[Driver] = []
    crashed = []
    started = time.monotonic()
    with reaping(drivers):
        d = Driver.start(workdir)
        drivers.append(d)
        rc = d.wait(120 + trials * 3.0)
        d.kill()
        if rc != 0:
            crashed.append({"start": 0, "rc": rc, "tail": d.tail()})
    wall = time.monotonic() - started
    final = store.read()
    verdict = judge(final, executions=read_executions(workdir), budget=trials)
    return {"scenario": f"contention: {workers} workers", "storage": kind, "runs": f"1 driver x {workers} workers",
            "trials": len(final or []), **verdict, "orphans": None, "crashed_drivers": len(crashed),
            "crashes": crashed, "restart": None, "wrong_kinds": None, "wall_s": round(wall, 1),
            "trials_per_s": round(len(final or []) / wall, 2) if wall else None}


def run_drivers(kind: str, root: Path, *, runs: int, budget: int, n_drivers: int = 3, workers: int = 2,
                new_url: Any = None) -> dict[str, Any]:
    """``runs`` times: ``n_drivers`` drivers started together on a NEW storage, one budget."""
    per_run = []
    crashed: list[dict[str, Any]] = []
    totals = {"lost": 0, "lost_retries": 0, "left_running": 0, "duplicated": 0, "trials": 0}
    budget_ok = True
    counted_all = []
    started = time.monotonic()
    for r in range(runs):
        workdir = root / f"drivers-{kind}-{r}"
        url = new_url(f"drivers_{r}") if new_url is not None else None
        store = Store(kind, workdir, url)
        prepare(workdir, store, fn="trivial", trials=budget, workers=workers,
                space={"x": "{float: [0.0, 1.0]}", "sleep": "{fixed: 0.3}"})
        drivers: list[Driver] = []
        with reaping(drivers):
            for _ in range(n_drivers):  # as close together as Popen allows: the creation race
                drivers.append(Driver.start(workdir))
            for i, d in enumerate(drivers):
                rc = d.wait(120 + budget * 3.0)
                d.kill()
                if rc != 0:
                    crashed.append({"run": r, "driver": i, "rc": rc, "tail": d.tail()})
        final = store.read()
        verdict = judge(final, executions=read_executions(workdir), budget=budget)
        for key in ("lost", "lost_retries", "left_running", "duplicated"):
            totals[key] += verdict[key]
        totals["trials"] += len(final or [])
        budget_ok = budget_ok and verdict["budget"]["ok"]
        counted_all.append(verdict["budget"]["counted"])
        per_run.append({"run": r, "crashed": sum(1 for c in crashed if c["run"] == r), **verdict})
        print(f"    run {r + 1}/{runs}: {sum(1 for c in crashed if c['run'] == r)} of {n_drivers} drivers crashed, "
              f"{verdict['budget']['counted']} of {budget} counted", flush=True)
    return {"scenario": f"{n_drivers} drivers, one budget", "storage": kind, "runs": f"{runs} x {n_drivers} drivers",
            **totals, "budget": {"expected": budget, "counted": counted_all, "ok": budget_ok},
            "orphans": None, "crashed_drivers": len(crashed), "crashes": crashed, "restart": None,
            "wrong_kinds": None, "per_run": per_run, "wall_s": round(time.monotonic() - started, 1)}


# ---- the run ------------------------------------------------------------------------------------


ZERO_GOALS = ("lost", "lost_retries", "left_running", "duplicated", "orphans", "crashed_drivers", "wrong_kinds")


def violations(row: dict[str, Any]) -> list[str]:
    if row.get("skipped"):
        return []
    out = [f"{key} {row[key]}" for key in ZERO_GOALS if row.get(key)]
    if row.get("budget") and not row["budget"]["ok"]:
        out.append(f"budget {row['budget']['counted']} != {row['budget']['expected']}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers; prints only")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"scenarios, comma-separated ({', '.join(SCENARIOS)})")
    parser.add_argument("--storages", default=",".join(STORAGES),
                        help="storages, comma-separated (kill and faults use journal and sqlite only)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule and the injected faults")
    parser.add_argument("--kills", type=int, help=f"kills per storage (default {FULL['kills']}; {QUICK['kills']} quick)")
    parser.add_argument("--contention-trials", type=int, help=f"default {FULL['contention_trials']}")
    parser.add_argument("--driver-runs", type=int, help=f"default {FULL['driver_runs']}")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write reliability.json/.md (default benchmarks/results; none with --quick)")
    parser.add_argument("--note", default="", help="a line shown at the top of the Markdown (e.g. 'smoke run')")
    parser.add_argument("--keep", action="store_true", help="keep the studies' working directories")
    parser.add_argument("--render", type=Path, metavar="JSON", help="rewrite the Markdown from a results JSON and exit")
    args = parser.parse_args(argv)
    if args.render:
        report = json.loads(args.render.read_text())
        target = args.render.with_suffix(".md")
        target.write_text(markdown(report) + "\n")
        print(f"wrote {target}")
        return 0
    p = dict(QUICK if args.quick else FULL)
    for key in ("kills", "contention_trials", "driver_runs"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    if args.kills is not None:
        p["kill_budget"] = max(p["kill_budget"], 4 * args.kills + 10)
    only = [s for s in args.only.split(",") if s]
    storages = [s for s in args.storages.split(",") if s]
    bad = [s for s in only if s not in SCENARIOS] + [s for s in storages if s not in STORAGES]
    if bad:
        parser.error(f"unknown scenario or storage {bad[0]!r}")
    out_dir = args.out if args.out is not None else (None if args.quick else RESULTS)

    info = {"machine": C.machine_info(), "date": C.now_utc(), "git": C.git_commit(),
            "versions": C.versions(["tunelab", "optuna", "sqlalchemy", "psycopg2-binary", "psycopg2", "psycopg"]),
            "command": _command(argv), "quick": args.quick, "seed": args.seed, "params": p, "note": args.note}
    print(f"reliability: {', '.join(only)} on {', '.join(storages)} ({'quick' if args.quick else 'full'}, "
          f"seed {args.seed})", flush=True)
    root = Path(tempfile.mkdtemp(prefix="tlrel-"))
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    pg: PostgresServer | None = None
    started = time.monotonic()
    try:
        if "postgres" in storages and ({"contention", "drivers"} & set(only)):
            why = PostgresServer.unavailable()
            if why:
                notes.append(f"PostgreSQL skipped: {why}.")
                print(f"  NOTE: PostgreSQL skipped: {why}", flush=True)
            else:
                print("  starting PostgreSQL on 127.0.0.1", flush=True)
                pg = PostgresServer()
        file_storages = [s for s in storages if s != "postgres"]
        if "kill" in only:
            for kind in file_storages:
                print(f"  kill -9 x {p['kills']} on {kind}", flush=True)
                rows.append(run_kill(kind, root, kills=p["kills"], budget=p["kill_budget"], seed=args.seed))
                _print_row(rows[-1])
        if "faults" in only and file_storages:
            kind = file_storages[0]
            print(f"  injected faults ({FAULT_RATE:.0%}) x {p['fault_trials']} trials on {kind}", flush=True)
            rows.append(run_faults(kind, root, trials=p["fault_trials"], timeout=p["fault_timeout"], seed=args.seed))
            _print_row(rows[-1])
        for kind in storages:
            if kind == "postgres" and pg is None:
                for scenario in ("contention", "drivers"):
                    if scenario in only:
                        rows.append({"scenario": scenario, "storage": kind, "skipped": notes[-1] if notes else "skipped"})
                continue
            new_url = (lambda label, _pg=pg, _k=kind: _pg.new_database(f"{_k}_{label}")) if kind == "postgres" else None
            if "contention" in only:
                print(f"  contention: {p['workers']} workers x {p['contention_trials']} trials on {kind}", flush=True)
                url = new_url("contention") if new_url else None
                rows.append(run_contention(kind, root, trials=p["contention_trials"], workers=p["workers"],
                                           seed=args.seed, store_url=url))
                _print_row(rows[-1])
            if "drivers" in only:
                print(f"  3 drivers, one budget of {p['driver_budget']}, x {p['driver_runs']} runs on {kind}", flush=True)
                rows.append(run_drivers(kind, root, runs=p["driver_runs"], budget=p["driver_budget"], new_url=new_url))
                _print_row(rows[-1])
    finally:
        if pg is not None:
            pg.stop()
        if args.keep:
            print(f"  kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    info["machine"]["load_average_end"] = C._loadavg()
    report = {**info, "rows": rows, "notes": notes, "elapsed_s": round(time.monotonic() - started, 1)}
    report["violations"] = {f"{r['scenario']} / {r['storage']}": v for r in rows if (v := violations(r))}
    text = markdown(report)
    print()
    print(text)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "reliability.md").write_text(text + "\n")
        print(f"\nwrote {out_dir / 'reliability.json'} and {out_dir / 'reliability.md'}")
    return 1 if report["violations"] else 0


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return " ".join([".venv/bin/python", "benchmarks/reliability.py", *map(shlex.quote, args)])


def _print_row(row: dict[str, Any]) -> None:
    v = violations(row)
    restart = row.get("restart") or {}
    print(f"    -> {row['scenario']} / {row['storage']}: "
          + (", ".join(v) if v else "all zero-goals met")
          + (f"; restart->progress max {restart.get('max_s')} s" if restart else "")
          + f" ({row.get('wall_s')} s)", flush=True)
    for crash in row.get("crashes", [])[:2]:
        print("       crashed driver, last lines:\n         " + crash["tail"].replace("\n", "\n         "), flush=True)


# ---- the Markdown -------------------------------------------------------------------------------


def _crash_line(tail: str) -> str:
    """The line of a crashed driver's output that says why (its `error: ...` line), shortened."""
    lines = [line.strip() for line in tail.strip().splitlines() if line.strip()]
    why = next((line for line in lines if line.startswith(("error", "Traceback", "did not finish"))
                or "Error" in line), lines[-1] if lines else "")
    return why[:160].replace("`", "'")


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    rows = [r for r in report["rows"] if not r.get("skipped")]
    lines = ["# Reliability: kill -9, injected faults, contention", ""]
    if report.get("note"):
        lines += [f"> **{report['note']}**", ""]
    lines += [
        "Real `tunelab run` processes (local backend) on real storages; what each column means is under "
        "Method. Zero-goals are counts that must be 0; the restart time is a measurement (goal: "
        f"no restart slower than {RESTART_GOAL_S:g} s).",
        "",
        f"- Date: {report['date']}; git {report['git']}; seed {report['seed']}"
        + ("; **quick (smoke) parameters**" if report.get("quick") else ""),
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}",
        f"- Load average at start / end: {m['load_average']} / {m.get('load_average_end')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        f"- Reproduce: `{report['command']}` (about {report.get('elapsed_s', 0) / 60:.0f} min here)",
        f"- Parameters: {p['kills']} kills per storage (trial budget {p['kill_budget']}, 2 workers, trials "
        f"0.2-1 s); faults: {p['fault_trials']} trials, {FAULT_RATE:.0%} injected, trial timeout "
        f"{p['fault_timeout']:g} s; contention: {p['workers']} workers x {p['contention_trials']} trials; "
        f"drivers: {p['driver_runs']} runs x 3 drivers x 2 workers, budget {p['driver_budget']}",
        "",
        "## Zero-goals",
        "",
    ]
    viol = report.get("violations") or {}
    if viol:
        lines += ["**Violated** (the script exits 1):", ""]
        lines += [f"- {where}: {', '.join(v)}" for where, v in viol.items()]
    else:
        lines += ["All met: 0 lost, 0 retries lost, 0 left running, 0 duplicated, 0 orphans, 0 crashed drivers, "
                  "0 wrong kinds, every budget exact."]
    restarts = [r["restart"] for r in rows if r.get("restart")]
    if restarts:
        worst = max((r["max_s"] for r in restarts if r["max_s"] is not None), default=None)
        slow = sum(r["slower_than_goal"] for r in restarts)
        total = sum(r["restarts"] for r in restarts)
        lines += ["", f"Restart to first progress line (measurement): max {_cell(worst)} s over {total} restarts; "
                  f"{slow} slower than {RESTART_GOAL_S:g} s (a restart killed before its first progress line "
                  f"counts as slow when it was killed after more than {RESTART_GOAL_S:g} s)."]
    lines += ["", "## Results", ""]
    header = ["scenario", "storage", "runs", "trials", "lost", "retries lost", "left running", "duplicated",
              "orphans", "crashed drivers", "max restart→progress s", "wrong kinds", "budget"]
    table = []
    for r in report["rows"]:
        if r.get("skipped"):
            table.append([r["scenario"], r["storage"], "skipped", *["—"] * (len(header) - 3)])
            continue
        b = r.get("budget") or {}
        counted = b.get("counted")
        budget = ("exact" if b.get("ok") else f"{counted} of {b.get('expected')}") if b else "—"
        restart = r.get("restart")
        table.append([r["scenario"], r["storage"], r["runs"], r["trials"], r["lost"], r["lost_retries"],
                      r["left_running"], r["duplicated"], _cell(r.get("orphans")), r["crashed_drivers"],
                      "—" if not restart else f"{_cell(restart['max_s'])} ({restart['slower_than_goal']} > "
                      f"{RESTART_GOAL_S:g} s)", _cell(r.get("wrong_kinds")), budget])
    lines.append(C.md_table(header, table))
    details = []
    for r in rows:
        bits = []
        if r.get("states"):
            bits.append("final states " + ", ".join(f"{k} {v}" for k, v in r["states"].items()))
        if r.get("orphan_detail", {}).get("by_role"):
            bits.append("orphans by role " + ", ".join(f"{k} {v}" for k, v in r["orphan_detail"]["by_role"].items()))
        if r.get("injected"):
            bits.append("injected " + ", ".join(f"{k} {v}" for k, v in r["injected"].items()))
        if r.get("wrong"):
            bits.append("wrong kinds e.g. " + "; ".join(f"trial {w['trial']}: {w['injected']} -> {w['got']} "
                                                          f"(expected {w['expected']})" for w in r["wrong"][:3]))
        if r.get("crashes"):
            bits.append(f"{len(r['crashes'])} crashed driver(s), e.g. `{_crash_line(r['crashes'][0]['tail'])}`")
        if r.get("snapshots_unreadable"):
            bits.append(f"{r['snapshots_unreadable']} snapshot(s) after a kill could not be read")
        for key in ("lost", "lost_retries", "left_running", "duplicated"):
            if r.get("examples", {}).get(key):
                bits.append(f"{key.replace('_', ' ')}: trials {r['examples'][key]}")
        if bits:
            details.append(f"- {r['scenario']} / {r['storage']}: " + "; ".join(bits))
    if details:
        lines += ["", "## Details", "", *details]
    lines += ["", "## Method", "", *METHOD]
    if report.get("notes"):
        lines += ["", *[f"- {n}" for n in report["notes"]]]
    return "\n".join(lines)


METHOD = [
    "- Every driver is `python -m tunelab.cli.main run study.yaml` with this checkout's `src` first on "
    "`PYTHONPATH`, the `local` backend (a fresh trial process per trial), the `random` sampler, MLflow off "
    "(MLflow's own crash safety, issue 10 item 4, is not covered here). Storage is read with Optuna from a "
    "copy of the journal / SQLite file (the script never repairs or locks what a driver left), PostgreSQL "
    "directly.",
    "- **kill**: SIGKILL to the driver alone (`kill -9 PID`) at seeded random moments 0.2-5 s after its "
    "start (`--seed`), a restart after each, then a last run to the budget. The `work` objective sleeps "
    "0.2-1 s in three reports and starts a grandchild (`sleep`, in its session) and a daemon (`sleep` in a "
    "new session, `setsid`). Storage is read after every kill. The schedule is seeded, but what a kill "
    "hits (an append, a trial's end, the recovery of the last kill's trials) depends on the machine's "
    "timing, so a window of a few milliseconds shows up in some runs and not in others: compare counts over "
    "many kills, and rerun with other `--seed`s to hunt a rare window.",
    "- **lost**: a trial that any read showed complete is not complete with the same values and config at "
    "the end; without kills, also an execution that returned (logged by the objective) whose trial is not "
    "complete with that value. **retries lost**: a trial ended `interrupted` (not itself a retry) whose config "
    "never ran again (no finished trial with `retry_of` pointing at it). **left running**: trials running or "
    "waiting at the end. **duplicated**: a trial whose objective started twice, plus the trials of a config "
    "whose objective started beyond the first (beyond the second when the config's first trial was "
    "interrupted: its single retry) or that completed beyond the first. **budget**: trials that count (not interrupted, not cancelled) equal the budget exactly.",
    f"- **orphans**: processes a trial started (the trial process, its grandchild, its daemon: pid and "
    f"kernel start time from `pids.log`) still alive {ORPHAN_GRACE_S:g} s after the scenario ended; they are "
    "then killed by pid. **crashed drivers**: a driver that exited non-zero (or did not finish) without being "
    "killed by the script.",
    "- **restart→progress**: from starting a driver after a kill to its first progress line (`[mm:ss] "
    "running ...`, printed after recovering the killed run's trials and launching new ones); includes "
    "interpreter start-up and imports.",
    "- **faults**: trial n's fault comes from `random.Random(f\"{seed}:{n}\")`: 30 % of trials, split evenly "
    "between crash (half `raise RuntimeError`, half `os._exit(3)`), NaN (returns `score: nan`), hang (sleeps "
    "past the trial timeout) and OOM. OOM is simulated safely: the trial caps its own address space with "
    "`RLIMIT_AS` at its current size + 64 MiB, then asks for 1 GiB, so the allocator refuses at once and "
    "Python raises a real `MemoryError` (no memory is touched; the kernel OOM killer is never involved). "
    "Expected kinds: crash → `crash`, NaN → `nan`, hang → `timeout`, OOM → `oom`, no fault → `complete`.",
    "- **contention**: one driver, 8 workers, a trivial objective (returns `x`). **3 drivers, one budget**: "
    "three drivers (2 workers each, trials of 0.3 s) started together on a new storage (a new SQLite file, "
    "journal file or PostgreSQL database), each run. PostgreSQL is a throw-away server on 127.0.0.1 "
    "(`tests/integration/cluster_fixtures.Postgres`: initdb in a temp dir, fsync off).",
]


if __name__ == "__main__":
    sys.exit(main())
