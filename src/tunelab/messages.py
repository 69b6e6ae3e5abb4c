"""How tunelab talks while a study runs: warnings at the caller's line, the ``tunelab`` logger,
and Optuna's own chatter kept quiet (its INFO lines, its experimental-feature warnings).

Nothing here changes the process for good: ``quiet_optuna`` restores what it changed on exit.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from typing import Iterator

logger = logging.getLogger("tunelab")


class TunelabWarning(UserWarning):
    """Advice about a study's set-up (e.g. too many workers for an adaptive sampler)."""


def caller_stacklevel() -> int:
    """The ``stacklevel`` that attributes a warning to the first frame outside tunelab (the user's
    ``tune(...)`` line), for a ``warnings.warn`` made by the function calling this one."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and _in_tunelab(frame):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _in_tunelab(frame: object) -> bool:
    name = getattr(frame, "f_globals", {}).get("__name__", "")
    return name == "tunelab" or name.startswith("tunelab.")


def warn(message: str) -> None:
    """A ``TunelabWarning`` attributed to the caller's line (``logging.captureWarnings`` routes it
    to logging; it is not logged twice)."""
    warnings.warn(message, TunelabWarning, stacklevel=caller_stacklevel())


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines (``A new study created in Journal with name: ...``) and its
    ``ExperimentalWarning``s silenced for the duration; the logger level and the warning
    filters are restored on exit."""
    import optuna  # noqa: F401 - its first import sets up its logger, which must happen before ours

    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    if optuna_logger.getEffectiveLevel() < logging.WARNING:
        optuna_logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna_logger.setLevel(level)
