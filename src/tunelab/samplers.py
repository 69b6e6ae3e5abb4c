"""Sampler names to configured Optuna samplers.

``tpe`` is multivariate and switches the constant liar on by itself when more than one
trial runs at once, so parallel workers do not all propose the same point. ``nsga2`` is the
default for multi-objective studies. Options beyond ``seed`` pass through to the Optuna
constructor; they are checked against its signature, then tried on a throwaway in-memory
study, before anything runs. ``cmaes`` is tunelab's own data-only CMA-ES (``tunelab.cma``):
Optuna's unpickles its state from storage.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Mapping

from tunelab.errors import ConfigError, require

if TYPE_CHECKING:
    import optuna

    from tunelab.proposals import TrialSeededSampler
    from tunelab.space import Space

SAMPLERS = ("tpe", "random", "qmc", "grid", "gp", "cmaes", "nsga2")
#: Samplers that learn from finished trials (and so lose power when too many run at once).
ADAPTIVE = frozenset({"tpe", "gp", "cmaes", "nsga2"})


def default_sampler(multi_objective: bool) -> str:
    return "nsga2" if multi_objective else "tpe"


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
) -> "TrialSeededSampler":
    """Build the named sampler; raise ``ConfigError`` (naming ``field``) for a bad choice.

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
