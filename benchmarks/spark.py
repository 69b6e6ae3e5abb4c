"""tunelab on Spark against Hyperopt's SparkTrials, on the same local Spark (127.0.0.1, no UI).

Three measurements, each system in a fresh interpreter (``_common.run_worker``):

- **overhead**: N trials of a no-op objective with 2 trials at once; per trial = wall time of
  the search (after the SparkSession is up) / N. tunelab: ``tune(backend="spark")``, a Spark
  task and a fresh trial process per trial. Hyperopt: ``fmin(trials=SparkTrials(parallelism=2))``.
- **quality**: the 6-d Hartmann function (minimum -3.32237), a budget of B trials with 8 at
  once (``local[8]``, so both have 8 task slots), several seeds: tunelab's TPE (constant liar)
  against SparkTrials' TPE. Lower is better.
- **broadcast**: a 64 MB object used by K one-partition tasks: captured in each task's closure
  (sent with every task) against ``sc.broadcast`` (sent to the executor once), as tunelab ships
  the objective and the token cache.

    .venv/bin/python benchmarks/spark.py            # full; writes benchmarks/results/spark.{json,md}
    .venv/bin/python benchmarks/spark.py --quick    # smoke: small counts, prints only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

LOOPBACK = "127.0.0.1"
HARTMANN_MIN = -3.32237
_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
_ALPHA = [1.0, 1.2, 3.0, 3.2]


def hartmann6(x: list[float]) -> float:
    return -sum(a * math.exp(-sum(_A[i][j] * (x[j] - _P[i][j] * 1e-4) ** 2 for j in range(6)))
                for i, a in enumerate(_ALPHA))


# ---- objectives (module level: they travel by name) --------------------------------------------


def noop(config: dict, reporter: Any) -> dict:
    return {"loss": config["x"]}


def hartmann_trial(config: dict, reporter: Any) -> dict:
    return {"loss": hartmann6([config[f"x{i}"] for i in range(6)])}


def hyperopt_noop(params: dict) -> float:
    return params["x"]


def hyperopt_hartmann(params: dict) -> float:
    return hartmann6([params[f"x{i}"] for i in range(6)])


# ---- workers -----------------------------------------------------------------------------------


def _session(cores: int) -> Any:
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master(f"local[{cores}]").appName("tunelab-bench")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.host", LOOPBACK).config("spark.driver.bindAddress", LOOPBACK)
               .config("spark.pyspark.python", sys.executable).getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def _tunelab(objective: Any, space: dict, trials: int, workers: int, sampler: str, seed: int) -> float:
    import tunelab

    with tempfile.TemporaryDirectory() as tmp:
        study = tunelab.tune(objective, space, metrics=[{"name": "loss", "goal": "minimize"}], sampler=sampler,
                             seed=seed, trials=trials, workers=workers, backend="spark", progress=False,
                             storage=str(Path(tmp) / "s.journal"), trial_dir=str(Path(tmp) / "runs"))
        return min(t.metrics["loss"] for t in study.trials() if t.state.value == "complete")


def _hyperopt(fn: Any, space: dict, trials: int, parallelism: int, algo: str, seed: int) -> float:
    import numpy as np
    from hyperopt import SparkTrials, fmin, rand, tpe

    spark_trials = SparkTrials(parallelism=parallelism)
    fmin(fn, space, algo=tpe.suggest if algo == "tpe" else rand.suggest, max_evals=trials, trials=spark_trials,
         rstate=np.random.default_rng(seed), show_progressbar=False)
    return min(spark_trials.losses())


def worker(args: list[str]) -> None:
    kind, system = args[0], args[1]
    n = int(args[2])
    session = _session(int(args[4]) if kind == "quality" else 2)  # a task slot per trial running at once
    started = time.perf_counter()
    result: dict[str, Any] = {"kind": kind, "system": system}
    if kind == "overhead":
        if system == "tunelab":
            _tunelab(noop, {"x": {"float": [0.0, 1.0]}}, n, 2, "random", 0)
        else:
            from hyperopt import hp

            _hyperopt(hyperopt_noop, {"x": hp.uniform("x", 0.0, 1.0)}, n, 2, "rand", 0)
        result.update(trials=n, wall_s=time.perf_counter() - started)
    elif kind == "quality":
        seed, parallelism = int(args[3]), int(args[4])
        if system == "tunelab":
            best = _tunelab(hartmann_trial, {f"x{i}": {"float": [0.0, 1.0]} for i in range(6)}, n, parallelism,
                            "tpe", seed)
        else:
            from hyperopt import hp

            best = _hyperopt(hyperopt_hartmann, {f"x{i}": hp.uniform(f"x{i}", 0.0, 1.0) for i in range(6)}, n,
                             parallelism, "tpe", seed)
        result.update(trials=n, seed=seed, parallelism=parallelism, best=best, wall_s=time.perf_counter() - started)
    elif kind == "broadcast":
        sc = session.sparkContext
        blob = os.urandom(int(args[3]) * 2**20)
        rdd = sc.parallelize([0], 1)
        times = []
        if system == "per-task":
            for _ in range(n):
                t = time.perf_counter()
                rdd.map(lambda _: len(blob)).collect()
                times.append(time.perf_counter() - t)
        else:
            bc = sc.broadcast(blob)
            for _ in range(n):
                t = time.perf_counter()
                rdd.map(lambda _: len(bc.value)).collect()
                times.append(time.perf_counter() - t)
        result.update(tasks=n, mb=int(args[3]), task_s=times)
    session.stop()
    C.emit(result)


# ---- driver ------------------------------------------------------------------------------------


def run(kind: str, system: str, *extra: Any, timeout: float = 3600) -> dict[str, Any]:
    env = {"SPARK_LOCAL_IP": LOOPBACK, "PYSPARK_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(C.REPO / "src"), str(Path(__file__).resolve().parent),
                                          os.environ.get("PYTHONPATH", "")])}
    return C.run_worker([str(Path(__file__).resolve()), "--worker", kind, system, *map(str, extra)], cwd=C.REPO,
                        timeout=timeout, env=env)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--trials", type=int, help="overhead: trials per system (default 60, quick 10)")
    p.add_argument("--budget", type=int, help="quality: trials per search (default 80, quick 16)")
    p.add_argument("--seeds", type=int, help="quality: searches per system (default 5, quick 1)")
    p.add_argument("--only", default="overhead,quality,broadcast")
    p.add_argument("--out", type=Path)
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    trials = args.trials or (10 if args.quick else 60)
    budget = args.budget or (16 if args.quick else 80)
    seeds = args.seeds or (1 if args.quick else 5)
    only = set(args.only.split(","))
    load_start = C.machine_info()["load_average"]
    results: list[dict[str, Any]] = []
    for system in ("tunelab", "hyperopt"):
        if "overhead" in only:
            results.append(run("overhead", system, trials))
            print(json.dumps(results[-1]), flush=True)
    if "quality" in only:
        for seed in range(seeds):
            for system in ("tunelab", "hyperopt"):
                results.append(run("quality", system, budget, seed, 8))
                print(json.dumps(results[-1]), flush=True)
    if "broadcast" in only:
        for system in ("per-task", "broadcast"):
            results.append(run("broadcast", system, 5 if args.quick else 20, 64))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "task_s"}), flush=True)
    out = args.out or (None if args.quick else C.REPO / "benchmarks" / "results")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"date": C.now_utc(), "git": C.git_commit(), "machine": C.machine_info(), "load_start": load_start,
                "versions": C.versions(["tunelab", "pyspark", "hyperopt", "optuna"]),
                "command": " ".join(["benchmarks/spark.py", *sys.argv[1:]])}
        (out / "spark.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        (out / "spark.md").write_text(render(meta, results))
    return 0


def render(meta: dict[str, Any], results: list[dict[str, Any]]) -> str:
    lines = ["# tunelab on Spark vs Hyperopt's SparkTrials", "",
             f"- Date: {meta['date']}; git {meta['git']}; command `{meta['command']}`",
             f"- Machine: {meta['machine']['cpu']}, {meta['machine']['cpus']} CPUs; load at start {meta['load_start']}, "
             f"at end {meta['machine']['load_average']} (a shared machine: compare within this run)",
             f"- Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}; Spark `local[2]` on 127.0.0.1",
             ""]
    over = [r for r in results if r["kind"] == "overhead"]
    if over:
        lines += ["## Per-trial overhead (no-op objective, 2 at once)", "",
                  C.md_table(["system", "trials", "wall s", "s / trial"],
                             [[r["system"], r["trials"], f"{r['wall_s']:.1f}", f"{r['wall_s'] / r['trials']:.2f}"]
                              for r in over]), ""]
    qual = [r for r in results if r["kind"] == "quality"]
    if qual:
        rows = []
        for system in ("tunelab", "hyperopt"):
            bests = [r["best"] for r in qual if r["system"] == system]
            if bests:
                rows.append([system, len(bests), qual[0]["trials"], qual[0]["parallelism"], f"{C.median(bests):.4f}",
                             ", ".join(f"{b:.3f}" for b in bests)])
        lines += [f"## Search quality: Hartmann-6 (minimum {HARTMANN_MIN}), TPE, 8 at once", "",
                  C.md_table(["system", "seeds", "budget", "parallelism", "median best", "bests"], rows), ""]
    cast = [r for r in results if r["kind"] == "broadcast"]
    if cast:
        lines += ["## A 64 MB object used by each task: per task vs broadcast once", "",
                  C.md_table(["how", "tasks", "first task s", "median task s (after the first)"],
                             [[r["system"], r["tasks"], f"{r['task_s'][0]:.2f}",
                               f"{C.median(r['task_s'][1:] or r['task_s']):.3f}"] for r in cast]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
