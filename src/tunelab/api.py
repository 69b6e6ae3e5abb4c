"""The public entry points: ``tune(...)`` for Python, ``run_study(config)`` behind the CLI."""

from __future__ import annotations

import datetime as dt
import os
import time as _time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from tunelab.config import Execution, StudyConfig, parse_budget, parse_execution, parse_search
from tunelab.errors import ConfigError
from tunelab.executors._running import LOG_NAME
from tunelab.identity import (IDENTITY_ATTR, changed_definition_error, callable_name, config_in_space,
                              identity_changes, parse_on_change, short_hash, source_file, stored_identity,
                              study_identity, summarize_changes)
from tunelab.messages import TunelabWarning, logger, quiet_optuna, warn
from tunelab.metrics import MetricSet
from tunelab.names import check_study_name, safe_name_part
from tunelab.objectives.base import prepare_objective, validate_objective
from tunelab.samplers import make_sampler, parallelism_advice, use_auto_choice
from tunelab.space import Space
from tunelab.storage import open_storage, resolve_storage_url
from tunelab.study import STUDY_ATTR, StudyView, load_study as _load_study, stored_config
from tunelab.tuner import Progress, Tuner

if TYPE_CHECKING:
    import optuna

DEFAULT_TRIALS = 20

#: ``tune()`` argument names for the fields its errors would otherwise name in YAML terms.
_API_FIELDS = {
    "budget.trials": "trials", "budget.time": "time", "budget.target": "target", "budget.epochs": "epochs",
    "execution.workers": "workers", "execution.backend": "backend", "execution.gpus_per_trial": "gpus_per_trial",
    "execution.timeout": "timeout", "execution.trial_dir": "trial_dir",
    "execution.keep_checkpoints": "keep_checkpoints", "search.sampler": "sampler", "search.seed": "seed",
    "search.repeats": "repeats", "search.warm_start": "warm_start",
    "name": "study_name",
}


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
    epochs: float | None = None,
    workers: int = 1,
    backend: str = "local",
    gpus_per_trial: float = 0,
    timeout: str | float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    on_change: str = "error",
    trial_dir: str = "tunelab_runs",
    keep_checkpoints: int = 3,
    progress: bool = True,
    on_progress: Callable[[Progress], None] | None = None,
    repeats: Mapping[str, int] | None = None,
    warm_start: Any = None,
) -> StudyView:
    """Tune ``objective(config, reporter)`` over ``space``; return the study.

    Example:
        >>> def objective(config, reporter):
        ...     return {"loss": (config["x"] - 2) ** 2}
        >>> study = tune(objective, {"x": {"float": [-5, 5]}}, metrics=[{"name": "loss", "goal": "minimize"}],
        ...              trials=10, backend="inprocess", storage="memory", seed=0, progress=False)
        >>> round(study.best_config["x"])
        2

    Args:
        metrics: ``"loss"``, ``[{"name": "accuracy", "goal": "maximize"}, ...]``. A metric's
            ``goal`` may be left out only when its name tells it (loss, error, *_seconds: minimize;
            accuracy, f1, auc: maximize); otherwise it is required.
        epochs: a budget of training steps (in the objective's ``step`` unit), summed over all
            trials; a PBT clone counts only the steps it trains past its parent's. With it and no
            ``trials``, the study runs until the steps are used (YAML ``budget: {epochs: N}``).
        storage: a journal file path (default ``./tunelab.journal``), a database URL, or
            ``"memory"`` (a storage that belongs to this one call).
        study_name: the study's name in the storage and its directory under ``trial_dir``.
            Defaults to the objective's name plus a short hash of its module, qualified name and
            source file (``train-3f2a9c1b``), so two different ``train`` functions never share a
            study. Running again with the same storage and name continues the study.
        on_change: what to do when the stored study of that name was defined differently (its
            space, metrics or objective): ``"error"`` (the default) stops before any work and names
            each change; ``"restart"`` deletes the stored study and moves its trial directory aside;
            ``"continue"`` keeps the old trials (those outside the new space never count as best).
        progress: show a progress bar (tqdm; a widget in notebooks), the start line and a closing
            summary. ``False`` shows nothing; the same lines still go to the ``tunelab`` logger.
        on_progress: called with a ``Progress`` snapshot as trials start and end.
        repeats: ``{"top": 3, "seeds": 3}``: after the search, train the 3 best configs with 3
            more seeds each (``config["seed"]``), on top of ``trials``; the best config is then
            the best mean over seeds (``study.best_seed_group()`` has the spread).
        warm_start: earlier study names in the same storage, or ``{"storage": ..., "study": ...}``
            mappings: their trials start this study's sampler (they use no budget and are never
            this study's trials or best).
    """
    _check_arguments(objective, storage, study_name, trial_dir, progress, on_progress)
    try:
        metric_set = MetricSet.parse(metrics)
        budget_raw = {"trials": trials, "time": time, "target": target, "epochs": epochs}
        execution_raw: dict[str, Any] = {"backend": backend, "workers": workers, "gpus_per_trial": gpus_per_trial,
                                         "trial_dir": os.fspath(trial_dir), "keep_checkpoints": keep_checkpoints}
        if timeout is not None:
            execution_raw["timeout"] = timeout
        search_raw: dict[str, Any] = {"seed": seed, "repeats": repeats, "warm_start": warm_start}
        if sampler is not None:
            search_raw["sampler"] = sampler
        name = study_name if study_name is not None else default_study_name(objective)
        config = StudyConfig(
            name=name, objective=objective, space=Space.from_dict(space), metrics=metric_set,
            search=parse_search(search_raw, metric_set),
            scheduler=scheduler,
            budget=parse_budget({k: v for k, v in budget_raw.items() if v is not None}, metric_set),
            execution=parse_execution(execution_raw), storage=os.fspath(storage) if storage is not None else None,
            base_dir=Path.cwd(), on_change=parse_on_change(on_change),
        )
        display = _PythonDisplay(config, progress, on_progress)
        try:
            view = run_study(config, on_progress=display.on_progress, on_start=display.start, surface="api")
        finally:
            display.close()
    except ConfigError as exc:
        raise _in_api_terms(exc) from None
    display.finish(view)
    return view


