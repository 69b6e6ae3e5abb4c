"""The trial side: what objective code sees (``config``, ``report``, ``should_stop``, ...).

A ``Reporter`` is handed to ``objective(config, reporter)``. Its transport (a pipe to the
driver's local executor, a queue for the in-process executor, a Ray actor) is hidden behind a
``Channel``: ``send_result`` returns whether the scheduler wants the trial to stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from tunelab.errors import TrialFailed, TrialPruned
from tunelab.trial import clean_metrics


class Channel(Protocol):
    def send_result(self, step: float, metrics: Mapping[str, float]) -> bool:
        """Deliver a result to the driver; return True when the trial must stop."""
        ...


@dataclass(frozen=True)
class Resources:
    cpus: int = 1
    gpus: tuple[int, ...] = ()
    gpu_fraction: float = 0.0


@dataclass
class Reporter:
    """The handle a trial gets. ``report`` raises ``TrialPruned`` when the scheduler stops it."""

    trial_id: int
    config: Mapping[str, Any]
    trial_dir: Path
    channel: Channel
    resources: Resources = field(default_factory=Resources)
    from_checkpoint: Path | None = None
    _stop: bool = False
    _last: dict[str, float] = field(default_factory=dict)
    _last_step: float | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """Where the trial writes checkpoints; kept for the best trials, removed for the rest."""
        path = self.trial_dir / "checkpoint"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def last_metrics(self) -> dict[str, float]:
        return dict(self._last)

    def report(self, step: float, **metrics: Any) -> None:
        """Report intermediate metrics at ``step`` (epochs or iterations; fractions allowed).

        Raises ``TrialPruned`` when the scheduler decides the trial should stop, so objective
        code needs no check of its own (catch it to clean up, then re-raise).
        A NaN or infinite value ends the trial as ``failed: nan``.
        """
        values = clean_metrics(metrics)
        if self._stop:
            raise TrialPruned()
        self._last.update(values)
        self._last_step = float(step)
        stop = self.channel.send_result(float(step), values)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise TrialFailed("nan", f"metric {bad[0]!r} is {values[bad[0]]} at step {step}")
        if stop:
            self._stop = True
            raise TrialPruned()

    def should_stop(self) -> bool:
        return self._stop

    def request_stop(self) -> None:
        """Set by the transport when the driver asks the trial to stop (budget, shutdown)."""
        self._stop = True
