"""Metric definitions: what is optimized, what is constrained, what is only stored (SigOpt-style).

No silent direction: an optimized metric's ``goal`` comes from the user, or from its name when
the name says it (``loss``, ``val_loss``, ``latency_ms`` are minimized; ``accuracy``, ``f1_macro``,
``test_auc`` maximized); otherwise it is required (see ``goal_from_name``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from tunelab.errors import ConfigError

GOALS = ("maximize", "minimize")
STRATEGIES = ("optimize", "constraint", "store")
_KEYS = {"name", "goal", "strategy", "min", "max"}

#: Names (or last name parts) for which lower is better: errors, losses, times, sizes in bytes.
LOWER_IS_BETTER = frozenset({
    "loss", "error", "err", "mse", "mae", "rmse", "rmsle", "msle", "mape", "smape", "nll", "logloss",
    "perplexity", "ppl", "wer", "cer", "latency", "time", "runtime", "duration", "seconds", "secs", "sec",
    "ms", "us", "cost", "regret", "bytes", "memory",
})
#: Names (or last name parts) for which higher is better: scores of quality, rewards, rates.
HIGHER_IS_BETTER = frozenset({
    "accuracy", "acc", "f1", "auc", "auroc", "aupr", "roc_auc", "pr_auc", "precision", "recall", "mcc",
    "r2", "reward", "return", "bleu", "rouge", "rouge1", "rouge2", "rougel", "meteor", "ndcg", "mrr", "map",
    "iou", "miou", "dice", "top1", "top5", "throughput",
})
#: Last name parts that qualify the part before them (``f1_macro`` is an f1).
_QUALIFIERS = frozenset({"macro", "micro", "weighted", "mean", "avg", "average", "median", "final", "best", "last"})
_RATE = re.compile(r"(^|_)per_(second|sec|s|minute|min|hour)$")


def goal_from_name(name: str) -> str | None:
    """The goal a metric's name tells, or ``None`` when it tells nothing.

    The rule: split the lower-cased name at ``_ - . /`` and spaces. A name negated by its first
    part (``neg_mse``) tells nothing; a rate (``samples_per_second``) is maximized; otherwise the
    whole name, else its last part (skipping qualifiers such as ``macro``, ``mean``, ``best``),
    is looked up in ``LOWER_IS_BETTER`` and ``HIGHER_IS_BETTER``.
    """
    parts = [p for p in re.split(r"[\s_\-./]+", name.lower()) if p]
    if not parts or parts[0] in ("neg", "negative"):
        return None
    joined = "_".join(parts)
    if _RATE.search(joined):
        return "maximize"
    candidates = [joined]
    while parts and parts[-1] in _QUALIFIERS:
        parts = parts[:-1]
    if parts:
        candidates += ["_".join(parts[-2:]), parts[-1]]
    for candidate in candidates:
        if candidate in LOWER_IS_BETTER:
            return "minimize"
        if candidate in HIGHER_IS_BETTER:
            return "maximize"
    return None


@dataclass(frozen=True)
class Metric:
    name: str
    #: ``None`` until resolved: ``MetricSet.parse`` sets it from the name or refuses the metric.
    goal: str | None = None
    strategy: str = "optimize"
    min: float | None = None
    max: float | None = None
    #: True when the goal was read from the name, not given (said so when a study starts).
    goal_inferred: bool = False

    def violation(self, value: float | None) -> float:
        """How far ``value`` is outside the constraint's bounds (0.0 when inside, inf when missing)."""
        if value is None or not math.isfinite(value):
            return math.inf
        below = (self.min - value) if self.min is not None and value < self.min else 0.0
        above = (value - self.max) if self.max is not None and value > self.max else 0.0
        return below + above

    def better(self, a: float, b: float) -> bool:
        return a > b if self.goal == "maximize" else a < b

    def to_dict(self) -> dict[str, Any]:
        """The stored (YAML) form; ``MetricSet.parse`` reads it back."""
        out: dict[str, Any] = {"name": self.name, "goal": self.goal, "strategy": self.strategy}
        out.update({k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None})
        return out


