"""Metric definitions: what is optimized, what is constrained, what is only stored (SigOpt-style)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from tunelab.errors import ConfigError

GOALS = ("maximize", "minimize")
STRATEGIES = ("optimize", "constraint", "store")
_KEYS = {"name", "goal", "strategy", "min", "max"}


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "maximize"
    strategy: str = "optimize"
    min: float | None = None
    max: float | None = None

    def violation(self, value: float | None) -> float:
        """How far ``value`` is outside the constraint's bounds (0.0 when inside, inf when missing)."""
        if value is None or not math.isfinite(value):
            return math.inf
        below = (self.min - value) if self.min is not None and value < self.min else 0.0
        above = (value - self.max) if self.max is not None and value > self.max else 0.0
        return below + above

    def better(self, a: float, b: float) -> bool:
        return a > b if self.goal == "maximize" else a < b


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
                metrics.append(item)
                continue
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
            goal = item.get("goal", "maximize")
            if goal not in GOALS:
                raise ConfigError(f"{where}.goal", f"is {goal!r}, but must be one of {list(GOALS)}.")
            has_bounds = item.get("min") is not None or item.get("max") is not None
            strategy = item.get("strategy", "constraint" if has_bounds else "optimize")
            if strategy not in STRATEGIES:
                raise ConfigError(f"{where}.strategy", f"is {strategy!r}, but must be one of {list(STRATEGIES)}.")
            bounds = {}
            for key in ("min", "max"):
                if item.get(key) is not None:
                    value = item[key]
                    try:
                        bounds[key] = float(value)
                    except (TypeError, ValueError):
                        raise ConfigError(f"{where}.{key}", f"is {value!r}, which is not a number.") from None
            if strategy == "constraint" and not bounds:
                raise ConfigError(where, "is a constraint without bounds.", "give it `min`, `max` or both.")
            if strategy != "constraint" and bounds:
                raise ConfigError(where, f"has bounds but strategy `{strategy}`.", "set `strategy: constraint`.")
            if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
                raise ConfigError(where, f"`min` ({bounds['min']}) is above `max` ({bounds['max']}).", "swap them.")
            metrics.append(Metric(name, goal, strategy, bounds.get("min"), bounds.get("max")))
        names = [m.name for m in metrics]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(field_name, f"metric {sorted(dup)[0]!r} is listed twice.", "list each metric once.")
        if not any(m.strategy == "optimize" for m in metrics):
            raise ConfigError(field_name, "has no metric to optimize.", "mark one metric with `strategy: optimize`.")
        return cls(tuple(metrics))
