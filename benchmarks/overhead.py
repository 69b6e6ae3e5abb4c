"""Per-trial orchestration overhead of tunelab against Optuna, Hyperopt and Ray Tune.

Every system runs N trials (default 200) of a no-op objective (it returns ``x``, one float
parameter in [0, 1]), so the wall time per trial *is* the overhead: sampling, storage writes,
bookkeeping and, for process executors, starting the trial's process. Each system runs in a
fresh interpreter (its imports and caches help no other system), timed inside it:

* in-process systems: from just after the imports to the end of the study (interpreter
  start-up and imports excluded: they are paid once, not per trial);
* tunelab's ``local`` executor: the same window, which contains everything each trial costs
  (a fresh interpreter per trial, its imports, the pipe, the storage writes);
* Ray Tune: ``ray.init`` (start-up) is reported apart from ``Tuner.fit`` (per trial).

The machine is shared and small, so systems are measured in rounds (each round runs every
system once; the order is reversed every other round) and the median is reported. The goal
pairs (tunelab inprocess, Optuna journal) run back to back, and a goal uses the median of
those paired ratios, never numbers from another run.

Usage::

    python benchmarks/overhead.py               # full run (4-12 min), writes benchmarks/results/overhead.{json,md}
    python benchmarks/overhead.py --quick       # 30 trials, 1 round, prints only (add --out DIR to keep)
    python benchmarks/overhead.py --profile     # cProfile of tunelab inprocess (tpe), top functions
    python benchmarks/overhead.py --startup     # launch -> first training step, preloaded worker vs fresh
                                                # interpreter (2-4 min), writes benchmarks/results/startup.{json,md}
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import _startup  # noqa: E402

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
SPACE = {"x": {"float": [0, 1]}}
METRICS = [{"name": "value", "goal": "minimize"}]

#: Goals from the issue (checked and printed, never asserted in tests).
GOAL_INPROCESS_RATIO = 1.5  # tunelab inprocess / Optuna journal file, same sampler
GOAL_LOCAL_EXTRA_S = 0.5  # local executor per trial beyond starting the process itself


# ---- the objectives (no work) --------------------------------------------------------------

def tunelab_objective(config, reporter):  # noqa: ANN001, ANN201 - the tunelab objective signature
    return config["x"]


def optuna_objective(trial):  # noqa: ANN001, ANN201
    return trial.suggest_float("x", 0.0, 1.0)


def hyperopt_objective(params):  # noqa: ANN001, ANN201
    return params["x"]


def ray_objective(config):  # noqa: ANN001, ANN201
    return {"value": config["x"]}


# ---- workers: one system, in this (fresh) process --------------------------------------------

def _count_journal_appends() -> dict[str, int]:
    """Count and time appends to Optuna's journal file (each takes the lock and fsyncs): a diagnostic."""
    from optuna.storages.journal import JournalFileBackend

    counter = {"appends": 0, "seconds": 0.0}
    original = JournalFileBackend.append_logs

    def append_logs(self, logs):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        try:
            return original(self, logs)
        finally:
            counter["appends"] += 1
            counter["seconds"] += time.perf_counter() - start

    JournalFileBackend.append_logs = append_logs  # type: ignore[method-assign]
    return counter


def _w_tunelab(trials: int, tmp: Path, *, backend: str, sampler: str, workers: int = 1,
               storage: str = "journal") -> dict[str, Any]:
    import optuna
    import optuna.storages.journal  # noqa: F401 - import before the clock starts

    import tunelab.api
    import tunelab.tuner  # noqa: F401
    if backend == "inprocess":
        import tunelab.executors.inprocess  # noqa: F401
    else:
        import cloudpickle  # noqa: F401

        import tunelab.executors.local  # noqa: F401
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    appends = _count_journal_appends()
    start = time.perf_counter()
    study = tunelab.api.tune(tunelab_objective, SPACE, metrics=METRICS, trials=trials, backend=backend,
                             workers=workers, storage=str(tmp / "tunelab.journal") if storage == "journal" else storage,
                             study_name="overhead",
                             seed=0, sampler=sampler, trial_dir=str(tmp / "runs"), progress=False)
    wall = time.perf_counter() - start
    complete = sum(1 for t in study.trials() if t.state.value == "complete")
    result: dict[str, Any] = {"wall_s": wall, "complete": complete, "source": C.loaded_source_fingerprint()}
    if storage == "journal":
        result.update(journal_appends=appends["appends"], journal_append_s=appends["seconds"])
    return result


