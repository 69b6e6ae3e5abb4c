"""Every failure has a kind, in real trial processes; nothing stops the study."""

from __future__ import annotations

from pathlib import Path

import tunelab
from tunelab.study import load_study

KINDS = ["ok", "exit", "hang", "raise", "nan", "memory", "infeasible", "oom"]


def test_failure_kinds_in_local_processes(study_dir: Path, monkeypatch) -> None:
    monkeypatch.chdir(study_dir)
    monkeypatch.syspath_prepend(str(study_dir))
    import tl_test_objectives

    study = tunelab.tune(
        tl_test_objectives.fails_by_kind, {"kind": {"choice": KINDS}},
        metrics=[{"name": "score", "goal": "maximize"}], sampler="grid", workers=2, backend="local",
        timeout=3, storage=str(study_dir / "s.journal"), study_name="kinds",
    )
    by_kind = {t.config["kind"]: t for t in study.trials()}
    assert set(by_kind) == set(KINDS)
    assert by_kind["ok"].state.value == "complete"
    expected = {"exit": "crash", "hang": "timeout", "raise": "crash", "nan": "nan", "memory": "oom",
                "infeasible": "infeasible", "oom": "oom"}
    for kind, failure in expected.items():
        t = by_kind[kind]
        assert (t.state.value, t.failure_kind) == ("failed", failure), (kind, t)
    assert "exited with code 3" in by_kind["exit"].message
    assert "ValueError: boom" in by_kind["raise"].message
    assert "boom" in (Path(by_kind["raise"].trial_dir) / "trial.log").read_text()  # traceback kept in the log
    assert study.best_config == {"kind": "ok"}
    # Learnable failures are told to Optuna as pruned with a violated constraint.
    reread = load_study(str(study_dir / "s.journal"), "kinds")
    raw = {t.params["kind"]: t for t in reread.optuna_study.get_trials()}
    assert raw["oom"].state.name == "PRUNED" and raw["oom"].constraints
    assert raw["exit"].state.name == "FAIL"
