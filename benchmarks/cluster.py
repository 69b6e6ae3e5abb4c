"""tunelab's Ray executor beside Ray Tune on the same local Ray cluster, and 2 nodes against 1.

A real cluster is started with ``ray start`` on this machine (``tests/integration/cluster_fixtures``):
a head with 2 CPUs, then a second node joined to it. Every system runs in a fresh interpreter
(``_common.run_worker``) that connects to that cluster as a driver, timed inside it from before
``ray.init`` (tunelab connects inside ``tune()``):

* **overhead**: N no-op trials, W at once, on the 2-node cluster. ``startup`` is the time to the
  first finished trial (connect, set-up, the first trial process), ``per trial`` the rest of
  the study divided by the remaining trials (W run at once), ``driver RSS`` the peak resident
  memory of the driver process. tunelab runs a fresh process per trial (``max_calls=1``);
  Ray Tune runs with ``reuse_actors=False`` (the same isolation) and ``True`` (its fast path).
* **scaling**: N trials that each sleep S seconds, W = the cluster's CPUs, on 1 node (2 CPUs)
  and on 2 nodes (2 + 2 CPUs). Efficiency = (T_1 / T_2) / 2. Both nodes share this machine's
  cores, so CPU work (starting trial processes) does not scale here; sleeping does.
* **data**: an objective holding a large array (``--mb``) on the 2-node cluster: the seconds a
  trial spends getting its objective (object-store fetch + unpickle, timed in the trial), when
  the executor puts it in the object store once (what it does) against once per trial.
* **token cache** (when torch/transformers are installed): a text-classification cache built
  once in the driver, then memory-mapped by a task on each node: what a trial spends getting
  its tokenized data.

Usage::

    python benchmarks/cluster.py            # full (~8 min on 2 shared cores), writes benchmarks/results/cluster.{json,md}
    python benchmarks/cluster.py --quick    # small numbers, prints only (add --out DIR to keep)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent / "tests" / "integration"))
sys.path.insert(0, str(HERE.parent.parent / "tests"))

import _common as C  # noqa: E402

RESULTS = HERE.parent / "results"
#: _common.QUIET_ENV pins Ray to 127.0.0.1, which only works for one node; a cluster's drivers
#: must find the raylets where they registered.
CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}


# ---- objectives ---------------------------------------------------------------------------------

def noop(config, reporter):  # noqa: ANN001, ANN201 - the tunelab objective signature
    return {"value": config["x"]}


def sleeper(config, reporter):  # noqa: ANN001, ANN201
    time.sleep(config["sleep"])
    return {"value": config["x"]}


class Holder:
    """An objective that carries a large object (a dataset, a vocabulary, ...)."""

    def __init__(self, megabytes: int) -> None:
        import numpy as np

        self.data = np.random.default_rng(0).integers(0, 255, size=megabytes * 2**20, dtype=np.uint8)

    def __call__(self, config, reporter):  # noqa: ANN001, ANN201
        return {"value": float(self.data[:1000].mean()) + config["x"]}


# ---- workers (each in a fresh interpreter, a driver of the cluster) ------------------------------

def _tmpdir() -> Path:
    """A temporary directory removed when this worker exits."""
    import atexit
    import shutil

    path = Path(tempfile.mkdtemp(prefix="tlcluster-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def w_tunelab(trials: int, workers: int, sleep: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    import tunelab

    first: list[float] = []

    def progress(p) -> None:  # noqa: ANN001
        if not first and p.complete + p.pruned + p.failed >= 1:
            first.append(time.perf_counter())

    tmp = _tmpdir()
    space: dict[str, Any] = {"x": {"float": [0, 1]}}
    objective = noop
    if sleep:
        space["sleep"] = {"fixed": sleep}
        objective = sleeper
    t1 = time.perf_counter()
    study = tunelab.tune(objective, space, metrics=[{"name": "value", "goal": "minimize"}], sampler="random", seed=0,
                         trials=trials, workers=workers, backend="ray", storage=str(tmp / "s.journal"),
                         study_name="bench", trial_dir=str(tmp / "runs"), on_progress=progress, progress=False)
    t2 = time.perf_counter()
    done = sum(1 for t in study.trials() if t.state.value == "complete")
    return {"import_s": t1 - t0, "wall_s": t2 - t1, "first_s": (first[0] if first else t2) - t1, "complete": done,
            "driver_rss_mib": _peak_rss_mib()}


def w_raytune(trials: int, workers: int, sleep: float, reuse: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    import ray
    from ray import tune

    first: list[float] = []

    class First(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001, ANN003, ANN201
            if not first:
                first.append(time.perf_counter())

    def trainable(config):  # noqa: ANN001, ANN202
        if config["sleep"]:
            time.sleep(config["sleep"])
        return {"value": config["x"]}

    tmp = _tmpdir()
    t1 = time.perf_counter()
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, logging_level="ERROR")
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"x": tune.uniform(0.0, 1.0), "sleep": sleep},
        tune_config=tune.TuneConfig(num_samples=trials, metric="value", mode="min", reuse_actors=reuse,
                                    max_concurrent_trials=workers),
        run_config=tune.RunConfig(storage_path=str(tmp / "ray_results"), name="cluster", verbose=0,
                                  callbacks=[First()]),
    )
    results = tuner.fit()
    t2 = time.perf_counter()
    done = sum(1 for r in results if r.error is None)
    rss = _peak_rss_mib()
    ray.shutdown()
    return {"import_s": t1 - t0, "wall_s": t2 - t1, "first_s": (first[0] if first else t2) - t1, "complete": done,
            "driver_rss_mib": rss}


def w_data(trials: int, megabytes: int, per_trial: bool) -> dict[str, Any]:
    """The Ray executor alone (no tuner): how long each trial takes to get a large objective."""
    import ray

    from tunelab.executors.base import TrialSpec
    from tunelab.executors.ray import RayExecutor
    from tunelab.trial import Ended, Result

    objective = Holder(megabytes)
    tmp = _tmpdir()
    t0 = time.perf_counter()
    executor = RayExecutor(objective, 3)
    setup_s = time.perf_counter() - t0
    payload = None
    if per_trial:  # for comparison: a new copy of the objective in the object store for every trial
        import cloudpickle

        payload = cloudpickle.dumps(objective)
    launched = ended = 0
    launch_s = 0.0
    start = time.perf_counter()
    try:
        while ended < trials:
            while launched < trials and executor.capacity():
                t0 = time.perf_counter()
                if payload is not None:
                    executor._objective_ref = ray.put(payload)
                executor.launch(TrialSpec(launched, {"x": 0.5}, tmp / f"t{launched}"))
                launch_s += time.perf_counter() - t0
                launched += 1
            for event in executor.poll(0.5):
                if isinstance(event, Result):
                    executor.reply(event.trial_id, False)
                elif isinstance(event, Ended):
                    ended += 1
        wall = time.perf_counter() - start
        loads = {tid: info["load_s"] for tid, info in executor.started.items()}
        nodes = {tid: info["node_id"][:8] for tid, info in executor.started.items()}
    finally:
        executor.shutdown()
    assert not ray.is_initialized()
    return {"setup_s": setup_s, "wall_s": wall, "driver_launch_s": launch_s, "load_s": [loads.get(i) for i in range(trials)],
            "nodes": [nodes.get(i) for i in range(trials)], "payload_mib": megabytes}


def w_token_cache(tasks: int) -> dict[str, Any]:
    """Build a token cache once (the driver's prepare), then time memory-mapping it in tasks on every node."""
    import ray

    import nlp_fixtures
    from tunelab.nlp.cache import ensure_cache, resolve_cache_dir
    from tunelab.nlp.data import DataSpec

    tmp = _tmpdir()
    model = nlp_fixtures.build_tiny_model(tmp / "model")
    files = nlp_fixtures.make_dataset(tmp / "data", n_train=20000, n_val=2000)
    spec = DataSpec.from_config({"train": str(files["train"]), "validation": str(files["validation"]),
                                 "text": "text", "label": "label"})
    cache_dir = resolve_cache_dir(str(tmp / "cache"))
    t0 = time.perf_counter()
    cache = ensure_cache(spec, str(model), 64, cache_dir)
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in Path(cache.path).rglob("*") if p.is_file())

    def load(_: int) -> dict[str, Any]:
        start = time.perf_counter()
        hit = ensure_cache(spec, str(model), 64, cache_dir)
        total = 0
        for name in ("train", "validation"):
            split = hit.split(name) if hasattr(hit, "split") else None
            if split is not None:
                total += int(split.ids.sum()) + int(split.labels.sum())  # touch every page
        return {"s": time.perf_counter() - start, "node": ray.get_runtime_context().get_node_id()[:8]}

    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, logging_level="ERROR")
    task = ray.remote(num_cpus=1, max_calls=1)(load)
    out = ray.get([task.remote(i) for i in range(tasks)])
    ray.shutdown()
    return {"build_s": build_s, "cache_mib": size / 2**20, "examples": 22000, "loads": out}


