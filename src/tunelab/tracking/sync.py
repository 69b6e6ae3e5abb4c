"""``tunelab sync``: send the tracking records a study queued while a tracker was unreachable."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError
from tunelab.tracking.callback import STUDY_KEY
from tunelab.tracking.settings import TRACKERS
from tunelab.tracking.spool import RunMap, Spool
from tunelab.tracking.writer import RecordRejected, TrackingUnavailable, Writer

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
    tracker: str = "mlflow"


def tracked_with(study: "StudyView") -> list[str]:
    """The trackers the study was tracked to (each keeps a study attribute ``tunelab.<name>``)."""
    return [name for name in TRACKERS if (study.optuna_study.user_attrs.get(f"tunelab.{name}") or {}).get("state_dir")]


def sync_study(study: "StudyView", *, tracker: str = "mlflow", uri: str | None = None,
               client: Any = None) -> SyncResult:
    """Send a study's queued records for ``tracker`` in order; stop at the first that cannot be sent.

    ``uri`` overrides the MLflow tracking URI the study was tracked to (the server moved).
    """
    key = f"tunelab.{tracker}"
    attr = study.optuna_study.user_attrs.get(key)
    if not attr or not attr.get("state_dir"):
        raise TunelabError(f"study {study.name!r} was never tracked to {tracker}; nothing to sync.")
    state_dir = Path(attr["state_dir"])
    runs = RunMap(state_dir)
    target = uri or runs.uri or attr["uri"]
    spool = Spool(state_dir)
    if not spool.path.exists():
        return SyncResult(target, 0, 0, 0, spool.path, tracker)
    rejected = 0
    writer = _writer(tracker, attr, runs, target, client)

    def send(record: dict[str, Any]) -> None:
        nonlocal rejected
        try:
            writer.send(record, replay=True)
        except RecordRejected as exc:
            rejected += 1
            logger.warning("%s rejected a queued %s record: %s", tracker, record["op"], exc)

    try:
        result = spool.replay(send, stop_on=(TrackingUnavailable,))
    finally:
        writer.close()
    sent, left = result if result is not None else (0, len(spool))
    if tracker == "mlflow" and runs.get(STUDY_KEY) and attr.get("run_id") != runs.get(STUDY_KEY):
        study.optuna_study.set_user_attr(key, {**attr, "run_id": runs.get(STUDY_KEY)})
    return SyncResult(target, sent, left, rejected, spool.path, tracker)


def _writer(tracker: str, attr: dict[str, Any], runs: RunMap, target: str, client: Any) -> Writer:
    if tracker == "mlflow":
        from tunelab.tracking.mlflow import MlflowWriter, make_client

        return MlflowWriter(client if client is not None else make_client(target), runs)
    return importlib.import_module(f"tunelab.tracking.{tracker}").sync_writer(attr, runs)
