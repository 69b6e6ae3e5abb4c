"""The median stopping rule (Golovin et al. 2017, Google Vizier) as a pure decision object.

At a checked step ``t >= warmup_steps`` a trial is stopped when its best value so far is worse
than the median, over the OTHER trials that have reported at or beyond ``t`` (running or ended),
of each one's best value reported at a step ``<= t``. With fewer than ``min_trials`` such trials
there is no evidence yet and the trial goes on. Checks happen at the reports that reach or pass
``warmup_steps + j * interval`` (``j = 0, 1, ...``) for the first time; ``interval=0`` checks every
report from ``warmup_steps`` on. Curves come from the ``TrialRecord.history`` given to
``on_result`` and ``on_end``.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from tunelab.errors import ConfigError
from tunelab.schedulers.base import BaseScheduler, Decision
from tunelab.trial import TrialRecord

# Steps are floats (0.1 + 0.2 != 0.3); equal within this relative tolerance means equal.
STEP_TOLERANCE = 1e-9

Curve = list[tuple[float, float]]  # (step, score) with higher scores better


class MedianStoppingScheduler(BaseScheduler):
    """Stops a trial whose best value so far is worse than the other trials' median.

    Args:
        metric: Name of the reported metric to compare.
        mode: ``"maximize"`` or ``"minimize"``.
        warmup_steps: No trial is stopped at a step below this (early curves are noisy).
        min_trials: Other trials that must have reached a step before it is judged.
        interval: Step distance between checks; ``0`` checks at every report.

    Example:
        >>> MedianStoppingScheduler("loss", "minimize", warmup_steps=2, min_trials=3)
        MedianStoppingScheduler(metric='loss', mode='minimize', warmup_steps=2, min_trials=3, interval=1)
    """

    TYPE = "median"

    def __init__(
        self,
        metric: str,
        mode: str = "maximize",
        *,
        warmup_steps: float = 0,
        min_trials: int = 5,
        interval: float = 1,
    ) -> None:
        super().__init__(metric, mode)
        for name, value in (("warmup_steps", warmup_steps), ("interval", interval)):
            if not _is_number(value) or value < 0:
                raise ConfigError(name, f"is {value!r}, but must be a number >= 0.", "use 0, 1 or 2 (steps).")
        if isinstance(min_trials, bool) or not isinstance(min_trials, int) or min_trials < 1:
            raise ConfigError("min_trials", f"is {min_trials!r}, but must be an integer >= 1.", "use 3 or 5.")
        self.warmup_steps = warmup_steps
        self.min_trials = min_trials
        self.interval = interval
        self._curves: dict[int, Curve] = {}

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        curve = self._remember(trial, step, metrics)
        if self.metric not in metrics or not curve or not self._is_check(curve):
            return Decision.CONTINUE
        others = [
            best for tid, other in self._curves.items()
            if tid != trial.trial_id and (best := _best_at(other, step)) is not None
        ]
        if len(others) < self.min_trials:
            return Decision.CONTINUE
        mine = _best_at(curve, step)
        if mine is not None and mine < statistics.median(others):
            return Decision.STOP
        return Decision.CONTINUE

    def on_end(self, trial: TrialRecord) -> None:
        self.observe((trial,))

    def observe(self, trials: Sequence[TrialRecord]) -> None:
        """Take the curves of trials run elsewhere (other drivers, running or ended), as stored."""
        for trial in trials:
            curve = self._curve_of(trial)
            if curve or trial.trial_id not in self._curves:  # an empty record never erases a curve
                self._curves[trial.trial_id] = curve

    def to_dict(self) -> dict[str, Any]:
        """The settings in the form ``make_scheduler`` accepts."""
        return {
            "type": self.TYPE,
            "warmup_steps": self.warmup_steps,
            "min_trials": self.min_trials,
            "interval": self.interval,
        }

    def _remember(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Curve:
        curve = self._curve_of(trial)
        # The record should already hold this report; add it when a caller sent it separately.
        if (not trial.history or trial.history[-1].step != step) and self.metric in metrics:
            value = float(metrics[self.metric])
            if not math.isnan(value):
                curve.append((step, self.score(value)))
        self._curves[trial.trial_id] = curve
        return curve

    def _curve_of(self, trial: TrialRecord) -> Curve:
        return [(s, self.score(v)) for s, v in trial.values_of(self.metric) if not math.isnan(v)]

    def _is_check(self, curve: Curve) -> bool:
        """Whether the last report reaches a check point its predecessor had not reached."""
        step = curve[-1][0]
        if not _leq(self.warmup_steps, step):
            return False
        if len(curve) < 2 or not _leq(self.warmup_steps, curve[-2][0]):
            return True
        if self.interval == 0:
            return True
        return self._check_index(step) > self._check_index(curve[-2][0])

    def _check_index(self, step: float) -> int:
        return math.floor((step - self.warmup_steps) / self.interval + STEP_TOLERANCE)


def _best_at(curve: Curve, step: float) -> float | None:
    """Best score reported at a step <= ``step``, or None if the curve has not reached ``step``."""
    if not curve or not _leq(step, max(s for s, _ in curve)):
        return None
    scores = [score for s, score in curve if _leq(s, step)]
    return max(scores) if scores else None


def _leq(a: float, b: float) -> bool:
    return a <= b + STEP_TOLERANCE * max(1.0, abs(b))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
