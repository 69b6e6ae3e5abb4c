"""Experiment tracking: MLflow runs for a study and its trials (see ``tracking.mlflow``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.tracking.settings import DEFAULT_URI, MlflowSettings, mlflow_installed, parse_tracking

if TYPE_CHECKING:
    from tunelab.config import StudyConfig

#: Where a study's tracking state (run ids, queued records) lives, under its trial directory.
STATE_DIR = ".mlflow"


def tracking_callbacks(config: "StudyConfig", trial_root: str | Path, *,
                       report_path: str | Path | None = None) -> list[Any]:
    """The tracker callbacks that ``config.tracking`` asks for (none when MLflow is off)."""
    settings = parse_tracking(config.tracking, base_dir=config.base_dir, study_name=config.name)
    if settings is None:
        return []
    from tunelab.tracking.mlflow import MlflowTracker

    return [MlflowTracker(settings, Path(trial_root) / STATE_DIR, config=config, report_path=report_path)]


__all__ = ["DEFAULT_URI", "MlflowSettings", "STATE_DIR", "mlflow_installed", "parse_tracking", "tracking_callbacks"]
