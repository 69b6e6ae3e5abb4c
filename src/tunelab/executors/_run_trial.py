"""Run one trial's objective and turn how it ended into an ``Ended`` event.

Shared by every executor, on the trial side: the classification of failures lives here once.
"""

from __future__ import annotations

import math
import traceback
from typing import Any, Mapping

from tunelab.errors import TrialFailed, TrialPruned
from tunelab.trial import Ended, State, clean_metrics
from tunelab.worker import Reporter, Resources


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def make_reporter(spec: Any, channel: Any, resources: Resources) -> Reporter:
    """The reporter for ``spec`` (a ``TrialSpec``): a clone's restore point and start step included."""
    return Reporter(spec.trial_id, dict(spec.config), spec.trial_dir, channel, resources, spec.from_checkpoint,
                    getattr(spec, "start_step", None))


def run_objective(objective: Any, reporter: Reporter) -> Ended:
    """Call ``objective(config, reporter)``; never raises (but for KeyboardInterrupt/SystemExit)."""
    trial_id = reporter.trial_id
    try:
        result = objective(dict(reporter.config), reporter)
    except TrialPruned:
        return Ended(trial_id, State.PRUNED, reporter.last_metrics)
    except TrialFailed as exc:
        return Ended(trial_id, State.FAILED, reporter.last_metrics, exc.kind, str(exc))
    except Exception as exc:  # the user's code failed: record it, never crash the study
        traceback.print_exc()
        kind = "oom" if _is_oom(exc) else "crash"
        return Ended(trial_id, State.FAILED, reporter.last_metrics, kind, f"{type(exc).__name__}: {exc}")
    try:
        metrics = _result_metrics(result, reporter)
    except TypeError as exc:
        return Ended(trial_id, State.FAILED, reporter.last_metrics, "crash", str(exc))
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if bad:
        return Ended(trial_id, State.FAILED, metrics, "nan", f"metric {bad[0]!r} is {metrics[bad[0]]}")
    return Ended(trial_id, State.COMPLETE, metrics)


def _result_metrics(result: Any, reporter: Reporter) -> dict[str, float]:
    if result is None:
        return reporter.last_metrics
    if isinstance(result, Mapping):
        return {**reporter.last_metrics, **clean_metrics(result)}
    # A bare number is the primary metric; the tuner knows its name.
    return {**reporter.last_metrics, "__value__": clean_metrics({"value": result})["value"]}
