"""Failed trials as a person reads them: a one-line headline, groups by kind, and why no best.

Shared by the live progress, ``tunelab status``/``trials``/``best``/``run``, the report and the
Python API, so a failure reads the same wherever it is shown.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from tunelab.trial import State

if TYPE_CHECKING:
    from tunelab.metrics import MetricSet
    from tunelab.study import TrialInfo

#: Longest headline shown on one line; the whole message is in ``tunelab trials --format json``.
HEADLINE_CHARS = 200


def cli_logs_hint(number: int) -> str:
    """How to see a trial's whole log from the command line."""
    return f"tunelab logs {number}"


def headline(message: str | None, limit: int = HEADLINE_CHARS) -> str:
    """The first line of a failure message. A first line that only introduces what follows
    (``command exited with code 2. Last lines:``) gets the last line too, where the error is."""
    lines = [line.strip() for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        text = f"{text} ... {lines[-1]}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_line(number: int, kind: str | None, message: str | None,
                 hint: Callable[[int], str] | None = cli_logs_hint) -> str:
    """``trial 0 failed: crash: KeyError: 'learning_rat' (tunelab logs 0)``."""
    text = f"trial {number} failed: {kind or 'crash'}: {headline(message)}"
    return f"{text} ({hint(number)})" if hint else text


@dataclass(frozen=True)
class FailureGroup:
    """The failed trials of one kind: how many, and the latest of them."""

    kind: str
    count: int
    latest_trial: int
    latest_message: str

    @property
    def latest_headline(self) -> str:
        return headline(self.latest_message)

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "count": self.count, "latest_trial": self.latest_trial,
                "latest_message": self.latest_message}


def failure_groups(trials: Sequence["TrialInfo"]) -> list[FailureGroup]:
    """Failed trials grouped by kind, the most common kind first (ties: the most recent)."""
    by_kind: dict[str, list["TrialInfo"]] = collections.defaultdict(list)
    for t in trials:
        if t.state == State.FAILED:
            by_kind[t.failure_kind or "crash"].append(t)
    groups = []
    for kind, members in by_kind.items():
        latest = max(members, key=lambda t: t.number)
        groups.append(FailureGroup(kind, len(members), latest.number, latest.message or ""))
    return sorted(groups, key=lambda g: (-g.count, -g.latest_trial))


def kind_counts(groups: Sequence[FailureGroup]) -> str:
    """``crash`` for one kind (its count is said before), ``crash 3, oom 2`` for several."""
    if len(groups) == 1:
        return groups[0].kind
    return ", ".join(f"{g.kind} {g.count}" for g in groups)


def no_completion_summary(trials: Sequence["TrialInfo"],
                          hint: Callable[[int], str] | None = cli_logs_hint) -> str | None:
    """Why a run of ``trials`` produced nothing, naming the most common failure; None when a
    trial completed or none ended. For the end of ``tunelab run`` and ``tune()``."""
    ended = [t for t in trials if t.state in (State.COMPLETE, State.PRUNED, State.FAILED)]
    if not ended or any(t.state == State.COMPLETE for t in ended):
        return None
    groups = failure_groups(ended)
    pruned = sum(t.state == State.PRUNED for t in ended)
    if not groups:
        return f"no trial completed: all {pruned} were pruned"
    top = groups[0]
    failed = sum(g.count for g in groups)
    parts = [f"no trial completed: {failed} of {len(ended)} failed"]
    if len(groups) > 1:
        parts[0] += f" ({kind_counts(groups)})"
    parts.append(f"{'most often' if len(groups) > 1 else 'all'} with {top.kind}, the latest (trial "
                 f"{top.latest_trial}): {top.latest_headline}")
    text = "; ".join(parts)
    return f"{text} ({hint(top.latest_trial)})" if hint else text


def no_best_reason(trials: Sequence["TrialInfo"], metrics: "MetricSet", *, see: str = "tunelab status") -> str:
    """Why there is no best trial, speaking of constraints only when the study has some."""
    complete = [t for t in trials if t.state == State.COMPLETE]
    if complete and metrics.constraints:
        return f"no complete trial meets every constraint yet ({len(complete)} complete, all infeasible)"
    if complete:
        return f"no complete trial has a finite value yet ({len(complete)} complete)"
    counts = collections.Counter(t.state for t in trials)
    if not trials:
        return "no trial has run yet"
    details = []
    for state in (State.RUNNING, State.WAITING, State.PRUNED):
        if counts.get(state):
            details.append(f"{counts[state]} {state.value}")
    groups = failure_groups(trials)
    if groups:
        details.append(f"{sum(g.count for g in groups)} failed: {kind_counts(groups)}")
    tail = "; ".join(filter(None, [", ".join(details), f"see {see}" if groups and see else ""]))
    return f"no trial completed yet ({tail})"
