"""How configs are proposed: randomness per trial, and no config proposed twice.

``TrialSeededSampler`` wraps an Optuna sampler. For each trial it builds the inner sampler
afresh with a seed derived from the study seed and the trial number (public API: a sampler
constructed with a seed), so the same seed gives the same trials, and a resumed study goes on
with the sequence instead of replaying it from the start.

It also proposes each trial's whole config at once (every active parameter of the space) and
compares it, after the space's own steps and rounding, with the configs of complete, pruned
and running trials: a repeat is drawn again with another derived seed, a bounded number of times (the
later half of the redraws uniformly: the GP sampler maximizes its model and repeats its point
whatever the seed). What
still repeats a complete trial after that, the tuner does not run: it records the earlier
trial's result (``duplicate_of``); a repeat of a pruned trial runs (it has no final result to
reuse). Redrawn proposals are counted on the trial (``resampled``).
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from optuna.samplers import BaseSampler
from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

    from tunelab.space import Space

#: Trial user attrs: the trial whose result a repeated config reused, and proposals redrawn.
DUPLICATE_OF = "duplicate_of"
RESAMPLED = "resampled"
MAX_RESAMPLES = 8


def derive_seed(seed: int, number: int, attempt: int = 0) -> int:
    """A 32-bit seed from (study seed, trial number, attempt), the same in every process."""
    digest = hashlib.sha256(f"tunelab:{seed}:{number}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def config_key(config: Mapping[str, Any], names: Iterable[str]) -> tuple[Any, ...]:
    """A comparable form of a config's searched values: numbers rounded to 12 significant
    digits (steps computed in floating point), booleans and strings kept apart from numbers."""
    out = []
    for name in sorted(n for n in names if n in config):
        value = config[name]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out.append((name, type(value).__name__, value))
        elif isinstance(value, (int, float)):
            out.append((name, "number", float(f"{float(value):.12g}")))
        else:
            out.append((name, type(value).__name__, repr(value)))
    return tuple(out)


class FinishedKeys:
    """One study's finished trials folded by config key, each trial once: a finished trial's
    params never change. Keying every trial at every proposal was quadratic in the trials
    (40,000 keys for 200: a third of a no-op trial's bookkeeping); scanning every trial at
    every proposal still cost more than Optuna's own sampling, so only the trials after the
    first unfinished one are looked at again."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, names: tuple[str, ...] | None) -> None:
        self._names = names
        self._scanned = 0  # trials (in number order) before the first one not yet finished
        self._folded: set[int] = set()  # finished trials after that point, already counted
        self._complete: dict[tuple[Any, ...], FrozenTrial] = {}  # first complete trial of each config
        self._finished: dict[tuple[Any, ...], FrozenTrial] = {}  # first complete or pruned one
        self._counted: set[int] = set()  # the trials folded into those tables

    def keys(self, trials: list["FrozenTrial"], names: tuple[str, ...], taken: bool,
             but: int | None) -> dict[tuple[Any, ...], "FrozenTrial"]:
        """``completed_keys`` over ``trials``: every trial of the study, in number order."""
        if names != self._names or len(trials) < self._scanned:  # another space, or another study
            self._reset(names)
        running = []
        at_start = True
        for t in trials[self._scanned:]:
            if t.state.is_finished():
                if t.number not in self._folded:
                    self._fold(t, names)
                if at_start:
                    self._scanned += 1
                    self._folded.discard(t.number)
                continue
            at_start = False
            if t.state == TrialState.RUNNING and taken and t.number != but and t.params:
                running.append(t)
        if but is not None and but in self._counted:
            return _first_by_key(trials, names, taken, but)  # asked to leave out a finished trial: rare
        keys = dict(self._finished if taken else self._complete)
        for t in running:  # a running trial's params may still change: keyed every time
            key = config_key(t.params, names)
            first = keys.get(key)
            if first is None or t.number < first.number:
                keys[key] = t
        return keys

    def _fold(self, t: "FrozenTrial", names: tuple[str, ...]) -> None:
        self._folded.add(t.number)
        # A warm-start copy is an earlier study's result, not this one's: its config runs here.
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or not t.params or "warm_start" in t.user_attrs:
            return
        self._counted.add(t.number)
        key = config_key(t.params, names)
        for table in (self._finished, self._complete) if t.state == TrialState.COMPLETE else (self._finished,):
            first = table.get(key)
            if first is None or t.number < first.number:  # the first of each config, in any order
                table[key] = t


def _first_by_key(trials: Iterable["FrozenTrial"], names: tuple[str, ...], taken: bool,
                  but: int | None) -> dict[tuple[Any, ...], "FrozenTrial"]:
    """``completed_keys`` without a cache: every trial keyed."""
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) if taken else (TrialState.COMPLETE,)
    keys: dict[tuple[Any, ...], FrozenTrial] = {}
    for t in trials:
        if t.state in states and t.number != but and t.params and "warm_start" not in t.user_attrs:
            key = config_key(t.params, names)
            first = keys.get(key)
            if first is None or t.number < first.number:
                keys[key] = t
    return keys


