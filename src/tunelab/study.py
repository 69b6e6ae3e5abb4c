"""A tunelab study: a plain Optuna study plus the attributes tunelab keeps on it.

What tunelab stores (so optuna-dashboard still opens the study as it is):

- study user attr ``tunelab``: the metric definitions and the space (YAML form);
- study user attr ``tunelab.identity``: the study's identity (see ``tunelab.identity``);
- trial user attrs ``config`` (the exact values trained with), ``run`` (slot, trial dir,
  driver, retry/parent links), ``metrics`` (final metrics) and ``failure`` (kind, message);
- trial system attrs ``tunelab:r:<i>``: the i-th report, ``{"s": step, "m": metrics, "t": time}``.

A failure that says something about the config (``oom``, ``infeasible``, ``nan``) is told to
Optuna as PRUNED with a violated constraint, so samplers learn to avoid that region; tunelab
still shows it as ``failed`` with its kind.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tunelab.errors import StudyNotFoundError
from tunelab.identity import config_in_space
from tunelab.metrics import MetricSet
from tunelab.storage import open_storage
from tunelab.trial import Report, State

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from tunelab.repeats import SeedGroup
    from tunelab.space import Space

REPORT_PREFIX = "tunelab:r:"
STUDY_ATTR = "tunelab"


@dataclass(frozen=True)
class TrialInfo:
    """One trial as a user reads it: values, never indices."""

    number: int
    state: State
    config: Mapping[str, Any]
    metrics: Mapping[str, float] = field(default_factory=dict)
    values: tuple[float, ...] | None = None
    feasible: bool = True
    failure_kind: str | None = None
    message: str = ""
    history: tuple[Report, ...] = ()
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    slot: int | None = None
    trial_dir: str | None = None
    parent: int | None = None
    retry_of: int | None = None
    #: A seed repeat (``tunelab.repeats``): the trial whose config it trains again, and its seed.
    repeat_of: int | None = None
    seed: int | None = None

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()

    def best_report(self, metric: str, goal: str) -> Report | None:
        scored = [r for r in self.history if metric in r.metrics and math.isfinite(r.metrics[metric])]
        if not scored:
            return None
        pick = max if goal == "maximize" else min
        return pick(scored, key=lambda r: r.metrics[metric])


def trial_state(frozen: "optuna.trial.FrozenTrial") -> State:
    from optuna.trial import TrialState

    if frozen.user_attrs.get("failure") and frozen.state in (TrialState.PRUNED, TrialState.FAIL):
        return State.FAILED
    return {
        TrialState.COMPLETE: State.COMPLETE, TrialState.PRUNED: State.PRUNED, TrialState.FAIL: State.FAILED,
        TrialState.RUNNING: State.RUNNING, TrialState.WAITING: State.WAITING,
    }[frozen.state]


def reports_of(frozen: "optuna.trial.FrozenTrial") -> tuple[Report, ...]:
    items = []
    for key, value in frozen.system_attrs.items():
        if key.startswith(REPORT_PREFIX):
            items.append((int(key[len(REPORT_PREFIX):]), Report(float(value["s"]), dict(value["m"]))))
    return tuple(r for _, r in sorted(items, key=lambda kv: kv[0]))


def trial_dir_name(number: int) -> str:
    return f"trial_{number:04d}"


def stored_config(frozen: "optuna.trial.FrozenTrial") -> dict[str, Any]:
    """The exact config a trial ran with: its params plus the space's fixed values (kept in the
    ``run`` attribute, so the config is not stored twice)."""
    run = frozen.user_attrs.get("run") or {}
    if run.get("config"):
        return dict(run["config"])
    return {**frozen.params, **(run.get("fixed") or {})}


def stored_trial_dir(frozen: "optuna.trial.FrozenTrial") -> str | None:
    run = frozen.user_attrs.get("run") or {}
    if run.get("dir"):
        return str(run["dir"])
    return str(Path(run["root"]) / trial_dir_name(frozen.number)) if run.get("root") else None


def trial_info(frozen: "optuna.trial.FrozenTrial", metrics: MetricSet) -> TrialInfo:
    state = trial_state(frozen)
    run = frozen.user_attrs.get("run") or {}
    failure = frozen.user_attrs.get("failure") or {}
    values = tuple(frozen.values) if frozen.values is not None and state == State.COMPLETE else None
    final = dict(frozen.user_attrs.get("metrics") or {})
    if values is not None:  # the optimized metrics are the trial's values (not stored twice)
        final = {**{m.name: v for m, v in zip(metrics.objectives, values)}, **final}
    return TrialInfo(
        number=frozen.number,
        state=state,
        config=stored_config(frozen),
        metrics=final,
        values=values,
        feasible=all(v <= 0.0 for v in frozen.constraints.values()),
        failure_kind=failure.get("kind") if state == State.FAILED else None,
        message=failure.get("message", ""),
        history=reports_of(frozen),
        start=frozen.datetime_start,
        end=frozen.datetime_complete,
        slot=run.get("slot"),
        trial_dir=stored_trial_dir(frozen),
        parent=run.get("parent"),
        retry_of=frozen.user_attrs.get("retry_of"),
        repeat_of=frozen.user_attrs.get("repeat_of"),
        seed=frozen.user_attrs.get("seed") if "repeat_of" in frozen.user_attrs else None,
    )


def pareto_front(trials: Sequence[TrialInfo], directions: Sequence[str]) -> list[TrialInfo]:
    """The non-dominated trials (all objectives turned to 'higher is better')."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [(t, [s * v for s, v in zip(signs, t.values or ())]) for t in trials]

    def dominates(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return [t for t, a in scored if not any(dominates(b, a) for _, b in scored)]


class StudyView:
    """Read access to a study: trials as values, best trials, a pandas frame."""

    def __init__(self, study: "optuna.Study") -> None:
        self.optuna_study = study
        meta = study.user_attrs.get(STUDY_ATTR) or {}
        raw_metrics = meta.get("metrics") or [
            {"name": f"value_{i}" if len(study.directions) > 1 else "value", "goal": d.name.lower()}
            for i, d in enumerate(study.directions)
        ]
        self.metrics = MetricSet.parse(raw_metrics)
        self.space_dict: dict[str, Any] = dict(meta.get("space") or {})
        self.space = _space_or_none(self.space_dict)

    @property
    def name(self) -> str:
        return self.optuna_study.study_name

    def trials(self) -> list[TrialInfo]:
        """Every trial but those cancelled before they ran (a budget race between drivers) and
        those copied from earlier studies to warm-start the sampler (``warm_started()``): they
        are not this study's results."""
        from tunelab.warm_start import is_warm

        return [trial_info(t, self.metrics) for t in self.optuna_study.get_trials(deepcopy=False)
                if (t.user_attrs.get("failure") or {}).get("kind") != "cancelled" and not is_warm(t)]

    def warm_started(self) -> list[TrialInfo]:
        """The earlier studies' trials this study's sampler was given (``search.warm_start``)."""
        from tunelab.warm_start import is_warm

        return [trial_info(t, self.metrics) for t in self.optuna_study.get_trials(deepcopy=False) if is_warm(t)]

    def answers_the_question(self, trial: TrialInfo) -> bool:
        """Whether a trial counts for "best": inside the study's current space and meeting its
        current constraints. Only trials kept by ``on_change: continue`` can fail this."""
        if self.metrics.constraints and not self.metrics.feasible(trial.metrics):
            return False
        from tunelab.repeats import searched_config

        return self.space is None or config_in_space(self.space, searched_config(trial, self.space))

    def ranked_trials(self, trials: Sequence[TrialInfo] | None = None) -> list[TrialInfo]:
        """Complete trials that meet every constraint, best first (by the first objective).

        A trial outside the current space (kept by ``on_change: continue``) is never ranked."""
        pool = [t for t in (trials if trials is not None else self.trials())
                if t.state == State.COMPLETE and t.feasible and t.values is not None
                and all(math.isfinite(v) for v in t.values) and self.answers_the_question(t)]
        sign = -1.0 if self.metrics.primary.goal == "maximize" else 1.0
        return sorted(pool, key=lambda t: (sign * (t.values or (0.0,))[0], t.number))

    @property
    def best_trials(self) -> list[TrialInfo]:
        """The best feasible complete trial (single objective) or the Pareto front."""
        return self.best_among(self.trials())

    def best_among(self, trials: Sequence[TrialInfo]) -> list[TrialInfo]:
        """``best_trials`` of an already loaded list of trials."""
        from tunelab.repeats import best_group

        ranked = self.ranked_trials(trials)
        if not ranked:
            return []
        if self.metrics.is_multi_objective:
            return sorted(pareto_front(ranked, self.metrics.directions), key=lambda t: t.number)
        group = best_group(ranked, self.metrics.primary.goal)
        if group is not None:  # seed repeats: the best mean's config, its best seed's trial
            return [group.best]
        return ranked[:1]

    def seed_groups(self, trials: Sequence[TrialInfo] | None = None) -> list["SeedGroup"]:
        """The configs trained with several seeds (``search.repeats``), best mean first."""
        from tunelab.repeats import seed_groups

        if self.metrics.is_multi_objective:
            return []
        return seed_groups(self.ranked_trials(trials), self.metrics.primary.goal)

    def best_seed_group(self, trials: Sequence[TrialInfo] | None = None) -> "SeedGroup | None":
        """The best config's seeds and their spread, when the study repeated configs."""
        from tunelab.repeats import best_group

        if self.metrics.is_multi_objective:
            return None
        return best_group(self.ranked_trials(trials), self.metrics.primary.goal)

    @property
    def best_trial(self) -> TrialInfo | None:
        best = self.best_trials
        return best[0] if best else None

    @property
    def best_config(self) -> dict[str, Any] | None:
        """The best trial's config; with seed repeats, the best-mean config (without the seed a
        repeat added: the seeds and their spread are in ``best_seed_group()``)."""
        trials = self.trials()
        group = self.best_seed_group(trials)
        if group is not None:
            return dict(group.config)
        best = self.best_among(trials)
        return dict(best[0].config) if best else None

    def trials_frame(self) -> "pd.DataFrame":
        from tunelab.frame import trials_frame

        return trials_frame(self.trials(), self.metrics)


def _space_or_none(raw: Mapping[str, Any]) -> "Space | None":
    from tunelab.errors import ConfigError
    from tunelab.space import Space

    if not raw:
        return None
    try:
        return Space.from_dict(raw)
    except ConfigError:  # written by another version: rank every trial rather than fail to read
        return None


def load_study(storage_url: str, name: str | None = None) -> StudyView:
    """Open an existing study; with no name, the only study in the storage."""
    import optuna

    storage = open_storage(storage_url)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name is None:
        if len(names) != 1:
            listing = ", ".join(names) or "none"
            raise StudyNotFoundError(
                f"{storage_url} holds {len(names)} studies ({listing}); name one with --study NAME."
            )
        name = names[0]
    if name not in names:
        raise StudyNotFoundError(
            f"No study named {name!r} in {storage_url}. Studies there: {', '.join(names) or 'none'}."
        )
    return StudyView(optuna.load_study(study_name=name, storage=storage))
