"""The trial side: what objective code sees (``config``, ``report``, ``should_stop``, ...).

A ``Reporter`` is handed to ``objective(config, reporter)``. A trial that continues another
(a clone) finds the state to restore in ``restore_dir`` and reports from ``start_step`` on. Its transport (a pipe to the
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
    #: Where a clone restores from: a copy of its parent's ``checkpoint_dir`` inside this
    #: trial's own directory, made by the driver before the trial started (None: start fresh).
    from_checkpoint: Path | None = None
    #: The step the restored state was saved at (the parent's step): report from there on.
    start_step: float | None = None
    _stop: bool = False
    _last: dict[str, float] = field(default_factory=dict)
    _last_step: float | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """Where the trial writes checkpoints; kept for the best trials, removed for the rest.

        Write what a clone needs to continue here (replacing files with ``os.replace``, so a
        copy never sees half a file). The built-in trainer keeps ``best/`` (the best
        evaluation's model, what ``tunelab export`` takes) apart from ``latest/`` (the full
        training state); retention may drop ``latest/`` of a finished trial that no clone needs.
        """
        path = self.trial_dir / "checkpoint"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def restore_dir(self) -> Path | None:
        """Where to restore from (a clone's copy of its parent's ``checkpoint_dir``), or None."""
        return self.from_checkpoint

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
