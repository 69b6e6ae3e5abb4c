"""Search quality: tunelab's ``sampler: auto`` vs Optuna's default ``TPESampler()`` vs random search.

Every problem is minimized with each system at 10, 25, 50 and 100 trials, over 10 seeds; the
best value found within the budget is compared. Per problem and budget: the median best value,
the mean rank of each system over the seeds (1 = best of the three), auto's wins against TPE
(ties count half) and a two-sided Mann-Whitney U test of auto's 10 best values against TPE's
(``*`` where p < 0.05). ``auto`` runs exactly as in a study: ``make_sampler("auto", trials=B)``,
per-trial seeding and de-duplication included; its choice depends on the budget, so each
distinct choice runs on its own (budgets that get the same choice share one run, read at each
budget: a sampler never sees the budget). Optuna's samplers run once for 100 trials.

Problems: synthetic functions (numpy), mixed integer/categorical variants, an HPO-like
surrogate of a fine-tuning study (log-scaled learning rate, categorical batch size), a
conditional space, and, when the ``coco-experiment`` package is installed, COCO's bbob and
bbob-mixint functions (instance 1).

    python benchmarks/search.py                       # everything (see search.md for the time it took)
    python benchmarks/search.py --problems branin,hpo --seeds 3 --out ''   # a smoke run, prints only
    python benchmarks/search.py --render benchmarks/results/search.json    # rewrite the .md

Runs sequentially in one process; torch is held to one thread (the GP sampler's fits).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import git_commit, machine_info, md_table, now_utc, versions  # noqa: E402

BUDGETS = (10, 25, 50, 100)
SYSTEMS = ("auto", "tpe", "random")


# ---- problems ---------------------------------------------------------------------------------


def _vec(config: Mapping[str, Any], n: int, prefix: str = "x") -> np.ndarray:
    return np.array([float(config[f"{prefix}{i}"]) for i in range(n)])


def branin(x: np.ndarray) -> float:
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return float(a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * math.cos(x[0]) + s)


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(x: np.ndarray) -> float:
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


def ackley(x: np.ndarray) -> float:
    d = len(x)
    return float(-20 * math.exp(-0.2 * math.sqrt(np.sum(x ** 2) / d))
                 - math.exp(np.sum(np.cos(2 * math.pi * x)) / d) + 20 + math.e)


def levy(x: np.ndarray) -> float:
    w = 1 + (x - 1) / 4
    return float(math.sin(math.pi * w[0]) ** 2
                 + np.sum((w[:-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:-1] + 1) ** 2))
                 + (w[-1] - 1) ** 2 * (1 + math.sin(2 * math.pi * w[-1]) ** 2))


def styblinski_tang(x: np.ndarray) -> float:
    return float(0.5 * np.sum(x ** 4 - 16 * x ** 2 + 5 * x))


def _floats(n: int, low: float, high: float) -> dict[str, Any]:
    return {f"x{i}": {"float": [low, high]} for i in range(n)}


def _continuous(fn: Callable[[np.ndarray], float], n: int) -> Callable[[Mapping[str, Any]], float]:
    return lambda c: fn(_vec(c, n))


def hpo_surrogate(c: Mapping[str, Any]) -> float:
    """Validation error of a fine-tuning run as a smooth function of its hyperparameters: the best
    learning rate grows with the batch size (about its square root), warmup helps a little up to
    ~10%, weight decay matters little, too few epochs underfit and too many overfit at high lr."""
    batch = int(c["batch_size"])
    lr_opt = math.log10(3e-5 * math.sqrt(batch / 16))
    lr = math.log10(c["learning_rate"])
    epochs = int(c["epochs"])
    err = 0.10 + 0.06 * (lr - lr_opt) ** 2 + 0.02 * max(0.0, lr - lr_opt) ** 3
    err += 0.03 * (c["warmup_ratio"] - 0.1) ** 2 / 0.01 * 0.1
    err += 0.004 * (math.log10(c["weight_decay"]) + 2.5) ** 2 / 6
    err += 0.02 * max(0, 3 - epochs) ** 2 / 4 + 0.01 * max(0, epochs - 3) * max(0.0, lr - lr_opt + 0.3)
    err += 0.005 * {8: 1.0, 16: 0.0, 32: 0.2, 64: 0.8}[batch]
    return float(err)


HPO_SPACE = {"learning_rate": {"float": [1e-6, 1e-3], "log": True}, "batch_size": {"choice": [8, 16, 32, 64]},
             "warmup_ratio": {"float": [0.0, 0.3]}, "weight_decay": {"float": [1e-5, 0.3], "log": True},
             "epochs": {"int": [1, 6]}}


def mixed_levy(c: Mapping[str, Any]) -> float:
    """Levy in 5 dims, three of them integers."""
    return levy(np.array([float(c["i0"]), float(c["i1"]), float(c["i2"]), c["x0"], c["x1"]]))


def categorical_hartmann(c: Mapping[str, Any]) -> float:
    """Hartmann6 with two coordinates restricted to 5 levels each, as categorical choices."""
    levels = {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.7, "e": 0.9}
    x = np.array([c["x0"], c["x1"], levels[c["c0"]], c["x2"], levels[c["c1"]], c["x3"]])
    return hartmann6(x)


def conditional(c: Mapping[str, Any]) -> float:
    """Two model families with their own parameters: Branin (rescaled) or Hartmann3-like via Hartmann6."""
    if c["family"] == "branin":
        return branin(np.array([c["u0"], c["u1"]])) / 10 - 3.0
    return hartmann6(np.array([c["v0"], c["v1"], c["v2"], 0.55, 0.3, 0.65]))


def problems() -> dict[str, tuple[dict[str, Any], Callable[[Mapping[str, Any]], float], str]]:
    """name -> (space, objective, description)."""
    out: dict[str, tuple[dict[str, Any], Callable[[Mapping[str, Any]], float], str]] = {
        "hpo-finetune": (HPO_SPACE, hpo_surrogate, "HPO-like surrogate: log lr, categorical batch, warmup, wd, epochs"),
        "branin-2d": ({"x0": {"float": [-5, 10]}, "x1": {"float": [0, 15]}}, _continuous(branin, 2), "Branin"),
        "hartmann-6d": (_floats(6, 0, 1), _continuous(hartmann6, 6), "Hartmann6"),
        "ackley-5d": (_floats(5, -32.768, 32.768), _continuous(ackley, 5), "Ackley"),
        "levy-4d": (_floats(4, -10, 10), _continuous(levy, 4), "Levy"),
        "styblinski-8d": (_floats(8, -5, 5), _continuous(styblinski_tang, 8), "Styblinski-Tang"),
        "styblinski-12d": (_floats(12, -5, 5), _continuous(styblinski_tang, 12), "Styblinski-Tang, 12 dims (TPE)"),
        "levy-mixint-5d": ({"i0": {"int": [-10, 10]}, "i1": {"int": [-10, 10]}, "i2": {"int": [-10, 10]},
                            "x0": {"float": [-10, 10]}, "x1": {"float": [-10, 10]}}, mixed_levy,
                           "Levy, 3 of 5 dims integer"),
        "hartmann-cat-6d": ({"x0": {"float": [0, 1]}, "x1": {"float": [0, 1]}, "c0": {"choice": list("abcde")},
                             "x2": {"float": [0, 1]}, "c1": {"choice": list("abcde")}, "x3": {"float": [0, 1]}},
                            categorical_hartmann, "Hartmann6, 2 of 6 dims categorical (5 levels)"),
        "conditional": ({"family": {"choice": ["branin", "hartmann"]},
                         "u0": {"float": [-5, 10], "when": {"family": "branin"}},
                         "u1": {"float": [0, 15], "when": {"family": "branin"}},
                         "v0": {"float": [0, 1], "when": {"family": "hartmann"}},
                         "v1": {"float": [0, 1], "when": {"family": "hartmann"}},
                         "v2": {"float": [0, 1], "when": {"family": "hartmann"}}},
                        conditional, "conditional space: two families (TPE)"),
    }
    out.update(_coco_problems())
    return out


#: COCO functions used when ``coco-experiment`` is installed: (suite, function, dimension).
COCO = (("bbob", 8, 5), ("bbob", 15, 5), ("bbob", 21, 5), ("bbob-mixint", 1, 5))


def _coco_problems() -> dict[str, tuple[dict[str, Any], Callable[[Mapping[str, Any]], float], str]]:
    try:
        import cocoex  # type: ignore[import-not-found]
    except ImportError:
        return {}
    out = {}
    for suite_name, fid, dim in COCO:
        suite = cocoex.Suite(suite_name, "instances:1", f"dimensions:{dim} function_indices:{fid}")
        problem = next(iter(suite))
        space: dict[str, Any] = {}
        n_int = getattr(problem, "number_of_integer_variables", 0)
        for i in range(dim):
            low, high = float(problem.lower_bounds[i]), float(problem.upper_bounds[i])
            space[f"x{i}"] = {"int": [int(low), int(high)]} if i < n_int else {"float": [low, high]}

        def objective(c: Mapping[str, Any], p: Any = problem, n: int = dim, keep: Any = suite) -> float:
            return float(p(_vec(c, n)))

        kind = f"{n_int} of {dim} dims integer" if n_int else f"{dim} dims"
        out[f"{suite_name}-f{fid}-{dim}d"] = (space, objective, f"COCO {suite_name} f{fid}, {kind}")
    return out


# ---- running ----------------------------------------------------------------------------------


def make(system: str, space: Any, seed: int, budget: int) -> Any:
    import optuna

    if system == "auto":
        from tunelab.samplers import make_sampler

        return make_sampler("auto", space=space, seed=seed, workers=1, multi_objective=False, trials=budget)
    if system.startswith("tl-"):  # a named tunelab sampler with auto's start-up trials (exploration)
        from tunelab.samplers import make_sampler, startup_trials

        return make_sampler(system[3:], space=space, seed=seed, workers=1, multi_objective=False,
                            options={"n_startup_trials": startup_trials(budget)})
    if system == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if system == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(system)


def run_one(system: str, space: Any, fn: Callable[[Mapping[str, Any]], float], seed: int, budget: int) -> dict[str, Any]:
    """Best value so far after each trial, the distinct configs, and the sampler's seconds."""
    import optuna

    from tunelab.proposals import config_key

    sampler = make(system, space, seed, budget)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler, direction="minimize")
    best, curve, keys, distinct = math.inf, [], set(), []
    sampler_s = 0.0
    for _ in range(budget):
        t0 = time.process_time()
        trial = study.ask()
        config = space.sample(trial)
        sampler_s += time.process_time() - t0
        value = fn(config)
        keys.add(config_key(config, space.searched))
        t0 = time.process_time()
        study.tell(trial, value)
        sampler_s += time.process_time() - t0
        best = min(best, value)
        curve.append(best)
        distinct.append(len(keys))
    return {"curve": curve, "distinct": distinct, "sampler_s": round(sampler_s, 3)}