WORKERS = {"tunelab": w_tunelab, "raytune": w_raytune, "data": w_data, "token-cache": w_token_cache}


def worker_main(args: argparse.Namespace) -> None:
    if args.worker == "tunelab":
        result = w_tunelab(args.trials, args.workers, args.sleep)
    elif args.worker == "raytune":
        result = w_raytune(args.trials, args.workers, args.sleep, args.reuse)
    elif args.worker == "data":
        result = w_data(args.trials, args.mb, args.per_trial)
    else:
        result = w_token_cache(args.trials)
    C.emit(result)


# ---- the driver ------------------------------------------------------------------------------------

def run(cluster: Any, *argv: str, timeout: float = 900) -> dict[str, Any]:
    env = {**cluster.env, **CLUSTER_ENV, "RAY_ADDRESS": cluster.address}
    return C.run_worker([str(HERE), "--worker", *argv], cwd=HERE.parent.parent, timeout=timeout, env=env)


def measure_overhead(cluster: Any, trials: int, rounds: int) -> dict[str, list[dict[str, Any]]]:
    overhead: dict[str, list[dict[str, Any]]] = {"tunelab-ray": [], "raytune-fresh": [], "raytune-reuse": []}
    for i in range(rounds):
        order = list(overhead) if i % 2 == 0 else list(reversed(overhead))  # neither always goes first
        for key in order:
            extra = ["--reuse"] if key == "raytune-reuse" else []
            system = "tunelab" if key == "tunelab-ray" else "raytune"
            r = run(cluster, system, "--trials", str(trials), "--workers", "3", *extra)
            overhead[key].append(r)
            print(f"  overhead {key}: wall {r['wall_s']:.1f} s, first {r['first_s']:.1f} s, "
                  f"{per_trial(r, trials) * 1000:.0f} ms/trial, rss {r['driver_rss_mib']:.0f} MiB", flush=True)
    return overhead


