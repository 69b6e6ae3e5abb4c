"""What a trial is, seen from the tuner: states, failure kinds, events and frozen records."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping


class State(str, Enum):
    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    WAITING = "waiting"


class FailureKind(str, Enum):
    OOM = "oom"
    NAN = "nan"
    CRASH = "crash"
    TIMEOUT = "timeout"
    INFEASIBLE = "infeasible"
    INTERRUPTED = "interrupted"


#: Failures that say something about the configuration, so the sampler must learn from them.
LEARNABLE_FAILURES = frozenset({FailureKind.OOM.value, FailureKind.INFEASIBLE.value, FailureKind.NAN.value})


@dataclass(frozen=True)
class Report:
    """One intermediate result: ``step`` (epochs, iterations; fractions allowed) and metrics."""

    step: float
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class TrialRecord:
    """A frozen snapshot of a trial, handed to schedulers (never a live handle)."""

    trial_id: int
    config: Mapping[str, Any]
    state: State = State.RUNNING
    history: tuple[Report, ...] = ()
    failure_kind: str | None = None
    parent_id: int | None = None
    #: The trial this one takes the place of: a PBT clone, the member it replaces; a trial that
    #: continues an interrupted one, that trial (stored in the ``run`` attribute, one per trial).
    replaces: int | None = None

    def values_of(self, metric: str) -> list[tuple[float, float]]:
        """(step, value) pairs reported for ``metric``, in order."""
        return [(r.step, float(r.metrics[metric])) for r in self.history if metric in r.metrics]


# ---- events, sent from executors to the tuner -------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A trial reported intermediate metrics."""

    trial_id: int
    step: float
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class Ended:
    """A trial finished: ``state`` complete, pruned or failed (then ``kind`` says why)."""

    trial_id: int
    state: State
    metrics: Mapping[str, float] = field(default_factory=dict)
    kind: str | None = None
    message: str = ""


Event = Result | Ended


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics as plain floats (ints kept as floats), rejecting what is not a number."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)  # numpy and torch scalars
            except (TypeError, ValueError):
                raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}") from None
        out[str(name)] = float(value)
    return out


def has_nan(metrics: Mapping[str, float]) -> bool:
    return any(not math.isfinite(v) for v in metrics.values())
