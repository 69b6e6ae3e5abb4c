"""The objective protocol: what a trial runs.

An objective is a picklable callable ``objective(config, reporter)`` returning a metrics dict,
a float (the primary metric), or ``None`` (the last reported metrics count). Two optional
hooks run in the driver before any trial: ``validate`` (raise ``ConfigError`` for a bad space
or metric) and ``prepare`` (one-off work shared by all trials, e.g. tokenizing the data once).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    from tunelab.metrics import MetricSet
    from tunelab.space import Space
    from tunelab.worker import Reporter

ObjectiveResult = Union[Mapping[str, float], float, None]


@runtime_checkable
class Objective(Protocol):
    def __call__(self, config: Mapping[str, Any], reporter: "Reporter") -> ObjectiveResult: ...


def validate_objective(objective: Any, space: "Space", metrics: "MetricSet") -> None:
    hook = getattr(objective, "validate", None)
    if callable(hook):
        hook(space, metrics)


def prepare_objective(objective: Any, workdir: Path) -> None:
    hook = getattr(objective, "prepare", None)
    if callable(hook):
        hook(workdir)
