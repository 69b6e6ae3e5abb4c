"""The real Tuner, driven with the in-process executor on journal and in-memory storages:
resuming continues the search, repeats are not run, stored paths and pickles are not trusted,
and a queued retry always runs once."""

from __future__ import annotations

import os
import pickle
import socket
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tunelab.executors.inprocess import InProcessExecutor
from tunelab.metrics import MetricSet
from tunelab.samplers import make_sampler
from tunelab.schedulers import make_scheduler
from tunelab.space import Space
from tunelab.tuner import Tuner

LOSS = MetricSet.parse([{"name": "loss", "goal": "minimize"}])
PLANE = {"x": {"float": [0.0, 1.0]}, "y": {"float": [0.0, 1.0]}}


def bowl(config: dict[str, Any], reporter: Any) -> dict[str, float]:
    return {"loss": (config["x"] - 0.3) ** 2 + (config["y"] - 0.7) ** 2}


def journal(tmp_path: Path) -> Any:
    from optuna.storages.journal import JournalFileBackend

    tmp_path.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))


def open_study(storage: Any, space: dict[str, Any], sampler: str = "tpe", seed: int | None = 1) -> optuna.Study:
    """A new driver's view of the study: a fresh sampler, as `tunelab run` builds it."""
    built = make_sampler(sampler, space=Space.from_dict(space), seed=seed, workers=1, multi_objective=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=storage, study_name="s", sampler=built, load_if_exists=True)


def run_tuner(storage: Any, space: dict[str, Any], trials: int, root: Path, objective: Callable[..., Any] = bowl,
              sampler: str = "tpe", seed: int | None = 1, keep: int = 3) -> optuna.Study:
    study = open_study(storage, space, sampler, seed)
    Tuner(study=study, space=Space.from_dict(space), metrics=LOSS, executor=InProcessExecutor(objective, 1),
          scheduler=make_scheduler(None, "loss", "minimize"), trial_root=root, trials=trials,
          keep_checkpoints=keep).run()
    return study


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(params.items()))


# ---- resume continues the search (issue 9.4) ----------------------------------------------------


@pytest.mark.parametrize("stops", [(1, 3, 6), (2, 5, 9), (4, 8)])
def test_a_resumed_study_proposes_no_completed_config_again(tmp_path: Path, stops: tuple[int, ...]) -> None:
    storage = journal(tmp_path)
    for budget in stops:  # each stop is an interrupted run; the next driver continues with the same seed
        study = run_tuner(storage, PLANE, budget, tmp_path / "runs")
    configs = [key(t.params) for t in complete(study)]
    assert len(configs) == stops[-1]
    assert len(set(configs)) == len(configs), "a resumed driver replayed its sampler from the start"


def test_the_same_seed_gives_the_same_trials_whether_or_not_the_study_was_interrupted(tmp_path: Path) -> None:
    one = run_tuner(journal(tmp_path / "a"), PLANE, 6, tmp_path / "ra")
    storage = journal(tmp_path / "b")
    run_tuner(storage, PLANE, 2, tmp_path / "rb")
    two = run_tuner(storage, PLANE, 6, tmp_path / "rb")
    # Random start-up trials depend on (seed, trial number) only, so the sequence continues.
    assert [key(t.params) for t in complete(one)] == [key(t.params) for t in complete(two)]


# ---- duplicates are not run twice (issue 9.5) ---------------------------------------------------


def test_a_repeated_config_is_redrawn_then_reused_and_never_run_twice(tmp_path: Path) -> None:
    space = {"a": {"choice": [1, 2, 3]}, "b": {"int": [0, 1]}}  # 6 configs, budget 15
    runs: list[tuple[int, int]] = []

    def objective(config: dict[str, Any], reporter: Any) -> dict[str, float]:
        runs.append((config["a"], config["b"]))
        return {"loss": config["a"] * 10 + config["b"]}

    study = run_tuner(optuna.storages.InMemoryStorage(), space, 15, tmp_path, objective)
    trials = complete(study)
    assert len(trials) == 15  # the budget counts reused trials
    assert len(runs) == len(set(runs)), f"a config ran twice: {runs}"
    from tunelab.proposals import DUPLICATE_OF, duplicates_avoided

    reused = [t for t in trials if DUPLICATE_OF in t.user_attrs]
    assert len(reused) == 15 - len(runs) and reused
    by_number = {t.number: t for t in trials}
    for t in reused:
        original = by_number[t.user_attrs[DUPLICATE_OF]]
        assert t.params == original.params and t.values == original.values
        assert DUPLICATE_OF not in original.user_attrs
    assert duplicates_avoided(study.get_trials(deepcopy=False)) >= len(reused)
    assert not any((tmp_path / f"trial_{t.number:04d}").exists() for t in reused)  # never launched


