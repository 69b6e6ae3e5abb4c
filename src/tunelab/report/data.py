"""What the report's plots read from a study, as plain values (no plotting here)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tunelab.metrics import Metric, MetricSet
from tunelab.trial import State

if TYPE_CHECKING:
    from tunelab.study import StudyView, TrialInfo

#: One color per state, the same in every plot.
STATE_COLORS = {"complete": "#1f77b4", "pruned": "#8c8c8c", "failed": "#d62728", "running": "#2ca02c",
                "waiting": "#bcbd22"}
BEST_COLOR = "#ff7f0e"


@dataclass(frozen=True)
class ReportData:
    """A study frozen for one report: trials, metrics, space and the clock."""

    name: str
    trials: tuple["TrialInfo", ...]
    metrics: MetricSet
    space: Mapping[str, Any]
    best: tuple["TrialInfo", ...]
    meta: Mapping[str, Any] = field(default_factory=dict)
    now: dt.datetime = field(default_factory=dt.datetime.now)
    #: PBT lineage (``tunelab.report.lineage.Link`` by trial number); empty when no trial is a clone.
    links: Mapping[int, Any] = field(default_factory=dict)
    #: Configs trained with several seeds (``tunelab.repeats.SeedGroup``), best mean first.
    seed_groups: tuple[Any, ...] = ()

    @classmethod
    def from_study(cls, study: "StudyView") -> "ReportData":
        trials = tuple(study.trials())
        links: Mapping[int, Any] = {}
        if any(t.parent is not None for t in trials):
            from tunelab.report.lineage import links_of

            links = links_of(study.optuna_study.get_trials(deepcopy=False))
        return cls(study.name, trials, study.metrics, dict(study.space_dict), tuple(study.best_among(trials)),
                   dict(study.optuna_study.user_attrs.get("tunelab") or {}), links=links,
                   seed_groups=tuple(study.seed_groups(trials)))

    @property
    def primary(self) -> Metric:
        return self.metrics.primary

    @property
    def started(self) -> dt.datetime | None:
        starts = [t.start for t in self.trials if t.start is not None]
        return min(starts) if starts else None

    def elapsed(self, when: dt.datetime | None) -> float | None:
        """Seconds from the first trial's start."""
        start = self.started
        return (when - start).total_seconds() if when is not None and start is not None else None

    def searched_params(self) -> list[str]:
        """Parameters the search varies, in the space's order (fixed ones say nothing)."""
        names = [n for n, spec in self.space.items() if not (isinstance(spec, Mapping) and "fixed" in spec)
                 and isinstance(spec, Mapping)]
        if not names:  # a study made outside tunelab: what the trials hold
            for t in self.trials:
                names += [n for n in t.config if n not in names]
        return names

    def is_log(self, param: str) -> bool:
        spec = self.space.get(param)
        return isinstance(spec, Mapping) and bool(spec.get("log"))

    def is_choice(self, param: str) -> bool:
        spec = self.space.get(param)
        if isinstance(spec, Mapping) and "choice" in spec:
            return True
        values = [t.config.get(param) for t in self.trials if t.config.get(param) is not None]
        return any(not _is_number(v) for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def last_value(trial: "TrialInfo", metric: str) -> float | None:
    """The last reported value of ``metric`` (what a pruned trial reached)."""
    for report in reversed(trial.history):
        if finite(report.metrics.get(metric)):
            return float(report.metrics[metric])
    return None


def trial_value(trial: "TrialInfo", metric: str) -> float | None:
    """A complete trial's final value; a pruned or failed trial's last reported one."""
    if trial.state == State.COMPLETE and finite(trial.metrics.get(metric)):
        return float(trial.metrics[metric])
    return last_value(trial, metric)


def best_so_far(values: Sequence[float | None], goal: str) -> list[float | None]:
    pick = max if goal == "maximize" else min
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None:
            best = v if best is None else pick(best, v)
        out.append(best)
    return out


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return "-" if value is None else str(value)


def duration_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else (f"{m} min {s:02d} s" if m else f"{s} s")
