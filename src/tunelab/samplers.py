"""Sampler names to configured Optuna samplers.

``tpe`` is multivariate and switches the constant liar on by itself when more than one
trial runs at once, so parallel workers do not all propose the same point. ``nsga2`` is the
default for multi-objective studies. Options beyond ``seed`` pass through to the Optuna
constructor and are checked against its signature before anything runs.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Mapping

from tunelab.errors import ConfigError, require

if TYPE_CHECKING:
    import optuna

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
        "gp": s.GPSampler, "cmaes": s.CmaEsSampler, "nsga2": s.NSGAIISampler,
    }[name]


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
) -> "optuna.samplers.BaseSampler":
    """Build the named sampler; raise ``ConfigError`` (naming ``field``) for a bad choice."""
    if name not in SAMPLERS:
        raise ConfigError(f"{field}.sampler", f"is {name!r}, which is not a sampler.", f"use one of {list(SAMPLERS)}.")
    if multi_objective and name == "cmaes":
        raise ConfigError(f"{field}.sampler", f"`{name}` does not support several objectives.",
                          "use `nsga2` (the default), `tpe` or `random`.")
    cls = _sampler_class(name)
    kwargs: dict[str, Any] = {"seed": seed}
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
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(field, f"the `{name}` sampler rejected its options: {exc}") from None


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
