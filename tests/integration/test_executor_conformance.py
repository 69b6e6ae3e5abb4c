"""The executor conformance suite on the local executor (Ray's and Spark's run in their own files,
next to their clusters)."""

from __future__ import annotations

from pathlib import Path

from tunelab.executors.local import LocalExecutor
from tunelab.testing.executor_conformance import check_executor_conformance


def test_local_executor_conforms(tmp_path: Path) -> None:
    check_executor_conformance(lambda objective, workers: LocalExecutor(objective, workers, cpus_per_trial=1),
                               tmp_path)
