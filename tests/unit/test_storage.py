"""Storage URLs and opening storages: no shared state between opens, unsafe storages refused."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tunelab.errors import ConfigError
from tunelab.storage import open_storage, resolve_storage_url


def test_each_memory_storage_belongs_to_one_open() -> None:
    first = open_storage("memory")
    optuna.create_study(storage=first, study_name="s")
    second = open_storage("memory")
    assert second is not first
    assert optuna.get_all_study_summaries(second, include_best_trial=False) == []


def test_tune_with_memory_storage_starts_afresh_on_every_call() -> None:
    from tunelab.api import tune

    calls: list[float] = []

    def objective(config: dict, reporter: object) -> dict:
        calls.append(config["x"])
        return {"loss": config["x"] ** 2}

    kwargs = dict(metrics=[{"name": "loss", "goal": "minimize"}], trials=3, backend="inprocess",
                  storage="memory", study_name="fresh", seed=0)
    tune(objective, {"x": {"float": [-5, 5]}}, **kwargs)
    again = tune(objective, {"x": {"float": [-5, 5]}}, **kwargs)
    assert len(calls) == 6  # the second call ran its own 3 trials: the first call's study went with it
    assert len(again.trials()) == 3


def test_a_journal_opened_twice_in_one_process_reads_what_the_other_wrote(tmp_path: Path) -> None:
    url = resolve_storage_url(str(tmp_path / "j.journal"))
    first = open_storage(url)
    study = optuna.create_study(storage=first, study_name="s")
    study.enqueue_trial({"x": 1.0})
    second = open_storage(url)
    assert [s.study_name for s in optuna.get_all_study_summaries(second, include_best_trial=False)] == ["s"]
    assert len(optuna.load_study(study_name="s", storage=second).trials) == 1


@pytest.mark.parametrize("url", ["redis://localhost:6379", "redis://user:pw@host:6379/0", "rediss://host:6380"])
def test_redis_storage_is_refused_before_anything_is_opened(url: str) -> None:
    # Optuna's Redis journal keeps snapshots as pickles: reading one would run whatever it holds.
    with pytest.raises(ConfigError) as info:
        resolve_storage_url(url)
    assert info.value.field == "storage"
    assert "pickle" in info.value.problem
    assert "postgresql://" in (info.value.fix or "") and "journal" in (info.value.fix or "")
    assert "pw" not in str(info.value)
    with pytest.raises(ConfigError):
        open_storage(url)