def test_duplicates_are_redrawn_before_they_are_reused(tmp_path: Path) -> None:
    from tunelab.proposals import DUPLICATE_OF, RESAMPLED

    space = {"a": {"choice": list(range(12))}}
    study = run_tuner(optuna.storages.InMemoryStorage(), space, 12, tmp_path,
                      lambda c, r: {"loss": float(c["a"])}, sampler="random")
    trials = complete(study)
    # 12 random draws from 12 values repeat often; redrawing finds new values first.
    assert sum(DUPLICATE_OF in t.user_attrs for t in trials) <= 2
    assert any(t.user_attrs.get(RESAMPLED) for t in trials)


def test_with_two_workers_a_config_repeating_a_running_one_waits_for_its_result(tmp_path: Path) -> None:
    import threading
    import time

    from tunelab.proposals import DUPLICATE_OF

    runs: list[int] = []
    lock = threading.Lock()
    space = {"a": {"choice": [1, 2]}}
    study = open_study(optuna.storages.InMemoryStorage(), space)

    def objective(config: dict[str, Any], reporter: Any) -> dict[str, float]:
        with lock:
            runs.append(config["a"])
            first = len(runs) == 1
        deadline = time.monotonic() + 60
        while first and len(study.get_trials(deepcopy=False)) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)  # the first trial runs on while the tuner proposes its config again
        return {"loss": float(config["a"])}

    Tuner(study=study, space=Space.from_dict(space), metrics=LOSS, executor=InProcessExecutor(objective, 2),
          scheduler=make_scheduler(None, "loss", "minimize"), trial_root=tmp_path, trials=9).run()
    assert sorted(runs) == [1, 2]
    trials = complete(study)
    assert len(trials) == 9
    assert any(t.user_attrs.get(DUPLICATE_OF) == 0 and t.number < 6 for t in trials)  # waited for trial 0
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_pruned_config_is_not_proposed_again_while_others_remain(tmp_path: Path) -> None:
    from tunelab.errors import TrialPruned

    runs: list[int] = []

    def objective(config: dict[str, Any], reporter: Any) -> dict[str, float]:
        runs.append(config["a"])
        if config["a"] < 3:
            raise TrialPruned()
        return {"loss": float(config["a"])}

    run_tuner(optuna.storages.InMemoryStorage(), {"a": {"choice": list(range(6))}}, 5, tmp_path, objective,
              sampler="random")
    assert len(runs) == len(set(runs)) == 5


def test_a_space_of_fixed_values_runs_every_trial(tmp_path: Path) -> None:
    runs: list[int] = []
    run_tuner(optuna.storages.InMemoryStorage(), {"seed": {"fixed": 3}}, 3, tmp_path,
              lambda c, r: runs.append(c["seed"]) or {"loss": 1.0}, sampler="random")
    assert runs == [3, 3, 3]  # nothing is searched, so there is nothing to repeat


def test_a_study_without_trial_budget_stops_when_every_config_repeats(tmp_path: Path) -> None:
    space = {"a": {"choice": [1, 2]}}
    study = open_study(optuna.storages.InMemoryStorage(), space)
    tuner = Tuner(study=study, space=Space.from_dict(space), metrics=LOSS,
                  executor=InProcessExecutor(lambda c, r: {"loss": float(c["a"])}, 1),
                  scheduler=make_scheduler(None, "loss", "minimize"), trial_root=tmp_path, trials=None,
                  time_s=3600.0)
    tuner.run()
    assert len({t.params["a"] for t in complete(study)}) == 2
    assert len(study.trials) < 200