#: Each study object's ``FinishedKeys``, shared by the sampler and the tuner, dropped with the study.
_STUDY_KEYS: "weakref.WeakKeyDictionary[Any, FinishedKeys]" = weakref.WeakKeyDictionary()


def finished_keys(study: "optuna.Study") -> FinishedKeys:
    """The study's ``FinishedKeys`` (a fresh one for an object that cannot be weakly referenced)."""
    try:
        return _STUDY_KEYS.setdefault(study, FinishedKeys())
    except TypeError:
        return FinishedKeys()


def completed_keys(study: "optuna.Study", names: Iterable[str], taken: bool = False,
                   but: int | None = None, keys_of: FinishedKeys | None = None) -> dict[tuple[Any, ...], "FrozenTrial"]:
    """Complete trials by config key, the first of each config; with ``taken``, also pruned and
    running ones (but trial number ``but``): configs that proposing again would waste.
    Warm-start copies never count. ``keys_of``: the cache to use (default: the study's own)."""
    from tunelab._optuna import cached_trials

    keys_of = keys_of if keys_of is not None else finished_keys(study)
    return keys_of.keys(cached_trials(study, None), tuple(names), taken, but)


def duplicates_avoided(trials: Iterable["FrozenTrial"]) -> int:
    """Repeated configs that did not run: proposals redrawn plus trials that reused a result."""
    return sum(int(DUPLICATE_OF in t.user_attrs) + int(t.user_attrs.get(RESAMPLED) or 0) for t in trials)


