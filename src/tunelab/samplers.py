"""Sampler names to configured Optuna samplers, and ``auto``: the default, which picks one.

``auto`` chooses per study from its space, trial budget and objectives (``choose_auto``): Optuna's
GP sampler for a small budget over a few parameters without conditions, multivariate TPE for
conditional, large or open-ended studies, NSGA-II for several objectives over a long budget.
The choice is stored with the study (``AUTO_ATTR``) and a resumed study keeps it, whatever the
budget of the new run: a study never switches sampler silently. What it is based on:
benchmarks/results/search.md.

``tpe`` is multivariate and switches the constant liar on by itself when more than one
trial runs at once, so parallel workers do not all propose the same point. ``nsga2`` is the
default for multi-objective studies. Options beyond ``seed`` pass through to the Optuna
constructor; they are checked against its signature, then tried on a throwaway in-memory
study, before anything runs. ``cmaes`` is tunelab's own data-only CMA-ES (``tunelab.cma``):
Optuna's unpickles its state from storage.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from tunelab.errors import ConfigError, require

if TYPE_CHECKING:
    import optuna

    from tunelab.proposals import TrialSeededSampler
    from tunelab.space import Space

SAMPLERS = ("auto", "tpe", "random", "qmc", "grid", "gp", "cmaes", "nsga2")
#: Samplers that learn from finished trials (and so lose power when too many run at once).
ADAPTIVE = frozenset({"auto", "tpe", "gp", "cmaes", "nsga2"})
#: Study user attr holding the sampler ``auto`` chose for the study (a plain JSON mapping).
AUTO_ATTR = "tunelab.auto_sampler"
#: ``auto`` uses the GP sampler up to this many parameters and trials; beyond, TPE. The GP
#: refits on every trial and its cost grows with the trials; 50 is as far as it was measured
#: to win (benchmarks/results/search.md), and TPE does as well from there on.
GP_MAX_PARAMS = 10
GP_MAX_TRIALS = 50
#: ... and for several objectives, NSGA-II from this budget on (a generation is 50 trials).
NSGA2_MIN_TRIALS = 300


def default_sampler(multi_objective: bool) -> str:
    return "auto"


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` chose for a study: a sampler, its options, and why (one short phrase)."""

    sampler: str
    reason: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"auto: {self.sampler} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "reason": self.reason, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, raw: Any) -> "AutoChoice | None":
        """A stored choice; ``None`` for anything that is not one this version can use."""
        if not isinstance(raw, Mapping):
            return None
        sampler, reason, options = raw.get("sampler"), raw.get("reason"), raw.get("options", {})
        if sampler not in SAMPLERS or sampler in ("auto", "grid") or not isinstance(reason, str):
            return None
        if not isinstance(options, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (bool, int, float, str)) for k, v in options.items()):
            return None
        return cls(str(sampler), reason, dict(options))


