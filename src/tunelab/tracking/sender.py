"""A background thread that sends tracking records, so a tracker never slows the tuner loop.

Hooks put records on a queue and return at once. The sender sends them in order while the
study runs; reports of one run queued behind a slow store go out together, in one call. When
the store cannot be reached (after a few quick retries) it reports the outage once, queues
records on disk (``Spool``) from then on, and tries the store again every ``probe_interval_s``
(also when no new record comes), sending the backlog in order when it answers.

At the end of the study, what is left is sent within a bounded time: when that takes more than
a moment, the sender says how many records it is still sending, and whatever it could not send
in time waits on disk for the next run of the study or ``tunelab sync``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from tunelab.tracking.spool import Spool
from tunelab.tracking.writer import RecordRejected, TrackingUnavailable, Writer

logger = logging.getLogger("tunelab.tracking")

_STOP = object()

#: At the end, how long the sender may finish quietly before it says what it is still sending.
QUIET_END_S = 1.0
#: Metric rows merged into one call, at most (MLflow takes 1,000 metrics a batch).
MERGE_ROWS = 1000


class Sender:
    def __init__(
        self,
        make_writer: Callable[[], Writer],
        spool: Spool,
        *,
        uri: str,
        label: str = "MLflow",
        probe_interval_s: float = 10.0,
        retry_delays: tuple[float, ...] = (0.25, 1.0),
    ) -> None:
        self.make_writer = make_writer
        self.spool = spool
        self.uri = uri
        self.label = label  # the tracker, as messages name it
        self.probe_interval_s = probe_interval_s
        self.retry_delays = retry_delays
        self.writer: Writer | None = None
        self.queued = len(spool)  # records waiting on disk
        self.sent = 0
        self.rejected = 0
        self._outbox: "queue.Queue[Any]" = queue.Queue()
        self._offline = False
        self._warned = False
        self._abandon = threading.Event()
        self._next_probe = 0.0
        self._carry: Any = None  # a record taken from the queue while merging, handled next
        self._carrying = threading.Lock()
        self._in_flight = 0  # a record the thread is sending right now
        self._prepare: dict[int, Callable[[], bool]] = {}  # id(record) -> its preparation
        self._thread = threading.Thread(target=self._run, name=f"tunelab-{label.lower()}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, record: dict[str, Any], prepare: Callable[[], bool] | None = None) -> None:
        """Queue a record. ``prepare`` runs in the sender thread just before the record is sent
        or queued on disk (e.g. writing the file an artifact record names); when it returns
        False the record is dropped."""
        if prepare is not None:
            self._prepare[id(record)] = prepare
        self._outbox.put(record)

    def _prepared(self, record: dict[str, Any]) -> bool:
        prepare = self._prepare.pop(id(record), None)
        return prepare is None or prepare()

    def pending(self) -> int:
        """Records not sent yet: in memory and on disk (about: the thread is at work)."""
        return self._outbox.qsize() + (self._carry is not None) + self._in_flight + self.queued

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is left and stop. What is not sent within about ``timeout_s`` is queued on
        disk instead (sent by the next run of the study, or ``tunelab sync``)."""
        if self._thread.is_alive():
            self._outbox.put(_STOP)
            self._thread.join(min(QUIET_END_S, timeout_s))
            if self._thread.is_alive():
                left = max(self.pending() - 1, 1)  # less the stop mark
                logger.warning("%s: sending %d tracking record(s) to %s at %s (at most %.0f s more)...", self.label,
                               left, self.label, self.uri, max(timeout_s - QUIET_END_S, 0.0))
                self._thread.join(max(timeout_s - QUIET_END_S, 0.0))
        if self._thread.is_alive():  # the store is slow, or MLflow is still starting up
            self._abandon.set()
            self._spool_outbox()
            self._thread.join(2.0)
        if self.rejected > 3:
            logger.warning("%s rejected %d tracking record(s) in all.", self.label, self.rejected)
        if self.queued:
            logger.warning("%s: %d tracking record(s) were not sent to %s; they are kept in %s and sent by the "
                           "next run of this study, or now with `tunelab sync`.", self.label, self.queued, self.uri,
                           self.spool.path)

    def _spool_outbox(self) -> None:
        """Move the records still in memory to the disk queue (the caller's thread, on close)."""
        with self._carrying:
            carried, self._carry = self._carry, None
        if carried is not None:  # taken from the queue before the ones still in it
            self.spool.append(carried)
            self.queued += 1
        while True:
            try:
                record = self._outbox.get_nowait()
            except queue.Empty:
                break
            if record is not _STOP and self._prepared(record):
                self.spool.append(record)
                self.queued += 1
        self._outbox.put(_STOP)

    # ---- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            if self.writer is not None:
                try:
                    self.writer.close()
                except Exception as exc:  # noqa: BLE001 - the records are sent; closing is courtesy
                    logger.warning("%s: closing failed: %s: %s", self.label, type(exc).__name__, exc)

    def _loop(self) -> None:
        try:
            self.writer = self.make_writer()
        except Exception as exc:  # noqa: BLE001 - e.g. a store MLflow cannot open: the study goes on
            self._go_offline(exc)
        while True:
            try:
                record = self._next(timeout=self.probe_interval_s if self.queued else None)
            except queue.Empty:
                self._flush()
                continue
            if record is _STOP:
                if self.queued:
                    self._next_probe = 0.0
                    self._flush()
                return
            self._in_flight = 1
            try:
                self._handle(self._merge_following(record))
            finally:
                self._in_flight = 0

    def _next(self, timeout: float | None) -> Any:
        with self._carrying:
            record, self._carry = self._carry, None
        if record is not None:
            return record
        return self._outbox.get(timeout=timeout)

    def _merge_following(self, record: Any) -> Any:
        """Metric reports of one run queued one after another go out as one record."""
        if not _metrics_only(record):
            return record
        merged = record
        while len(merged["metrics"]) < MERGE_ROWS:
            try:
                following = self._outbox.get_nowait()
            except queue.Empty:
                break
            if not _metrics_only(following) or following["key"] != record["key"]:
                with self._carrying:
                    self._carry = following
                break
            if merged is record:
                merged = {**record, "metrics": list(record["metrics"])}
            merged["metrics"].extend(following["metrics"])
        return merged

    def _handle(self, record: dict[str, Any]) -> None:
        if not self._prepared(record):
            return
        if self.queued or self._offline or self.writer is None or self._abandon.is_set():
            self.spool.append(record)
            self.queued += 1
            if not self._abandon.is_set():
                self._flush()
            return
        try:
            self.writer.send_retrying(record, self.retry_delays)
            self.sent += 1
        except TrackingUnavailable as exc:
            self.spool.append(record)
            self.queued += 1
            self._go_offline(exc)
        except RecordRejected as exc:
            self._rejected(record, exc)

    def _rejected(self, record: dict[str, Any], exc: Exception) -> None:
        """A record the store refuses for good is dropped (it would block the queue); said a few times."""
        self.rejected += 1
        if self.rejected <= 3:
            logger.warning("%s rejected a %s record: %s", self.label, record["op"], exc)
        elif self.rejected == 4:
            logger.warning("%s rejects more records; the count is given at the end of the study.", self.label)

    def _flush(self) -> None:
        """Send the records queued on disk, when it is time to try the store again."""
        if time.monotonic() < self._next_probe or self._abandon.is_set():
            return
        if self.writer is None:
            try:
                self.writer = self.make_writer()
            except Exception:  # noqa: BLE001 - still unavailable
                self._next_probe = time.monotonic() + self.probe_interval_s
                return
        result = self.spool.replay(self._send_queued, stop_on=(TrackingUnavailable,), wait=False)
        if result is None:  # `tunelab sync` is sending them right now
            self._next_probe = time.monotonic() + self.probe_interval_s
            return
        sent, left = result
        self.sent += sent
        self.queued = left
        if left:
            self._next_probe = time.monotonic() + self.probe_interval_s
            return
        if self._offline:
            logger.warning("%s at %s answers again; sent %d queued record(s).", self.label, self.uri, sent)
        self._offline = False

    def _send_queued(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            raise TrackingUnavailable("the tracking store is not open yet")
        try:
            self.writer.send(record, replay=True)
        except RecordRejected as exc:
            self._rejected(record, exc)

    def _go_offline(self, exc: Exception) -> None:
        self._offline = True
        self._next_probe = time.monotonic() + self.probe_interval_s
        if not self._warned:
            self._warned = True
            logger.warning("%s at %s cannot be reached (%s). The study goes on; tracking records are queued in "
                           "%s and sent when it answers again (or run `tunelab sync`).", self.label, self.uri, exc,
                           self.spool.path)


def _metrics_only(record: Any) -> bool:
    return (isinstance(record, dict) and record.get("op") == "log" and bool(record.get("metrics"))
            and set(record) <= {"op", "key", "metrics"})
