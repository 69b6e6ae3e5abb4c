"""Asynchronous Hyperband: several ASHA brackets that start halving at different resources.

Bracket ``b`` (``b = 0 .. s_max``, ``s_max = floor(log_rf(max_resource / min_resource))``) is an
ASHA whose first rung is ``min_resource * rf**b``; the last bracket often has no rung below
``max_resource`` and so runs its trials to the end, the most patient arm of Hyperband. Trials
compete only with trials of their own bracket.

A trial's bracket is a pure function of its id, so it is fixed on first sight and any process
computes the same one. Brackets are weighted by their budget as in Optuna's ``HyperbandPruner``
(``ceil(n_brackets * rf**s / (s + 1))`` for a bracket with ``s`` halvings). Optuna maps a crc32 of
study and trial to a bracket; here the trial id goes through Fibonacci hashing (multiply by
``2**64 / golden ratio``, keep the fraction), which spreads consecutive ids evenly over the
weights instead of merely at random, and is never salted per process like ``hash(str)``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from tunelab.errors import ConfigError
from tunelab.schedulers.asha import STEP_TOLERANCE, ASHAScheduler, check_resources
from tunelab.schedulers.base import BaseScheduler, Decision
from tunelab.trial import TrialRecord

_GOLDEN = 0x9E3779B97F4A7C15  # round(2**64 / golden ratio), odd


class HyperbandScheduler(BaseScheduler):
    """Asynchronous Hyperband over ``s_max + 1`` ASHA brackets.

    Args:
        metric: Name of the reported metric to compare.
        mode: ``"maximize"`` or ``"minimize"``.
        min_resource: First rung of the most aggressive bracket (bracket 0).
        max_resource: Steps of a full trial (required: it sets how many brackets there are).
        reduction_factor: ``rf`` of every bracket.

    Example:
        >>> hb = HyperbandScheduler("accuracy", min_resource=1, max_resource=9)
        >>> hb.bracket_min_resources(), hb.bracket_weights()
        ([1, 3, 9], [9, 5, 3])
    """

    TYPE = "hyperband"

    def __init__(
        self,
        metric: str,
        mode: str = "maximize",
        *,
        min_resource: float = 1,
        max_resource: float | None = None,
        reduction_factor: int = 3,
    ) -> None:
        super().__init__(metric, mode)
        if max_resource is None:
            raise ConfigError(
                "max_resource", "is missing, but hyperband needs it to lay out its brackets.",
                "add max_resource: the steps a full trial runs, e.g. 9 (epochs).",
            )
        check_resources(min_resource, max_resource, reduction_factor)
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.reduction_factor = reduction_factor
        self._brackets: list[ASHAScheduler | None] = [
            # None: no rung below max_resource, so the bracket never stops anything.
            ASHAScheduler(metric, mode, min_resource=start, max_resource=max_resource,
                          reduction_factor=reduction_factor)
            if start < max_resource * (1 - STEP_TOLERANCE) else None
            for start in self.bracket_min_resources()
        ]
        self._weights = self.bracket_weights()

    def bracket_min_resources(self) -> list[float]:
        """First rung of each bracket: ``min_resource * rf**b`` up to ``max_resource``."""
        rf, s_max = self.reduction_factor, 0
        while self.min_resource * rf ** (s_max + 1) <= self.max_resource * (1 + STEP_TOLERANCE):
            s_max += 1
        return [self.min_resource * rf**b for b in range(s_max + 1)]

    def bracket_weights(self) -> list[int]:
        """Relative share of trials per bracket, as Hyperband's ``n_i`` (bracket 0 gets most)."""
        n = len(self.bracket_min_resources())
        halvings = [n - 1 - b for b in range(n)]
        return [-(-(n * self.reduction_factor**s) // (s + 1)) for s in halvings]

    def bracket_of(self, trial_id: int) -> int:
        """The bracket of ``trial_id``: deterministic, the same in every process and run."""
        total = sum(self._weights)
        pick = ((trial_id * _GOLDEN) % 2**64) * total >> 64
        for bracket, weight in enumerate(self._weights):
            pick -= weight
            if pick < 0:
                return bracket
        return len(self._weights) - 1  # unreachable: pick < total

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        bracket = self._brackets[self.bracket_of(trial.trial_id)]
        if bracket is None:
            return Decision.CONTINUE
        return bracket.on_result(trial, step, metrics)

    def on_end(self, trial: TrialRecord) -> None:
        bracket = self._brackets[self.bracket_of(trial.trial_id)]
        if bracket is not None:
            bracket.on_end(trial)

    def observe(self, trials: Sequence[TrialRecord]) -> None:
        """Other drivers' stored trials, each to its bracket (see ``ASHAScheduler.observe``)."""
        for trial in trials:
            bracket = self._brackets[self.bracket_of(trial.trial_id)]
            if bracket is not None:
                bracket.observe((trial,))

    def to_dict(self) -> dict[str, Any]:
        """The settings in the form ``make_scheduler`` accepts."""
        return {
            "type": self.TYPE,
            "min_resource": self.min_resource,
            "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
        }