class TrialSeededSampler(BaseSampler):
    """An Optuna sampler rebuilt per trial with a derived seed, proposing no repeats.

    Args:
        build: ``build(seed)`` returns the inner sampler (e.g. ``TPESampler(seed=seed, ...)``).
        seed: The study seed; None draws one per driver (no determinism asked for).
        space: Proposals are whole configs of this space, checked for repeats. None passes
            every call to one inner sampler built with ``seed`` (QMC, whose sequence is indexed
            in storage, and grid, which never repeats).
    """

    def __init__(self, build: Callable[[int | None], BaseSampler], seed: int | None,
                 space: "Space | None" = None, max_resamples: int = MAX_RESAMPLES) -> None:
        self._build = build
        self._seed = seed if seed is not None else secrets.randbits(32)
        self._space = space
        self._max_resamples = max_resamples
        self.template = build(seed)
        self._inners: dict[int, BaseSampler] = {}  # trial number -> its sampler, until it ends
        # Samplers of ended trials, per study object, reseeded for the next trial where that is
        # known to equal a fresh build (``_optuna.reseed_sampler``): their trial caches stay warm.
        self._spare: "weakref.WeakKeyDictionary[Any, list[BaseSampler]]" = weakref.WeakKeyDictionary()
        self._resampled: dict[int, int] = {}

    # ---- per-trial inner samplers -------------------------------------------------------

    def _new_inner(self, study: "optuna.Study", trial: "FrozenTrial", attempt: int) -> BaseSampler:
        from tunelab._optuna import reseed_sampler

        seed = derive_seed(self._seed, trial.number, attempt)
        spare = self._spares(study)
        inner = spare.pop() if spare else None
        if inner is None or not reseed_sampler(inner, seed):
            inner = self._build(seed)
        inner.before_trial(study, trial)
        replaced = self._inners.get(trial.number)
        self._inners[trial.number] = inner
        if replaced is not None:  # a redraw: the proposal it made is dropped
            spare.append(replaced)
        return inner

    def _spares(self, study: "optuna.Study") -> list[BaseSampler]:
        try:
            return self._spare.setdefault(study, [])
        except TypeError:  # an object that cannot be weakly referenced: no reuse
            return []

    def _inner(self, trial: "FrozenTrial") -> BaseSampler:
        if self._space is None:
            return self.template
        return self._inners.get(trial.number) or self.template

    def resampled(self, number: int) -> int:
        """How many proposals for trial ``number`` were drawn again because they repeated."""
        return self._resampled.get(number, 0)

    # ---- the sampler interface ----------------------------------------------------------

    def before_trial(self, study: "optuna.Study", trial: "FrozenTrial") -> None:
        if self._space is None:
            self.template.before_trial(study, trial)
        else:
            self._new_inner(study, trial, 0)

    def infer_relative_search_space(self, study: "optuna.Study", trial: "FrozenTrial") -> dict[str, "BaseDistribution"]:
        if self._space is None:
            return self.template.infer_relative_search_space(study, trial)
        # Every searched parameter: the whole config is proposed here (only active ones are used).
        return self._space.distributions(dict.fromkeys(self._space.searched))

    def sample_relative(self, study: "optuna.Study", trial: "FrozenTrial",
                        search_space: dict[str, "BaseDistribution"]) -> dict[str, Any]:
        if self._space is None:
            return self.template.sample_relative(study, trial, search_space)
        names = list(self._space.searched)
        if not names:
            return {}
        # Pruned configs too (stopped early, or a failure that says something about the config),
        # and running ones (another worker has it): proposing them again would waste a run.
        done = completed_keys(study, names, taken=True, but=trial.number)
        inner = self._inners.get(trial.number) or self._new_inner(study, trial, 0)
        proposal = self._propose(inner, study, trial)
        for attempt in range(1, self._max_resamples + 1):
            if config_key(proposal, names) not in done:
                break
            self._resampled[trial.number] = attempt
            if attempt <= self._max_resamples // 2:
                proposal = self._propose(self._new_inner(study, trial, attempt), study, trial)
            else:  # a sampler that maximizes its model (the GP) repeats its point whatever the seed
                proposal = self._propose(self._random(study, trial, attempt), study, trial)
        return proposal

    def _random(self, study: "optuna.Study", trial: "FrozenTrial", attempt: int) -> BaseSampler:
        """A uniform draw for the later redraws; the trial keeps its model-based inner sampler."""
        from optuna.samplers import RandomSampler

        sampler = RandomSampler(seed=derive_seed(self._seed, trial.number, attempt))
        sampler.before_trial(study, trial)
        return sampler

    def _propose(self, inner: BaseSampler, study: "optuna.Study", trial: "FrozenTrial") -> dict[str, Any]:
        """A whole config: the inner sampler's relative part, the rest sampled independently."""
        from tunelab.space import Fixed

        assert self._space is not None
        relative_space = inner.infer_relative_search_space(study, trial)
        relative = inner.sample_relative(study, trial, relative_space) if relative_space else {}
        config: dict[str, Any] = {}
        for name in self._space.order:
            if not self._space.is_active(name, config):
                continue
            param = self._space.params[name]
            if isinstance(param, Fixed):
                config[name] = param.value
                continue
            distribution = self._space.distributions({name: None})[name]
            if name in relative and relative_space.get(name) == distribution:
                config[name] = relative[name]
            else:
                config[name] = inner.sample_independent(study, trial, name, distribution)
        return {n: v for n, v in config.items() if n in self._space.searched}

    def sample_independent(self, study: "optuna.Study", trial: "FrozenTrial", param_name: str,
                           param_distribution: "BaseDistribution") -> Any:
        return self._inner(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: "optuna.Study", trial: "FrozenTrial", state: Any, values: Any) -> None:
        inner = self._inner(trial)
        own = self._inners.pop(trial.number, None)
        self._resampled.pop(trial.number, None)
        inner.after_trial(study, trial, state, values)
        if own is not None:
            self._spares(study).append(own)

    def reseed_rng(self) -> None:
        self.template.reseed_rng()

    def is_exhausted(self, study: "optuna.Study") -> bool:
        """For grid search: every point has been tried (False for other samplers)."""
        check = getattr(self.template, "is_exhausted", None)
        return bool(check(study)) if check is not None else False
