"""Hooks into the tuner loop, for tracking (MLflow), live reports and the like.

Every method is optional. A hook that raises never stops the study: the tuner logs a warning
and goes on (tracking must not cost a single trial).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

if TYPE_CHECKING:
    from tunelab.study import StudyView, TrialInfo

logger = logging.getLogger("tunelab")


class Callback(Protocol):
    def on_study_start(self, study: "StudyView") -> None: ...

    def on_trial_start(self, number: int, config: Mapping[str, Any]) -> None: ...

    def on_result(self, number: int, step: float, metrics: Mapping[str, float]) -> None: ...

    def on_trial_end(self, trial: "TrialInfo") -> None: ...

    def on_study_end(self, study: "StudyView") -> None: ...


class CallbackList:
    def __init__(self, callbacks: Sequence[Any] = ()) -> None:
        self.callbacks = list(callbacks)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if method is None:
                continue
            try:
                method(*args)
            except Exception as exc:  # noqa: BLE001 - a hook must never stop the study
                logger.warning("%s.%s failed: %s: %s", type(callback).__name__, hook, type(exc).__name__, exc)
