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


def choose_trial(study: Any, trial_number: int | None) -> Any:
    """The trial ``--trial`` names, or the best one."""
    from tunelab.failures import no_best_reason

    trials = study.trials()
    if trial_number is None:
        best = study.best_among(trials)
        if not best:
            raise TunelabError(f"nothing to export: {no_best_reason(trials, study.metrics)}.")
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
    return trial


def export_trial(study: Any, trial: Any, out: Path, overwrite: bool = False) -> Path:
    """Write ``trial``'s checkpoint (a ``TrialInfo`` of ``study``) to ``out``."""
    from tunelab.nlp.export import export_checkpoint

    if not trial.trial_dir:
        raise TunelabError(f"Trial {trial.number} has no trial directory recorded.")
    # The trial's best evaluation (checkpoint/best/, or checkpoint/ itself for older trials),
    # never latest/: export_checkpoint picks it.
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
    trial = choose_trial(study, args.trial)
    out = export_trial(study, trial, Path(args.out), args.overwrite)
    print(f"exported trial {trial.number} to {out}")
    print(f'load it with: pipeline("text-classification", model="{out}")')
    return 0
