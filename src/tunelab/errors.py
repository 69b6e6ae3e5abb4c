"""The exception hierarchy: every error tunelab raises on purpose is a ``TunelabError``."""

from __future__ import annotations


class TunelabError(Exception):
    """Base class of tunelab's own errors."""


class ConfigError(TunelabError):
    """Bad user input, found before any trial runs.

    The message names the field (``space.learning_rate.low``) and says how to fix it.
    """

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        text = f"{field}: {problem}" if field else problem
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


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