def default_study_name(objective: Any) -> str:
    """``{name}-{hash}``: the objective's name and a hash of ``module:qualname`` and its source file."""
    import functools

    fn = objective
    while isinstance(fn, functools.partial):
        fn = fn.func
    base = getattr(fn, "__name__", None) or type(fn).__name__
    ident = f"{callable_name(objective)}@{source_file(objective) or ''}"
    return f"{safe_name_part(str(base))}-{short_hash(ident)}"


def _check_arguments(objective: Any, storage: Any, study_name: Any, trial_dir: Any, progress: Any,
                     on_progress: Any) -> None:
    """``tune()``'s own arguments, checked before anything is created or written."""
    if not callable(objective):
        raise ConfigError("objective", f"is {_short(objective)}, which is not callable.",
                          "pass a function `def objective(config, reporter): ...` that returns its metrics.")
    if storage is not None and not isinstance(storage, (str, os.PathLike)):
        raise ConfigError("storage", f"is {_short(storage)}, but must be a journal file path, a database URL "
                          "or \"memory\".", "pass e.g. storage=\"tunelab.journal\" or storage=\"sqlite:///study.db\".")
    if study_name is not None:
        check_study_name(study_name, "study_name")
    if not isinstance(trial_dir, (str, os.PathLike)):
        raise ConfigError("trial_dir", f"is {_short(trial_dir)}, but must be a directory path.",
                          "pass e.g. trial_dir=\"tunelab_runs\".")
    if not isinstance(progress, bool):
        raise ConfigError("progress", f"is {_short(progress)}, but must be True or False.")
    if on_progress is not None and not callable(on_progress):
        raise ConfigError("on_progress", f"is {_short(on_progress)}, which is not callable.",
                          "pass a function that takes a Progress snapshot, or None.")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_api_terms(exc: ConfigError) -> ConfigError:
    """The error with a ``tune()`` argument's name where the YAML field was named."""
    for yaml_field, argument in _API_FIELDS.items():
        if exc.field == yaml_field or exc.field.startswith((yaml_field + ".", yaml_field + "[")):
            return ConfigError(argument + exc.field[len(yaml_field):], exc.problem, exc.fix)
    return exc


