"""The real ``Tuner`` on the simulated executor and clock, in one call, for tests.

``simulated_tuner`` builds a study on an in-memory storage (or the one given: several drivers
on one study share it), a ``SimulatedExecutor`` and a ``Tuner`` that reads the simulated clock.
``SequenceSampler`` proposes given configs in order, so a test controls what the sampler says
and sees only what the tuner and scheduler do with it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from tunelab.executors.simulated import SimulatedClock, SimulatedExecutor
from tunelab.metrics import MetricSet
from tunelab.space import Space
from tunelab.tuner import Tuner

if TYPE_CHECKING:
    import optuna

    from tunelab.schedulers.base import Scheduler


def sequence_sampler(configs: Sequence[Mapping[str, Any]]) -> Any:
    """An Optuna sampler that gives the trials it samples ``configs`` in order, then is exhausted
    (the tuner asks ``is_exhausted`` before each new trial)."""
    from optuna.samplers import BaseSampler

    class SequenceSampler(BaseSampler):
        def __init__(self) -> None:
            self._configs = [dict(c) for c in configs]
            self._given: dict[int, int] = {}  # trial number -> index into configs

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            index = self._given.setdefault(trial.number, len(self._given))
            return self._configs[index][param_name]

        def is_exhausted(self, study: Any) -> bool:
            return len(self._given) >= len(self._configs)

    return SequenceSampler()


def choice_space(configs: Sequence[Mapping[str, Any]]) -> Space:
    """A space of the values ``configs`` take (each parameter a choice), enough for the tuner
    to record them; a scheduler's suggestions may use other values (they are not sampled)."""
    names = sorted({name for c in configs for name in c})
    space: dict[str, Any] = {}
    for name in names:
        values = sorted({c[name] for c in configs if name in c}, key=repr)
        space[name] = values[0] if len(values) == 1 else {"choice": values}
    return Space.from_dict(space)


@dataclass
class Simulation:
    """What ``simulated_tuner`` built."""

    tuner: Tuner
    executor: SimulatedExecutor
    study: "optuna.Study"
    storage: Any
    clock: SimulatedClock


def simulated_tuner(
    *,
    curve: Callable[[Mapping[str, Any], float], Mapping[str, float]],
    steps: Sequence[float],
    scheduler: "Scheduler",
    metrics: MetricSet,
    space: Space | None = None,
    configs: Sequence[Mapping[str, Any]] | None = None,
    sampler: Any = None,
    storage: Any = None,
    study_name: str = "simulated",
    clock: SimulatedClock | None = None,
    workers: int = 1,
    step_seconds: Any = 1.0,
    fail: Any = None,
    trial_root: Path | None = None,
    **budget: Any,
) -> Simulation:
    """The real ``Tuner`` on a ``SimulatedExecutor``; ``budget`` takes the Tuner's ``trials``,
    ``time_s``, ``epochs``, ``target``, ``trial_timeout_s`` and ``callbacks``. Give ``configs``
    (proposed in order) or a ``space`` and ``sampler``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if configs is not None:
        space = space or choice_space(configs)
        sampler = sampler or sequence_sampler(configs)
    if space is None:
        raise ValueError("give configs, or a space (and a sampler)")
    storage = storage if storage is not None else optuna.storages.InMemoryStorage()
    directions = [m.goal for m in metrics.objectives]
    study = optuna.create_study(storage=storage, study_name=study_name, sampler=sampler,
                                directions=directions, load_if_exists=True)
    clock = clock if clock is not None else SimulatedClock()
    executor = SimulatedExecutor(curve, steps, clock=clock, workers=workers, step_seconds=step_seconds, fail=fail)
    # Nothing is written there: simulated trials save no checkpoint.
    root = trial_root if trial_root is not None else Path(tempfile.gettempdir()) / "tunelab-simulated"
    tuner = Tuner(study=study, space=space, metrics=metrics, executor=executor, scheduler=scheduler,
                  trial_root=root, storage=storage, clock=clock, **budget)
    return Simulation(tuner, executor, study, storage, clock)