def auto_groups(space: Any, budgets: tuple[int, ...]) -> dict[int, int]:
    """Budget -> the budget whose run serves it: budgets with the same auto choice share one run."""
    from tunelab.samplers import choose_auto

    by_key: dict[str, int] = {}
    for b in budgets:
        c = choose_auto(space, b, False)
        key = json.dumps([c.sampler, dict(c.options)], sort_keys=True)
        by_key[key] = max(by_key.get(key, 0), b)
    out = {}
    for b in budgets:
        c = choose_auto(space, b, False)
        out[b] = by_key[json.dumps([c.sampler, dict(c.options)], sort_keys=True)]
    return out


def bench(names: list[str], seeds: int, budgets: tuple[int, ...], systems: tuple[str, ...],
          done: dict[str, Any] | None, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    from tunelab.samplers import choose_auto
    from tunelab.space import Space

    table = problems()
    out = done or {}
    for name in names:
        space_raw, fn, description = table[name]
        space = Space.from_dict(space_raw)
        entry = out.setdefault(name, {"description": description, "space": space_raw, "runs": {}})
        entry["auto_choice"] = {str(b): choose_auto(space, b, False).describe() for b in budgets}
        started = time.monotonic()
        for system in systems:
            runs = entry["runs"].setdefault(system, {})
            shared = auto_groups(space, budgets) if system == "auto" or system.startswith("tl-") else \
                {b: max(budgets) for b in budgets}
            for b in budgets:
                key = str(b)
                if key in runs and len(runs[key]["best"]) >= seeds:
                    continue
                run_budget = shared[b]
                source = runs.get(f"run{run_budget}")
                if source is None or len(source) < seeds:
                    source = [run_one(system, space, fn, s, run_budget) for s in range(seeds)]
                    runs[f"run{run_budget}"] = source
                runs[key] = {"best": [r["curve"][b - 1] for r in source], "run_budget": run_budget,
                             "distinct": [r["distinct"][b - 1] for r in source],
                             "sampler_s": [r["sampler_s"] for r in source]}
        for system in systems:  # keep the tables small: curves are not needed after this
            for key in [k for k in entry["runs"][system] if k.startswith("run")]:
                entry["runs"][system].pop(key)
        entry["seconds"] = round(time.monotonic() - started, 1)
        print(f"{name}: {entry['seconds']} s", flush=True)
        save(out)
    return out


# ---- statistics and tables --------------------------------------------------------------------


def ranks(values: dict[str, list[float]]) -> dict[str, float]:
    """Mean rank per system over the seeds (ties share the mean rank)."""
    from scipy.stats import rankdata

    systems = list(values)
    n = len(values[systems[0]])
    total = dict.fromkeys(systems, 0.0)
    for i in range(n):
        r = rankdata([values[s][i] for s in systems])
        for s, ri in zip(systems, r):
            total[s] += float(ri)
    return {s: total[s] / n for s in systems}


def compare(a: list[float], b: list[float]) -> tuple[float, float]:
    """Wins of ``a`` over ``b`` seed by seed (ties half) and the Mann-Whitney U two-sided p."""
    from scipy.stats import mannwhitneyu

    wins = sum(1.0 if x < y else 0.5 if x == y else 0.0 for x, y in zip(a, b))
    if np.allclose(a, b) or len(set(a) | set(b)) == 1:
        return wins, 1.0
    return wins, float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def verdict(wins: float, n: int, p: float) -> str:
    if p >= 0.05:
        return "—"
    return "**win**" if wins > n / 2 else "**loss**"


def holm_significant(pvalues: dict[Any, float], alpha: float = 0.05) -> set[Any]:
    """The tests still significant after Holm's step-down correction for the whole family
    (every problem at every budget): uncorrected, 56 tests at 0.05 give ~3 false verdicts."""
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    significant = set()
    for i, (key, p) in enumerate(ordered):
        if p > alpha / (len(ordered) - i):
            break
        significant.add(key)
    return significant


def g(x: float) -> str:
    return f"{x:.4g}"


def render(data: dict[str, Any]) -> str:
    meta, results = data["meta"], data["results"]
    budgets = tuple(meta["budgets"])
    lines = ["# Search quality: `sampler: auto` vs Optuna's default TPE vs random", "",
             f"Generated by `{meta['command']}` on {meta['date']} (commit {meta['commit']}), "
             f"{meta['machine']['cpus']} CPUs ({meta['machine']['cpu']}), load average at the start "
             f"{meta['load_start']} and at the end {meta['load_end']} (a shared machine; one process, torch on one "
             f"thread); versions {meta['versions']}; {meta['seeds']} seeds; {meta['elapsed_s']:.0f} s in all."
             + "".join(f" Resumed by `{r['command']}` on {r['date']} (commit {r['commit']}"
                       + (f"; versions {r['versions']}" if r.get("versions") else "") + ")."
                       for r in meta.get("resumed_by", [])), "",
             "Minimization. Per problem and budget: median best value over the seeds; mean rank of each system "
             "(1 = best of the three, ties share); auto's wins against TPE seed by seed (ties half); the "
             "two-sided Mann-Whitney U p-value of auto's best values against TPE's; **win**/**loss** where "
             "p < 0.05 (uncorrected for the number of tests). `tpe` is Optuna's `TPESampler(seed=s)`, its "
             "default sampler; `random` is `RandomSampler(seed=s)`; `auto` is tunelab's `make_sampler(\"auto\", "
             "trials=budget, seed=s)`, the sampler a study with that budget gets.", ""]
    # summary
    tests = {}
    for b in budgets:
        for name, entry in results.items():
            values = {s: entry["runs"][s][str(b)]["best"] for s in SYSTEMS}
            wins, p = compare(values["auto"], values["tpe"])
            tests[(b, name)] = (wins, len(values["auto"]), p)
    corrected = holm_significant({k: v[2] for k, v in tests.items()})
    rows = []
    for b in budgets:
        key = str(b)
        mean = {s: [] for s in SYSTEMS}
        won = lost = sig_win = sig_loss = 0
        for name, entry in results.items():
            values = {s: entry["runs"][s][key]["best"] for s in SYSTEMS}
            r = ranks(values)
            for s in SYSTEMS:
                mean[s].append(r[s])
            wins, n, p = tests[(b, name)]
            won += r["auto"] < r["tpe"]
            lost += r["auto"] > r["tpe"]
            sig_win += verdict(wins, n, p) == "**win**"
            sig_loss += verdict(wins, n, p) == "**loss**"
        held = [tests[(b, name)] for name in results if (b, name) in corrected]
        rows.append([b, *(f"{np.mean(mean[s]):.2f}" for s in SYSTEMS), f"{won} / {lost} / {len(results) - won - lost}",
                     sig_win, sig_loss, f"{sum(w > n / 2 for w, n, _ in held)} / {sum(w < n / 2 for w, n, _ in held)}"])
    lines += ["## Summary", "", md_table(["trials", "mean rank auto", "mean rank tpe", "mean rank random",
                                          "problems auto ranks better / worse / equal vs tpe",
                                          "significant wins vs tpe", "significant losses vs tpe",
                                          f"wins / losses vs tpe after Holm's correction ({len(tests)} tests)"],
                                         rows), ""]
    # auto's choices
    rows = [[name, entry["description"], *(entry["auto_choice"][str(b)].removeprefix("auto: ") for b in budgets)]
            for name, entry in results.items()]
    lines += ["## What auto chose", "", md_table(["problem", "what it is", *(f"{b} trials" for b in budgets)], rows), ""]
    for b in budgets:
        key = str(b)
        rows = []
        for name, entry in results.items():
            values = {s: entry["runs"][s][key]["best"] for s in SYSTEMS}
            r = ranks(values)
            wins, p = compare(values["auto"], values["tpe"])
            wins_r, p_r = compare(values["auto"], values["random"])
            n = len(values["auto"])
            rows.append([name, *(g(float(np.median(values[s]))) for s in SYSTEMS),
                         " / ".join(f"{r[s]:.2f}" for s in SYSTEMS), f"{wins:g}/{n}", f"{p:.3f}", verdict(wins, n, p),
                         f"{wins_r:g}/{n}", verdict(wins_r, n, p_r)])
        lines += [f"## {b} trials", "", md_table(
            ["problem", "median auto", "median tpe", "median random", "mean rank auto / tpe / random",
             "auto wins vs tpe", "p (MWU)", "vs tpe", "auto wins vs random", "vs random"], rows), ""]
    # sampler time: auto's run for each budget, Optuna's samplers' one run of the largest budget
    rows = []
    top = str(max(budgets))
    for name, entry in results.items():
        rows.append([name, *(f"{np.mean(entry['runs']['auto'][str(b)]['sampler_s']):.2f}" for b in budgets),
                     *(f"{np.mean(entry['runs'][s][top]['sampler_s']):.2f}" for s in SYSTEMS[1:])])
    lines += ["## Sampler CPU seconds per run (mean over seeds; ask + tell, objective excluded)", "",
              md_table(["problem", *(f"auto, {b}-trial run" for b in budgets),
                        *(f"{s}, {top}-trial run" for s in SYSTEMS[1:])], rows), ""]
    lines += ["## Notes", "", *meta.get("notes", []), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", help="comma-separated problem names (default: all)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", default="benchmarks/results", help="directory for search.json/.md ('' prints only)")
    parser.add_argument("--resume", action="store_true", help="keep the problems already in the out JSON")
    parser.add_argument("--render", help="rewrite the .md next to this JSON and stop")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.render:
        path = Path(args.render)
        data = json.loads(path.read_text())
        path.with_suffix(".md").write_text(render(data))
        return 0
    if args.list:
        for name, (_, _, description) in problems().items():
            print(f"{name:20} {description}")
        return 0
    import torch

    torch.set_num_threads(1)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("tunelab").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    names = args.problems.split(",") if args.problems else list(problems())
    budgets = tuple(int(b) for b in args.budgets.split(","))
    out_dir = Path(args.out) if args.out else None
    json_path = out_dir / "search.json" if out_dir else None
    previous = json.loads(json_path.read_text()) if args.resume and json_path and json_path.exists() else None
    this_run = {  # what the table says of this command, whether it starts the file or resumes it
        "command": "python " + " ".join(["benchmarks/search.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": now_utc(), "commit": git_commit(), "load_start": machine_info()["load_average"],
        "versions": versions(["optuna", "numpy", "scipy", "torch", "coco-experiment"])}
    meta = (previous or {}).get("meta") or {**this_run, "machine": machine_info(), "seeds": args.seeds,
                                            "budgets": list(budgets), "elapsed_s": 0.0}
    started = time.monotonic() - meta.get("elapsed_s", 0.0)
    if previous:  # the commands that filled it, in order
        meta.setdefault("resumed_by", []).append(this_run)

    def save(results: dict[str, Any]) -> None:
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        meta["load_end"] = machine_info()["load_average"]
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))

    results = bench(names, args.seeds, budgets, tuple(args.systems.split(",")),
                    (previous or {}).get("results"), save)
    save(results)
    if set(SYSTEMS) <= set(args.systems.split(",")):
        text = render({"meta": meta, "results": results})
        if json_path is not None:
            json_path.with_suffix(".md").write_text(text)
        print(text)
    else:
        for name, entry in results.items():
            for b in budgets:
                print(name, b, {s: round(float(np.median(entry["runs"][s][str(b)]["best"])), 4)
                                 for s in entry["runs"] if str(b) in entry["runs"][s]},
                      ranks({s: entry["runs"][s][str(b)]["best"] for s in entry["runs"] if str(b) in entry["runs"][s]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
