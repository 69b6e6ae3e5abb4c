"""What a person sees of a study run from Python: the start line, a tqdm progress bar (a widget
in notebooks) and a closing summary. The CLI prints the same start line (``cli/run.py``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunelab.config import StudyConfig
    from tunelab.study import StudyView
    from tunelab.tuner import Progress


def start_line(config: "StudyConfig", view: "StudyView | None" = None) -> str:
    """``study NAME: 2 worker(s), sampler tpe; minimize loss (goal from its name)``; for ``auto``,
    the opened study's choice and why: ``sampler auto: gp (2 parameters, 30 trials)``."""
    sampler = config.search.sampler
    if sampler == "auto" and view is not None:
        from tunelab.samplers import stored_auto_choice

        choice = stored_auto_choice(view.optuna_study.user_attrs)
        sampler = choice.describe() if choice is not None else sampler
    line = (f"study {config.name}: {config.execution.workers} worker(s), sampler {sampler}; "
            f"{config.metrics.describe_goals()}")
    if config.defaulted:  # README, "Defaults for fine-tuning"
        line += f"; tunelab's fine-tuning defaults for {' and '.join(config.defaulted)}"
        if "scheduler" in config.defaulted and isinstance(config.scheduler, dict):
            s = config.scheduler
            line += (f" (ASHA over epochs {s['min_resource']}..{s['max_resource']}, "
                     f"reduction factor {s['reduction_factor']})")
    if config.search.warm_start:
        line += f"; sampler warm-started from {', '.join(s.describe() for s in config.search.warm_start)}"
    if config.search.repeats is not None:
        line += f"; {config.search.repeats.describe()}"
    return line


def counted_before(view: "StudyView") -> int:
    """Finished trials that used up budget before this run (the bar starts there)."""
    from tunelab.trial import State
    from tunelab.tuner import UNCOUNTED_FAILURES

    return sum(t.state in (State.COMPLETE, State.PRUNED, State.FAILED) and t.failure_kind not in UNCOUNTED_FAILURES
               for t in view.trials())


class ProgressBar:
    """A tqdm bar over the trial budget; the postfix carries the CLI line's counts and best value."""

    def __init__(self, name: str, metric: str, total: int | None, initial: int = 0, file: Any = None) -> None:
        self.metric = metric
        self.initial = initial
        kwargs: dict[str, Any] = {"total": total, "initial": initial, "desc": name, "unit": "trial",
                                  "file": file if file is not None else sys.stderr, "dynamic_ncols": True}
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(**kwargs)
        except ImportError:  # a notebook without ipywidgets: the text bar works everywhere
            from tqdm import tqdm as text_tqdm

            self.bar = text_tqdm(**kwargs)

    def __call__(self, p: "Progress") -> None:
        done = self.initial + p.complete + p.pruned + p.failed
        if done != self.bar.n:
            self.bar.update(done - self.bar.n)
        best = fmt(p.best) if p.best is not None else "-"
        self.bar.set_postfix_str(f"running {p.running}, complete {p.complete}, pruned {p.pruned}, "
                                 f"failed {p.failed}, best {self.metric} {best}", refresh=True)

    def close(self) -> None:
        self.bar.close()


def summary(view: "StudyView", elapsed_s: float) -> str:
    """The closing lines: counts by state, then the best config and its metrics (or the front)."""
    from collections import Counter

    trials = view.trials()
    states = Counter(t.state.value for t in trials)
    counts = ", ".join(f"{states[s]} {s}" for s in ("complete", "pruned", "failed", "running") if states[s])
    minutes, seconds = divmod(int(elapsed_s), 60)
    lines = [f"study {view.name}: {len(trials)} trial{'s' if len(trials) != 1 else ''}"
             + (f" ({counts})" if counts else "") + f", this run took {minutes:02d}:{seconds:02d}"]
    best = view.best_trials
    if not best:
        has_constraints = bool(view.metrics.constraints)
        lines.append("no complete trial" + (" meets every constraint" if has_constraints else "") + " yet")
    group = view.best_seed_group(trials)
    if group is not None:  # seed repeats: the best mean, its spread, and the trial export takes
        lines.append(f"best config (best mean of {view.metrics.primary.name}: {group.spread()}): "
                     f"{dict(group.config)}; its best seed is trial {group.best.number} "
                     f"({fmt(group.best.metrics.get(view.metrics.primary.name))}, seed {group.seeds[group.trials.index(group.best)]})")
        best = []
    for t in best[:5]:
        metrics = ", ".join(f"{m.name} {fmt(t.metrics.get(m.name))} ({m.goal})" for m in view.metrics.objectives)
        lines.append(f"{'best' if len(best) == 1 else 'Pareto'} trial {t.number}: {metrics}; "
                     f"config {dict(t.config)}")
    if len(best) > 5:
        lines.append(f"... and {len(best) - 5} more on the Pareto front (study.best_trials)")
    return "\n".join(lines)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)