# ---- CMA-ES: no code from storage (issue 10.1) --------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))  # unpickling creates the marker file


def _plant_pickle(storage: Any, marker: Path) -> None:
    study = optuna.create_study(storage=storage, study_name="s", load_if_exists=True)
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.9, "y": 0.1}, distributions={"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)},
        value=5.0, system_attrs={"cma:optimizer:0": pickle.dumps(_Payload(marker)).hex(), "cma:generation": 0},
    ))


def test_cmaes_never_unpickles_state_found_in_storage(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    storage = journal(tmp_path)
    _plant_pickle(storage, marker)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = run_tuner(storage, PLANE, 12, tmp_path / "runs", sampler="cmaes")
    assert not marker.exists(), "a pickle read from storage was loaded"
    assert len(complete(study)) == 12
    assert any("pickled sampler state" in str(w.message) for w in caught)
    # Nothing this run stored is a pickle either.
    assert not any(k.startswith("cma:optimizer") for t in study.get_trials()[1:] for k in t.system_attrs)


def test_cmaes_converges_on_a_quadratic_and_resumes(tmp_path: Path) -> None:
    storage = journal(tmp_path)
    run_tuner(storage, PLANE, 30, tmp_path / "runs", sampler="cmaes", seed=3)
    study = run_tuner(storage, PLANE, 70, tmp_path / "runs", sampler="cmaes", seed=3)
    values = [t.value for t in complete(study)]
    assert len(values) == 70
    assert min(values) < 1e-3
    assert min(values[40:]) < min(values[:10])  # later generations beat the start
    assert sorted(values[-20:])[10] < 1e-2  # and concentrate near the optimum (random search: ~0.13)


# ---- paths read from storage (issue 10.2) -------------------------------------------------------


@pytest.mark.parametrize("field", ["dir", "root"])
def test_a_stored_directory_outside_the_trial_root_is_never_deleted(tmp_path: Path, field: str) -> None:
    victim = tmp_path / "victim"
    target = victim if field == "dir" else victim / "trial_0000"
    (target / "checkpoint").mkdir(parents=True)
    (target / "checkpoint" / "precious.txt").write_text("keep me")
    storage = journal(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s")
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.9, "y": 0.1}, distributions={"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)},
        value=100.0, user_attrs={"run": {field: str(victim), "slot": 0}},
    ))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_tuner(storage, PLANE, 4, tmp_path / "runs", keep=1)
    assert (target / "checkpoint" / "precious.txt").read_text() == "keep me"
    assert any("outside the trial root" in str(w.message) for w in caught)