def startup_trials(trials: int | None) -> int:
    """Random trials before a model-based sampler takes over: Optuna's 10, but fewer for a
    small budget, where 10 would leave little or nothing to the model (4 of 10, 5 of 25)."""
    if trials is None:
        return 10
    return max(4, min(10, trials // 5))


def gp_installed() -> bool:
    """Whether the ``gp`` extra (scipy, torch) is there; found without importing torch (seconds)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("scipy", "torch"))


def choose_auto(space: "Space", trials: int | None, multi_objective: bool,
                gp_available: bool | None = None) -> AutoChoice:
    """The sampler ``auto`` uses for a study of this space, trial budget and objectives."""
    searched = space.searched
    n = len(searched)
    if multi_objective:
        if trials is not None and trials >= NSGA2_MIN_TRIALS:
            return AutoChoice("nsga2", f"several objectives, {trials} trials")
        # Optuna's own default for several objectives; NSGA-II's first generation (50) is random.
        return AutoChoice("tpe", "several objectives, " + (f"{trials} trials" if trials else "open-ended budget"),
                          {"n_startup_trials": startup_trials(trials)})
    tpe = {"n_startup_trials": startup_trials(trials)}
    if space.has_conditions:
        return AutoChoice("tpe", "conditional parameters", tpe)
    if n > GP_MAX_PARAMS:
        return AutoChoice("tpe", f"{n} parameters", tpe)
    if trials is None:
        return AutoChoice("tpe", "open-ended budget", tpe)
    if trials > GP_MAX_TRIALS:
        return AutoChoice("tpe", f"{trials} trials, beyond the GP's {GP_MAX_TRIALS}", tpe)
    why = f"{n} parameter{'s' if n != 1 else ''}, {trials} trials"
    if not (gp_installed() if gp_available is None else gp_available):
        return AutoChoice("tpe", f"{why}; gp would fit but the `gp` extra is not installed", tpe)
    return AutoChoice("gp", why, {"n_startup_trials": startup_trials(trials)})


def settle_auto_choice(study: "optuna.Study", fresh: AutoChoice) -> tuple[AutoChoice, str | None]:
    """The choice a study keeps: the one stored when ``auto`` first ran it, else ``fresh``
    (stored now). Returns it and a note when this run alone would have chosen otherwise."""
    stored = AutoChoice.from_dict(study.user_attrs.get(AUTO_ATTR))
    if stored is None:
        study.set_user_attr(AUTO_ATTR, fresh.to_dict())
        return fresh, None
    if stored == fresh:
        return stored, None
    return stored, (f"sampler auto keeps {stored.sampler} ({stored.reason}), chosen when the study started; "
                    f"for a new study it would choose {fresh.sampler} ({fresh.reason})")


def use_auto_choice(study: "optuna.Study", *, space: "Space", seed: int | None, workers: int, multi_objective: bool,
                    trials: int | None) -> AutoChoice:
    """Give an opened study the sampler ``auto`` chose for it (kept from its first run) and
    return the choice. A kept ``gp`` whose extra is no longer installed gives way to this
    run's choice, stored in its place and logged."""
    import logging

    from tunelab.errors import MissingDependencyError

    logger = logging.getLogger("tunelab")
    fresh = choose_auto(space, trials, multi_objective)
    choice, note = settle_auto_choice(study, fresh)
    try:
        study.sampler = make_sampler("auto", space=space, seed=seed, workers=workers,
                                     multi_objective=multi_objective, choice=choice)
    except MissingDependencyError as exc:
        logger.warning("sampler auto: the study's %s cannot run here (%s); it continues with %s",
                       choice.describe(), exc, fresh.describe())
        study.set_user_attr(AUTO_ATTR, fresh.to_dict())
        study.sampler = make_sampler("auto", space=space, seed=seed, workers=workers,
                                     multi_objective=multi_objective, choice=fresh)
        return fresh
    if note:
        logger.info(note)
    return choice


def stored_auto_choice(user_attrs: Mapping[str, Any]) -> AutoChoice | None:
    """The choice ``auto`` stored with a study (its Optuna user attrs), if any."""
    return AutoChoice.from_dict(user_attrs.get(AUTO_ATTR))


def _sampler_class(name: str) -> Any:
    import optuna.samplers as s

    if name == "cmaes":
        require("cmaes", "cmaes")
    if name == "gp":
        require("scipy", "gp")
        require("torch", "gp")
    return {
        "tpe": s.TPESampler, "random": s.RandomSampler, "qmc": s.QMCSampler, "grid": _grid_sampler_class(),
        "gp": s.GPSampler, "cmaes": _cma_class(), "nsga2": s.NSGAIISampler,
    }[name]


def _cma_class() -> Any:
    # Optuna's CmaEsSampler unpickles its state from storage: never used (see tunelab.cma).
    from tunelab.cma import DataOnlyCmaEsSampler

    return DataOnlyCmaEsSampler


def _grid_sampler_class() -> Any:
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, minus its ``study.stop()`` (valid only inside ``optimize``):
        the tuner asks ``is_exhausted`` itself before each trial."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler


def make_sampler(
    name: str,
    *,
    space: "Space",
    seed: int | None,
    workers: int,
    multi_objective: bool,
    options: Mapping[str, Any] | None = None,
    field: str = "search",
    trials: int | None = None,
    choice: AutoChoice | None = None,
) -> "TrialSeededSampler":
    """Build the named sampler; raise ``ConfigError`` (naming ``field``) for a bad choice.

    ``auto`` builds ``choice``, or what ``choose_auto`` picks for ``trials``; it takes no options.

    The sampler is rebuilt for each trial with a seed derived from ``seed`` and the trial
    number (see ``tunelab.proposals``). Options are tried on a throwaway in-memory study first,
    past the start-up trials, so a bad value fails here and not in the middle of a study.
    """
    from tunelab.proposals import TrialSeededSampler

    if name not in SAMPLERS:
        raise ConfigError(f"{field}.sampler", f"is {name!r}, which is not a sampler.", f"use one of {list(SAMPLERS)}.")
    if multi_objective and name == "cmaes":
        raise ConfigError(f"{field}.sampler", f"`{name}` does not support several objectives.",
                          "use `nsga2` (the default), `tpe` or `random`.")
    chosen = name == "auto"
    if chosen:
        if options:
            key = sorted(options)[0]
            raise ConfigError(f"{field}.{key}", "is a sampler option, but `auto` chooses its sampler and options "
                              "itself.", f"drop `{key}`, or name the sampler it is for, e.g. `sampler: tpe`.")
        choice = choice or choose_auto(space, trials, multi_objective)
        name, options = choice.sampler, choice.options
    cls = _sampler_class(name)
    kwargs: dict[str, Any] = {}
    if name == "tpe":
        kwargs.update(multivariate=True, group=space.has_conditions, constant_liar=workers > 1)
    elif name == "qmc":
        kwargs.update(qmc_type="sobol", scramble=True)
    elif name == "grid":
        kwargs["search_space"] = space.grid()
    options = dict(options or {})
    valid = set(inspect.signature(cls).parameters) - {"seed", "search_space"}
    unknown = set(options) - valid
    if unknown:
        raise ConfigError(f"{field}.{sorted(unknown)[0]}", f"is not an option of the `{name}` sampler.",
                          f"valid options are {sorted(valid)}.")
    kwargs.update(options)
    if not chosen:  # auto's own options are known to work; a user's are tried first
        _check_options(name, cls, kwargs, options, space, multi_objective, field)

    def build(derived: int | None) -> Any:
        return cls(**kwargs, seed=derived)

    # QMC's sequence is indexed in storage and needs one seed; grid never repeats a point.
    per_trial = name not in ("qmc", "grid")
    return TrialSeededSampler(build, seed, space=space if per_trial else None)


def _check_options(name: str, cls: Any, kwargs: Mapping[str, Any], options: Mapping[str, Any], space: "Space",
                   multi_objective: bool, field: str) -> None:
    """Construct the sampler and let it propose past its start-up trials on an in-memory study;
    a failure names the option that caused it."""
    problem = _dry_run(cls, kwargs, space, multi_objective)
    if problem is None:
        return
    culprit = None
    for option in options:  # find the option that fails on its own
        alone = {k: v for k, v in kwargs.items() if k not in options or k == option}
        if _dry_run(cls, alone, space, multi_objective) is not None:
            culprit = option
            break
    where = f"{field}.{culprit}" if culprit else field
    value = f" ({options[culprit]!r})" if culprit else ""
    raise ConfigError(where, f"the `{name}` sampler cannot use this value{value}: {problem}",
                      f"see the options of Optuna's {cls.__name__.split('.')[-1]}, or drop it.")


def _dry_run(cls: Any, kwargs: Mapping[str, Any], space: "Space", multi_objective: bool) -> str | None:
    import logging
    import warnings

    import optuna

    trial_kwargs = dict(kwargs)
    parameters = inspect.signature(cls).parameters
    if "n_startup_trials" in parameters:
        startup = trial_kwargs.get("n_startup_trials", parameters["n_startup_trials"].default)
        if isinstance(startup, int) and not isinstance(startup, bool) and startup > 2:
            trial_kwargs["n_startup_trials"] = 2  # the options used past start-up are what is checked
    population = trial_kwargs.get("population_size")
    if "population_size" in parameters and population is None:
        trial_kwargs["population_size"] = 4
        population = 4
    warm = 3 + (population if isinstance(population, int) and not isinstance(population, bool) else 0)
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)  # no "A new study created in memory" line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = cls(**trial_kwargs, seed=0)
            study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                        directions=["minimize", "minimize"] if multi_objective else ["minimize"])
            for i in range(min(warm, 60)):
                trial = study.ask()
                space.sample(trial)
                value = float((i * 7919) % 13)
                study.tell(trial, [value, -value] if multi_objective else value)
    except Exception as exc:  # noqa: BLE001 - any failure of a user's option is reported as a config error
        return f"{type(exc).__name__}: {exc}"
    finally:
        logger.setLevel(level)
    return None


def parallelism_advice(sampler: str, workers: int, trials: int | None, set_workers: str = "--workers {n}") -> str | None:
    """A warning when so many trials run at once that an adaptive sampler nears random search.

    ``set_workers`` words the fix in the caller's terms: ``--workers {n}`` for the CLI,
    ``workers={n}`` for ``tune()``."""
    if sampler not in ADAPTIVE or trials is None or workers <= 1 or workers * 5 <= trials:
        return None
    suggested = max(1, trials // 5)
    return (
        f"{workers} workers for a budget of {trials} trials: the `{sampler}` sampler learns from "
        f"finished trials, and with more than about a fifth of the budget running at once it "
        f"behaves close to random search. Use {set_workers.format(n=suggested)}, or raise the budget to "
        f"{workers * 5} trials, to keep the search adaptive."
    )
