"""A small stored PBT study, written as the tuner writes one: three roots, two exploits.

Trial 0 (lr 3e-05, bs 16) trains steps 1-2; trial 1 is worse and is stopped at step 2; trial 3
clones trial 0 at step 2 (lr * 1.2); trial 4 clones trial 3 at step 4 (bs resampled) and wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.study import REPORT_PREFIX, STUDY_ATTR


def write_pbt_study(path: Path, *, odd_attrs: bool = False) -> str:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="pbt", storage=url, direction="maximize")
    space = {"learning_rate": {"float": [1e-05, 1e-03], "log": True}, "batch_size": {"choice": [16, 32]}}
    study.set_user_attr(STUDY_ATTR, {"metrics": [{"name": "accuracy", "goal": "maximize"}], "space": space})
    dists = {"learning_rate": FloatDistribution(1e-5, 1e-3, log=True), "batch_size": CategoricalDistribution([16, 32])}

    def add(params: dict[str, Any], curve: dict[float, float], state: Any, run: dict[str, Any]) -> None:
        reports = {f"{REPORT_PREFIX}{i}": {"s": s, "m": {"accuracy": v}, "t": 0.0}
                   for i, (s, v) in enumerate(curve.items())}
        value = max(curve.values()) if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, value=value, params=params, distributions=dists,
                                     user_attrs={"run": {"slot": 0, **run}}, system_attrs=reports))

    add({"learning_rate": 3e-05, "batch_size": 16}, {1.0: 0.70, 2.0: 0.75}, TrialState.PRUNED, {})
    add({"learning_rate": 1e-04, "batch_size": 32}, {1.0: 0.60, 2.0: 0.62}, TrialState.PRUNED, {})
    add({"learning_rate": 5e-04, "batch_size": 32}, {1.0: 0.65, 2.0: 0.70, 3.0: 0.71, 4.0: 0.72}, TrialState.PRUNED, {})
    first = {"parent": 0, "start_step": 2.0, "mutations": {"learning_rate": "3e-05 --- (* 1.2) --> 3.6e-05"}}
    if odd_attrs:  # another version's attributes: read defensively
        first = {"parent": 0, "start_step": "two", "mutations": ["not", "a", "mapping"]}
    add({"learning_rate": 3.6e-05, "batch_size": 16}, {3.0: 0.80, 4.0: 0.82}, TrialState.PRUNED, first)
    add({"learning_rate": 3.6e-05, "batch_size": 32}, {5.0: 0.85, 6.0: 0.88}, TrialState.COMPLETE,
        {"parent": 3, "start_step": 4.0, "mutations": {"batch_size": "16 --- (resample) --> 32"}})
    return url
