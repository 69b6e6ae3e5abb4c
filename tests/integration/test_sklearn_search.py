"""TunelabSearchCV on scikit-learn's digits, on the backends that start processes: local (a fresh
interpreter per trial, two at once) and a real Ray cluster started on 127.0.0.1 as in test_ray.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sklearn")

import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402

from tunelab.sklearn import TunelabSearchCV  # noqa: E402

#: From hopeless (C=1e-6: ~0.1 accuracy) to good (~0.95): bad configs show it after one fold.
SPACE = {"logisticregression__C": {"float": [1e-6, 10.0], "log": True}}


@pytest.fixture(scope="module")
def digits() -> tuple[Any, Any, Any, Any]:
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def model() -> Any:
    return make_pipeline(MinMaxScaler(), LogisticRegression(max_iter=300))


def check_search(est: TunelabSearchCV, X_test: Any, y_test: Any, n_trials: int) -> None:
    r = est.cv_results_
    assert len(r["params"]) == n_trials and est.n_splits_ == 3
    assert set(r["state"]) <= {"complete", "pruned"}, [t.message for t in est.study_.trials()]
    complete = r["state"] == "complete"
    assert (r["n_splits_evaluated"][complete] == 3).all() and (r["n_splits_evaluated"][~complete] < 3).all()
    assert est.best_score_ == np.nanmax(r["mean_test_score"]) == r["mean_test_score"][est.best_index_]
    assert est.best_score_ > 0.9
    assert est.score(X_test, y_test) > 0.9  # the refit pipeline predicts held-out digits
    assert est.predict_proba(X_test[:3]).shape == (3, 10)


def test_digits_on_local_workers(digits: Any, tmp_path: Path) -> None:
    X_train, X_test, y_train, y_test = digits
    est = TunelabSearchCV(model(), SPACE, n_trials=6, cv=3, backend="local", workers=2, sampler="random",
                          random_state=1, scheduler={"type": "median", "min_trials": 1},
                          trial_dir=str(tmp_path / "runs"))
    est.fit(X_train, y_train)
    check_search(est, X_test, y_test, 6)
    # Each trial ran in its own process, with its own log (kept, as trial_dir was given).
    logs = sorted((tmp_path / "runs" / "tunelab-search-cv").glob("trial_*/trial.log"))
    assert len(logs) == 6
    # Hopeless configs (C < 1e-4: about 0.49 on the first fold, against 0.77 and more for the
    # others drawn with this seed) that start once two trials have finished, i.e. from trial 3 on
    # with two workers, are judged against those two and stopped after their first fold.
    r = est.cv_results_
    late_hopeless = [i for i, p in enumerate(r["params"])
                     if p["logisticregression__C"] < 1e-4 and r["trial_number"][i] >= 3]
    assert late_hopeless, r["params"]
    assert all(r["state"][i] == "pruned" and r["n_splits_evaluated"][i] == 1 for i in late_hopeless)


# TunelabSearchCV on Ray is tested in test_ray.py, on that module's cluster: a second Ray cluster
# joined from the same pytest process cannot be connected to (Ray keeps the first one's node IP).
