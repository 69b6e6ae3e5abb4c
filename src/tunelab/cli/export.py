"""``tunelab export [--trial N] --out DIR``: the best (or a chosen) trial's model, ready to use."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunelab.cli.common import add_study_args, open_study
from tunelab.errors import ConfigError, TunelabError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("export", help="write a trial's model as a Hugging Face model directory")
    add_study_args(p)
    p.add_argument("--trial", type=int, help="trial number (default: the best trial)")
    p.add_argument("--out", required=True, help="directory to write the model to")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def export_trial(study: Any, trial_number: int | None, out: Path, overwrite: bool = False) -> Path:
    from tunelab.nlp.export import export_checkpoint

    trials = study.trials()
    if trial_number is None:
        best = study.best_among(trials)
        if not best:
            raise TunelabError("No complete trial meets every constraint yet: nothing to export.")
        if len(best) > 1:
            numbers = ", ".join(str(t.number) for t in best)
            raise ConfigError("--trial", f"the study has several best trials (a Pareto front: {numbers}).",
                              "choose one with --trial N.")
        trial = best[0]
    else:
        trial = next((t for t in trials if t.number == trial_number), None)
        if trial is None:
            raise ConfigError("--trial", f"is {trial_number}, but study {study.name!r} has no such trial.",
                              f"use one of {[t.number for t in trials][:20]}.")
    if not trial.trial_dir:
        raise TunelabError(f"Trial {trial.number} has no trial directory recorded.")
    checkpoint = Path(trial.trial_dir) / "checkpoint"
    if not checkpoint.is_dir():
        raise TunelabError(
            f"Trial {trial.number} has no checkpoint at {checkpoint}: only the best "
            f"`execution.keep_checkpoints` trials keep theirs. Export one of the best trials instead."
        )
    info = {
        "study": study.name,
        "trial": trial.number,
        "state": trial.state.value,
        "hyperparameters": dict(trial.config),
        "metrics": dict(trial.metrics),
        "chosen_by": [{"name": m.name, "goal": m.goal} for m in study.metrics.objectives],
    }
    return export_checkpoint(checkpoint, out, info, overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    study = open_study(args)
    out = export_trial(study, args.trial, Path(args.out), args.overwrite)
    print(f"exported trial to {out}")
    print(f'load it with: pipeline("text-classification", model="{out}")')
    return 0
