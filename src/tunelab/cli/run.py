"""``tunelab run STUDY.yaml``: run (or resume) a study with a live progress display."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from tunelab.cli.common import fmt


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run or resume a study from its YAML file")
    p.add_argument("study_file", help="the study YAML")
    p.add_argument("--workers", type=int, help="trials at once (overrides execution.workers)")
    p.add_argument("--trials", type=int, help="trial budget (overrides budget.trials)")
    p.set_defaults(func=run)


class ProgressLine:
    """One line redrawn in place on a terminal; a line per finished trial otherwise."""

    def __init__(self, metric: str, stream: Any = None) -> None:
        self.metric = metric
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._last_key: tuple[int, int, int] | None = None

    def __call__(self, p: Any) -> None:
        key = (p.complete, p.pruned, p.failed)
        if not self.tty and key == self._last_key:
            return
        self._last_key = key
        eta = f", ~{_clock(p.eta_s)} left" if p.eta_s is not None else ""
        best = fmt(p.best) if p.best is not None else "-"
        line = (f"[{_clock(p.elapsed_s)}{eta}] running {p.running} | complete {p.complete} | "
                f"pruned {p.pruned} | failed {p.failed} | best {self.metric} {best}")
        if p.last:
            line += f"  ({p.last})"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _clock(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from tunelab.api import run_study
    from tunelab.cli.inspect import print_best
    from tunelab.config import load_config

    config = load_config(args.study_file).with_overrides(workers=args.workers, trials=args.trials)
    progress = ProgressLine(config.metrics.primary.name)
    # SIGTERM stops the study like Ctrl-C: every trial process is stopped, nothing is lost.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    print(f"study {config.name}: {config.execution.workers} worker(s), sampler {config.search.sampler}")
    try:
        study = run_study(config, on_progress=progress)
    except KeyboardInterrupt:
        progress.close()
        print("\nstopped: running trials were marked interrupted and will run again on the next "
              f"`tunelab run {args.study_file}`.", file=sys.stderr)
        return 130
    progress.close()
    print(f"\nfinished in {_clock(time.monotonic() - started)}")
    print_best(study, "table")
    return 0