class _PythonDisplay:
    """Progress bar, start line and summary for ``tune()``; the lines also go to the logger."""

    def __init__(self, config: StudyConfig, progress: bool, on_progress: Callable[[Progress], None] | None) -> None:
        self.config = config
        self.progress = progress
        self.user_callback = on_progress
        self.bar: Any = None
        self.started = _time.monotonic()

    def start(self, view: StudyView, trials: int | None) -> None:
        from tunelab.display import ProgressBar, counted_before, start_line

        line = start_line(self.config, view)
        logger.info(line)
        if self.progress:
            print(line, flush=True)
            self.bar = ProgressBar(self.config.name, self.config.metrics.primary.name, trials, counted_before(view))

    def on_progress(self, p: Progress) -> None:
        if self.bar is not None:
            self.bar(p)
        if self.user_callback is not None:
            self.user_callback(p)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self, view: StudyView) -> None:
        from tunelab.display import summary

        from tunelab.failures import no_completion_summary

        text = summary(view, _time.monotonic() - self.started)
        for line in text.splitlines():
            logger.info(line)
        if self.progress:
            print(text, flush=True)
        trials = view.trials()
        dirs = {t.number: t.trial_dir for t in trials}
        nothing = no_completion_summary(trials, hint=lambda n: f"the whole log: {Path(dirs[n]) / LOG_NAME}"
                                        if dirs.get(n) else "see study.trials()")
        if nothing is not None:  # the CLI exits 1 here; tune() returns the study and says why it is empty
            warn(nothing)


def load_study(storage: str | None = None, name: str | None = None) -> StudyView:
    """Open a finished or running study to read its trials and best config."""
    if storage is not None and not isinstance(storage, (str, os.PathLike)):
        raise ConfigError("storage", f"is {_short(storage)}, but must be a journal file path or a database URL.")
    return _load_study(resolve_storage_url(os.fspath(storage) if storage is not None else None), name)


def effective_trials(config: StudyConfig) -> int | None:
    """The trial budget: as given; a grid's size; or the default when nothing else bounds the study."""
    if config.budget.trials is not None:
        return config.budget.trials
    if config.search.sampler == "grid":
        return config.space.grid_size()
    if config.budget.time_s is None and config.budget.target is None and config.budget.epochs is None:
        return DEFAULT_TRIALS
    return None


def run_study(
    config: StudyConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    callbacks: Sequence[Any] = (),
    on_start: Callable[[StudyView, int | None], None] | None = None,
    surface: str = "cli",
) -> StudyView:
    """Validate everything, then create or resume the study and run it to its budget.

    ``surface`` (``cli`` or ``api``) words advice and errors in the caller's terms; ``on_start``
    gets the opened study and the trial budget just before the first trial.
    """
    with quiet_optuna():
        return _run_study(config, on_progress=on_progress, callbacks=callbacks, on_start=on_start, surface=surface)


