"""The exception hierarchy: every error tunelab raises on purpose is a ``TunelabError``."""

from __future__ import annotations

import re
from typing import Any


class TunelabError(Exception):
    """Base class of tunelab's own errors."""


class ConfigError(TunelabError):
    """Bad user input, found before any trial runs.

    The message names the field (``space.learning_rate.low``) and says how to fix it.
    """

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        # One line, whatever the caller put in (a YAML error, a value's repr): the CLI prints one.
        self.field = _one_line(str(field), 200)
        self.problem = _one_line(str(problem), 1000)
        self.fix = _one_line(str(fix), 1000) if fix else fix
        field, problem, fix = self.field, self.problem, self.fix
        text = f"{field}: {problem}" if field else problem
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


def shown(value: Any) -> str:
    """A short repr of a user's value for an error message (a huge list or number stays short)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlong = r.maxstring = r.maxother = 60
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 8
    r.maxlevel = 3
    return r.repr(value)


def _one_line(text: str, limit: int) -> str:
    text = re.sub(r"\s*[\r\n]+\s*", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StudyNotFoundError(TunelabError):
    """The named study does not exist in the storage."""


class MissingDependencyError(TunelabError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class TrialPruned(Exception):
    """Raised inside a trial by ``report()`` when the scheduler stops it early.

    Objective code may catch it to clean up, then re-raise it; the trial is recorded as pruned.
    """


class TrialFailed(Exception):
    """Raise inside a trial to end it as failed with a given kind (e.g. ``infeasible``)."""

    def __init__(self, kind: str, message: str = "") -> None:
        self.kind = kind
        super().__init__(message or kind)


def require(module: str, extra: str):  # type: ignore[no-untyped-def]
    """Import an optional dependency, or raise an error naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"`{module}` is needed for this feature but is not installed. "
            f"Install it with: pip install 'tunelab[{extra}]'"
        ) from exc
