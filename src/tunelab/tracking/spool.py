"""What the MLflow tracker keeps on disk, next to the study's trials.

``<trial_dir>/<study>/.mlflow/``:

- ``runs.json``: which run belongs to which tunelab key (``experiment``, ``study``,
  ``trial:<number>``), so records can be sent later, by another process (``tunelab sync``);
- ``logged.jsonl``: how many reports of each trial the tracker has taken (a line each time it
  takes more), so a study resumed after ``kill -9`` sends again only the reports that were lost;
- ``spool.jsonl``: the records not yet delivered, one JSON object a line, in order;
- ``lock``: a file lock, so the tracker and ``tunelab sync`` never send a record twice.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from tunelab.filelock import file_lock


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


class RunMap:
    """tunelab keys to a tracker's ids, for one target (tracking URI, project, directory) and experiment."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "runs.json"
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.uri: str | None = data.get("uri")
        self.experiment: str | None = data.get("experiment")
        self.ids: dict[str, str] = dict(data.get("ids") or {})
        self.ended: set[str] = set(data.get("ended") or [])
        self.drivers: set[str] = set(data.get("drivers") or [])  # the tunelab runs that tracked with this state
        self._logged_path = Path(directory) / "logged.jsonl"
        self.logged: dict[str, int] = {}
        if self._logged_path.exists():
            for line in self._logged_path.read_text().splitlines():
                try:
                    key, count = json.loads(line)
                except (ValueError, TypeError):
                    continue  # a line cut short by a crash
                self.logged[key] = max(self.logged.get(key, 0), int(count))

    def reset(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment, self.ids, self.ended, self.logged = uri, experiment, {}, set(), {}
        self.drivers = set()
        self._logged_path.unlink(missing_ok=True)
        self.save()

    def mark_logged(self, key: str, count: int) -> None:
        """The tracker holds the first ``count`` reports of ``key``."""
        if count > self.logged.get(key, 0):
            self.logged[key] = count
            self._logged_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._logged_path, "a") as handle:
                handle.write(json.dumps([key, count]) + "\n")

    def get(self, key: str) -> str | None:
        return self.ids.get(key)

    def set(self, key: str, value: str) -> None:
        self.ids[key] = value
        self.save()

    def mark_ended(self, key: str) -> None:
        self.ended.add(key)
        self.save()

    def add_driver(self, driver: str) -> None:
        self.drivers.add(driver)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {"uri": self.uri, "experiment": self.experiment, "ids": self.ids,
                                      "ended": sorted(self.ended), "drivers": sorted(self.drivers)})


class Spool:
    """An append-only queue of records (JSON lines), replayed in order."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "spool.jsonl"
        self._lock_path = self.directory / "lock"

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[bool]:
        """Hold the spool's file lock; yields False (without holding it) when ``wait`` is off and it is taken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock_path, wait) as held:
            yield held

    def append(self, record: dict[str, Any]) -> None:
        with self.locked():
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: nothing to send
        return out

    def __len__(self) -> int:
        return len(self.records())

    def replay(self, send: Callable[[dict[str, Any]], None], *, stop_on: tuple[type[BaseException], ...] = (),
               wait: bool = True) -> tuple[int, int] | None:
        """Send queued records in order until one fails; keep the rest. Returns (sent, left),
        or None when ``wait`` is off and another process holds the spool.

        When ``send`` raises one of ``stop_on``, the replay stops quietly (that record and the rest
        wait for the next try); any other error propagates, the unsent records still kept.
        """
        with self.locked(wait) as held:
            if not held:
                return None
            records = self.records()
            sent = 0
            try:
                for record in records:
                    send(record)
                    sent += 1
            except stop_on:
                pass
            finally:
                left = records[sent:]
                if not left:
                    self.path.unlink(missing_ok=True)
                elif sent:
                    tmp = self.path.with_name(f".spool.tmp{os.getpid()}")
                    tmp.write_text("".join(json.dumps(r) + "\n" for r in left))
                    os.replace(tmp, self.path)
            return sent, len(left)