def _run_study(config: StudyConfig, *, on_progress: Callable[[Progress], None] | None, callbacks: Sequence[Any],
               on_start: Callable[[StudyView, int | None], None] | None, surface: str) -> StudyView:
    from tunelab.schedulers import make_scheduler
    from tunelab.schedulers.pbt import population_advice
    from tunelab.tracking import parse_tracking, tracking_callbacks

    check_study_name(config.name, "study_name" if surface == "api" else "name")
    primary = config.metrics.primary
    scheduler = make_scheduler(config.scheduler, primary.name, primary.goal, space=config.space,
                               objective=config.objective)
    parse_tracking(config.tracking, base_dir=config.base_dir, study_name=config.name)  # errors before any work
    validate_objective(config.objective, config.space, config.metrics)
    repeats = _repeats_of(config)
    identity = study_identity(config.space, config.metrics, config.objective, config.base_dir)
    trials = effective_trials(config)
    execution = config.execution
    sampler = make_sampler(config.search.sampler, space=config.space, seed=config.search.seed,
                           workers=execution.workers, multi_objective=config.metrics.is_multi_objective,
                           options=config.search.options, trials=trials)
    url = resolve_storage_url(config.storage, config.base_dir)
    trial_root = (config.base_dir / execution.trial_dir / config.name).resolve()
    warm = _warm_sources(config, url)  # errors (no such study, other directions) before any work
    study = _open_study(config, url, sampler, identity, trial_root, surface)
    if config.start_points:  # a fine-tuning study with no space: known-good configs first
        from tunelab.finetune_defaults import enqueue_start_points, fit_to_budget

        enqueue_start_points(study, fit_to_budget(config.start_points, trials))
    if warm:
        from tunelab.warm_start import add_warm_trials

        note = add_warm_trials(study, config.space, warm)
        if note:
            warn(note)  # once: a resumed run finds the sources already copied
    sampler_name, sampler_shown = config.search.sampler, config.search.sampler
    if sampler_name == "auto":  # a resumed study keeps the sampler auto chose when it started
        choice = use_auto_choice(study, space=config.space, seed=config.search.seed, workers=execution.workers,
                                 multi_objective=config.metrics.is_multi_objective, trials=trials)
        sampler_name, sampler_shown = choice.sampler, choice.describe()
    set_workers = "workers={n}" if surface == "api" else "--workers {n}"
    for advice in (parallelism_advice(sampler_name, execution.workers, trials, set_workers=set_workers),
                   population_advice(scheduler, execution.workers, set_workers=set_workers)):
        if advice:
            warn(advice)
    meta = {"metrics": [m.to_dict() for m in config.metrics.metrics], "space": config.space.to_dict(),
            "sampler": sampler_shown, "seed": config.search.seed, "scheduler": repr(scheduler)}
    if study.user_attrs.get(STUDY_ATTR) != meta:
        study.set_user_attr(STUDY_ATTR, meta)
    trial_root.mkdir(parents=True, exist_ok=True)
    prepare_objective(config.objective, trial_root)
    callbacks = [*callbacks, *tracking_callbacks(config, trial_root)]
    executor = make_executor(config.objective, execution)
    tuner = Tuner(study=study, space=config.space, metrics=config.metrics, executor=executor, scheduler=scheduler,
                  trial_root=trial_root, trials=trials, time_s=config.budget.time_s, target=config.budget.target,
                  epochs=config.budget.epochs, trial_timeout_s=execution.timeout_s,
                  # the best configs' checkpoints live until their repeats show which seed is best
                  keep_checkpoints=max(execution.keep_checkpoints, repeats.top if repeats else 0),
                  on_progress=on_progress, callbacks=callbacks, repeats=repeats)
    if on_start is not None:
        on_start(StudyView(study), trials + repeats.extra_trials if trials is not None and repeats else trials)
    return tuner.run()


def _repeats_of(config: StudyConfig) -> Any:
    """``search.repeats`` checked against the space, with the objective's default seed."""
    import dataclasses

    from tunelab.repeats import check_space, objective_seed

    repeats = config.search.repeats
    check_space(repeats, config.space)
    return dataclasses.replace(repeats, base_seed=objective_seed(config.objective)) if repeats else None


def _warm_sources(config: StudyConfig, url: str) -> list[Any]:
    from tunelab.warm_start import load_sources

    if not config.search.warm_start:
        return []
    return load_sources(config.search.warm_start, own_url=url, name=config.name, base_dir=config.base_dir,
                        directions=config.metrics.directions)


