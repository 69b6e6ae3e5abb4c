"""Asynchronous successive halving (ASHA, Li et al. 2018) as a pure decision object.

Rungs sit at ``min_resource * reduction_factor**k`` below ``max_resource``. The first time a
trial's report reaches or passes a rung, the value of that report is recorded there, and the
trial goes on only if it ranks in the top ``ceil(n / reduction_factor)`` of the ``n`` values
recorded at that rung so far, itself included (ties go on). In exact arithmetic that is "at least
as good as the linear-interpolation percentile ``100 * (1 - 1/rf)`` of the recorded values,
its own included": Ray Tune's ``_Bracket.cutoff`` with the trial counted. It is computed by
rank because numpy's float position can land a hair past an integer (n=31, rf=3) and drop a
trial. One rule for every ``n``: with fewer than ``rf`` values, only a trial at least as good as
every value recorded so far goes on. A report that jumps over rungs is judged at each, lowest
first. A report without the metric goes on; a NaN is stopped; a stopped trial stays stopped.

The rungs hold every trial of the study: the tuner passes other drivers' stored reports to
``observe`` before each decision, so all drivers on one study judge against the same rungs.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

from tunelab.errors import ConfigError
from tunelab.schedulers.base import BaseScheduler, Decision
from tunelab.trial import TrialRecord

# A report at step 0.3 must reach the rung 0.1 * 3 == 0.30000000000000004.
STEP_TOLERANCE = 1e-9


class ASHAScheduler(BaseScheduler):
    """Stops trials that fall out of the top ``1/reduction_factor`` at a rung.

    Args:
        metric: Name of the reported metric to compare.
        mode: ``"maximize"`` or ``"minimize"``.
        min_resource: Step of the first rung (epochs; fractions allowed, e.g. ``0.5``).
        max_resource: Steps of a full trial. Rungs lie strictly below it, because stopping a
            trial that has had its whole budget saves nothing. ``None`` means no top: rungs go on
            forever, like Optuna's ``SuccessiveHalvingPruner``.
        reduction_factor: ``rf``; rung ``k`` sits at ``min_resource * rf**k`` and keeps ``1/rf``.

    Example:
        >>> asha = ASHAScheduler("accuracy", "maximize", min_resource=1, max_resource=9)
        >>> asha.rung_levels()
        [1, 3]
    """

    TYPE = "asha"

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
        check_resources(min_resource, max_resource, reduction_factor)
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.reduction_factor = reduction_factor
        self._rungs: dict[int, dict[int, float]] = {}  # rung index -> trial_id -> score
        self._stopped: set[int] = set()

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        if trial.trial_id in self._stopped:
            return Decision.STOP  # late reports of a stopped trial do not revive it
        if self.metric not in metrics or not math.isfinite(step):
            return Decision.CONTINUE
        value = float(metrics[self.metric])
        if math.isnan(value):
            self._stopped.add(trial.trial_id)
            return Decision.STOP
        score = self.score(value)
        # Lowest rung first: a trial that fails a rung was never promoted to the ones above.
        for k, _level in self._crossed(step):
            recorded = self._rungs.setdefault(k, {})
            if trial.trial_id in recorded:
                continue
            recorded[trial.trial_id] = score
            if not _in_top(score, recorded.values(), self.reduction_factor):
                self._stopped.add(trial.trial_id)
                return Decision.STOP
        return Decision.CONTINUE

    def on_end(self, trial: TrialRecord) -> None:
        self.observe((trial,))

    def observe(self, trials: Sequence[TrialRecord]) -> None:
        """Record the rung values of trials decided elsewhere (another driver, an earlier run),
        as stored: each report at the rungs it is the first to reach, with no judgement (their
        driver judged them). Idempotent, so a trial seen live or twice changes nothing."""
        for trial in trials:
            for report in trial.history:
                value = report.metrics.get(self.metric)
                if value is None or not math.isfinite(report.step) or math.isnan(float(value)):
                    continue
                for k, _level in self._crossed(report.step):
                    self._rungs.setdefault(k, {}).setdefault(trial.trial_id, self.score(float(value)))

    def rung_levels(self, up_to: float | None = None) -> list[float]:
        """The rung steps below ``max_resource`` (and at most ``up_to`` when given)."""
        if up_to is None and self.max_resource is None:
            raise ValueError("an unbounded ASHA has infinitely many rungs; pass up_to")
        return [level for _k, level in self._crossed(math.inf if up_to is None else up_to)]

    def recorded(self, level_index: int) -> dict[int, float]:
        """Values recorded at rung ``level_index`` (trial_id -> value in the metric's own sign)."""
        return {tid: self.score(s) for tid, s in self._rungs.get(level_index, {}).items()}

    def to_dict(self) -> dict[str, Any]:
        """The settings in the form ``make_scheduler`` accepts."""
        return {
            "type": self.TYPE,
            "min_resource": self.min_resource,
            "max_resource": self.max_resource,
            "reduction_factor": self.reduction_factor,
        }

    def _crossed(self, step: float) -> Iterator[tuple[int, float]]:
        """(index, level) of every rung that a report at ``step`` reaches or passes."""
        k = 0
        while True:
            level = self.min_resource * self.reduction_factor**k
            below_top = self.max_resource is None or level < self.max_resource * (1 - STEP_TOLERANCE)
            if not below_top or step < level * (1 - STEP_TOLERANCE):
                return
            yield k, level
            k += 1


def _in_top(score: float, scores: Any, reduction_factor: int) -> bool:
    """Whether ``score`` ranks in the top ``ceil(n / rf)`` of ``scores`` (higher is better)."""
    ranked = sorted(scores, reverse=True)
    keep = -(-len(ranked) // reduction_factor)  # ceil without floats
    return score >= ranked[keep - 1]


def check_resources(min_resource: Any, max_resource: Any, reduction_factor: Any) -> None:
    """Validate ASHA/Hyperband settings; raise ``ConfigError`` naming the field and the fix."""
    if not _is_number(min_resource) or not min_resource > 0:
        raise ConfigError(
            "min_resource", f"is {min_resource!r}, but must be a number > 0.",
            "use the step of the first report worth comparing, e.g. 1 or 0.5 (epochs).",
        )
    if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int) or reduction_factor < 2:
        raise ConfigError(
            "reduction_factor", f"is {reduction_factor!r}, but must be an integer >= 2.", "use 2, 3 or 4."
        )
    if max_resource is None:
        return
    if not _is_number(max_resource) or not max_resource > min_resource:
        raise ConfigError(
            "max_resource", f"is {max_resource!r}, but must be a number > min_resource ({min_resource!r}).",
            "set it to the steps a full trial runs (e.g. 3 or 9 epochs), or use type: fifo to never stop trials.",
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
