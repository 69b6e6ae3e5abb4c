"""TensorBoard: event files per trial, with the HParams summary (the ``tensorboard`` tracker).

Each trial writes to ``<dir>/<study>/trial_0003/``: every reported metric as a scalar at step =
the report's index in the trial (the reported step itself as scalar ``step``), the final metrics
one index later, and at its end the HParams session (config values plus ``state`` and
``failure_kind``, and its status) so that TensorBoard's HParams tab compares the trials; the
tab takes each metric's last value. ``tensorboard --logdir <dir>`` shows them. Written with
TensorBoard's own event writer and protos (no TensorFlow, no torch).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from tunelab.errors import require
from tunelab.tracking.callback import STUDY_KEY, TrackerCallback
from tunelab.tracking.settings import TensorboardSettings
from tunelab.tracking.spool import RunMap
from tunelab.tracking.writer import RecordRejected, Writer, _short

_STATUS = {"FINISHED": "STATUS_SUCCESS", "FAILED": "STATUS_FAILURE", "KILLED": "STATUS_FAILURE"}  # no "aborted"


class TensorboardTracker(TrackerCallback):
    name = "tensorboard"
    label = "TensorBoard"

    def __init__(self, settings: TensorboardSettings, state_dir: str | Path, **kw: Any) -> None:
        require("tensorboard.summary.writer.event_file_writer", "tensorboard")
        self.settings = settings
        super().__init__(state_dir, target=settings.dir, experiment="", **kw)

    def make_writer(self) -> "TensorboardWriter":
        return TensorboardWriter(self.settings, self.runs)

    def attr(self) -> dict[str, Any]:
        return {**super().attr(), "settings": asdict(self.settings)}


class TensorboardWriter(Writer):
    def __init__(self, settings: TensorboardSettings, runs: RunMap) -> None:
        super().__init__(runs)
        self.root = Path(settings.dir)
        self._files: dict[str, Any] = {}
        self._on_disk: dict[str, set[tuple[str, int]]] = {}  # (tag, step) a run's event files hold

    def classify(self, exc: BaseException) -> Exception:
        """Local files: a full or unwritable disk may pass; anything else is this record's fault."""
        if isinstance(exc, OSError):
            return super().classify(exc)
        return RecordRejected(f"{type(exc).__name__}: {_short(exc)}")

    def _dir(self, key: str) -> Path:
        return self.root / f"trial_{int(key.split(':', 1)[1]):04d}"

    def _file(self, key: str) -> Any:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if key not in self._files:
            path = self._dir(key)
            self._files[key] = EventFileWriter(str(path))
            self.runs.set(key, str(path))
        return self._files[key]

    def _already_written(self, key: str) -> set[tuple[str, int]]:
        """(tag, step) of every value the run's event files hold: a record sent again after a
        crash (``replay``) may have been written before it; TensorBoard would show it twice."""
        if key not in self._on_disk:
            from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader

            written: set[tuple[str, int]] = set()
            for path in sorted(self._dir(key).glob("events.out.tfevents.*")):
                try:
                    for event in LegacyEventFileLoader(str(path)).Load():
                        written.update((value.tag, event.step) for value in event.summary.value)
                except Exception:  # noqa: BLE001 - a last record cut short by a kill: what came before counts
                    pass
            self._on_disk[key] = written
        return self._on_disk[key]

    def _write(self, key: str, values: list[Any], step: int, wall_ms: int) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        writer = self._file(key)
        if key in self._on_disk:
            self._on_disk[key].update((value.tag, step) for value in values)
        writer.add_event(event_pb2.Event(wall_time=wall_ms / 1000, step=step, summary=summary_pb2.Summary(value=values)))

    # ---- the protocol ----------------------------------------------------------------------------

    def study(self, record: Mapping[str, Any], replay: bool) -> None:
        """Nothing of its own: the study is the directory of its trials' runs."""

    def trial(self, record: Mapping[str, Any], replay: bool) -> None:
        self._file(record["key"])

    def log(self, record: Mapping[str, Any], replay: bool) -> None:
        from tensorboard.compat.proto import summary_pb2

        if record["key"] == STUDY_KEY:
            return
        written = self._already_written(record["key"]) if replay else set()
        for name, value, ts, step in record.get("metrics") or []:
            if value is not None and (name, int(step)) not in written:
                self._write(record["key"], [summary_pb2.Summary.Value(tag=name, simple_value=float(value))],
                            int(step), int(ts))
        self._file(record["key"]).flush()  # a kill -9 loses nothing already sent

    def end(self, record: Mapping[str, Any], replay: bool) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        key = record["key"]
        self.log(record, replay)
        if replay and (metadata.SESSION_END_INFO_TAG, 0) in self._already_written(key):
            self._files.pop(key).close()  # the session was written before the crash
            self.runs.mark_ended(key)
            return
        tags = record.get("tags") or {}
        start = plugin_data_pb2.SessionStartInfo(start_time_secs=record.get("start_ms", record["end_ms"]) / 1000)
        hparams = {**(record.get("config") or {}), "state": tags.get("state", ""),
                   "failure_kind": tags.get("failure_kind", "")}
        for name, value in hparams.items():
            if isinstance(value, bool):
                start.hparams[name].bool_value = value
            elif isinstance(value, (int, float)):
                start.hparams[name].number_value = float(value)
            else:
                start.hparams[name].string_value = value if isinstance(value, str) else json.dumps(value, default=str)
        end = plugin_data_pb2.SessionEndInfo(status=getattr(api_pb2, _STATUS.get(record.get("status"), "STATUS_UNKNOWN")),
                                             end_time_secs=record["end_ms"] / 1000)
        values = [summary_pb2.Summary.Value(tag=tag, tensor=metadata.NULL_TENSOR,
                                            metadata=metadata.create_summary_metadata(data))
                  for tag, data in ((metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(
                                     session_start_info=start)),
                                    (metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(
                                     session_end_info=end)))]
        self._write(key, values, 0, record["end_ms"])
        self._files.pop(key).close()
        self.runs.mark_ended(key)

    def finish(self, record: Mapping[str, Any], replay: bool) -> None:
        self.close()

    def close(self) -> None:
        for key in list(self._files):
            self._files.pop(key).close()


def sync_writer(attr: Mapping[str, Any], runs: RunMap, uri: str | None = None) -> Writer:
    return TensorboardWriter(TensorboardSettings(**attr["settings"]), runs)