def _open_study(config: StudyConfig, url: str, sampler: Any, identity: Mapping[str, str], trial_root: Path,
                surface: str) -> "optuna.Study":
    """Create the study, or open it when its stored identity matches; a changed definition is an
    error before any work unless ``config.on_change`` says ``restart`` or ``continue``."""
    import optuna

    # "memory" belongs to this call: a fresh storage, never one shared with another tune().
    storage = optuna.storages.InMemoryStorage() if url == "memory" else open_storage(url)
    name = config.name
    study: optuna.Study | None = None
    if name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        stored = stored_identity(study.user_attrs.get(IDENTITY_ATTR))
        changes = identity_changes(stored, identity) if stored is not None else []
        if stored is None:
            logger.info("study %s has no stored identity (an older tunelab made it): storing this one", name)
        if changes:
            old_trials = study.get_trials(deepcopy=False)
            if not old_trials:  # a study that never ran a trial answers nothing yet: define it anew
                logger.info("study %s had no trials: redefined (%s)", name, summarize_changes(changes))
                optuna.delete_study(study_name=name, storage=storage)
                study = None
            elif config.on_change == "error":
                raise changed_definition_error(name, len(old_trials), changes, surface)
            elif config.on_change == "restart":
                optuna.delete_study(study_name=name, storage=storage)
                moved = _move_aside(trial_root)
                warn(f"study {name!r} restarted because its definition changed ({summarize_changes(changes)}): "
                     f"{len(old_trials)} old trial(s) deleted from the storage"
                     + (f", their directory moved to {moved}." if moved else "."))
                study = None
            else:
                _check_directions(study, config, surface)
                outside = sum(not config_in_space(config.space, stored_config(t)) for t in old_trials)
                warn(f"study {name!r} continues with a changed definition ({summarize_changes(changes)}); "
                     f"{outside} of its {len(old_trials)} old trials lie outside the new space and never count "
                     f"as best.")
    if study is None:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                    directions=config.metrics.directions, load_if_exists=True)
    _check_directions(study, config, surface)
    if study.user_attrs.get(IDENTITY_ATTR) != dict(identity):
        study.set_user_attr(IDENTITY_ATTR, dict(identity))
    return study


def _check_directions(study: "optuna.Study", config: StudyConfig, surface: str) -> None:
    stored = [d.name.lower() for d in study.directions]
    if stored != config.metrics.directions:
        restart = 'on_change="restart"' if surface == "api" else "--on-change restart"
        raise ConfigError("metrics", f"study {config.name!r} already exists with directions {stored}, "
                          f"but the config asks for {config.metrics.directions}.",
                          f"use the same optimized metrics, a new study name, or start over with {restart}.")


def _move_aside(trial_root: Path) -> Path | None:
    """Rename a restarted study's trial directory to ``<name>.replaced-<UTC time>``: nothing is lost."""
    if not trial_root.exists():
        return None
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = trial_root.with_name(f"{trial_root.name}.replaced-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = trial_root.with_name(f"{trial_root.name}.replaced-{stamp}-{n}")
    trial_root.rename(target)
    return target


def make_executor(objective: Any, execution: Execution) -> Any:
    if execution.backend == "inprocess":
        from tunelab.executors.inprocess import InProcessExecutor

        return InProcessExecutor(objective, execution.workers)
    if execution.backend == "local":
        from tunelab.executors.local import LocalExecutor

        _check_picklable(objective)
        return LocalExecutor(objective, execution.workers, gpus_per_trial=execution.gpus_per_trial,
                             cpus_per_trial=execution.cpus_per_trial,
                             gpus=list(execution.gpus) if execution.gpus is not None else None,
                             preload=execution.preload)
    if execution.backend == "ray":
        from tunelab.executors.ray import RayExecutor

        _check_picklable(objective)
        return RayExecutor(objective, execution.workers, address=execution.address,
                           gpus_per_trial=execution.gpus_per_trial, cpus_per_trial=execution.cpus_per_trial)
    if execution.backend == "spark":  # the active SparkSession, or a new local[workers]
        from tunelab.executors.spark import SparkExecutor

        _check_picklable(objective)
        return SparkExecutor(objective, execution.workers, master=execution.master,
                             gpus_per_trial=execution.gpus_per_trial, cpus_per_trial=execution.cpus_per_trial)
    raise ConfigError("execution.backend", f"is {execution.backend!r}.", "use `local`, `inprocess`, `ray` or `spark`.")


def _check_picklable(objective: Any) -> None:
    import cloudpickle

    try:
        cloudpickle.dumps(objective)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same fix
        raise ConfigError("objective", f"cannot be sent to a trial process ({type(exc).__name__}: {exc}).",
                          "make it a module-level function, or use backend `inprocess`.") from None


__all__ = ["tune", "load_study", "run_study", "effective_trials", "TunelabWarning"]
