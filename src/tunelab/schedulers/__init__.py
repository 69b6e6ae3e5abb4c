"""Schedulers: pure early-stopping decisions, and ``make_scheduler`` for the study config.

The config form is ``scheduler: {type: asha, min_resource: 1, max_resource: 3, reduction_factor: 3}``
(``type`` one of fifo, asha, hyperband, median, pbt), a bare type name (``scheduler: asha``), or nothing
(fifo). Every setting is checked here, before any trial runs.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Mapping

from tunelab.errors import ConfigError
from tunelab.schedulers.asha import ASHAScheduler
from tunelab.schedulers.base import BaseScheduler, Decision, FIFOScheduler, Scheduler, Suggestion
from tunelab.schedulers.hyperband import HyperbandScheduler
from tunelab.schedulers.median import MedianStoppingScheduler
from tunelab.schedulers.pbt import PBTScheduler, check_objective

__all__ = [
    "ASHAScheduler",
    "BaseScheduler",
    "Decision",
    "FIFOScheduler",
    "HyperbandScheduler",
    "MedianStoppingScheduler",
    "PBTScheduler",
    "Scheduler",
    "Suggestion",
    "make_scheduler",
    "scheduler_to_dict",
]

_RESOURCE_KEYS = ("min_resource", "max_resource", "reduction_factor")

#: type name -> (constructor, the settings it accepts besides ``type``)
_TYPES: dict[str, tuple[Callable[..., Scheduler], tuple[str, ...]]] = {
    "fifo": (FIFOScheduler, ()),
    "asha": (ASHAScheduler, _RESOURCE_KEYS),
    "hyperband": (HyperbandScheduler, _RESOURCE_KEYS),
    "median": (MedianStoppingScheduler, ("warmup_steps", "min_trials", "interval")),
    "pbt": (PBTScheduler, ("population", "perturbation_interval", "quantile", "resample_probability", "mutations",
                           "seed", "max_resource")),
}


def make_scheduler(
    spec: Mapping[str, Any] | str | Scheduler | None,
    metric: str,
    mode: str,
    field: str = "scheduler",
    *,
    space: Any = None,
    objective: Any = None,
) -> Scheduler:
    """Build a scheduler from its config form, or return a built one as it is.

    Args:
        spec: ``{type: asha, min_resource: 1, ...}``, a type name, ``None`` (fifo), or a scheduler.
        metric: The metric the study optimizes.
        mode: ``"maximize"`` or ``"minimize"``.
        field: Where ``spec`` sits in the config, used in error messages.
        space: The study's space: PBT derives its mutations from it (and refuses a space with
            nothing to mutate).
        objective: The study's objective: PBT refuses one that cannot checkpoint, or that trains
            for less than one perturbation interval.

    Raises:
        ConfigError: naming the bad field (``scheduler.reduction_factor``) and how to fix it.

    Example:
        >>> make_scheduler({"type": "asha", "max_resource": 9}, "accuracy", "maximize")
        ASHAScheduler(metric='accuracy', mode='maximize', min_resource=1, max_resource=9, reduction_factor=3)
    """
    if isinstance(spec, Scheduler):
        if isinstance(spec, PBTScheduler) and space is not None:
            _check_pbt(spec, space, objective, field)
        return spec
    if not isinstance(metric, str) or not metric:
        raise ConfigError("metric", f"is {metric!r}, but must be a metric name.", "name the metric to optimize.")
    if mode not in ("maximize", "minimize"):
        raise ConfigError("mode", f"is {mode!r}, but must be 'maximize' or 'minimize'.", "use one of them.")
    kind, settings = _split(spec, field)
    build, allowed = _TYPES[kind]
    for key in settings:
        if key not in allowed:
            valid = ", ".join(("type",) + allowed)
            raise ConfigError(
                f"{field}.{key}", f"is not a setting of the {kind} scheduler.", f"remove it; valid keys: {valid}."
            )
    try:
        scheduler = build(metric, mode, **settings)
    except ConfigError as exc:  # the constructor names the bare setting; say where it sits
        raise ConfigError(f"{field}.{exc.field}", exc.problem, exc.fix) from None
    if isinstance(scheduler, PBTScheduler) and space is not None:
        _check_pbt(scheduler, space, objective, field)
    return scheduler


def _check_pbt(scheduler: PBTScheduler, space: Any, objective: Any, field: str) -> None:
    """Bind PBT to the study's space and objective, naming the bad field when they cannot carry it."""
    try:
        scheduler.bind(space)
    except ConfigError as exc:
        raise ConfigError(f"{field}.{exc.field}", exc.problem, exc.fix) from None
    if objective is not None:
        check_objective(scheduler, objective, scheduler.space)


def scheduler_to_dict(scheduler: Scheduler) -> dict[str, Any]:
    """A scheduler's settings for tracking, in the form ``make_scheduler`` accepts when it can."""
    to_dict = getattr(scheduler, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    if type(scheduler) is FIFOScheduler:
        return {"type": "fifo"}
    return {"type": type(scheduler).__name__, "repr": repr(scheduler)}


def _split(spec: Any, field: str) -> tuple[str, dict[str, Any]]:
    """(type name, other settings) of a spec, or a ConfigError saying what is wrong with it."""
    if spec is None:
        return "fifo", {}
    if isinstance(spec, str):
        return _kind(spec, field), {}
    if not isinstance(spec, Mapping):
        raise ConfigError(
            field, f"is a {type(spec).__name__}, but must be a mapping, a type name or nothing.",
            "write e.g. {type: asha, min_resource: 1, max_resource: 3}.",
        )
    settings = {str(k): v for k, v in spec.items()}
    if "type" not in settings:
        if not settings:
            return "fifo", {}
        raise ConfigError(f"{field}.type", "is missing.", f"add type: one of {', '.join(_TYPES)}.")
    return _kind(settings.pop("type"), f"{field}.type"), settings


def _kind(name: Any, field: str) -> str:
    kind = name.strip().lower() if isinstance(name, str) else ""
    if kind in _TYPES:
        return kind
    close = difflib.get_close_matches(kind, list(_TYPES), n=1)
    fix = f"did you mean {close[0]}?" if close else "use one of them."
    raise ConfigError(field, f"is {name!r}, but must be one of: {', '.join(_TYPES)}.", fix)
