"""``tunelab run STUDY.yaml``: run (or resume) a study with a live progress display."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from tunelab.cli.common import fmt


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run or resume a study from its YAML file")
    p.add_argument("study_file", help="the study YAML")
    p.add_argument("--workers", type=int, help="trials at once (overrides execution.workers)")
    p.add_argument("--trials", type=int, help="trial budget (overrides budget.trials)")
    p.add_argument("--backend", choices=("local", "inprocess", "ray", "spark"), help="where trials run (overrides "
                   "execution.backend)")
    p.add_argument("--address", help="Ray cluster: auto, HOST:6379 or ray://HOST:10001 (overrides execution.address)")
    p.add_argument("--master", help="Spark master: local[N] or spark://HOST:7077 (overrides execution.master)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions share a GPU (overrides "
                   "execution.gpus_per_trial)")
    p.add_argument("--cpus-per-trial", type=int, help="CPUs per trial (overrides execution.cpus_per_trial)")
    p.add_argument("--report", metavar="PATH", help="keep an HTML report at PATH, refreshed as trials end")
    p.add_argument("--mlflow-uri", help="track to this MLflow URI (overrides tracking.mlflow.uri)")
    p.add_argument("--mlflow-experiment", help="MLflow experiment name (default: the study name)")
    p.add_argument("--no-mlflow", action="store_true", help="no MLflow tracking, even where it is configured")
    p.add_argument("--on-change", choices=("error", "restart", "continue"),
                   help="when the stored study was defined differently: stop (error, the default), start over "
                   "(restart: old trials deleted, their directory moved aside) or keep its trials (continue); "
                   "overrides on_change")
    p.set_defaults(func=run)


def cli_tracking(tracking: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The study's ``tracking:`` with the command-line flags applied, and MLflow on by default
    (to ``sqlite:///mlflow.db`` beside the study) when it is installed and nothing says otherwise."""
    from tunelab.tracking.settings import mlflow_installed, resolve_uri

    out = dict(tracking or {})
    if args.no_mlflow:
        out["mlflow"] = False
        return out
    section = out.get("mlflow")
    if args.mlflow_uri or args.mlflow_experiment:
        section = dict(section) if isinstance(section, Mapping) else {}
        if args.mlflow_uri:
            section["uri"] = resolve_uri(args.mlflow_uri, Path.cwd())  # a flag's relative path: from here
        if args.mlflow_experiment:
            section["experiment"] = args.mlflow_experiment
        out["mlflow"] = section
    elif "mlflow" not in out and mlflow_installed():
        out["mlflow"] = {}
    return out


class ProgressLine:
    """One line redrawn in place on a terminal; a line per finished trial otherwise. Each failure
    gets a line of its own that stays (its first line and how to see the whole log)."""

    def __init__(self, metric: str, stream: Any = None) -> None:
        self.metric = metric
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._last_key: tuple[int, int, int] | None = None
        self._drawn = False
        self._said = ""  # the last failure line printed: not repeated in the progress line

    def __call__(self, p: Any) -> None:
        failures = tuple(getattr(p, "failures", ()))
        if failures:
            if self._drawn:
                self.stream.write("\r\x1b[2K")  # the progress line is redrawn below them
                self._drawn = False
            for line in failures:
                self.stream.write(line + "\n")
            self._said = failures[-1]
        key = (p.complete, p.pruned, p.failed)
        if not self.tty and key == self._last_key:
            self.stream.flush()
            return
        self._last_key = key
        best = fmt(p.best) if p.best is not None else "-"
        line = (f"[{_clock(p.elapsed_s)}{eta_text(p.eta_s, p.running)}] running {p.running} | "
                f"complete {p.complete} | pruned {p.pruned} | failed {p.failed} | best {self.metric} {best}")
        if p.last and p.last != self._said:
            line += f"  ({p.last})"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self._drawn = False


def eta_text(eta_s: float | None, running: int) -> str:
    """``, ~12:30 left``; under a minute an estimate of seconds says more than it knows, and
    trials that still run are never ``00:00`` away."""
    if eta_s is None:
        return ""
    if eta_s < 1:
        return ", finishing" if running else ""
    if eta_s < 60:
        return ", <1 min left"
    return f", ~{_clock(eta_s)} left"


def _clock(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class EndedTrials:
    """A callback that keeps the trials this run ended: did any complete, and why not."""

    def __init__(self) -> None:
        self.trials: list[Any] = []

    def on_trial_end(self, trial: Any) -> None:
        self.trials.append(trial)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from tunelab.api import run_study
    from tunelab.cli.inspect import print_best
    from tunelab.config import load_config
    from tunelab.display import start_line
    from tunelab.failures import no_completion_summary

    config = load_config(args.study_file).with_overrides(workers=args.workers, trials=args.trials)
    config = config.with_execution(backend=args.backend, address=args.address, master=args.master,
                                   gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial)
    config = dataclasses.replace(config, tracking=cli_tracking(config.tracking, args))
    if args.on_change:
        config = dataclasses.replace(config, on_change=args.on_change)
    ended = EndedTrials()
    callbacks: list[Any] = [ended]
    if args.report:
        from tunelab.errors import require
        from tunelab.report.live import LiveReport

        require("plotly", "report")
        callbacks.append(LiveReport(args.report))
    progress = ProgressLine(config.metrics.primary.name)
    # SIGTERM stops the study like Ctrl-C: every trial process is stopped, nothing is lost.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        # The start line names each optimized metric's direction; printed once the study is open,
        # so a config error stays the only line.
        study = run_study(config, on_progress=progress, callbacks=callbacks,
                          on_start=lambda view, trials: print(start_line(config, view), flush=True))
    except KeyboardInterrupt:
        progress.close()
        print("\nstopped: running trials were marked interrupted and will run again on the next "
              f"`tunelab run {args.study_file}`.", file=sys.stderr)
        return 130
    progress.close()
    print(f"\nfinished in {_clock(time.monotonic() - started)}")
    nothing = no_completion_summary(ended.trials)
    if nothing is None or study.best_trials:
        print_best(study, "table")
    if args.report:
        print(f"report: {args.report}")
    if nothing is not None:
        print(f"error: {nothing}", file=sys.stderr)
        return 1
    return 0
