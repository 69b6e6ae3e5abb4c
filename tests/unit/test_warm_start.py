"""Warm start (issue 13.4): earlier studies' trials start the sampler, are not this study's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunelab import tune
from tunelab.errors import ConfigError
from tunelab.config import parse_search
from tunelab.metrics import MetricSet
from tunelab.warm_start import Source

LOSS = [{"name": "loss", "goal": "minimize"}]
SPACE = {"x": {"float": [-5.0, 5.0]}, "y": {"float": [-5.0, 5.0]}}


def bowl(config: dict[str, Any], reporter: Any) -> dict[str, float]:
    """A smooth valley whose floor is off-center (1.3, -2.1)."""
    return {"loss": (config["x"] - 1.3) ** 2 + 2 * (config["y"] + 2.1) ** 2 + 0.1 * config.get("z", 0.0)}


def study(tmp_path: Path, name: str, trials: int, seed: int, space: dict[str, Any] = SPACE, **kw: Any) -> Any:
    return tune(bowl, space, metrics=kw.pop("metrics", LOSS), sampler="tpe", seed=seed, trials=trials,
                backend="inprocess", storage=str(tmp_path / "studies.journal"), study_name=name,
                trial_dir=str(tmp_path / "runs"), progress=False, **kw)


def trials_to_reach(view: Any, target: float) -> float:
    """How many of the study's own trials it took to reach ``target`` (inf: never)."""
    for i, t in enumerate(sorted(view.trials(), key=lambda t: t.number), start=1):
        if t.values is not None and t.values[0] <= target:
            return i
    return float("inf")


def test_a_warm_started_study_reaches_the_earlier_best_in_fewer_trials(tmp_path: Path) -> None:
    earlier = study(tmp_path, "earlier", 20, seed=0)
    target = earlier.best_trial.values[0]
    earlier_needed = trials_to_reach(earlier, target)
    assert earlier_needed == 19  # fixed seeds: the earlier study found its best at its 19th trial
    for seed in (10, 11, 13):  # several sampler seeds: not one lucky draw
        cold = study(tmp_path, f"cold-{seed}", 20, seed=seed)
        with pytest.warns(UserWarning, match=r"warm start: 20 trial\(s\) of study earlier given to the sampler"):
            warm = study(tmp_path, f"warm-{seed}", 20, seed=seed, warm_start=["earlier"])
        warm_needed = trials_to_reach(warm, target)
        assert warm_needed <= 3 < trials_to_reach(cold, target), (seed, warm_needed)
        # The copies are not this study's trials, its best, or its budget.
        assert len(warm.trials()) == 20 and len(warm.warm_started()) == 20
        assert warm.best_trial is not None and warm.best_trial.number >= 20  # numbers 0-19 are the copies
        assert {t.number for t in warm.warm_started()} == set(range(20))


def test_parameters_outside_the_space_are_dropped_with_one_note(tmp_path: Path) -> None:
    study(tmp_path, "wide", 6, seed=0, space={**SPACE, "z": {"float": [0.0, 1.0]}, "x": {"float": [-10.0, 10.0]}})
    with pytest.warns(UserWarning) as caught:
        view = study(tmp_path, "narrow", 2, seed=0, warm_start=["wide"])
    notes = [str(w.message) for w in caught if "warm start" in str(w.message)]
    assert len(notes) == 1
    assert "`z` (not in this space)" in notes[0] and "`x` (a value outside this space" in notes[0]
    copied = view.warm_started()
    assert all(set(t.config) == {"x", "y"} and -5 <= t.config["x"] <= 5 for t in copied)
    assert len(copied) + int(notes[0].split("trials dropped: ")[1].split(" ")[0]) == 6
    # Running again copies nothing more: the note is not repeated either.
    import warnings

    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        study(tmp_path, "narrow", 3, seed=0, warm_start=["wide"])
    assert not [w for w in again if "warm start" in str(w.message)]


def test_a_missing_source_or_another_direction_is_refused_before_any_work(tmp_path: Path) -> None:
    study(tmp_path, "earlier", 2, seed=0)
    with pytest.raises(ConfigError, match="is not a study in") as err:
        study(tmp_path, "new", 2, seed=0, warm_start=["nope"])
    assert err.value.field == "warm_start[0].study"
    with pytest.raises(ConfigError, match="optimizes"):
        study(tmp_path, "up", 2, seed=0, warm_start=["earlier"], metrics=[{"name": "loss", "goal": "maximize"}])
    import optuna

    from tunelab.storage import open_storage

    assert optuna.get_all_study_names(open_storage(str(tmp_path / "studies.journal"))) == ["earlier"]  # nothing made


@pytest.mark.parametrize("raw, field", [
    (3, "search.warm_start"), ([{"study": ""}], "search.warm_start[0].study"),
    ([{"study": "a", "url": "x"}], "search.warm_start[0].url"), ([{"storage": 3, "study": "a"}],
                                                                  "search.warm_start[0].storage"),
])
def test_bad_warm_start_entries_are_config_errors(raw: Any, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_search({"warm_start": raw}, MetricSet.parse(LOSS))
    assert err.value.field == field


def test_warm_start_sources_are_parsed() -> None:
    parsed = parse_search({"warm_start": ["a", {"storage": "old.db", "study": "b"}]}, MetricSet.parse(LOSS))
    assert parsed.warm_start == (Source("a"), Source("b", "old.db")) and parsed.options == {}


def test_a_config_an_earlier_study_tried_runs_again_here(tmp_path: Path) -> None:
    # Its earlier result is not this study's: the config is trained, not reused (``duplicate_of``).
    space = {"x": {"choice": [1.0, 2.0, 3.0]}, "y": -2.1}
    study(tmp_path, "earlier", 3, seed=0, space=space)
    with pytest.warns(UserWarning, match="warm start"):
        warm = study(tmp_path, "again", 3, seed=0, space=space, warm_start=["earlier"])
    own = warm.optuna_study.get_trials()[3:]
    assert len(own) == 3 and not [t for t in own if "duplicate_of" in t.user_attrs]
    assert all(t.datetime_start is not None and t.user_attrs.get("run") for t in own)
