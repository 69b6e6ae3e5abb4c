"""CMA-ES whose state never touches storage.

Optuna's ``CmaEsSampler`` pickles its optimizer into trial system attributes and unpickles it
on the next proposal, so anyone who can write to a study's storage could run code in the next
driver. This sampler keeps nothing in storage: for each proposal it rebuilds the optimizer from
the complete trials themselves (params and values are plain data), replaying them in trial
order as generations of ``popsize``, then asks it once. Stored ``cma:optimizer`` attributes are
never read.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from optuna.distributions import FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace

if TYPE_CHECKING:
    import numpy as np
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

#: Attribute prefixes under which Optuna's CmaEsSampler stores pickled optimizers.
PICKLED_STATE_PREFIXES = ("cma:optimizer", "sepcma:optimizer", "cmawm:optimizer")


class DataOnlyCmaEsSampler(BaseSampler):
    """CMA-ES over the float and int parameters shared by all trials; others sampled at random.

    Args:
        seed: Seed of the optimizer's draws and of the random sampler.
        n_startup_trials: Complete trials sampled at random before CMA-ES starts.
        popsize: Solutions per generation (CMA-ES's default, ``4 + 3 ln(dim)``, when None).
        sigma0: Initial step size in the unit cube the parameters are scaled to (1/6 when None).
    """

    def __init__(self, seed: int | None = None, n_startup_trials: int = 1, popsize: int | None = None,
                 sigma0: float | None = None) -> None:
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be an integer >= 0, got {n_startup_trials!r}")
        if popsize is not None and (isinstance(popsize, bool) or not isinstance(popsize, int) or popsize < 2):
            raise ValueError(f"popsize must be an integer >= 2, got {popsize!r}")
        if sigma0 is not None and (isinstance(sigma0, bool) or not isinstance(sigma0, (int, float))
                                   or not 0 < sigma0 < math.inf):
            raise ValueError(f"sigma0 must be a positive number, got {sigma0!r}")
        self._seed = seed
        self._n_startup_trials = n_startup_trials
        self._popsize = popsize
        self._sigma0 = float(sigma0) if sigma0 is not None else 1.0 / 6.0
        self._random = RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: "optuna.Study", trial: "FrozenTrial") -> dict[str, "BaseDistribution"]:
        return {
            name: d for name, d in self._search_space.calculate(study).items()
            if isinstance(d, (FloatDistribution, IntDistribution)) and not d.single()
        }

    def sample_relative(self, study: "optuna.Study", trial: "FrozenTrial",
                        search_space: dict[str, "BaseDistribution"]) -> dict[str, Any]:
        import numpy as np
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        if len(study.directions) > 1:
            raise ValueError("CMA-ES does not support several objectives")
        if not search_space:
            return {}
        names = sorted(search_space)
        trials = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                         if all(n in t.params for n in names)), key=lambda t: t.number)
        if len(trials) < self._n_startup_trials:
            return {}
        optimizer = self._optimizer(len(names))
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0
        size = optimizer.population_size
        for start in range(0, len(trials) - size + 1, size):
            generation = trials[start:start + size]
            optimizer.tell([(_to_unit(t.params, names, search_space), sign * float(t.value)) for t in generation])
        x = optimizer.ask()
        return _from_unit(np.asarray(x), names, search_space)

    def _optimizer(self, dim: int) -> Any:
        import cmaes
        import numpy as np

        seed = self._seed if self._seed is not None else int(np.random.default_rng().integers(2**31))
        return cmaes.CMA(mean=np.full(dim, 0.5), sigma=self._sigma0, bounds=np.tile([0.0, 1.0], (dim, 1)),
                         seed=seed % (2**31), population_size=self._popsize)

    def sample_independent(self, study: "optuna.Study", trial: "FrozenTrial", param_name: str,
                           param_distribution: "BaseDistribution") -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def _range(d: Any) -> tuple[float, float]:
    """The interval a distribution is scaled from: log where it is log, half a step wider for
    discrete values so that each gets an equal share of the unit interval."""
    low, high = float(d.low), float(d.high)
    if d.log:
        if isinstance(d, IntDistribution):
            low, high = low - 0.5, high + 0.5
        return math.log(low), math.log(high)
    step = getattr(d, "step", None)
    if step is not None:
        return low - 0.5 * step, high + 0.5 * step
    return low, high


def _to_unit(params: dict[str, Any], names: list[str], space: dict[str, Any]) -> "np.ndarray":
    import numpy as np

    out = []
    for name in names:
        d = space[name]
        low, high = _range(d)
        v = math.log(params[name]) if d.log else float(params[name])
        out.append(min(1.0, max(0.0, (v - low) / (high - low))))
    return np.asarray(out)


def _from_unit(x: "np.ndarray", names: list[str], space: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        d = space[name]
        low, high = _range(d)
        v = low + float(min(1.0, max(0.0, x[i]))) * (high - low)
        if d.log:
            v = math.exp(v)
        step = getattr(d, "step", None)
        if step is not None:
            v = d.low + round((v - d.low) / step) * step
        if isinstance(d, IntDistribution):
            v = int(round(v))
        out[name] = min(max(v, d.low), d.high)
    return out


def pickled_state_keys(frozen: "FrozenTrial") -> list[str]:
    """System attributes of a trial that hold a pickled CMA-ES optimizer (never loaded)."""
    return sorted(k for k in frozen.system_attrs if k.startswith(PICKLED_STATE_PREFIXES))
