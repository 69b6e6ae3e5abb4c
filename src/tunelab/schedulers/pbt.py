"""Population based training (Jaderberg et al. 2017), as Ray Tune runs it, as a pure decision object.

The first trials come from the sampler. When a member's report reaches a multiple of
``perturbation_interval`` (in the objective's step units) it is ranked against the population
by each member's latest value at or before that step ("comparable steps"). A member in the
bottom ``quantile`` is stopped (pruned: tunelab has no pause, and a new trial per exploit keeps
every trial's curve and config honest), and ``suggest`` then returns its replacement: a clone
of a top-``quantile`` member, started from that member's checkpoint at its last step, with a
mutated config::

    Suggestion(config={"learning_rate": 3.6e-05, ...}, from_checkpoint=3, start_step=2.0,
               mutations={"learning_rate": "3e-05 --- (* 1.2) --> 3.6e-05"})

Every decision is a function of the records passed in and the seed: the random choices come
from a ``numpy`` Generator seeded with ``(seed, trial, step)``, so two drivers, or a restarted
one, fed the same history decide the same. The exploits still owed are read from the history
(pruned members stopped at a perturbation step that no trial ``replaces`` yet), not from memory.

A member interrupted after it reported (its driver was stopped or killed) is continued, not run
again from scratch: ``suggest`` returns a trial that replaces it, restores its checkpoint at its
last reported step and keeps its config (no mutations). A replacement that ended before its
first report because it was interrupted or cancelled (it never trained) does not count, so its
place is owed again; the tuner launches one trial per replaced member, whichever driver asks.

Mutations (Ray Tune's ``_explore``): each mutable parameter is resampled from its range with
probability ``resample_probability``, else perturbed: floats scaled by 0.8 or 1.2 (for a log
parameter that is a step of log(1.2) in log space) and clipped to the range, ints moved by
one step, choices shifted to a neighbour. Fixed parameters never change.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from tunelab.errors import ConfigError, shown
from tunelab.schedulers.base import BaseScheduler, Decision, Suggestion
from tunelab.space import Choice, Fixed, Float, Int, Param, Space
from tunelab.trial import State, TrialRecord

STEP_TOLERANCE = 1e-9
FACTORS = (0.8, 1.2)
_MEMBER_STATES = (State.RUNNING, State.COMPLETE, State.PRUNED)
#: Failures of a trial that never trained (its driver stopped, or another launched its twin).
_NEVER_TRAINED = ("interrupted", "cancelled")


class PBTScheduler(BaseScheduler):
    """Exploit (clone a top member's checkpoint) and explore (mutate its config) every interval.

    Args:
        metric: Name of the reported metric to compare.
        mode: ``"maximize"`` or ``"minimize"``.
        population: Members trained at once; the first ``population`` trials are sampled.
        perturbation_interval: Steps between two perturbations of a member (epochs or
            evaluations, whatever the objective reports as ``step``).
        quantile: Fraction in (0, 0.5]: the bottom ``quantile`` clones the top ``quantile``.
        resample_probability: Chance that a mutated parameter is redrawn from its range.
        mutations: ``{param: space spec}`` of the parameters to mutate and their ranges (a
            list is a choice). By default every searched parameter of ``space``, with its range.
        seed: Seeds every random choice (with the trial and step it is about).
        max_resource: The step every member's training ends at (the objective's last ``step``),
            as in ASHA and Hyperband. It tells where training ends when tunelab cannot read it
            (a function or command objective): no member is exploited at its last step, and no
            clone copies a member with nothing left to train. text_classification needs none.
        space: The study's search space (``make_scheduler`` passes it).

    Example:
        >>> from tunelab.space import Space
        >>> pbt = PBTScheduler("accuracy", space=Space({"lr": {"float": [1e-5, 1e-3], "log": True}}))
        >>> pbt.mutate({"lr": 3e-05}, trial_id=4, step=1.0)[1]
        {'lr': '3e-05 --- (* 1.2) --> 3.6e-05'}
    """

    TYPE = "pbt"
    #: The tuner queues no cold retry of an interrupted member that reported: ``suggest`` continues it.
    continues_interrupted = True

    def __init__(
        self,
        metric: str,
        mode: str = "maximize",
        *,
        population: int = 8,
        perturbation_interval: float = 1,
        quantile: float = 0.25,
        resample_probability: float = 0.25,
        mutations: Mapping[str, Any] | None = None,
        seed: int | None = 0,
        max_resource: float | None = None,
        space: Space | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(metric, mode)
        check_settings(population, perturbation_interval, quantile, resample_probability, seed, max_resource)
        if mutations is not None and (not isinstance(mutations, Mapping) or not mutations):
            raise ConfigError("mutations", f"is {shown(mutations)}, but must be a non-empty mapping of parameters "
                              "to ranges.", "write e.g. `{learning_rate: {float: [1.0e-5, 1.0e-3], log: true}}`, "
                              "or leave it out to mutate every searched parameter.")
        self.population = population
        self.perturbation_interval = perturbation_interval
        self.quantile = quantile
        self.resample_probability = resample_probability
        self.mutations = dict(mutations) if mutations is not None else None
        self.seed = 0 if seed is None else seed
        self.max_resource = max_resource
        #: The step every member's training ends at, when the user (max_resource) or the objective
        #: (check_objective) tells: no member is exploited there, and no clone copies a member
        #: with nothing left to train.
        self.end_step: float | None = float(max_resource) if max_resource is not None else None
        self._ranges: dict[str, Param] = {}
        self._space: Space | None = None
        self._known: dict[int, TrialRecord] = {}
        self._stopped: set[int] = set()
        if space is not None:
            self.bind(space)

    # ---- setup -------------------------------------------------------------------------------

    def bind(self, space: Space | Mapping[str, Any]) -> None:
        """Learn the mutable parameters from the study's space; a ConfigError if there are none."""
        space = Space.from_dict(space)
        if self.mutations is None:
            ranges = dict(space.searched)
            if not ranges:
                raise ConfigError("mutations", "is empty: the space has no searched parameter, so PBT has nothing "
                                  "to mutate.", "search at least one parameter (e.g. `learning_rate: {float: "
                                  "[1.0e-5, 1.0e-3], log: true}`), or use another scheduler.")
        else:
            ranges = {}
            for name, spec in self.mutations.items():
                where = f"mutations.{name}"
                if name not in space:
                    raise ConfigError(where, "is not a parameter of the space.",
                                      f"mutate one of {sorted(space.searched)}.")
                if isinstance(space.params[name], Fixed):
                    raise ConfigError(where, "is a fixed parameter; fixed parameters never mutate.",
                                      "search it in `space`, or drop it from `mutations`.")
                try:
                    (param,) = Space({name: spec}).params.values()
                except ConfigError as exc:
                    raise ConfigError(where, exc.problem, exc.fix) from None
                if isinstance(param, Fixed):
                    raise ConfigError(where, f"is {shown(spec)}, a single value: nothing to mutate to.",
                                      "give a range (`{float: [low, high]}`) or a list of values.")
                ranges[name] = param
        self._ranges = ranges
        self._space = space

    @property
    def space(self) -> Space | None:
        """The study's space, once bound."""
        return self._space

    @property
    def mutable(self) -> dict[str, Param]:
        """The parameters this scheduler mutates, with their ranges."""
        return dict(self._ranges)

    def to_dict(self) -> dict[str, Any]:
        """The settings in the form ``make_scheduler`` accepts."""
        out: dict[str, Any] = {
            "type": self.TYPE, "population": self.population, "perturbation_interval": self.perturbation_interval,
            "quantile": self.quantile, "resample_probability": self.resample_probability, "seed": self.seed,
        }
        if self.mutations is not None:
            out["mutations"] = dict(self.mutations)
        if self.max_resource is not None:
            out["max_resource"] = self.max_resource
        return out

    # ---- the protocol --------------------------------------------------------------------------

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        if trial.trial_id in self._stopped:
            return Decision.STOP
        self._known[trial.trial_id] = trial
        if self.metric not in metrics or not math.isfinite(step):
            return Decision.CONTINUE
        if not math.isfinite(float(metrics[self.metric])):
            return Decision.CONTINUE  # the trial fails as nan on its own
        if not self.is_perturbation_step(trial, step) or not self._open(step):
            return Decision.CONTINUE  # between perturbations, or done training: it finishes
        bottom, _top = self.quantiles(self._known.values(), step, include=trial)
        # Stopped only when a member with training left can take its place: stopping it for a
        # donor that has finished (members one after another, fewer workers than the
        # population) would end its training and clone nothing.
        if trial.trial_id in bottom and self.donor(self._known.values(), trial.trial_id, step) is not None:
            self._stopped.add(trial.trial_id)
            return Decision.STOP
        return Decision.CONTINUE

    def on_end(self, trial: TrialRecord) -> None:
        self._known[trial.trial_id] = trial

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        for record in history:
            self._known[record.trial_id] = record
        records = {r.trial_id: r for r in history}
        for trial_id, step in self.interrupted(records.values()):
            # The population first: a member cut off by its driver continues where it stopped.
            return Suggestion(dict(records[trial_id].config), from_checkpoint=trial_id, start_step=step,
                              mutations={}, replaces=trial_id)
        for trial_id, step in self.owed(records.values()):
            donor = self.donor(records.values(), trial_id, step)
            if donor is None:
                continue
            start = records[donor].history[-1].step
            config, mutations = self.mutate(records[donor].config, trial_id=trial_id, step=step)
            return Suggestion(config, from_checkpoint=donor, start_step=start, mutations=mutations, replaces=trial_id)
        return None

    def population_full(self, history: Sequence[TrialRecord]) -> bool:
        """Whether ``population`` members were sampled (clones not counted, failed ones replaced):
        then the tuner starts only clones, and the study ends with the population's training.

        A member its driver cut off after reporting is still one (a continuation carries it on);
        one cut off before any report is not: its cold retry, sampled again, takes its place."""
        members = [r for r in history if r.parent_id is None
                   and (r.state in _MEMBER_STATES or (_was_interrupted(r) and bool(r.history)))]
        return len(members) >= self.population

    # ---- decisions, pure functions of the records --------------------------------------------

    def is_perturbation_step(self, trial: TrialRecord, step: float) -> bool:
        """Whether a report at ``step`` reaches a multiple of the interval that the trial's previous
        report (or, for its first, the step it started at) had not."""
        k = math.floor(step / self.perturbation_interval + STEP_TOLERANCE)
        if k < 1:
            return False
        earlier = [r.step for r in trial.history if r.step < step - STEP_TOLERANCE]
        before = max(earlier) if earlier else self.start_step(trial, step)
        return math.floor(before / self.perturbation_interval + STEP_TOLERANCE) < k

    def start_step(self, trial: TrialRecord, first: float) -> float:
        """The step a trial started at: 0, or for a clone its parent's last report before ``first``
        (the clone's first report), which is where the parent's checkpoint stood."""
        given = getattr(trial, "start_step", None)  # when the record carries it
        if isinstance(given, (int, float)) and not isinstance(given, bool) and math.isfinite(given):
            return float(given)
        parent = self._known.get(trial.parent_id) if trial.parent_id is not None else None
        if parent is None:
            return 0.0
        before = [r.step for r in parent.history if r.step < first - STEP_TOLERANCE]
        return max(before) if before else 0.0

    def quantiles(
        self, records: Any, step: float, include: TrialRecord | None = None
    ) -> tuple[list[int], list[int]]:
        """(bottom, top) trial ids of the population at ``step``, best first in ``top``.

        The population at ``step`` is every trial that was training within one interval of it
        (its last report at or after ``step - interval``; running, complete, or stopped by an
        exploit, which keeps its place until its clone has reported, as a member keeps its last
        score in Ray Tune), each counted with its latest value at or before ``step``. As in Ray
        Tune, each quantile holds ``ceil(n * quantile)`` members, at most ``n // 2``; ties are
        broken by trial number (the older member ranks higher).
        """
        members = {r.trial_id: r for r in records if _is_member(r) and r.history
                   and r.history[-1].step >= step - self.perturbation_interval - STEP_TOLERANCE}
        if include is not None:
            members[include.trial_id] = include
        ranked = self._ranked(members.values(), step)
        size = min(math.ceil(len(ranked) * self.quantile - STEP_TOLERANCE), len(ranked) // 2)
        if size < 1:
            return [], []
        return ranked[-size:], ranked[:size]

    def _ranked(self, records: Any, step: float) -> list[int]:
        """Trial ids by their latest value at or before ``step``, best first (no value: left out)."""
        scores: list[tuple[float, int]] = []
        for record in records:
            value = _value_at(record, self.metric, step)
            if value is not None:
                scores.append((self.score(value), record.trial_id))
        return [tid for _s, tid in sorted(scores, key=lambda p: (-p[0], p[1]))]

    def owed(self, records: Any) -> list[tuple[int, float]]:
        """(trial, step) of the exploits decided but not yet cloned, oldest trial first.

        An exploited member is a pruned one whose last report is a perturbation step (PBT is the
        only thing that prunes in a PBT study); its clone records that it ``replaces`` it.
        """
        records = list(records)
        for r in records:
            self._known.setdefault(r.trial_id, r)
        done = replaced(records)
        return sorted(
            (r.trial_id, r.history[-1].step) for r in records
            if r.state == State.PRUNED and r.history and r.trial_id not in done
            and self.is_perturbation_step(r, r.history[-1].step)
        )

    def interrupted(self, records: Any) -> list[tuple[int, float]]:
        """(trial, last step) of the members interrupted after they reported and not yet
        continued, oldest first: each continues from its own checkpoint at that step."""
        records = list(records)
        done = replaced(records)
        return sorted((r.trial_id, r.history[-1].step) for r in records
                      if _was_interrupted(r) and r.history and r.trial_id not in done)

    def donor(self, records: Any, trial_id: int, step: float) -> int | None:
        """The member that ``trial_id`` (stopped at ``step``) clones: a random one of the top
        quantile that still has training left (running, else interrupted), or the best running
        such member when the top quantile has none; None when no member has training left.

        A complete member is never one, known end or not: its clone would restore its final
        checkpoint at its final step and train nothing."""
        records = list(records)
        by_id = {r.trial_id: r for r in records}
        _bottom, top = self.quantiles(records, step, include=by_id.get(trial_id))
        def has_training_left(t: int) -> bool:
            r = by_id[t]  # running, or interrupted (continued later); at a step before the end when known
            return r.state in (State.RUNNING, State.FAILED) and bool(r.history) and self._open(r.history[-1].step)

        for state in (State.RUNNING, State.FAILED):  # FAILED: interrupted members (quantiles keeps no other)
            candidates = sorted(t for t in top if t != trial_id and by_id[t].state == state and has_training_left(t))
            if candidates:
                return int(self._rng(trial_id, step, "donor").choice(candidates))
        fallback = [t for t in self._ranked((r for r in records if r.state == State.RUNNING), step)
                    if t != trial_id and has_training_left(t)]
        return fallback[0] if fallback else None

    def _open(self, step: float) -> bool:
        """Whether a member at ``step`` still has training ahead (always, when the end is unknown)."""
        return self.end_step is None or step < self.end_step - STEP_TOLERANCE

    def mutate(self, config: Mapping[str, Any], *, trial_id: int, step: float) -> tuple[dict[str, Any], dict[str, str]]:
        """A mutated copy of ``config`` and the change of each parameter (``"3e-05 --- (* 1.2) --> 3.6e-05"``)."""
        rng = self._rng(trial_id, step, "explore")
        out = dict(config)
        changes: dict[str, str] = {}
        for name, param in self._ranges.items():
            if name not in config:
                continue  # inactive in this config (a `when` condition)
            old = config[name]
            new, how = _explore(param, old, rng, self.resample_probability)
            out[name] = new
            changes[name] = f"{_show(old)} --- ({how}) --> {_show(new)}"
        return out, changes

    def _rng(self, trial_id: int, step: float, purpose: str) -> Any:
        import numpy as np

        salt = {"donor": 1, "explore": 2}[purpose]
        return np.random.default_rng([self.seed, salt, trial_id, round(step * 1_000_000)])


def replaced(records: Any) -> set[int]:
    """The trials some record takes the place of. A replacement that ended before its first
    report, interrupted or cancelled, never trained: its place is owed again."""
    return {r.replaces for r in records if r.replaces is not None
            and not (r.state == State.FAILED and not r.history and r.failure_kind in _NEVER_TRAINED)}


def _was_interrupted(record: TrialRecord) -> bool:
    return record.state == State.FAILED and record.failure_kind == "interrupted"


def _is_member(record: TrialRecord) -> bool:
    """Training, done, exploited, or cut off by its driver (its checkpoint still continues)."""
    return record.state in _MEMBER_STATES or _was_interrupted(record)


def change_log(mutations: Mapping[str, str] | None) -> list[str]:
    """Ray Tune's readable lines: ``learning_rate: 3e-05 --- (* 1.2) --> 3.6e-05``."""
    return [f"{name}: {text}" for name, text in (mutations or {}).items()]


def _value_at(record: TrialRecord, metric: str, step: float) -> float | None:
    """The latest finite value of ``metric`` reported at or before ``step``."""
    value = None
    for report in record.history:
        if report.step > step + STEP_TOLERANCE:
            break
        v = report.metrics.get(metric)
        if v is not None and math.isfinite(float(v)):
            value = float(v)
    return value


def _explore(param: Param, old: Any, rng: Any, resample_probability: float) -> tuple[Any, str]:
    """(new value, what was done) for one parameter, as in Ray Tune's ``_explore``."""
    if isinstance(param, Choice):
        index = next((i for i, c in enumerate(param.choices) if type(c) is type(old) and c == old), None)
        if index is None or len(param.choices) < 2 or rng.random() < resample_probability:
            return param.choices[int(rng.integers(len(param.choices)))], "resample"
        shift = -1 if rng.random() < 0.5 else 1
        if not 0 <= index + shift < len(param.choices):
            shift = -shift  # at an edge the only neighbour is on the other side
        return param.choices[index + shift], "shift left" if shift < 0 else "shift right"
    if rng.random() < resample_probability or not isinstance(old, (int, float)) or isinstance(old, bool):
        return _resample(param, rng), "resample"
    if isinstance(param, Int):
        step = param.step
        delta = step if rng.random() >= 0.5 else -step
        new = old + delta
        if not param.low <= new <= param.high:
            delta = -delta
            new = old + delta
        new = min(max(new, param.low), param.high)
        return int(new), f"+ {step}" if delta > 0 else f"- {step}"
    assert isinstance(param, Float)
    factor = FACTORS[int(rng.integers(2))]
    new = min(max(old * factor, param.low), param.high)
    if param.step is not None:
        new = param.low + round((new - param.low) / param.step) * param.step
        new = min(max(new, param.low), param.high)
    return _round(new), f"* {factor}"


def _resample(param: Param, rng: Any) -> Any:
    if isinstance(param, Int):
        if param.log:
            value = round(math.exp(rng.uniform(math.log(param.low), math.log(param.high + 1))) - 0.5)
            return int(min(max(value, param.low), param.high))
        return int(param.low + param.step * int(rng.integers((param.high - param.low) // param.step + 1)))
    assert isinstance(param, Float)
    if param.log:
        return _round(math.exp(rng.uniform(math.log(param.low), math.log(param.high))))
    if param.step is not None:
        count = int(round((param.high - param.low) / param.step)) + 1
        return _round(param.low + param.step * int(rng.integers(count)))
    return _round(rng.uniform(param.low, param.high))


def _round(value: float) -> float:
    """12 significant digits: ``3e-05 * 1.2`` is ``3.6e-05``, not ``3.5999999999999994e-05``."""
    return float(f"{value:.12g}")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def check_settings(population: Any, interval: Any, quantile: Any, resample_probability: Any, seed: Any,
                   max_resource: Any = None) -> None:
    """Validate PBT settings; raise ``ConfigError`` naming the bare field and the fix."""
    if isinstance(population, bool) or not isinstance(population, int) or population < 2:
        raise ConfigError("population", f"is {shown(population)}, but must be an integer >= 2: PBT copies "
                          "better members into worse ones.", "use e.g. 8 (at least 2).")
    if not _is_number(interval) or not interval > 0:
        raise ConfigError("perturbation_interval", f"is {shown(interval)}, but must be a number > 0.",
                          "use the steps between perturbations, e.g. 1 (epoch).")
    if not _is_number(quantile) or not 0 < quantile <= 0.5:
        raise ConfigError("quantile", f"is {shown(quantile)}, but must be in (0, 0.5]: the bottom quantile "
                          "clones the top one, and they cannot overlap.", "use e.g. 0.25.")
    if not _is_number(resample_probability) or not 0 <= resample_probability <= 1:
        raise ConfigError("resample_probability", f"is {shown(resample_probability)}, but must be in [0, 1].",
                          "use e.g. 0.25.")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError("seed", f"is {shown(seed)}, but must be a non-negative integer.", "use e.g. 0.")
    if max_resource is not None and (not _is_number(max_resource) or not max_resource >= interval):
        raise ConfigError("max_resource", f"is {shown(max_resource)}, but must be a number >= perturbation_interval "
                          f"({shown(interval)}): the step every member's training ends at.",
                          "set it to the steps a full trial runs (its last reported step, e.g. 6), or leave it out.")


def check_objective(scheduler: PBTScheduler, objective: Any, space: Space | None = None) -> None:
    """A ConfigError when the objective cannot carry PBT: it cannot checkpoint, it trains for
    fewer steps than one perturbation interval, or ``max_resource`` names another end than the
    one it trains to (known for text_classification only)."""
    from tunelab.objectives.command import CommandObjective

    if isinstance(objective, CommandObjective):
        missing = [p for p in ("{checkpoint_dir}", "{restore_dir}") if not any(p in arg for arg in objective.command)]
        if missing:
            what = "save a checkpoint" if missing[0] == "{checkpoint_dir}" else "find its parent's checkpoint"
            raise ConfigError(f"{objective.field}.command", f"does not use `{missing[0]}`, so a PBT trial could not "
                              f"{what}.", "pass `{checkpoint_dir}` (where to save) and `{restore_dir}` (where a "
                              "clone restores from; empty for a fresh trial) to the command, or use another "
                              "scheduler.")
        return
    epochs = _max_epochs(objective, space)
    searched = space is not None and not isinstance(space.params.get("num_train_epochs", Fixed(0)), Fixed)
    if epochs is not None and scheduler.max_resource is not None:
        _check_max_resource(scheduler.max_resource, epochs, searched)
    if epochs is not None and not searched:
        scheduler.end_step = epochs  # every member trains this long
    if epochs is not None and scheduler.perturbation_interval > epochs * (1 + STEP_TOLERANCE):
        raise ConfigError("scheduler.perturbation_interval", f"is {shown(scheduler.perturbation_interval)}, but "
                          f"trials train for at most {epochs:g} epochs, so no member would ever be perturbed.",
                          f"use an interval of at most {epochs:g} (e.g. 1 epoch), or train longer.")


def _check_max_resource(max_resource: float, epochs: float, searched: bool) -> None:
    """A ConfigError when the user's end contradicts the one tunelab reads from num_train_epochs."""
    if searched:
        raise ConfigError("scheduler.max_resource", f"is {shown(max_resource)}, but num_train_epochs is searched "
                          f"(up to {epochs:g}), so members end at different epochs and no one end holds for all.",
                          "remove max_resource (text_classification needs none), or fix num_train_epochs.")
    if abs(float(max_resource) - epochs) > STEP_TOLERANCE * max(1.0, epochs):
        raise ConfigError("scheduler.max_resource", f"is {shown(max_resource)}, but every trial trains "
                          f"num_train_epochs = {epochs:g} epochs, so training ends at step {epochs:g}.",
                          f"remove max_resource (text_classification needs none), or set it to {epochs:g}.")


def _max_epochs(objective: Any, space: Space | None) -> float | None:
    """The most epochs a text_classification trial trains (None for other objectives: unknown)."""
    from tunelab.nlp.settings import TrainSettings
    from tunelab.objectives.text_classification import TextClassification

    if not isinstance(objective, TextClassification):
        return None
    param = space.params.get("num_train_epochs") if space is not None else None
    if isinstance(param, Fixed):
        return float(param.value)
    if isinstance(param, (Float, Int)):
        return float(param.high)
    if isinstance(param, Choice):
        return max(float(c) for c in param.choices if isinstance(c, (int, float)))
    return float(objective.defaults.get("num_train_epochs", TrainSettings.num_train_epochs))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def population_advice(scheduler: Any, workers: int, set_workers: str = "--workers {n}") -> str | None:
    """A warning when PBT's members cannot all train side by side.

    A member is stopped only for a better member that is still training (a finished one would
    leave its clone nothing to train), so members that never overlap never exploit each other.
    Ray Tune pauses members to take turns; tunelab runs each member through, so the workers must
    hold the population. ``set_workers`` words the fix in the caller's terms.
    """
    if not isinstance(scheduler, PBTScheduler) or workers >= scheduler.population:
        return None
    alone = " (with one worker, PBT only explores)" if workers == 1 else ""
    smaller = f", or `population: {workers}`" if workers >= 2 else ""
    return (f"PBT's population is {scheduler.population} but {workers} trial(s) run at once: a member is replaced "
            f"only by a copy of a better member that is still training, so members that never train side by side "
            f"never exploit each other{alone}. Use {set_workers.format(n=scheduler.population)}{smaller}.")
