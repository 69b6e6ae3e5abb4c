"""Each private access in ``tunelab._optuna``: the fast path, and the public fallback taken when
the private attribute is gone (forced by hiding it behind a proxy)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from tunelab import _optuna

RUN = {"slot": 0, "root": "/tmp/x", "driver": "host:1:1"}


class Hiding:
    """``obj`` without the named attributes, as a future Optuna might be."""

    def __init__(self, obj: Any, *hidden: str) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_hidden", hidden)

    def __getattr__(self, name: str) -> Any:
        if name in self._hidden:
            raise AttributeError(name)
        return getattr(self._obj, name)


@pytest.fixture
def study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="other")  # ids differ from 0
    s = optuna.create_study(storage=storage, study_name="s")
    s.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=1.0))
    return s


def test_storage_of(study: optuna.Study) -> None:
    assert _optuna.storage_of(study) is study._storage
    opened = study._storage
    assert _optuna.storage_of(Hiding(study, "_storage"), opened) is opened
    with pytest.raises(RuntimeError, match="storage"):
        _optuna.storage_of(Hiding(study, "_storage"))


def test_study_id_of(study: optuna.Study) -> None:
    assert _optuna.study_id_of(study) == study._study_id == 1
    assert _optuna.study_id_of(Hiding(study, "_study_id")) == 1
    assert _optuna.study_id_of(Hiding(study, "_study_id", "_storage"), study._storage) == 1


def test_trial_id_of(study: optuna.Study) -> None:
    frozen = study.trials[0]
    assert _optuna.trial_id_of(frozen, study) == frozen._trial_id
    assert _optuna.trial_id_of(Hiding(frozen, "_trial_id"), Hiding(study, "_study_id")) == frozen._trial_id


def test_n_trials(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 0.1})
    assert _optuna.n_trials(study) == 2
    assert _optuna.n_trials(Hiding(study, "_storage")) == 2


def test_set_system_attr_and_frozen_of(study: optuna.Study) -> None:
    trial = study.ask()
    _optuna.set_system_attr(trial, "a", 1)
    _optuna.set_system_attr(Hiding(trial, "_trial_id"), "b", 2)
    assert _optuna.frozen_of(trial).system_attrs == {"a": 1, "b": 2}
    assert _optuna.frozen_of(Hiding(trial, "_trial_id")).number == trial.number


def test_queued_params(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 0.25})
    queued = study.get_trials(states=(TrialState.WAITING,))[0]
    assert _optuna.queued_params(queued) == {"x": 0.25}
    assert _optuna.queued_params(study.trials[0]) is None


@pytest.mark.parametrize("hidden", [(), ("_storage", "_study_id")])
def test_mark_ended(study: optuna.Study, hidden: tuple[str, ...]) -> None:
    trial = study.ask()
    frozen = study.trials[-1]
    target = Hiding(study, *hidden) if hidden else study
    _optuna.mark_ended(target, Hiding(frozen, "_trial_id") if hidden else frozen, {"failure": {"kind": "cancelled"}},
                       TrialState.FAIL, study._storage)
    ended = study.trials[trial.number]
    assert ended.state == TrialState.FAIL and ended.user_attrs["failure"] == {"kind": "cancelled"}
    # A second driver recovering the same trial learns that it was ended already.
    assert not _optuna.mark_ended(study, frozen, {"failure": {"kind": "interrupted"}}, TrialState.FAIL)
    assert study.trials[trial.number].user_attrs["failure"] == {"kind": "cancelled"}


@pytest.mark.parametrize("hidden", [(), ("_thread_local",), ("_storage",)])
def test_ask_with_run_creates_a_trial_holding_run(study: optuna.Study, hidden: tuple[str, ...]) -> None:
    trial, queued = _optuna.ask_with_run(Hiding(study, *hidden) if hidden else study, RUN)
    assert not queued
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.RUNNING and frozen.user_attrs["run"] == RUN


@pytest.mark.parametrize("hidden", [(), ("_thread_local",)])
def test_ask_with_run_takes_a_queued_trial_with_its_driver(study: optuna.Study, hidden: tuple[str, ...]) -> None:
    study.enqueue_trial({"x": 0.25}, user_attrs={"retry_of": 0})
    trial, queued = _optuna.ask_with_run(Hiding(study, *hidden) if hidden else study, RUN)
    assert queued and trial.suggest_float("x", 0, 1) == 0.25
    frozen = study.trials[trial.number]
    assert frozen.state == TrialState.RUNNING
    assert frozen.user_attrs == {"retry_of": 0, "run": RUN}
    assert not study.get_trials(states=(TrialState.WAITING,))
    assert _optuna.claimed_by(frozen) == ([] if hidden else [RUN["driver"]])


def test_ask_with_run_sees_trials_finished_since_the_last_ask(study: optuna.Study) -> None:
    """The fast path drops Optuna's per-thread trial cache, as ask() does, so samplers see the
    latest trials."""
    study.get_trials()  # fills nothing; the sampler's cache is filled by _get_trials(use_cache=True)
    study._get_trials(deepcopy=False, use_cache=True)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.7}, distributions={"x": FloatDistribution(0, 1)},
                                              value=2.0))
    _optuna.ask_with_run(study, RUN)
    assert len(study._get_trials(deepcopy=False, use_cache=True)) == 3


def test_cached_trials(study: optuna.Study) -> None:
    study.ask()
    complete = (TrialState.COMPLETE,)
    assert [t.number for t in _optuna.cached_trials(study, complete)] == [0]
    assert [t.number for t in _optuna.cached_trials(Hiding(study, "_get_trials"), complete)] == [0]
    assert len(_optuna.cached_trials(Hiding(study, "_get_trials"), (TrialState.RUNNING,))) == 1


def _proposals(sampler: Any, seed: int) -> list[dict[str, Any]]:
    """Three trials' params from ``sampler`` on a study with 12 finished trials (past TPE's start-up)."""
    from optuna.distributions import IntDistribution

    study = optuna.create_study(sampler=sampler)
    rng = __import__("random").Random(seed)
    dists = {"x": FloatDistribution(0, 1), "n": IntDistribution(1, 9)}
    for _ in range(12):
        params = {"x": rng.random(), "n": rng.randint(1, 9)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=params["x"] * params["n"]))
    out = []
    for _ in range(3):
        trial = study.ask(dists)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("build", [
    lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=20),  # its random start-up sampler
    lambda seed: optuna.samplers.RandomSampler(seed=seed),
])
def test_reseed_sampler_equals_a_fresh_build(build: Any) -> None:
    used = build(1)
    _proposals(used, 0)  # its caches hold another study's trials, its RNG has moved on
    used._rng.rng.standard_normal()  # and holds a cached normal draw
    assert _optuna.reseed_sampler(used, 7)
    fresh = _proposals(build(7), 0)
    assert _proposals(used, 0) == fresh
    assert _proposals(build(8), 0) != fresh  # the seed matters: the comparison can fail


def test_reseed_sampler_refuses_what_it_cannot_reseed_exactly() -> None:
    # Other samplers keep more than a seed (the GP its fitted kernel), a subclass may add state,
    # and a future Optuna may lay its RNG out otherwise: the caller builds a fresh one instead.
    class Sub(optuna.samplers.TPESampler):
        pass

    for sampler in (Sub(seed=1), optuna.samplers.NSGAIISampler(seed=1), optuna.samplers.QMCSampler(seed=1),
                    Hiding(optuna.samplers.RandomSampler(seed=1), "_rng")):
        assert not _optuna.reseed_sampler(sampler, 7)
    tpe = optuna.samplers.TPESampler(seed=1)
    tpe._rng = object()  # not the layout this adapter knows
    before = tpe._random_sampler._rng
    assert not _optuna.reseed_sampler(tpe, 7)
    assert tpe._random_sampler._rng is before  # nothing changed


# ---- the journal backend that looks at the file's size first -------------------------------


def _logs(backend: Any, start: int) -> list[dict[str, Any]]:
    return list(backend.read_logs(start))


@pytest.mark.parametrize("hidden", [False, True], ids=["stat-first", "without-the-private-offsets"])
def test_journal_file_backend_reads_what_optunas_reader_reads(tmp_path: Any, hidden: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from optuna.storages.journal import JournalFileBackend

    path = str(tmp_path / "j.journal")
    ours, writer = _optuna.journal_file_backend(path, lock_obj=None), JournalFileBackend(path)
    plain = JournalFileBackend(path)
    if hidden:  # a future Optuna without the offsets: Optuna's own reader
        monkeypatch.setattr(_optuna, "_OFFSETS_ATTR", "_offsets_gone")
    opened: list[str] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    seen = 0
    for batch in ([{"op": 1}], [{"op": 2}, {"op": 3}], [], [{"op": 4}]):
        if batch:
            writer.append_logs(batch)  # another process's append
        opened.clear()
        new = _logs(ours, seen)
        ours_opened, expected = list(opened), _logs(plain, seen)
        assert new == expected == batch
        assert (ours_opened == []) == (not batch and not hidden)  # nothing new: a stat, no open
        seen += len(new)
    with real_open(path, "ab") as f:  # a record cut short by a killed writer: not read yet ...
        f.write(b'{"op":')
    assert _logs(ours, seen) == _logs(plain, seen) == []
    with real_open(path, "ab") as f:  # ... and read once it is whole
        f.write(b'5}\n')
    assert _logs(ours, seen) == _logs(plain, seen) == [{"op": 5}]
    assert _logs(ours, 0) == _logs(plain, 0) and len(_logs(ours, 0)) == 5


def test_the_journal_storage_tunelab_opens_uses_it(tmp_path: Any) -> None:
    from tunelab.storage import open_storage, resolve_storage_url

    storage = open_storage(resolve_storage_url(str(tmp_path / "s.journal")))
    assert type(storage._backend).__name__ == "StatFirstJournalFileBackend"
    study = optuna.create_study(storage=storage, study_name="s")
    other = optuna.load_study(study_name="s", storage=open_storage(resolve_storage_url(str(tmp_path / "s.journal"))))
    study.enqueue_trial({"x": 0.5})
    assert [t.state for t in other.trials] == [TrialState.WAITING]  # the other handle sees the write
