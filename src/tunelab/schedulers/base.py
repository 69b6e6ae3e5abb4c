"""The scheduler protocol: pure decisions on intermediate results.

A scheduler never touches executors or storage. It is given frozen ``TrialRecord`` snapshots
and answers CONTINUE or STOP. ``suggest`` lets a scheduler start a trial itself (population
based training clones a trial through ``Suggestion(config, from_checkpoint=trial_id)``);
returning ``None`` leaves the choice of the next config to the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from tunelab.trial import TrialRecord


class Decision(str, Enum):
    CONTINUE = "continue"
    STOP = "stop"


@dataclass(frozen=True)
class Suggestion:
    """A config the scheduler wants run, optionally warm-started from another trial's checkpoint.

    ``from_checkpoint`` is the parent trial's number; ``start_step`` the step of the parent's
    checkpoint the clone continues from (``None``: the parent's last stored report); ``mutations``
    the readable change log (parameter -> ``"3e-05 --- (* 1.2) --> 3.6e-05"``). The tuner creates
    one trial for the suggestion and stores all three as its lineage.
    """

    config: Mapping[str, Any]
    from_checkpoint: int | None = None
    start_step: float | None = None  # the step of that checkpoint: the clone's reports continue after it
    mutations: Mapping[str, str] | None = None  # param -> "3e-05 --- (* 1.2) --> 3.6e-05"
    #: The trial whose place this one takes (stored as its lineage): the tuner launches one
    #: trial per ``replaces``, however many drivers suggest it.
    replaces: int | None = None


@runtime_checkable
class Scheduler(Protocol):
    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None: ...

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision: ...

    def on_end(self, trial: TrialRecord) -> None: ...


class BaseScheduler:
    """Shared plumbing: which metric to watch and in which direction."""

    def __init__(self, metric: str, mode: str = "maximize") -> None:
        if mode not in ("maximize", "minimize"):
            raise ValueError(f"mode must be 'maximize' or 'minimize', got {mode!r}")
        self.metric = metric
        self.mode = mode

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        return None

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        return Decision.CONTINUE

    def on_end(self, trial: TrialRecord) -> None:
        return None

    def score(self, value: float) -> float:
        """The value turned so that higher is always better."""
        return value if self.mode == "maximize" else -value

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class FIFOScheduler(BaseScheduler):
    """Runs every trial to the end."""