def _optuna_sampler(name: str) -> Any:
    import optuna

    if name == "tpe":
        # The configuration tunelab builds for `tpe` with one worker (tunelab.samplers). Optuna's own
        # default has constant_liar=True, which writes one more system attribute per trial.
        return optuna.samplers.TPESampler(seed=0, multivariate=True, constant_liar=False)
    return optuna.samplers.RandomSampler(seed=0)


def _w_optuna(trials: int, tmp: Path, *, storage: str, sampler: str) -> dict[str, Any]:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    appends = _count_journal_appends()
    start = time.perf_counter()
    if storage == "memory":
        store: Any = None
    elif storage == "journal":
        store = optuna.storages.JournalStorage(JournalFileBackend(str(tmp / "optuna.journal")))
    else:
        store = f"sqlite:///{tmp / 'optuna.db'}"
    study = optuna.create_study(storage=store, study_name="overhead", sampler=_optuna_sampler(sampler))
    study.optimize(optuna_objective, n_trials=trials)
    wall = time.perf_counter() - start
    complete = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    result = {"wall_s": wall, "complete": complete}
    if storage == "journal":
        result["journal_appends"] = appends["appends"]
        result["journal_append_s"] = appends["seconds"]
    return result


def _w_hyperopt(trials: int, tmp: Path) -> dict[str, Any]:
    import numpy as np
    from hyperopt import Trials, fmin, hp, tpe

    start = time.perf_counter()
    history = Trials()
    fmin(hyperopt_objective, {"x": hp.uniform("x", 0.0, 1.0)}, algo=tpe.suggest, max_evals=trials,
         trials=history, rstate=np.random.default_rng(0), show_progressbar=False)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "complete": sum(1 for r in history.results if r.get("status") == "ok")}