def per_trial(r: dict[str, Any], trials: int) -> float:
    return (r["wall_s"] - r["first_s"]) / max(1, trials - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--per-trial", action="store_true")
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="small numbers, one round, prints only")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", default="scaling,overhead,data,token-cache",
                        help="comma-separated parts to run (default: all)")
    parser.add_argument("--render", metavar="JSON", help="rewrite the Markdown from a results JSON and exit")
    parser.add_argument("--out", help="results directory (default benchmarks/results; --quick writes nothing unless given)")
    args = parser.parse_args()
    if args.render:
        path = Path(args.render)
        path.with_suffix(".md").write_text(render(json.loads(path.read_text())) + "\n")
        print(f"wrote {path.with_suffix('.md')}")
        return 0
    if args.worker:
        if args.trials is None:
            args.trials = 6
        worker_main(args)
        return 0

    from cluster_fixtures import RayCluster

    trials = args.trials or (12 if args.quick else 30)
    rounds = 1 if args.quick else args.rounds
    sleep_trials, sleep_s = (8, 1.0) if args.quick else (16, 2.0)
    data_trials = 6 if args.quick else 10
    out: dict[str, Any] = {"machine": C.machine_info(), "versions": C.versions(["tunelab", "ray", "optuna"]),
                           "date": C.now_utc(), "commit": C.git_commit(),
                           "command": " ".join(["python benchmarks/cluster.py", *sys.argv[1:]]),
                           "params": {"trials": trials, "workers": 3, "rounds": rounds, "sleep_trials": sleep_trials,
                                      "sleep_s": sleep_s, "data_mib": args.mb, "data_trials": data_trials}}
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    print("starting a 1-node Ray cluster (head, 2 CPUs) ...", flush=True)
    t0 = time.perf_counter()
    cluster = RayCluster.start(head_cpus=2, worker_cpus=())
    out["cluster_start_s"] = {"head": time.perf_counter() - t0}
    try:
        scaling: dict[str, Any] = {"1-node": [], "2-node": []}
        for _ in range(rounds if "scaling" in parts else 0):
            r = run(cluster, "tunelab", "--trials", str(sleep_trials), "--workers", "2", "--sleep", str(sleep_s))
            scaling["1-node"].append(r)
            print(f"  sleep study, 1 node, W=2: {r['wall_s']:.1f} s", flush=True)
        t0 = time.perf_counter()
        cluster.add_node(cpus=2)
        out["cluster_start_s"]["second_node"] = time.perf_counter() - t0
        print("second node joined (2 CPUs)", flush=True)
        for _ in range(rounds if "scaling" in parts else 0):
            r = run(cluster, "tunelab", "--trials", str(sleep_trials), "--workers", "4", "--sleep", str(sleep_s))
            scaling["2-node"].append(r)
            print(f"  sleep study, 2 nodes, W=4: {r['wall_s']:.1f} s", flush=True)
        out["scaling"] = scaling if "scaling" in parts else None
        out["overhead"] = out["data"] = out["token_cache"] = None
        if "overhead" in parts:
            out["overhead"] = measure_overhead(cluster, trials, rounds)
        if "data" in parts:
            data = {"object-store-once": run(cluster, "data", "--trials", str(data_trials), "--mb", str(args.mb)),
                    "per-trial": run(cluster, "data", "--trials", str(data_trials), "--mb", str(args.mb),
                                     "--per-trial")}
            for key, r in data.items():
                print(f"  data {key}: load {r['load_s']} on {r['nodes']}", flush=True)
            out["data"] = data
        if "token-cache" in parts and importlib.util.find_spec("transformers") is not None:
            out["token_cache"] = run(cluster, "token-cache", "--trials", "6")
            print(f"  token cache: {out['token_cache']}", flush=True)
    finally:
        cluster.stop()
    out["total_s"] = time.perf_counter() - started
    md = render(out)
    print(md)
    if args.out or not args.quick:
        directory = Path(args.out) if args.out else RESULTS
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cluster.json").write_text(json.dumps(out, indent=2) + "\n")
        (directory / "cluster.md").write_text(md + "\n")
        print(f"wrote {directory / 'cluster.json'} and {directory / 'cluster.md'}")
    return 0


