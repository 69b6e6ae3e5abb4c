"""The executor protocol: where trials run. An executor knows nothing about search.

``launch`` starts a trial; ``poll`` returns events (``Result`` for a report, ``Ended`` when a
trial finished); every ``Result`` must be answered with ``reply(trial_id, stop)`` (the trial
waits for it: that is how pruning reaches the trial); ``stop`` ends a trial early (it ends as
``failed: interrupted``); ``shutdown`` kills every child, always.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from tunelab.trial import Event


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs to run, independent of where it runs."""

    trial_id: int
    config: Mapping[str, Any]
    trial_dir: Path
    from_checkpoint: Path | None = None
    timeout: float | None = None
    slot: int | None = None  # the worker slot the tuner chose (the lowest free one)
    start_step: float | None = None  # a clone's first step is the one after this (the parent's checkpoint)


class Executor(Protocol):
    def capacity(self) -> int:
        """How many more trials can start now."""
        ...

    def launch(self, spec: TrialSpec) -> int:
        """Start a trial; return the worker slot it runs in."""
        ...

    def poll(self, timeout: float) -> list[Event]: ...

    def reply(self, trial_id: int, stop: bool) -> None: ...

    def stop(self, trial_id: int) -> None: ...

    def shutdown(self) -> None: ...


def prepare_trial_dir(spec: TrialSpec) -> None:
    """The trial's directory with its ``config.json``: executors that give a trial a process
    (and a log) do this; the in-process executor leaves it to the trial's first checkpoint."""
    import json

    spec.trial_dir.mkdir(parents=True, exist_ok=True)
    (spec.trial_dir / "config.json").write_text(json.dumps(dict(spec.config), indent=2, default=str) + "\n")


def tail(path: Path, lines: int = 20, max_bytes: int = 16_384) -> str:
    """The last lines of a log file (for a crash message)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
