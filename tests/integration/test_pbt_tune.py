"""PBT through tune() on the in-process executor: members are stopped, clones start from a
better member's checkpoint, and every trial stays inside the space.

One worker, so trials run one after another and the decisions do not depend on thread timing.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def test_pbt_clones_better_members(tmp_path: Path) -> None:
    study = tunelab.tune(
        objective, {"x": {"float": [0.0, 1.0]}}, metrics=[{"name": "score", "goal": "maximize"}],
        scheduler={"type": "pbt", "population": 4, "perturbation_interval": 1, "quantile": 0.5, "seed": 0},
        sampler="random", seed=0, trials=10, backend="inprocess", workers=1, storage="memory",
        trial_dir=str(tmp_path / "runs"), progress=False)
    trials = {t.number: t for t in study.trials()}
    clones = [t for t in trials.values() if t.parent is not None]
    assert clones, "no member was exploited"
    assert any(t.state.value == "pruned" for t in trials.values())
    for clone in clones:
        assert 0.0 <= clone.config["x"] <= 1.0
        parent = trials[clone.parent]
        assert parent.history, "cloned a member that never reported"
