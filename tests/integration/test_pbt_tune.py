"""PBT through tune() on the in-process executor with one worker, so trials run one after
another and the decisions do not depend on thread timing: no member overlaps another, so none
is stopped and none clones a member that has finished. Clones through the tuner are covered on
the simulated executor (tests/unit/test_tuner_pbt_resume.py) and with processes
(test_pbt_kill.py, test_ray_pbt.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tunelab


def objective(config: dict, reporter) -> dict:
    step, total = 0, 0.0
    source = reporter.from_checkpoint
    if source is not None and (Path(source) / "state.json").is_file():
        state = json.loads((Path(source) / "state.json").read_text())
        step, total = state["step"], state["total"]
    while step < 6:
        step += 1
        total += config["x"]
        (reporter.checkpoint_dir / "state.json").write_text(json.dumps({"step": step, "total": total}))
        reporter.report(step, score=total)
    return {"score": total}


def test_members_one_after_another_train_to_the_end_and_clone_no_finished_member(tmp_path: Path) -> None:
    # A found bug: with one worker every member ran alone, so a worse member was stopped at its
    # first perturbation and cloned a member that had already finished: the clone restored its
    # final checkpoint at step 6 and trained nothing (6 of 10 trials, each complete with no
    # report). Now a member is stopped only for a donor with training left; here there is none.
    with pytest.warns(tunelab.TunelabWarning, match=r"population is 4 but 1 trial\(s\) run at once.*only explores"
                      r".*Use workers=4\."):
        study = tunelab.tune(
            objective, {"x": {"float": [0.0, 1.0]}}, metrics=[{"name": "score", "goal": "maximize"}],
            scheduler={"type": "pbt", "population": 4, "perturbation_interval": 1, "quantile": 0.5, "seed": 0},
            sampler="random", seed=0, trials=10, backend="inprocess", workers=1, storage="memory",
            trial_dir=str(tmp_path / "runs"), progress=False)
    trials = study.trials()
    assert [t.parent for t in trials] == [None] * 4  # the population, and no clone of a finished member
    for t in trials:
        assert t.state.value == "complete" and [r.step for r in t.history] == [1, 2, 3, 4, 5, 6], (t.number, t.state)
        assert t.values == (pytest.approx(6 * t.config["x"]),)