def render(out: dict[str, Any]) -> str:
    p = out["params"]
    med = C.median
    lines = ["# Cluster benchmark: tunelab's Ray executor and Ray Tune on one local Ray cluster", "",
             f"{out['date']} · commit {out['commit']} · `{out['command']}` · total {out['total_s']:.0f} s", "",
             f"Machine: {out['machine']['cpu']}, {out['machine']['cpus']} CPUs (shared with other work; load "
             f"average at start {out['machine']['load_average']}), {out['machine']['memory_gib']} GiB. "
             f"Versions: " + ", ".join(f"{k} {v}" for k, v in out["versions"].items()) + ".", "",
             "Cluster: `ray start --head --num-cpus=2` on 127.0.0.1, then a second node "
             "`ray start --address=... --num-cpus=2` on the same machine (both share its cores). "
             f"Head start {out['cluster_start_s']['head']:.1f} s, second node {out['cluster_start_s']['second_node']:.1f} s. "
             f"Medians of {p['rounds']} round(s).", ""]
    ov = out.get("overhead")
    lines += [] if not ov else [f"## Overhead: {p['trials']} no-op trials, 3 at once, 2-node cluster", "",
              C.md_table(["system", "start-up to first trial done (s)", "per trial after that (ms)",
                          "study wall (s)", "driver peak RSS (MiB)", "complete"],
                         [[{"tunelab-ray": "tunelab `backend: ray` (fresh process per trial)",
                            "raytune-fresh": "Ray Tune, `reuse_actors=False` (fresh actor per trial)",
                            "raytune-reuse": "Ray Tune, `reuse_actors=True`"}[k],
                           f"{med(r['first_s'] for r in rs):.2f}",
                           C.fmt_ms(med(per_trial(r, p['trials']) for r in rs)),
                           f"{med(r['wall_s'] for r in rs):.1f}", f"{med(r['driver_rss_mib'] for r in rs):.0f}",
                           f"{min(r['complete'] for r in rs)}/{p['trials']}"] for k, rs in ov.items()]), "",
              "Start-up is measured from just before the connection to the cluster (`ray.init`, which tunelab "
              "does inside `tune()`), so it includes connecting, the driver's set-up and the first trial's "
              "process. Per trial = (wall − start-up) / (trials − 1), with 3 trials running at once.", ""]
    sc = out.get("scaling")
    one = two = ideal = 0.0
    if sc:
        one, two = med(r["wall_s"] for r in sc["1-node"]), med(r["wall_s"] for r in sc["2-node"])
        ideal = p["sleep_trials"] * p["sleep_s"]
    lines += [] if not sc else [f"## Scaling: {p['sleep_trials']} trials sleeping {p['sleep_s']:g} s, tunelab `backend: ray`", "",
              C.md_table(["cluster", "workers", "wall (s)", "ideal (s)", "speed-up", "efficiency"],
                         [["1 node (2 CPUs)", 2, f"{one:.1f}", f"{ideal / 2:.1f}", "1.00", "—"],
                          ["2 nodes (2 + 2 CPUs)", 4, f"{two:.1f}", f"{ideal / 4:.1f}", f"{one / two:.2f}",
                           f"{one / two / 2:.0%}"]]), "",
              "Efficiency = (T 1 node / T 2 nodes) / 2. Both nodes run on the same 2 cores here: sleeping "
              "scales, but starting each trial's process (CPU work: a Python interpreter that imports Ray, "
              f"about {(one - ideal / 2) * 2 / max(1, p['sleep_trials']):.1f} s a trial on 1 node at this load) "
              "does not, which is what keeps this below 100 %. On machines with their own cores the start-up "
              "runs in parallel too.", ""]
    data = out.get("data") or {}
    rows = []
    for key, r in data.items():
        seen: set[str] = set()
        first, later = [], []
        for load, node in zip(r["load_s"], r["nodes"]):  # in launch order
            if load is None:
                continue
            (later if node in seen else first).append(load)
            seen.add(node)
        rows.append([{"object-store-once": "put in the object store once (what the executor does)",
                      "per-trial": "a new object-store copy per trial (for comparison)"}[key],
                     f"{r['payload_mib']} MiB", f"{med(first) * 1000:.0f}" if first else "—",
                     f"{med(later) * 1000:.0f}" if later else "—",
                     f"{r['driver_launch_s'] / len(r['load_s']) * 1000:.0f}", len(seen), f"{r['wall_s']:.1f}"])
    lines += [] if not data else [
        f"## Data: an objective holding {p['data_mib']} MiB, {p['data_trials']} trials, 2-node cluster", "",
        C.md_table(["objective delivery", "payload", "trial load, first on its node (ms)",
                    "trial load, later trials (ms)", "driver launch per trial (ms)", "nodes used", "wall (s)"], rows),
        "",
        "Trial load = time inside the trial process to fetch the pickled objective from the object store "
        "(pulled from the driver's node when this node has no copy yet) and unpickle it; medians. Once: a "
        "node pays the transfer for its first trial only, later trials there read the node's copy. Per "
        "trial: every trial pays the transfer and the driver copies the payload into the store each "
        "launch.", ""]
    tc = out.get("token_cache")
    if tc:
        loads = [x["s"] for x in tc["loads"]]
        lines += ["## Text classification: the token cache", "",
                  f"Built once in the driver ({tc['examples']} examples, {tc['cache_mib']:.1f} MiB on disk) in "
                  f"{tc['build_s']:.2f} s; a trial on either node then finds and memory-maps it in median "
                  f"{med(loads) * 1000:.1f} ms (max {max(loads) * 1000:.1f} ms, nodes "
                  f"{sorted(set(x['node'] for x in tc['loads']))}). The cache path is shared here; on nodes "
                  "without a shared path each node builds it once under a file lock.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
