"""A clone in a real trial process: it restores its own copy of the parent's checkpoint and continues.

The driver side is played by the test, as the tuner does it: when the parent reports, its
checkpoint is copied into the clone's trial directory (``copy_parent_checkpoint``) and the clone
is launched on the local executor with that restore point and the parent's step. The parent is
answered only after the copy, so the copy holds the state at that report, deterministically.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])  # nlp_fixtures lives in tests/
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

pytest.importorskip("torch")
pytest.importorskip("transformers")

import nlp_fixtures  # noqa: E402
from tunelab.executors.base import TrialSpec, copy_parent_checkpoint  # noqa: E402
from tunelab.executors.local import LocalExecutor  # noqa: E402
from tunelab.trial import Ended, Result, State  # noqa: E402


def _drive(executor: LocalExecutor, on_result: Any, deadline_s: float = 300) -> dict[int, Any]:
    """Poll until every launched trial ended; ``on_result(event)`` runs before each reply."""
    ended: dict[int, Ended] = {}
    running = {0}
    start = time.monotonic()
    while running - set(ended):
        assert time.monotonic() - start < deadline_s, "trials did not end"
        for event in executor.poll(1.0):
            if isinstance(event, Result):
                launched = on_result(event)
                if launched is not None:
                    running.add(launched)
                executor.reply(event.trial_id, False)
            else:
                ended[event.trial_id] = event
    return ended


def test_a_clone_continues_its_parent_exactly_from_its_own_copy(tmp_path: Path) -> None:
    model = nlp_fixtures.build_tiny_model(tmp_path / "model")
    data = nlp_fixtures.make_dataset(tmp_path / "data", n_train=160)
    objective = nlp_fixtures.tiny_objective(model, data, tmp_path / "cache",
                                            defaults={"num_train_epochs": 3, "warmup_ratio": 0.3})
    objective.prepare(tmp_path)
    config = {"learning_rate": 3e-3, "seed": 7}
    root = tmp_path / "trials"
    executor = LocalExecutor(objective, workers=2, cpus_per_trial=1)
    reports: dict[int, list[tuple[float, dict]]] = {0: [], 1: []}

    def on_result(event: Result) -> int | None:
        reports[event.trial_id].append((event.step, dict(event.metrics)))
        if event.trial_id == 0 and event.step == 1.0:
            restore, step = copy_parent_checkpoint(root / "trial_0000" / "checkpoint", root / "trial_0001")
            assert restore == root / "trial_0001" / "restore" and step == 1.0
            executor.launch(TrialSpec(1, dict(config), root / "trial_0001", restore, None, 1, step))
            return 1
        return None

    try:
        executor.launch(TrialSpec(0, dict(config), root / "trial_0000", None, None, 0))
        ended = _drive(executor, on_result)
    finally:
        executor.shutdown()
    log = (root / "trial_0001" / "trial.log").read_text()
    assert ended[0].state == State.COMPLETE and ended[1].state == State.COMPLETE, (ended, log)
    assert [s for s, _ in reports[1]] == [2.0, 3.0]  # the clone's reports continue at the parent's step
    strip = lambda rs: [(s, {k: v for k, v in m.items() if "second" not in k}) for s, m in rs]  # noqa: E731
    assert strip(reports[1]) == strip(reports[0][1:])  # same config: it continues exactly as the parent did
    # Its own copy still holds the step it started from, though the parent saved twice since.
    copied = json.loads((root / "trial_0001" / "restore" / "latest" / "trainer_state.json").read_text())
    parent = json.loads((root / "trial_0000" / "checkpoint" / "latest" / "trainer_state.json").read_text())
    assert copied["step"] == 1.0 and parent["step"] == 3.0
    assert not (root / "trial_0001" / "restore" / "best").exists()  # export's best/ is not copied