def _w_ray(trials: int, tmp: Path, *, reuse_actors: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    import ray
    from ray import tune

    t1 = time.perf_counter()
    ray_tmp = Path(tempfile.mkdtemp(prefix="tlray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="ERROR", _temp_dir=str(ray_tmp), configure_logging=True)
    t2 = time.perf_counter()
    node_ip = ray.util.get_node_ip_address()
    tuner = tune.Tuner(
        ray_objective,
        param_space={"x": tune.uniform(0.0, 1.0)},  # the basic variant generator: random search
        tune_config=tune.TuneConfig(num_samples=trials, metric="value", mode="min", reuse_actors=reuse_actors),
        run_config=tune.RunConfig(storage_path=str(tmp / "ray_results"), name="overhead", verbose=0),
    )
    results = tuner.fit()
    t3 = time.perf_counter()
    complete = sum(1 for r in results if r.error is None)
    ray.shutdown()
    t4 = time.perf_counter()
    import shutil

    shutil.rmtree(ray_tmp, ignore_errors=True)
    return {"wall_s": t3 - t2, "complete": complete, "import_s": t1 - t0, "startup_s": t2 - t1,
            "shutdown_s": t4 - t3, "node_ip": node_ip}


# ---- the systems ----------------------------------------------------------------------------

class System:
    def __init__(self, key: str, label: str, run: Callable[[int, Path], dict[str, Any]], *,
                 group: str, sampler: str, storage: str, max_rounds: int | None = None, max_trials: int | None = None,
                 note: str = "") -> None:
        self.key, self.label, self.run, self.group = key, label, run, group
        self.sampler, self.storage, self.note = sampler, storage, note
        self.max_rounds, self.max_trials = max_rounds, max_trials

    def trials(self, requested: int) -> int:
        return min(requested, self.max_trials) if self.max_trials else requested


def systems(ray_fresh_trials: int) -> list[System]:
    from functools import partial as p

    journal = "journal file"
    out = [
        System("tunelab-inprocess-tpe", "tunelab inprocess", p(_w_tunelab, backend="inprocess", sampler="tpe"),
               group="in-process", sampler="tpe", storage=journal + " (default)"),
        System("tunelab-inprocess-random", "tunelab inprocess", p(_w_tunelab, backend="inprocess", sampler="random"),
               group="in-process", sampler="random", storage=journal + " (default)"),
        System("tunelab-inprocess-memory-random", "tunelab inprocess", p(_w_tunelab, backend="inprocess",
               sampler="random", storage="memory"), group="in-process", sampler="random", storage="in-memory",
               note="diagnostic: tunelab's bookkeeping without storage cost"),
        System("optuna-memory-tpe", "Optuna", p(_w_optuna, storage="memory", sampler="tpe"),
               group="in-process", sampler="tpe", storage="in-memory"),
        System("optuna-memory-random", "Optuna", p(_w_optuna, storage="memory", sampler="random"),
               group="in-process", sampler="random", storage="in-memory"),
        System("optuna-journal-tpe", "Optuna", p(_w_optuna, storage="journal", sampler="tpe"),
               group="in-process", sampler="tpe", storage=journal),
        System("optuna-journal-random", "Optuna", p(_w_optuna, storage="journal", sampler="random"),
               group="in-process", sampler="random", storage=journal),
        System("optuna-sqlite-tpe", "Optuna", p(_w_optuna, storage="sqlite", sampler="tpe"),
               group="in-process", sampler="tpe", storage="SQLite file", max_rounds=3),
        System("optuna-sqlite-random", "Optuna", p(_w_optuna, storage="sqlite", sampler="random"),
               group="in-process", sampler="random", storage="SQLite file", max_rounds=3),
        System("hyperopt-tpe", "Hyperopt fmin", _w_hyperopt,
               group="in-process", sampler="tpe", storage="Trials() in memory"),
        System("tunelab-local-w1", "tunelab local, 1 worker", p(_w_tunelab, backend="local", sampler="tpe"),
               group="process per trial", sampler="tpe", storage=journal + " (default)", max_rounds=3),
        System("tunelab-local-w2", "tunelab local, 2 workers", p(_w_tunelab, backend="local", sampler="tpe", workers=2),
               group="process per trial", sampler="tpe", storage=journal + " (default)", max_rounds=3,
               note="2 trials at once on 2 cores: wall time / trials"),
        System("ray-reuse", "Ray Tune, reuse_actors=True", p(_w_ray, reuse_actors=True),
               group="Ray", sampler="random", storage="experiment dir", max_rounds=1,
               note="actors reused between trials; ray.init reported apart"),
        System("ray-fresh", "Ray Tune, reuse_actors=False (default)", p(_w_ray, reuse_actors=False),
               group="Ray", sampler="random", storage="experiment dir", max_rounds=1,
               max_trials=ray_fresh_trials,
               note=f"a new actor per trial; capped at {ray_fresh_trials} trials to keep the run short"),
    ]
    return out


#: Run order within a round (reversed every other round): each goal pair runs back to back,
#: so both sides of a ratio see the same load; the slow systems run last. Ray runs once, at the end.
RUN_ORDER = [
    "tunelab-inprocess-tpe", "optuna-journal-tpe", "tunelab-inprocess-random", "optuna-journal-random",
    "tunelab-inprocess-memory-random", "optuna-memory-random", "optuna-memory-tpe", "hyperopt-tpe",
    "optuna-sqlite-tpe", "optuna-sqlite-random", "tunelab-local-w1", "tunelab-local-w2",
    "ray-reuse", "ray-fresh",
]
GOAL_PAIRS = {s: (f"tunelab-inprocess-{s}", f"optuna-journal-{s}") for s in ("tpe", "random")}


BASELINES = {
    "python -c pass": ["-c", "pass"],
    "python -c 'import tunelab.executors._run_trial'": ["-c", "import tunelab.executors._run_trial"],
}


# ---- driver ---------------------------------------------------------------------------------

def _worker_main(args: argparse.Namespace) -> None:
    system = {s.key: s for s in systems(args.ray_fresh_trials)}[args.worker]
    tmp = Path(tempfile.mkdtemp(prefix=f"tlbench-{system.key}-"))
    try:
        if args.profile:
            _profile(system, args.trials, tmp)
            return
        result = system.run(system.trials(args.trials), tmp)
        result["trials"] = system.trials(args.trials)
        C.emit(result)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _profile(system: System, trials: int, tmp: Path) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    result = system.run(trials, tmp)
    profiler.disable()
    print(f"{system.key}: {trials} trials in {result['wall_s']:.2f} s "
          f"({result['wall_s'] / trials * 1000:.1f} ms/trial, under the profiler)\n")
    stats = pstats.Stats(profiler).strip_dirs()
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)


FLOOR = "python -c 'import tunelab.executors._run_trial'"


def _sample_baselines(samples: dict[str, list[list[float]]], n: int = 7) -> None:
    """One batch of start-up times (the commands interleaved, so load spikes hit them alike)."""
    batch: dict[str, list[float]] = {name: [] for name in BASELINES}
    for _ in range(n):
        for name, argv in BASELINES.items():
            batch[name].append(C.time_command([sys.executable, *argv], cwd=C.REPO))
    for name, values in batch.items():
        samples.setdefault(name, []).append(values)


def _baseline_summary(samples: dict[str, list[list[float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, batches in samples.items():
        flat = [x for batch in batches for x in batch]
        out[name] = {"median_s": C.median(flat), "min_s": min(flat), "batch_medians_s": [C.median(b) for b in batches],
                     "samples_s": flat}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=None, help="trials per system (default 200; 30 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5; SQLite and local executor rows run at most 3, Ray once; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 30 trials, one round, prints only")
    parser.add_argument("--only", default="", help="comma-separated system keys (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated system keys to leave out")
    parser.add_argument("--ray-fresh-trials", type=int, default=30,
                        help="trial cap for Ray with a new actor per trial (about 2 s a trial here)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write overhead.json/.md (default benchmarks/results; none with --quick)")
    parser.add_argument("--profile", nargs="?", const="tunelab-inprocess-tpe", default=None, metavar="SYSTEM",
                        help="cProfile one system in a worker (default tunelab-inprocess-tpe) and print hotspots")
    parser.add_argument("--render", type=Path, metavar="JSON", help="rewrite the Markdown from a results JSON and exit")
    parser.add_argument("--startup", action="store_true",
                        help="the start-up figure instead: launch -> first training step of a text-classification "
                             "trial, preloaded worker vs fresh interpreter (writes startup.json/.md)")
    parser.add_argument("--startup-trials", type=int, default=None, help="trials per --startup run (default 10; 3 with --quick)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.trials = args.trials or (30 if args.quick else 200)
    args.startup_trials = args.startup_trials or (3 if args.quick else 10)
    args.rounds = args.rounds or (1 if args.quick or args.startup else 5)

    if args.worker in _startup.MODES:
        C.emit(_startup.worker(args.worker, args.startup_trials))
        return 0
    if args.startup:
        return _startup.run(args, HERE, RESULTS)
    if args.worker:
        _worker_main(args)
        return 0
    if args.render:
        report = json.loads(args.render.read_text())
        target = args.render.with_suffix(".md")
        target.write_text(_markdown(report) + "\n")
        print(f"wrote {target}")
        return 0
    if args.profile:
        import subprocess

        return subprocess.call([sys.executable, str(HERE), "--worker", args.profile, "--profile", args.profile,
                                "--trials", str(args.trials)], env={**__import__("os").environ, **C.QUIET_ENV})

    out_dir = args.out if args.out is not None else (None if args.quick else RESULTS)
    all_systems = systems(args.ray_fresh_trials)
    only = {k for k in args.only.split(",") if k}
    skip = {k for k in args.skip.split(",") if k}
    unknown = (only | skip) - {s.key for s in all_systems}
    if unknown:
        parser.error(f"unknown system {sorted(unknown)[0]!r}; known: {', '.join(s.key for s in all_systems)}")
    chosen = [s for s in all_systems if (not only or s.key in only) and s.key not in skip]

    started = time.perf_counter()
    info = {"machine": C.machine_info(), "date": C.now_utc(), "git": C.git_commit(),
            "versions": C.versions(["tunelab", "optuna", "hyperopt", "ray", "numpy", "sqlalchemy"]),
            "command": _command(argv), "trials": args.trials, "rounds": args.rounds}
    print(f"overhead: {args.trials} trials per system, {args.rounds} round(s), {len(chosen)} systems", flush=True)
    # Start-up baselines: sampled right before each local-executor run, so the goal compares the
    # two under the same load (or once here when that system is not chosen).
    baseline_samples: dict[str, list[list[float]]] = {}
    if "tunelab-local-w1" not in {s.key for s in chosen}:
        _sample_baselines(baseline_samples)

    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in chosen}
    by_key = {s.key: s for s in chosen}
    in_rounds = [by_key[k] for k in RUN_ORDER if k in by_key and by_key[k].max_rounds != 1]
    for r in range(args.rounds):
        print(f" round {r + 1}/{args.rounds}", flush=True)
        for s in (in_rounds if r % 2 == 0 else in_rounds[::-1]):
            if s.max_rounds is None or r < s.max_rounds:
                if s.key == "tunelab-local-w1":
                    _sample_baselines(baseline_samples)
                    floor_ms = C.median(baseline_samples[FLOOR][-1]) * 1000
                    print(f"  {'(floor: ' + FLOOR + ')':<52} {floor_ms:8.1f} ms", flush=True)
                _run_one(s, args, runs, r)
    baselines = _baseline_summary(baseline_samples)
    for s in (by_key[k] for k in RUN_ORDER if k in by_key and by_key[k].max_rounds == 1):
        _run_one(s, args, runs, 0)

    report = _summarize(info, chosen, runs, baselines, args)
    report["elapsed_s"] = time.perf_counter() - started
    report["machine"]["load_average_end"] = C.machine_info()["load_average"]
    if report["tunelab_source_changed"]:
        print("\nWARNING: tunelab's code changed during the run (" + ", ".join(report["tunelab_source_changed"])
              + "): those rows mix versions. Run again.", flush=True)
    markdown = _markdown(report)
    print()
    print(markdown)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "overhead.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / "overhead.md").write_text(markdown + "\n")
        print(f"\nwrote {out_dir / 'overhead.json'} and {out_dir / 'overhead.md'}")
    goals = report["goals"]
    return 0 if all(g["pass"] for g in goals if g["pass"] is not None) else 1


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return " ".join([".venv/bin/python", "benchmarks/overhead.py", *map(shlex.quote, args)])


def _run_one(s: System, args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], round_: int) -> None:
    n = s.trials(args.trials)
    print(f"  {s.key:<26} {n:>4} trials ... ", end="", flush=True)
    argv = [str(HERE), "--worker", s.key, "--trials", str(args.trials), "--ray-fresh-trials", str(args.ray_fresh_trials)]
    try:
        result = C.run_worker(argv, cwd=Path(tempfile.gettempdir()), timeout=max(600, 10 * n))
    except Exception as exc:  # noqa: BLE001 - one broken peer must not lose the others' numbers
        print(f"FAILED: {exc}", flush=True)
        runs[s.key].append({"error": str(exc)[-2000:], "round": round_})
        return
    result["per_trial_s"] = result["wall_s"] / n
    result["round"] = round_
    runs[s.key].append(result)
    extra = f" (start-up {result['startup_s']:.1f} s)" if "startup_s" in result else ""
    print(f"{result['wall_s']:7.2f} s  {result['per_trial_s'] * 1000:8.2f} ms/trial{extra}", flush=True)


def _summarize(info: dict[str, Any], chosen: list[System], runs: dict[str, list[dict[str, Any]]],
               baselines: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for s in chosen:
        good = [r for r in runs[s.key] if "error" not in r]
        row: dict[str, Any] = {"label": s.label, "group": s.group, "sampler": s.sampler, "storage": s.storage,
                               "trials": s.trials(args.trials), "note": s.note, "runs": runs[s.key]}
        if good:
            per_trial = [r["per_trial_s"] for r in good]
            row.update(per_trial_median_s=C.median(per_trial), per_trial_min_s=min(per_trial),
                       complete=[r["complete"] for r in good])
            if "journal_appends" in good[0]:
                per = sorted({round(r["journal_appends"] / row["trials"], 2) for r in good})
                row["journal_appends_per_trial"] = per[0] if len(per) == 1 else "–".join(map(str, per))
                row["journal_append_ms_per_trial_median"] = round(
                    C.median(r["journal_append_s"] / row["trials"] for r in good) * 1000, 2)
            if "startup_s" in good[0]:
                row["startup_median_s"] = C.median(r["startup_s"] for r in good)
                row["import_median_s"] = C.median(r["import_s"] for r in good)
                row["node_ip"] = good[0].get("node_ip")
        else:
            row["error"] = runs[s.key][-1].get("error") if runs[s.key] else "not run"
        rows[s.key] = row

    def med(key: str) -> float | None:
        return rows.get(key, {}).get("per_trial_median_s")

    goals = []
    for sampler, (ours_key, theirs_key) in GOAL_PAIRS.items():
        # Paired: the two ran back to back in each round; the goal uses the median of those ratios.
        ours_runs = {r["round"]: r["per_trial_s"] for r in runs.get(ours_key, []) if "error" not in r}
        theirs_runs = {r["round"]: r["per_trial_s"] for r in runs.get(theirs_key, []) if "error" not in r}
        paired = [ours_runs[k] / theirs_runs[k] for k in sorted(ours_runs) if k in theirs_runs]
        ratio = C.median(paired) if paired else None
        ours, theirs = med(ours_key), med(theirs_key)
        goals.append({
            "goal": f"tunelab inprocess ≤ {GOAL_INPROCESS_RATIO}× Optuna journal file ({sampler})",
            "measured": (f"{ratio:.2f}× (median of {len(paired)} paired rounds: "
                         + ", ".join(f"{x:.2f}" for x in paired) + ")") if ratio is not None else "not measured",
            "value": ratio, "paired_ratios": paired, "limit": GOAL_INPROCESS_RATIO,
            "ratio_of_medians": ours / theirs if ours is not None and theirs else None,
            "pass": None if ratio is None else ratio <= GOAL_INPROCESS_RATIO,
        })
    # Paired too: each local run minus the floor sampled just before it.
    floors = baselines[FLOOR]["batch_medians_s"] if FLOOR in baselines else []
    local_runs = [r for r in runs.get("tunelab-local-w1", []) if "error" not in r]
    pairs = [(r["per_trial_s"], floors[i]) for i, r in enumerate(local_runs) if i < len(floors)]
    extras = [local - floor for local, floor in pairs]
    extra = C.median(extras) if extras else None
    local = C.median(p[0] for p in pairs) if pairs else None
    floor = C.median(p[1] for p in pairs) if pairs else None
    goals.append({
        "goal": f"tunelab local (1 worker) adds ≤ {GOAL_LOCAL_EXTRA_S} s a trial beyond starting the process",
        "measured": (f"{extra * 1000:.0f} ms (median of {len(extras)} runs, each minus the floor sampled just "
                     f"before it; medians {local * 1000:.0f} ms a trial, {floor * 1000:.0f} ms floor = "
                     "interpreter + child-module import)") if extra is not None else "not measured",
        "value": extra, "per_run_s": extras, "limit": GOAL_LOCAL_EXTRA_S,
        "pass": None if extra is None else extra <= GOAL_LOCAL_EXTRA_S,
    })
    # Each tunelab system loads its own set of modules; a system whose runs saw different code
    # (the tree is edited while benchmarks run) makes its median meaningless.
    changed = sorted(key for key, rs in runs.items() if len({r["source"] for r in rs if "source" in r}) > 1)
    return {**info, "baselines": baselines, "systems": rows, "goals": goals, "tunelab_source_changed": changed,
            "local_extra_per_trial_s": extra}


def _markdown(report: dict[str, Any]) -> str:
    m, v = report["machine"], report["versions"]
    systems_ = report["systems"]
    journal = {s: systems_.get(f"optuna-journal-{s}", {}).get("per_trial_median_s") for s in ("tpe", "random")}
    lines = [
        "# Per-trial orchestration overhead",
        "",
        f"{report['trials']} trials of a no-op objective (returns `x`, one float in [0, 1]) per system; "
        "each system in a fresh interpreter, timed inside it. Per trial = wall time / trials (lower is better), "
        f"median of the runs: up to {report['rounds']} interleaved rounds (SQLite and the local executor at "
        "most 3, Ray once).",
        "",
        f"- Date: {report['date']}; git {report['git']}"
        + ("; **tunelab's code changed during the run in: " + ", ".join(report["tunelab_source_changed"])
           + " (those rows mix versions)**" if report["tunelab_source_changed"] else
           "; tunelab's loaded modules were the same in every run"),
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}",
        f"- Load average at start / end: {m['load_average']} / {m.get('load_average_end')} "
        "(shared machine: compare ratios within this run, not absolute times across runs)",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- Reproduce: `{report['command']}` (from the repository root; about "
        f"{report.get('elapsed_s', 0) / 60:.0f} min here)",
        "",
        "## Goals",
        "",
        C.md_table(["goal", "measured", "result"],
                   [[g["goal"], g["measured"], "—" if g["pass"] is None else ("PASS" if g["pass"] else "FAIL")]
                    for g in report["goals"]]),
        "",
        "## Results",
        "",
    ]
    rows = []
    for key, r in systems_.items():
        per = r.get("per_trial_median_s")
        base = journal.get(r["sampler"]) if r["group"] == "in-process" else None
        rel = f"{per / base:.2f}×" if per is not None and base else ""
        spread = (f"{C.fmt_ms(r['per_trial_min_s'])}" if len([x for x in r["runs"] if "error" not in x]) > 1 else "")
        if "error" in r:
            per_s, rel = f"failed: {r['error'].splitlines()[0][:60]}", ""
        else:
            per_s = C.fmt_ms(per)
        startup = f"{r['startup_median_s']:.1f}" if "startup_median_s" in r else ""
        appends = r.get("journal_appends_per_trial", "")
        append_ms = r.get("journal_append_ms_per_trial_median", "")
        n_runs = len([x for x in r["runs"] if "error" not in x])
        rows.append([r["label"], r["sampler"], r["storage"], r["trials"], n_runs, per_s, spread, rel, appends,
                     append_ms, startup, r["note"]])
    lines.append(C.md_table(["system", "sampler", "storage", "trials", "runs", "ms / trial (median)", "min",
                             "vs Optuna journal (same sampler)", "journal appends / trial", "of which in appends, ms",
                             "start-up s", "note"], rows))
    lines += ["", "## Baselines (process start-up)", ""]
    lines.append(C.md_table(["command", "median ms", "min ms", "samples"],
                            [[f"`{name}`", C.fmt_ms(b["median_s"]), C.fmt_ms(b["min_s"]), len(b["samples_s"])]
                             for name, b in report["baselines"].items()]))
    extra = report.get("local_extra_per_trial_s")
    lines += [
        "",
        "## Notes",
        "",
        "- tunelab rows use the default storage (an Optuna journal file in a temporary directory) and do "
        "everything a real study does per trial: the tuner's user attributes, the budget count read from "
        "storage, de-duplication, retention; the local executor also writes each trial's directory with "
        "`config.json` (the in-process executor leaves the directory to a trial's first checkpoint).",
        "- \"journal appends / trial\": calls to Optuna's `JournalFileBackend.append_logs`; each one takes "
        "the file lock and fsyncs. \"of which in appends\": the time per trial spent inside those calls "
        "(median over runs); the rest is sampling and bookkeeping.",
        "- The inprocess goals compare runs that went back to back in the same round (the run order is "
        "reversed every other round) and take the median of those paired ratios; the \"vs Optuna journal\" "
        "column is the ratio of the medians.",
        "- Optuna's `tpe` rows use `TPESampler(seed=0, multivariate=True, constant_liar=False)`, the sampler "
        "tunelab builds for `tpe` with one worker (Optuna's own default, `constant_liar=True`, writes one more "
        "system attribute per trial). Optuna's per-trial INFO logging is switched off for every system.",
        "- tunelab local: the whole study is timed, so each trial's fresh interpreter, its imports and "
        "the pipe are included. " + (f"Beyond the start-up floor (interpreter + "
                                     f"`import tunelab.executors._run_trial`) it adds "
                                     f"{extra * 1000:.0f} ms a trial." if extra is not None else ""),
        "- Ray Tune: `ray.init(num_cpus=2, include_dashboard=False, _node_ip_address=\"127.0.0.1\")` "
        "with usage stats off, a function trainable and the basic variant generator (random search); "
        "\"start-up s\" is `ray.init`, not counted per trial; each Ray row ran once.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