@dataclass(frozen=True)
class MetricSet:
    metrics: tuple[Metric, ...]

    @property
    def objectives(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.strategy == "optimize")

    @property
    def constraints(self) -> tuple[Metric, ...]:
        return tuple(m for m in self.metrics if m.strategy == "constraint")

    @property
    def primary(self) -> Metric:
        return self.objectives[0]

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return [m.goal for m in self.objectives]

    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def describe_goals(self) -> str:
        """``minimize loss`` / ``maximize accuracy, minimize size (goal from its name)``: printed at start."""
        return ", ".join(f"{m.goal} {m.name}" + (" (goal from its name)" if m.goal_inferred else "")
                         for m in self.objectives)

    def violations(self, values: Mapping[str, float]) -> list[float]:
        return [c.violation(values.get(c.name)) for c in self.constraints]

    def feasible(self, values: Mapping[str, float]) -> bool:
        return all(v <= 0.0 for v in self.violations(values))

    @classmethod
    def parse(cls, raw: Any, field_name: str = "metrics") -> "MetricSet":
        if isinstance(raw, MetricSet):
            return raw
        if isinstance(raw, str):
            raw = [{"name": raw}]
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, Sequence) or not raw:
            raise ConfigError(field_name, "must list at least one metric.",
                              "write e.g. `metrics: [{name: accuracy, goal: maximize}]`.")
        metrics: list[Metric] = []
        for i, item in enumerate(raw):
            where = f"{field_name}[{i}]"
            if isinstance(item, Metric):
                item = {k: v for k, v in vars(item).items() if k in _KEYS and v is not None}
            if isinstance(item, str):
                item = {"name": item}
            if not isinstance(item, Mapping):
                raise ConfigError(where, f"must be a mapping with a `name`, got {item!r}.")
            unknown = set(item) - _KEYS
            if unknown:
                raise ConfigError(where, f"unknown keys {sorted(unknown)}.", f"valid keys are {sorted(_KEYS)}.")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise ConfigError(f"{where}.name", "is missing.", "name the metric, e.g. `name: accuracy`.")
            goal = item.get("goal")
            if goal is not None and goal not in GOALS:
                raise ConfigError(f"{where}.goal", f"is {goal!r}, but must be one of {list(GOALS)}.")
            has_bounds = item.get("min") is not None or item.get("max") is not None
            strategy = item.get("strategy", "constraint" if has_bounds else "optimize")
            if strategy not in STRATEGIES:
                raise ConfigError(f"{where}.strategy", f"is {strategy!r}, but must be one of {list(STRATEGIES)}.")
            inferred = False
            if goal is None:
                goal = goal_from_name(name)
                inferred = goal is not None
                if goal is None and strategy == "optimize":
                    raise ConfigError(f"{where}.goal", f"is missing, and the name {name!r} does not tell whether "
                                      "higher or lower is better.",
                                      "add `goal: maximize` or `goal: minimize` to the metric.")
            bounds = {}
            for key in ("min", "max"):
                if item.get(key) is not None:
                    value = item[key]
                    try:
                        if isinstance(value, bool):
                            raise TypeError
                        bounds[key] = float(value)
                    except (TypeError, ValueError, OverflowError):
                        raise ConfigError(f"{where}.{key}", f"is {value!r}, which is not a number.") from None
                    if not math.isfinite(bounds[key]):
                        raise ConfigError(f"{where}.{key}", f"is {value!r}, but a bound must be a finite number.",
                                          f"give a number, or leave `{key}` out for no bound on that side.")
            if strategy == "constraint" and not bounds:
                raise ConfigError(where, "is a constraint without bounds.", "give it `min`, `max` or both.")
            if strategy != "constraint" and bounds:
                raise ConfigError(where, f"has bounds but strategy `{strategy}`.", "set `strategy: constraint`.")
            if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
                raise ConfigError(where, f"`min` ({bounds['min']}) is above `max` ({bounds['max']}).", "swap them.")
            metrics.append(Metric(name, goal, strategy, bounds.get("min"), bounds.get("max"), inferred))
        names = [m.name for m in metrics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(field_name, f"metric {sorted(dup)[0]!r} is listed twice.", "list each metric once.")
        if not any(m.strategy == "optimize" for m in metrics):
            raise ConfigError(field_name, "has no metric to optimize.", "mark one metric with `strategy: optimize`.")
        return cls(tuple(metrics))
