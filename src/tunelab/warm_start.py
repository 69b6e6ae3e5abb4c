"""Warm start: earlier studies' trials given to this study's sampler.

``search: {warm_start: [other-study, {storage: sqlite:///old.db, study: older}]}`` copies the
complete, feasible trials of those studies into this one (``Study.add_trials``, public Optuna)
when it starts, so the sampler begins from what they learnt instead of from random start-up
trials. Only parameters of the current space are kept (same name, a value its distribution can
hold); a trial that then lacks an active parameter of the space is dropped whole, and one note
says what was dropped and why. Each copied trial carries the user attr ``warm_start`` (the
source's storage, study and trial number); it is not this study's result: it uses no budget,
is never shown as a trial or as the best (``StudyView.warm_started()`` lists them), and a
config that repeats one still runs. A source that does not exist, or optimizes in another
direction, is a ``ConfigError`` before any work. Copied once: a run that resumes the study
finds the source's trials already there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tunelab.errors import ConfigError, shown

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from tunelab.space import Space

#: Trial user attr of a copied trial: ``{"storage": url, "study": name, "trial": number}``.
WARM_START = "warm_start"
#: Study user attr: the sources already copied, ``[[url, study], ...]`` (each is copied once).
APPLIED_ATTR = "tunelab.warm_start"
MAX_SOURCES = 100


@dataclass(frozen=True)
class Source:
    """An earlier study: its name and its storage (None: the study's own storage)."""

    study: str
    storage: str | None = None

    def describe(self) -> str:
        return self.study if self.storage is None else f"{self.study} ({self.storage})"


def is_warm(frozen: "FrozenTrial") -> bool:
    return WARM_START in frozen.user_attrs


def parse_sources(raw: Any) -> tuple[Source, ...]:
    """``search.warm_start``: a study name, or a list of names and ``{storage, study}`` mappings."""
    if raw is None:
        return ()
    fix = "write e.g. `warm_start: [earlier-study, {storage: sqlite:///old.db, study: older}]`."
    items = [raw] if isinstance(raw, (str, Mapping)) else raw
    if not isinstance(items, list) or len(items) > MAX_SOURCES:
        raise ConfigError("search.warm_start", f"is {shown(raw)}, but must list study names or "
                          f"{{storage, study}} mappings (at most {MAX_SOURCES}).", fix)
    sources = []
    for i, item in enumerate(items):
        where = f"search.warm_start[{i}]"
        if isinstance(item, str):
            item = {"study": item}
        if not isinstance(item, Mapping):
            raise ConfigError(where, f"is {shown(item)}, but must be a study name or a {{storage, study}} mapping.",
                              fix)
        unknown = sorted(str(k) for k in item if k not in ("storage", "study"))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", "is not a warm-start field.", "use `storage` and `study`.")
        study, storage = item.get("study"), item.get("storage")
        if not isinstance(study, str) or not study.strip() or "\x00" in study:
            raise ConfigError(f"{where}.study", f"is {shown(study)}, but must be a study name.", fix)
        if storage is not None and (not isinstance(storage, str) or not storage.strip() or "\x00" in storage):
            raise ConfigError(f"{where}.storage", f"is {shown(storage)}, but must be a path or a storage URL.", fix)
        sources.append(Source(study, storage))
    return tuple(sources)


def load_sources(sources: Sequence[Source], *, own_url: str, name: str, base_dir: Any,
                 directions: Sequence[str]) -> list[tuple[Source, str, list["FrozenTrial"]]]:
    """Each source's storage URL and trials; a ``ConfigError`` (before any work) for a source
    that does not exist, is this study itself, or optimizes in other directions."""
    import optuna

    from tunelab.storage import open_storage, resolve_storage_url

    loaded = []
    for i, source in enumerate(sources):
        where = f"search.warm_start[{i}]"
        url = own_url if source.storage is None else resolve_storage_url(source.storage, base_dir)
        if url == "memory":
            raise ConfigError(where, "names a study in an in-memory storage, which no earlier run can have filled.",
                              "give the earlier study's storage: `{storage: URL, study: NAME}`.")
        if url == own_url and source.study == name:
            raise ConfigError(f"{where}.study", f"is {source.study!r}, this study itself.",
                              "name an earlier study.")
        storage = open_storage(url)
        names = optuna.get_all_study_names(storage)
        if source.study not in names:
            raise ConfigError(f"{where}.study", f"{source.study!r} is not a study in {url}.",
                              f"use one of {sorted(names)[:10]}." if names else "give the storage that holds it.")
        study = optuna.load_study(study_name=source.study, storage=storage)
        theirs = [d.name.lower() for d in study.directions]
        if theirs != list(directions):
            raise ConfigError(f"{where}.study", f"{source.study!r} optimizes {theirs}, but this study "
                              f"{list(directions)}.", "warm-start only from studies with the same optimized "
                              "metrics and goals.")
        loaded.append((source, url, study.get_trials(deepcopy=False)))
    return loaded


def _inside(value: Any, distribution: Any) -> bool:
    """Whether a distribution could have given ``value`` (bounds, step, choices), from its
    public attributes."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return any(type(value) is type(c) and value == c for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if isinstance(distribution, (FloatDistribution, IntDistribution)):
        low, high, step = distribution.low, distribution.high, distribution.step
        if isinstance(distribution, IntDistribution) and float(value) != int(value):
            return False
        tolerance = 1e-9 * max(1.0, abs(high - low))
        if not low - tolerance <= value <= high + tolerance:
            return False
        if step is not None and not getattr(distribution, "log", False):
            steps = (value - low) / step
            return abs(steps - round(steps)) <= 1e-6
        return True
    return False


@dataclass
class _Dropped:
    params: dict[str, str]  # parameter -> why it was dropped (first reason seen)
    trials: dict[str, int]  # why a whole trial was dropped -> how many


def select(trials: Sequence["FrozenTrial"], space: "Space") -> tuple[list[tuple["FrozenTrial", dict[str, Any]]],
                                                                      _Dropped]:
    """The source trials the sampler can learn from, each with its params inside ``space``."""
    from optuna.trial import TrialState

    from tunelab.repeats import is_repeat

    dropped = _Dropped({}, {})

    def drop_trial(reason: str) -> None:
        dropped.trials[reason] = dropped.trials.get(reason, 0) + 1

    kept = []
    names = set(space.searched)
    for t in trials:
        if t.state != TrialState.COMPLETE or t.values is None:
            continue  # only finished results teach the sampler
        if is_repeat(t) or is_warm(t) or not t.params:
            continue  # a seed repeat or a clone is no independent point; a copied trial is copied from its own source
        if any(key.startswith("constraints:") and value > 0 for key, value in t.system_attrs.items()
               if isinstance(value, (int, float))):
            drop_trial("it broke a constraint")
            continue
        if not all(math.isfinite(v) for v in t.values):
            drop_trial("its value is not finite")
            continue
        params: dict[str, Any] = {}
        for name, value in t.params.items():
            if name not in names:
                dropped.params.setdefault(name, "not in this space")
                continue
            if not _inside(value, space.distributions({name: None})[name]):
                dropped.params.setdefault(name, f"a value outside this space (e.g. {value!r})")
                continue
            params[name] = value
        missing = _missing_active(space, params)
        if missing is not None:
            drop_trial(f"it has no value inside this space for `{missing}`")
            continue
        kept.append((t, params))
    return kept, dropped


def _missing_active(space: "Space", params: Mapping[str, Any]) -> str | None:
    """The first active searched parameter of the space that ``params`` lacks, or None."""
    from tunelab.space import Fixed

    active: dict[str, Any] = {}
    for name in space.order:
        if not space.is_active(name, active):
            continue
        param = space.params[name]
        if isinstance(param, Fixed):
            active[name] = param.value
            continue
        if name not in params:
            return name
        active[name] = params[name]
    return None


def add_warm_trials(study: "optuna.Study", space: "Space", loaded: Sequence[tuple[Source, str, Sequence["FrozenTrial"]]]
                    ) -> str | None:
    """Copy the sources' usable trials into ``study`` (once per source); the note to print
    (what was copied and what was dropped, and why), or None when nothing was new."""
    import optuna

    applied = [list(p) for p in study.user_attrs.get(APPLIED_ATTR) or [] if isinstance(p, (list, tuple))]
    already = {tuple(p) for p in applied}
    notes = []
    for source, url, trials in loaded:
        if (url, source.study) in already:
            continue
        kept, dropped = select(trials, space)
        copies = []
        for t, params in kept:
            distributions = space.distributions(dict.fromkeys(params))
            copies.append(optuna.trial.create_trial(
                params=params, distributions={n: distributions[n] for n in params}, values=list(t.values),
                user_attrs={WARM_START: {"storage": url, "study": source.study, "trial": t.number}},
                state=optuna.trial.TrialState.COMPLETE))
        if copies:
            study.add_trials(copies)
        applied.append([url, source.study])
        study.set_user_attr(APPLIED_ATTR, applied)  # after the copies: a kill in between copies again
        note = f"warm start: {len(copies)} trial(s) of study {source.describe()} given to the sampler"
        parts = [f"`{name}` ({why})" for name, why in sorted(dropped.params.items())]
        if parts:
            note += "; parameters dropped: " + ", ".join(parts)
        whole = [f"{n} because {why}" for why, n in sorted(dropped.trials.items())]
        if whole:
            note += "; trials dropped: " + ", ".join(whole)
        notes.append(note + ".")
    return "\n".join(notes) if notes else None
