from __future__ import annotations

import pytest

from tunelab.errors import ConfigError
from tunelab.executors.resources import GpuPool, cpus_per_trial


def test_fractional_gpus_pack_two_trials_per_gpu() -> None:
    pool = GpuPool([0, 1], 0.5)
    assert pool.slots() == 4
    taken = [pool.take() for _ in range(4)]
    assert sorted(taken) == [(0,), (0,), (1,), (1,)]
    assert pool.take() is None
    pool.give_back((1,))
    assert pool.take() == (1,)


def test_whole_gpus() -> None:
    pool = GpuPool([0, 1, 2, 3], 2)
    assert pool.slots() == 2
    assert pool.take() == (0, 1) and pool.take() == (2, 3) and pool.take() is None
    pool.give_back((0, 1))
    assert pool.take() == (0, 1)


def test_cpu_trials_need_no_gpu() -> None:
    pool = GpuPool([], 0)
    assert pool.take() == () and pool.slots() > 1000


@pytest.mark.parametrize(("gpus", "per_trial", "words"), [([], 1, "0 GPU(s) are visible"), ([0], 1.5, "whole"),
                                                          ([0], -1, ">= 0")])
def test_bad_gpu_requests(gpus: list, per_trial: float, words: str) -> None:
    with pytest.raises(ConfigError, match="execution.gpus_per_trial") as err:
        GpuPool(gpus, per_trial)
    assert words in str(err.value)


def test_cpu_share() -> None:
    assert cpus_per_trial(1, 3) == 3
    assert cpus_per_trial(10_000) == 1
