"""``tunelab run --report report.html``: a callback that keeps the report current as trials end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from tunelab.study import StudyView, TrialInfo


class LiveReport:
    """Rewrites the report (atomically) when trials end, at most every ``min_interval_s``.

    A refresh skipped for being too soon happens at the next hook after the interval, and the
    final report is always written at the end of the study.
    """

    def __init__(self, path: str | Path, *, min_interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        self._study: "StudyView | None" = None
        self._last = float("-inf")
        self._stale = False

    def on_study_start(self, study: "StudyView") -> None:
        self._study = study
        self._write(live=True)

    def on_result(self, number: int, step: float, metrics: Mapping[str, float]) -> None:
        if self._stale:
            self._maybe_write()

    def on_trial_end(self, trial: "TrialInfo") -> None:
        self._stale = True
        self._maybe_write()

    def on_study_end(self, study: "StudyView") -> None:
        self._study = study
        self._write(live=False)

    def _maybe_write(self) -> None:
        if time.monotonic() - self._last >= self.min_interval_s:
            self._write(live=True)

    def _write(self, *, live: bool) -> None:
        if self._study is None:
            return
        from tunelab.report.html import write_report

        self._last = time.monotonic()
        self._stale = False
        write_report(self._study, self.path, live=live)
