"""The executor protocol: where trials run. An executor knows nothing about search.

``launch`` starts a trial; ``poll`` returns events (``Result`` for a report, ``Ended`` when a
trial finished); every ``Result`` must be answered with ``reply(trial_id, stop)`` (the trial
waits for it: that is how pruning reaches the trial); ``stop`` ends a trial early (it ends as
``failed: interrupted``); ``shutdown`` kills every child, always.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from tunelab.trial import Event

log = logging.getLogger("tunelab")


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs to run, independent of where it runs."""

    trial_id: int
    config: Mapping[str, Any]
    trial_dir: Path
    #: A clone's restore point: its copy of the parent's checkpoint, inside ``trial_dir``
    #: (``copy_parent_checkpoint`` makes it before launch).
    from_checkpoint: Path | None = None
    timeout: float | None = None
    slot: int | None = None  # the worker slot the tuner chose (the lowest free one)
    #: The step the restored state was saved at: the clone reports from there on.
    start_step: float | None = None


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


RESTORE = "restore"  # a clone's copy of its parent's checkpoint, in the clone's trial directory


def copy_parent_checkpoint(parent_checkpoint: Path, trial_dir: Path) -> tuple[Path | None, float | None]:
    """Copy a parent trial's ``checkpoint/`` into ``trial_dir/restore`` before the clone starts.

    The clone then reads only its own directory: the parent overwriting its checkpoint, or
    retention deleting it, cannot reach the clone. Done by the driver at launch, so on Ray it
    works wherever the trial directory is shared by the nodes. Files are copied, not
    hard-linked: a function objective may rewrite a file in place, which a link would follow.

    A built-in trainer's checkpoint contributes its ``latest/`` (the full state; ``best/`` is
    for export), copied so that every file comes from one version although the parent may be
    saving meanwhile; another objective's whole checkpoint directory is copied. Returns the
    restore directory (None when the parent left nothing) and the step of the copied state
    when it records one.
    """
    from tunelab.nlp.checkpoint import BEST, LATEST, STATE, copy_latest

    target = trial_dir / RESTORE
    if not parent_checkpoint.is_dir():
        return None, None
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    latest = parent_checkpoint / LATEST
    if (latest / STATE).is_file():
        state = copy_latest(latest, target / LATEST)
        if state is not None:
            return target, _step(state.get("step"))
        log.warning("could not copy a consistent %s (it kept changing); the clone starts from the best weights",
                    latest)
        if (parent_checkpoint / BEST).is_dir():
            shutil.copytree(parent_checkpoint / BEST, target / BEST, ignore=_hidden)
        return target, None
    for _ in range(5):  # a file replaced while copied: copy again
        try:
            shutil.copytree(parent_checkpoint, target, ignore=_hidden, dirs_exist_ok=True)
            break
        except (FileNotFoundError, shutil.Error):
            continue
    return target, None


def _hidden(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if n.startswith(".")]  # staging files and directories


def _step(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
