"""Experiment tracking: MLflow, Weights & Biases and TensorBoard, through one tracker protocol.

Each tracker is a tuner callback (``callback.TrackerCallback``) whose records (``writer``) are
sent by a background thread and queued on disk while the tracker is unreachable (``sender``,
``spool``); ``tunelab sync`` sends what is queued (``sync``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.tracking.settings import (
    DEFAULT_URI,
    MlflowSettings,
    TensorboardSettings,
    WandbSettings,
    mlflow_installed,
    parse_tracking,
    parse_trackers,
)

if TYPE_CHECKING:
    from tunelab.config import StudyConfig

#: Where a study's MLflow state (run ids, queued records) lives, under its trial directory.
STATE_DIR = ".mlflow"


def tracking_callbacks(config: "StudyConfig", trial_root: str | Path, *,
                       report_path: str | Path | None = None) -> list[Any]:
    """The tracker callbacks that ``config.tracking`` asks for; each package is imported only here."""
    out: list[Any] = []
    for settings in parse_trackers(config.tracking, base_dir=config.base_dir, study_name=config.name):
        if isinstance(settings, MlflowSettings):
            from tunelab.tracking.mlflow import MlflowTracker

            out.append(MlflowTracker(settings, Path(trial_root) / STATE_DIR, config=config, report_path=report_path))
        elif isinstance(settings, WandbSettings):
            from tunelab.tracking.wandb import WandbTracker

            out.append(WandbTracker(settings, Path(trial_root) / ".wandb"))
        elif isinstance(settings, TensorboardSettings):
            from tunelab.tracking.tensorboard import TensorboardTracker

            out.append(TensorboardTracker(settings, Path(trial_root) / ".tensorboard"))
    return out


__all__ = ["DEFAULT_URI", "MlflowSettings", "STATE_DIR", "TensorboardSettings", "WandbSettings", "mlflow_installed",
           "parse_tracking", "parse_trackers", "tracking_callbacks"]
