"""The tracker protocol: the records every tracker takes, and how one is sent.

A record is a plain JSON-ready dict, so what could not be sent can wait on disk (see ``spool``)
and be sent later, by this process or by ``tunelab sync``. Its ``op`` names the tracker method
that takes it (as accelerate's trackers: start, store the config, log, end, finish):

- ``study``  ``{key, name, start_ms, params, tags}``: a study starts (or goes on after a resume);
- ``trial``  ``{key, number, name, start_ms, config, tags}``: a trial starts with its config
  (values, never indices);
- ``log``    ``{key, metrics: [[name, value, timestamp_ms, step], ...], tags?}``: values with an
  integer step (the report's index in its trial);
- ``end``    ``{key, number, status, end_ms, metrics, tags, config, summary}``: a trial ends;
  ``tags`` hold ``state`` and ``failure_kind``, ``status`` is ``FINISHED|FAILED|KILLED``,
  ``summary`` the metrics of its best evaluation;
- ``finish`` ``{key, status, end_ms, metrics, tags}``: the study ends;
- ``artifact`` ``{key, path, dir}``: a local file or directory (trackers without artifacts skip it).

Runs are named by tunelab keys (``study``, ``trial:3``); a ``RunMap`` holds each tracker's ids.
A record may carry ``"replay": true`` (backfilled after a crash): the tracker looks for what
reached it before, as it does for every record sent again from the spool.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

from tunelab.tracking.spool import RunMap


class TrackingUnavailable(Exception):
    """The tracker could not be reached; the record may be sent again later."""


class RecordRejected(Exception):
    """The tracker refused the record (bad value, deleted run): sending it again cannot help."""


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class Writer:
    """One tracker's side of the protocol: a method per record ``op``, called in the sender thread.

    Subclasses implement ``study``, ``trial``, ``log``, ``end`` and ``finish`` (and ``artifact``
    where the tracker keeps files); each gets the record and ``replay`` (it may have arrived before).
    """

    #: Whether what ``log`` sends is kept once sent (so a resume after ``kill -9`` sends only the rest).
    durable_logs = True

    def __init__(self, runs: RunMap) -> None:
        self.runs = runs

    def send(self, record: Mapping[str, Any], *, replay: bool = False) -> None:
        """Send one record. Raises ``TrackingUnavailable`` or ``RecordRejected``."""
        method = getattr(self, str(record.get("op")), None)
        if method is None:
            raise RecordRejected(f"unknown record op {record.get('op')!r}")
        try:
            with self.calling():
                method(record, replay or bool(record.get("replay")))
        except (TrackingUnavailable, RecordRejected):
            raise
        except Exception as exc:  # noqa: BLE001 - the tracker's, network and OS errors alike
            raise self.classify(exc) from exc
        if self.durable_logs and record["op"] == "log" and record.get("key") != "study" and record.get("metrics"):
            self.runs.mark_logged(record["key"], 1 + max(int(row[3]) for row in record["metrics"]))

    def send_retrying(self, record: Mapping[str, Any], delays: tuple[float, ...] = (0.25, 1.0),
                      sleep: Callable[[float], None] = time.sleep) -> None:
        """``send`` with a few short retries when the tracker is unreachable."""
        for delay in (*delays, None):
            try:
                self.send(record)
                return
            except TrackingUnavailable:
                if delay is None:
                    raise
                sleep(delay)

    def calling(self) -> Any:
        """A context around each call (MLflow: fail fast over HTTP)."""
        import contextlib

        return contextlib.nullcontext()

    def classify(self, exc: BaseException) -> Exception:
        """An error of the tracker as ``RecordRejected`` or ``TrackingUnavailable``."""
        if isinstance(exc, (TypeError, ValueError)):
            return RecordRejected(f"{type(exc).__name__}: {_short(exc)}")
        return TrackingUnavailable(f"{type(exc).__name__}: {_short(exc)}")

    def artifact(self, record: Mapping[str, Any], replay: bool) -> None:
        """Trackers that keep no files take artifact records as sent."""

    def close(self) -> None:
        """Let go of what the writer holds open (the sender's end)."""


def trial_key(number: int) -> str:
    return f"trial:{number}"