def test_resuming_under_another_trial_root_warns_once_for_all_the_earlier_trials(tmp_path: Path) -> None:
    storage = journal(tmp_path)
    run_tuner(storage, PLANE, 6, tmp_path / "first", keep=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study = run_tuner(storage, PLANE, 8, tmp_path / "moved", keep=1)
    outside = [str(w.message) for w in caught if "outside the trial root" in str(w.message)]
    assert len(outside) == 1, outside  # one line for the study, not one per earlier trial
    assert outside[0].startswith("6 trials of this study record directories outside the trial root")
    assert str(tmp_path / "first") in outside[0] and str((tmp_path / "moved").resolve()) in outside[0]
    assert len(complete(study)) == 8


def test_retention_still_deletes_checkpoints_inside_the_trial_root(tmp_path: Path) -> None:
    def with_checkpoint(config: dict[str, Any], reporter: Any) -> dict[str, float]:
        (Path(reporter.trial_dir) / "checkpoint").mkdir(parents=True, exist_ok=True)
        return bowl(config, reporter)

    root = tmp_path / "runs"
    study = run_tuner(optuna.storages.InMemoryStorage(), PLANE, 5, root, with_checkpoint, keep=1)
    kept = [d.parent.name for d in root.glob("trial_*/checkpoint")]
    best = min(complete(study), key=lambda t: t.value)
    assert kept == [f"trial_{best.number:04d}"]


# ---- a queued retry is never lost (issue 10.7) --------------------------------------------------


def test_a_retry_taken_by_a_driver_killed_before_it_recorded_itself_still_runs_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunelab.tuner as tuner_module

    storage = journal(tmp_path)
    study = open_study(storage, PLANE)
    dists = {"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)}
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5, "y": 0.5}, distributions=dists, value=0.2))
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.25, "y": 0.75}, distributions=dists, state=TrialState.FAIL,
        user_attrs={"failure": {"kind": "interrupted", "message": "the driver stopped while this trial ran"}}))
    study.enqueue_trial({"x": 0.25, "y": 0.75}, user_attrs={"retry_of": 1})
    # The window: the queued retry was taken (WAITING -> RUNNING), the driver died before recording itself.
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    assert storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    monkeypatch.setattr(tuner_module, "_UNCLAIMED_GRACE_S", 0.0)  # 60 s have passed
    study = run_tuner(storage, PLANE, 4, tmp_path / "runs")
    retries = [t for t in complete(study) if t.user_attrs.get("retry_of") == 1]
    assert [key(t.params) for t in retries] == [key({"x": 0.25, "y": 0.75})]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_a_driver_killed_between_taking_a_retry_and_recording_itself_loses_nothing(tmp_path: Path) -> None:
    from tunelab import _optuna

    class KilledBeforeRecording(Exception):
        pass

    class Storage:  # the journal, but the driver dies as it writes `run` on the taken trial
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
            if key == "run":
                raise KilledBeforeRecording()
            self.inner.set_trial_user_attr(trial_id, key, value)

    storage = journal(tmp_path)
    study = open_study(storage, PLANE)
    study.enqueue_trial({"x": 0.25, "y": 0.75}, user_attrs={"retry_of": 0})
    dead = f"{socket.gethostname()}:{os.getpid()}:1"  # this host, a start time not ours: a dead driver
    study._storage = Storage(storage)
    with pytest.raises(KilledBeforeRecording):
        _optuna.ask_with_run(study, {"slot": 0, "root": str(tmp_path), "driver": dead})
    taken = study.get_trials(deepcopy=False)[0]
    assert taken.state == TrialState.RUNNING and "run" not in taken.user_attrs
    # The next start needs no grace period: the trial's only claimer is dead.
    study = run_tuner(storage, PLANE, 2, tmp_path / "runs")
    retries = [t for t in complete(study) if t.user_attrs.get("retry_of") == 0]
    assert len(retries) == 1 and retries[0].params == {"x": 0.25, "y": 0.75}
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def _running_trial_of_a_dead_driver(study: optuna.Study, tmp_path: Path) -> int:
    """A trial that ran with config (0.25, 0.75) under a driver that was killed."""
    dead = f"{socket.gethostname()}:{os.getpid()}:1"  # this host, a start time not ours
    study.enqueue_trial({"x": 0.25, "y": 0.75})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_float("y", 0.0, 1.0)
    trial.set_user_attr("run", {"slot": 0, "root": str(tmp_path / "runs"), "driver": dead})
    return trial.number


@pytest.mark.parametrize("killed_in", ["_requeue", "mark_ended"])
def test_a_driver_killed_while_recovering_an_interrupted_trial_loses_and_doubles_no_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_in: str) -> None:
    """Recovery writes two things (the retry, the trial's end); a kill after either one still
    gives exactly one retry (found by the reliability suite: marking first lost the retry)."""
    from tunelab import _optuna

    class Killed(BaseException):
        pass

    storage = journal(tmp_path)
    number = _running_trial_of_a_dead_driver(open_study(storage, PLANE), tmp_path)
    target = (Tuner, "_requeue") if killed_in == "_requeue" else (_optuna, "mark_ended")
    original = getattr(*target)
    if killed_in == "_requeue":
        def killed(self: Any, *args: Any, **kwargs: Any) -> None:
            raise Killed()
    else:
        def killed(*args: Any, **kwargs: Any) -> bool:
            raise Killed()
    monkeypatch.setattr(*target, killed)
    with pytest.raises(Killed):
        run_tuner(storage, PLANE, 3, tmp_path / "runs")
    monkeypatch.setattr(*target, original)
    study = run_tuner(storage, PLANE, 3, tmp_path / "runs")
    retries = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("retry_of") == number]
    assert [(t.state, t.params) for t in retries] == [(TrialState.COMPLETE, {"x": 0.25, "y": 0.75})]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
