"""``tunelab sync``: send the tracking records a study queued while MLflow was unreachable."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError
from tunelab.tracking.mlflow import STUDY_ATTR, STUDY_KEY, make_client
from tunelab.tracking.spool import RunMap, Spool
from tunelab.tracking.writer import MlflowWriter, RecordRejected, TrackingUnavailable

if TYPE_CHECKING:
    from tunelab.study import StudyView

logger = logging.getLogger("tunelab.tracking")


@dataclass(frozen=True)
class SyncResult:
    uri: str
    sent: int
    left: int
    rejected: int
    spool: Path


def sync_study(study: "StudyView", *, uri: str | None = None, client: Any = None) -> SyncResult:
    """Send a study's queued MLflow records in order; stop at the first that cannot be sent.

    ``uri`` overrides the tracking URI the study was tracked to (the server moved).
    """
    attr = study.optuna_study.user_attrs.get(STUDY_ATTR)
    if not attr or not attr.get("state_dir"):
        raise TunelabError(f"study {study.name!r} was never tracked to MLflow; nothing to sync.")
    state_dir = Path(attr["state_dir"])
    runs = RunMap(state_dir)
    target = uri or runs.uri or attr["uri"]
    spool = Spool(state_dir)
    if not spool.path.exists():
        return SyncResult(target, 0, 0, 0, spool.path)
    rejected = 0

    def remember(run_id: str) -> None:
        study.optuna_study.set_user_attr(STUDY_ATTR, {**attr, "run_id": run_id})

    writer = MlflowWriter(client if client is not None else make_client(target), runs, on_study_run=remember)

    def send(record: dict[str, Any]) -> None:
        nonlocal rejected
        try:
            writer.send(record, replay=True)
        except RecordRejected as exc:
            rejected += 1
            logger.warning("MLflow rejected a queued %s record: %s", record["op"], exc)

    result = spool.replay(send, stop_on=(TrackingUnavailable,))
    sent, left = result if result is not None else (0, len(spool))
    if runs.get(STUDY_KEY) and attr.get("run_id") != runs.get(STUDY_KEY):
        remember(runs.get(STUDY_KEY))  # type: ignore[arg-type]
    return SyncResult(target, sent, left, rejected, spool.path)
