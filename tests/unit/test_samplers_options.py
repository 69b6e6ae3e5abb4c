"""Sampler options are validated before any work; per-trial seeds; the data-only CMA-ES."""

from __future__ import annotations

import pytest

from tunelab.errors import ConfigError
from tunelab.samplers import make_sampler
from tunelab.space import Space

SPACE = Space.from_dict({"x": {"float": [0, 1]}, "k": {"int": [1, 4]}})


def build(name: str, **options: object) -> object:
    return make_sampler(name, space=SPACE, seed=0, workers=1, multi_objective=name == "nsga2", options=options)


@pytest.mark.parametrize(("name", "option", "value"), [
    ("tpe", "gamma", "x"),                # used only after the start-up trials
    ("tpe", "n_startup_trials", "x"),
    ("tpe", "prior_weight", "heavy"),
    ("random", "seed_offset", 1),         # not an option at all
    ("nsga2", "crossover", "x"),          # used only from the second generation
    ("cmaes", "popsize", "big"),
    ("cmaes", "sigma0", -1),
])
def test_a_bad_option_is_a_config_error_naming_it(name: str, option: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        build(name, **{option: value})
    assert err.value.field == f"search.{option}"


def test_the_bad_option_is_named_among_good_ones() -> None:
    with pytest.raises(ConfigError) as err:
        build("tpe", n_startup_trials=5, gamma="x", n_ei_candidates=8)
    assert err.value.field == "search.gamma" and "'x'" in str(err.value)


@pytest.mark.parametrize(("name", "options"), [
    ("tpe", {"n_startup_trials": 5, "n_ei_candidates": 8}),
    ("nsga2", {"population_size": 10, "mutation_prob": 0.1}),
    ("cmaes", {"popsize": 6, "n_startup_trials": 2}),
    ("qmc", {"qmc_type": "halton"}),
])
def test_good_options_pass(name: str, options: dict[str, object]) -> None:
    build(name, **options)


def test_derived_seeds_depend_on_seed_and_trial_number_only() -> None:
    from tunelab.proposals import derive_seed

    assert derive_seed(1, 5) == derive_seed(1, 5) != derive_seed(2, 5)
    assert len({derive_seed(s, n, a) for s in range(3) for n in range(50) for a in range(3)}) == 450


def test_config_key_compares_values_after_rounding_not_types() -> None:
    from tunelab.proposals import config_key

    names = ["a", "b"]
    assert config_key({"a": 0.1 + 0.2, "b": 3}, names) == config_key({"a": 0.3, "b": 3.0}, names)
    assert config_key({"a": True, "b": 1}, names) != config_key({"a": 1, "b": 1}, names)
    assert config_key({"a": 0.3, "b": "x"}, names) != config_key({"a": 0.3, "b": "y"}, names)


def test_finished_trials_are_keyed_once_and_the_first_of_each_config_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # The de-duplication check runs for every proposal over every trial: keying each finished
    # trial once keeps it linear in the trials (it was quadratic: 40,000 keys for 200 trials).
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    import tunelab.proposals as proposals

    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    dist = {"x": FloatDistribution(0, 1)}
    for number, (x, state) in enumerate([(0.5, TrialState.PRUNED), (0.25, TrialState.COMPLETE),
                                         (0.5, TrialState.COMPLETE), (0.75, TrialState.COMPLETE)]):
        study.add_trial(create_trial(params={"x": x}, distributions=dist, state=state,
                                     value=None if state == TrialState.PRUNED else float(number)))
    running = study.ask({"x": FloatDistribution(0, 1)})  # a live trial: its params are not cached
    calls: list[object] = []
    real = proposals.config_key
    monkeypatch.setattr(proposals, "config_key", lambda config, names: calls.append(config) or real(config, names))
    cache = proposals.FinishedKeys()
    for _ in range(5):
        taken = proposals.completed_keys(study, ["x"], taken=True, keys_of=cache)
        complete = proposals.completed_keys(study, ["x"], keys_of=cache)
    assert len(calls) == 4 + 5  # each finished trial once; the running one at every call that counts it
    scanned: list[int] = []
    real_keys = proposals.FinishedKeys.keys
    monkeypatch.setattr(proposals.FinishedKeys, "keys", lambda self, trials, *a: scanned.append(
        len(trials[self._scanned:])) or real_keys(self, trials, *a))
    proposals.completed_keys(study, ["x"], keys_of=cache)
    assert scanned == [1]  # only trials from the first unfinished one on are looked at again
    assert {k: t.number for k, t in complete.items()} == {real({"x": 0.25}, ["x"]): 1, real({"x": 0.5}, ["x"]): 2,
                                                          real({"x": 0.75}, ["x"]): 3}
    assert taken[real({"x": 0.5}, ["x"])].number == 0  # the pruned trial came first
    assert taken[real(running.params, ["x"])].number == running.number
    assert real(running.params, ["x"]) not in proposals.completed_keys(study, ["x"], taken=True, but=running.number,
                                                                        keys_of=cache)
    fresh = proposals.completed_keys(study, ["x"], taken=True)  # no cache: the same answer
    assert {k: t.number for k, t in fresh.items()} == {k: t.number for k, t in taken.items()}


def test_the_cached_keys_equal_a_full_scan_as_trials_start_and_end_in_any_order() -> None:
    # Trials end out of order (the first unfinished one holds the scan back), repeat configs,
    # get pruned or fail, and some are warm-start copies: the cache answers as a full scan would.
    import random

    import optuna
    from optuna.distributions import FloatDistribution

    import tunelab.proposals as proposals

    rng = random.Random(0)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    dist = {"x": FloatDistribution(0, 1)}
    cache, live, checked = proposals.FinishedKeys(), [], 0
    for _ in range(120):
        if live and rng.random() < 0.5:
            trial = live.pop(rng.randrange(len(live)))
            state = rng.choice([optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                optuna.trial.TrialState.FAIL])
            study.tell(trial, 1.0 if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        else:
            trial = study.ask(dist)  # x is drawn; repeats come from the few values below
            study.enqueue_trial({"x": 0.5})
            live.append(trial)
            if rng.random() < 0.2:
                trial.set_user_attr("warm_start", {"study": "earlier"})
        trials = study.get_trials(deepcopy=False)
        but = rng.choice([None, *[t.number for t in live]])
        for taken in (False, True):
            got = proposals.completed_keys(study, ["x"], taken=taken, but=but, keys_of=cache)
            want = proposals._first_by_key(trials, ("x",), taken, but)
            assert {k: t.number for k, t in got.items()} == {k: t.number for k, t in want.items()}
            checked += len(want)
    assert checked > 100  # the comparison saw repeated configs, not only empty tables


@pytest.mark.parametrize("name", ["tpe", "random"])
def test_an_ended_trials_sampler_is_reused_for_the_next_with_the_same_proposals(name: str,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Rebuilding the sampler per trial cost a cold TPE cache a trial; reusing an ended trial's
    # sampler, reseeded, must propose exactly what a fresh build would, trials overlapping or not.
    import optuna

    import tunelab._optuna as adapter

    def run(reuse: bool) -> tuple[list[dict[str, object]], int]:
        sampler = make_sampler(name, space=SPACE, seed=3, workers=2, multi_objective=False)
        built = [0]
        real_build = sampler._build
        sampler._build = lambda seed: built.__setitem__(0, built[0] + 1) or real_build(seed)
        if not reuse:
            monkeypatch.setattr(adapter, "reseed_sampler", lambda s, seed: False)
        study = optuna.create_study(sampler=sampler)
        dists = SPACE.distributions(dict.fromkeys(SPACE.searched))
        params, open_trials = [], []
        for i in range(16):  # two trials open at once, past TPE's 10 start-up trials
            open_trials.append(study.ask(dists))
            params.append(dict(open_trials[-1].params))
            if len(open_trials) == 2 or i == 15:
                done = open_trials.pop(0)
                study.tell(done, float(done.params["x"]) * done.params["k"])
        monkeypatch.undo()
        return params, built[0]

    fresh, fresh_builds = run(reuse=False)
    reused, reused_builds = run(reuse=True)
    assert reused == fresh
    assert fresh_builds >= 16 and reused_builds <= 3  # one per trial open at once (plus a redraw's)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.marker, "w"))  # unpickling creates the marker file


def test_tune_with_cmaes_runs_no_code_planted_in_storage(tmp_path, monkeypatch) -> None:
    import pickle

    import optuna
    from optuna.distributions import FloatDistribution

    import tunelab

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code_ran"
    journal = str(tmp_path / "study.journal")

    def loss(config, reporter):
        return {"loss": (config["x"] - 0.3) ** 2}

    kwargs = dict(metrics=[{"name": "loss", "goal": "minimize"}], sampler="cmaes", seed=0, backend="inprocess",
                  storage=journal, study_name="cma")
    tunelab.tune(loss, {"x": {"float": [0, 1]}}, trials=3, **kwargs)
    # Anyone with write access to the storage adds a trial carrying a pickled "optimizer".
    study = optuna.load_study(study_name="cma", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(journal)))
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5}, distributions={"x": FloatDistribution(0.0, 1.0)}, value=0.04,
        system_attrs={"cma:optimizer:0": pickle.dumps(_Payload(str(marker))).hex(), "cma:generation": 0}))
    with pytest.warns(UserWarning, match="pickled sampler state"):
        view = tunelab.tune(loss, {"x": {"float": [0, 1]}}, trials=12, **kwargs)
    assert not marker.exists()
    assert len([t for t in view.trials() if t.state.value == "complete"]) == 12
