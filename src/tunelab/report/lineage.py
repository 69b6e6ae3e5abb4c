"""PBT lineage read from a study: who cloned whom, at which step, with which mutations.

A clone's ``run`` user attribute holds ``parent`` (the trial whose checkpoint it started
from), ``parent_step`` (that checkpoint's step) and ``mutations`` (``{param: "3e-05 --- (* 1.2)
--> 3.6e-05"}``). Everything is read defensively: a study written by another version, or a
trial with a missing or odd attribute, gives a shorter lineage, never an error.

A trial's *schedule* is the hyperparameters it effectively trained with, by step: its root
ancestor's config up to the step the next one cloned it, then that clone's config, and so on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tunelab.study import reports_of, stored_config
from tunelab.trial import Report


@dataclass(frozen=True)
class Link:
    """One trial's place in the population: its parent (if a clone) and its own curve."""

    number: int
    config: Mapping[str, Any]
    parent: int | None = None
    parent_step: float | None = None
    mutations: Mapping[str, str] = field(default_factory=dict)
    history: tuple[Report, ...] = ()

    @property
    def last_step(self) -> float | None:
        return self.history[-1].step if self.history else None


@dataclass(frozen=True)
class Segment:
    """Steps ``(start, end]`` trained by ``trial`` with ``config`` (``end`` None: no report)."""

    trial: int
    start: float
    end: float | None
    config: Mapping[str, Any]
    mutations: Mapping[str, str]
    parent: int | None


def links_of(frozen_trials: Iterable[Any]) -> dict[int, Link]:
    """Every trial's ``Link``, keyed by number, from Optuna frozen trials."""
    out: dict[int, Link] = {}
    for frozen in frozen_trials:
        run = frozen.user_attrs.get("run")
        run = run if isinstance(run, Mapping) else {}
        out[frozen.number] = Link(
            number=frozen.number, config=stored_config(frozen), parent=_int(run.get("parent")),
            # The tuner stores the step a clone continues from as ``start_step``.
            parent_step=_float(run.get("start_step", run.get("parent_step"))), mutations=_mutations(run.get("mutations")),
            history=_reports(frozen),
        )
    return out


def lineage(links: Mapping[int, Link], number: int) -> list[Link]:
    """The chain of trials from the root ancestor to ``number`` (just ``[number]`` if no clone)."""
    chain: list[Link] = []
    seen: set[int] = set()
    current: int | None = number
    while current is not None and current in links and current not in seen:
        seen.add(current)
        chain.append(links[current])
        current = links[current].parent
    return chain[::-1]


def schedule(links: Mapping[int, Link], number: int) -> list[Segment]:
    """The hyperparameters ``number`` effectively trained with, as step segments, root first."""
    chain = lineage(links, number)
    segments: list[Segment] = []
    for i, link in enumerate(chain):
        start = segments[-1].end if segments and segments[-1].end is not None else _start_of(link)
        child = chain[i + 1] if i + 1 < len(chain) else None
        end = _handover(link, child) if child is not None else link.last_step
        segments.append(Segment(link.number, start, end, dict(link.config), dict(link.mutations), link.parent))
    return segments


def changed_params(segments: list[Segment]) -> list[str]:
    """Parameters whose value differs somewhere along the schedule, in config order."""
    if not segments:
        return []
    names = list(segments[0].config)
    for s in segments[1:]:
        names += [n for n in s.config if n not in names]
    return [n for n in names if len({repr(s.config.get(n)) for s in segments}) > 1]


def exploits(links: Mapping[int, Link]) -> list[Link]:
    """Every clone (a trial with a parent), in trial order."""
    return [link for _n, link in sorted(links.items()) if link.parent is not None]


def _handover(parent: Link, child: Link) -> float | None:
    """The step at which ``child`` took over from ``parent``: its stored ``parent_step``, else the
    parent's last report before the child's first one."""
    if child.parent_step is not None:
        return child.parent_step
    first = child.history[0].step if child.history else math.inf
    before = [r.step for r in parent.history if r.step < first]
    return before[-1] if before else parent.last_step


def _start_of(link: Link) -> float:
    return link.parent_step if link.parent_step is not None else 0.0


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _mutations(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _reports(frozen: Any) -> tuple[Report, ...]:
    try:
        return reports_of(frozen)
    except (KeyError, TypeError, ValueError):  # a report written by another version
        return ()
