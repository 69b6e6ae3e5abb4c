"""The public entry points: ``tune(...)`` for Python, ``run_study(config)`` behind the CLI."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from tunelab.config import Execution, StudyConfig, parse_budget, parse_execution, parse_search
from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet
from tunelab.objectives.base import prepare_objective, validate_objective
from tunelab.samplers import make_sampler, parallelism_advice
from tunelab.space import Space
from tunelab.storage import open_storage, resolve_storage_url
from tunelab.study import STUDY_ATTR, StudyView, load_study as _load_study
from tunelab.tuner import Progress, Tuner

DEFAULT_TRIALS = 20


class TunelabWarning(UserWarning):
    """Advice about a study's set-up (e.g. too many workers for an adaptive sampler)."""


def tune(
    objective: Callable[..., Any],
    space: Mapping[str, Any] | Space,
    *,
    metrics: Any,
    sampler: str | None = None,
    seed: int | None = None,
    scheduler: Any = None,
    trials: int | None = None,
    time: str | float | None = None,
    target: float | None = None,
    workers: int = 1,
    backend: str = "local",
    gpus_per_trial: float = 0,
    timeout: str | float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    trial_dir: str = "tunelab_runs",
    keep_checkpoints: int = 3,
    on_progress: Callable[[Progress], None] | None = None,
) -> StudyView:
    """Tune ``objective(config, reporter)`` over ``space``; return the study.

    Example:
        >>> def objective(config, reporter):
        ...     return {"loss": (config["x"] - 2) ** 2}
        >>> study = tune(objective, {"x": {"float": [-5, 5]}}, metrics=[{"name": "loss", "goal": "minimize"}],
        ...              trials=10, backend="inprocess", storage="memory", seed=0)
        >>> round(study.best_config["x"])
        2

    Running it again with the same ``storage`` and ``study_name`` continues the study.
    """
    metric_set = MetricSet.parse(metrics)
    budget_raw = {"trials": trials, "time": time, "target": target}
    execution_raw: dict[str, Any] = {"backend": backend, "workers": workers, "gpus_per_trial": gpus_per_trial,
                                     "trial_dir": trial_dir, "keep_checkpoints": keep_checkpoints}
    if timeout is not None:
        execution_raw["timeout"] = timeout
    search_raw: dict[str, Any] = {"seed": seed}
    if sampler is not None:
        search_raw["sampler"] = sampler
    name = study_name or getattr(objective, "__name__", None) or "study"
    config = StudyConfig(
        name=name, objective=objective, space=Space.from_dict(space), metrics=metric_set,
        search=parse_search(search_raw, metric_set),
        scheduler=scheduler,
        budget=parse_budget({k: v for k, v in budget_raw.items() if v is not None}, metric_set),
        execution=parse_execution(execution_raw), storage=storage, base_dir=Path.cwd(),
    )
    return run_study(config, on_progress=on_progress)


def load_study(storage: str | None = None, name: str | None = None) -> StudyView:
    """Open a finished or running study to read its trials and best config."""
    return _load_study(resolve_storage_url(storage), name)


def effective_trials(config: StudyConfig) -> int | None:
    """The trial budget: as given; a grid's size; or the default when nothing else bounds the study."""
    if config.budget.trials is not None:
        return config.budget.trials
    if config.search.sampler == "grid":
        return config.space.grid_size()
    if config.budget.time_s is None and config.budget.target is None:
        return DEFAULT_TRIALS
    return None


def run_study(
    config: StudyConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    callbacks: Sequence[Any] = (),
) -> StudyView:
    """Validate everything, then create or resume the study and run it to its budget."""
    import optuna

    from tunelab.schedulers import make_scheduler
    from tunelab.tracking import parse_tracking, tracking_callbacks

    primary = config.metrics.primary
    scheduler = make_scheduler(config.scheduler, primary.name, primary.goal)
    parse_tracking(config.tracking, base_dir=config.base_dir, study_name=config.name)  # errors before any work
    validate_objective(config.objective, config.space, config.metrics)
    trials = effective_trials(config)
    execution = config.execution
    advice = parallelism_advice(config.search.sampler, execution.workers, trials)
    if advice:
        warnings.warn(advice, TunelabWarning, stacklevel=2)
    sampler = make_sampler(config.search.sampler, space=config.space, seed=config.search.seed,
                           workers=execution.workers, multi_objective=config.metrics.is_multi_objective,
                           options=config.search.options)
    url = resolve_storage_url(config.storage, config.base_dir)
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name=config.name, sampler=sampler,
                                directions=config.metrics.directions, load_if_exists=True)
    stored = [d.name.lower() for d in study.directions]
    if stored != config.metrics.directions:
        raise ConfigError("metrics", f"study {config.name!r} already exists with directions {stored}, "
                          f"but the config asks for {config.metrics.directions}.",
                          "use the same optimized metrics, or a new study name.")
    meta = {"metrics": [vars(m) for m in config.metrics.metrics], "space": config.space.to_dict(),
            "sampler": config.search.sampler, "seed": config.search.seed, "scheduler": repr(scheduler)}
    if study.user_attrs.get(STUDY_ATTR) != meta:
        study.set_user_attr(STUDY_ATTR, meta)
    trial_root = (config.base_dir / execution.trial_dir / config.name).resolve()
    trial_root.mkdir(parents=True, exist_ok=True)
    prepare_objective(config.objective, trial_root)
    callbacks = [*callbacks, *tracking_callbacks(config, trial_root)]
    executor = make_executor(config.objective, execution)
    tuner = Tuner(study=study, space=config.space, metrics=config.metrics, executor=executor, scheduler=scheduler,
                  trial_root=trial_root, trials=trials, time_s=config.budget.time_s, target=config.budget.target,
                  trial_timeout_s=execution.timeout_s, keep_checkpoints=execution.keep_checkpoints,
                  on_progress=on_progress, callbacks=callbacks)
    return tuner.run()


def make_executor(objective: Any, execution: Execution) -> Any:
    if execution.backend == "inprocess":
        from tunelab.executors.inprocess import InProcessExecutor

        return InProcessExecutor(objective, execution.workers)
    if execution.backend == "local":
        from tunelab.executors.local import LocalExecutor

        _check_picklable(objective)
        return LocalExecutor(objective, execution.workers, gpus_per_trial=execution.gpus_per_trial,
                             cpus_per_trial=execution.cpus_per_trial,
                             gpus=list(execution.gpus) if execution.gpus is not None else None)
    if execution.backend == "ray":
        from tunelab.executors.ray import RayExecutor

        _check_picklable(objective)
        return RayExecutor(objective, execution.workers, address=execution.address,
                           gpus_per_trial=execution.gpus_per_trial, cpus_per_trial=execution.cpus_per_trial)
    raise ConfigError("execution.backend", f"is {execution.backend!r}.", "use `local`, `inprocess` or `ray`.")


def _check_picklable(objective: Any) -> None:
    import cloudpickle

    try:
        cloudpickle.dumps(objective)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same fix
        raise ConfigError("objective", f"cannot be sent to a trial process ({type(exc).__name__}: {exc}).",
                          "make it a module-level function, or use backend `inprocess`.") from None


__all__ = ["tune", "load_study", "run_study", "effective_trials", "TunelabWarning"]
