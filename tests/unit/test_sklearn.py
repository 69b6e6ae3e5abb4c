"""TunelabSearchCV: scikit-learn's estimator conventions, cv_results_, early stopping across folds.

Small runs on the ``inprocess`` backend (trials as threads, one at a time: deterministic); the
local and Ray backends run in tests/integration/test_sklearn_search.py.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sklearn")

import numpy as np  # noqa: E402
from sklearn.base import BaseEstimator, ClassifierMixin, clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.linear_model import Ridge, RidgeClassifier  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from tunelab.errors import ConfigError  # noqa: E402
from tunelab.schedulers import MedianStoppingScheduler  # noqa: E402
from tunelab.sklearn import SearchConfigError, TunelabSearchCV  # noqa: E402
from tunelab.space import Float  # noqa: E402

ALPHA = {"alpha": {"float": [1e-2, 1e8], "log": True}}  # from good (~0.9) to hopeless (~0.2) on digits


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def search(estimator: Any = None, space: Any = None, **kw: Any) -> TunelabSearchCV:
    params: dict[str, Any] = dict(n_trials=8, cv=4, backend="inprocess", sampler="random", random_state=0)
    params.update(kw)
    return TunelabSearchCV(estimator if estimator is not None else RidgeClassifier(),
                           space if space is not None else ALPHA, **params)


# ---- scikit-learn's own estimator checks ------------------------------------------------------


@parametrize_with_checks([
    TunelabSearchCV(RidgeClassifier(), {"alpha": {"float": [0.1, 10], "log": True}}, n_trials=2, cv=2,
                    backend="inprocess", error_score="raise", random_state=0),
    TunelabSearchCV(Ridge(), {"alpha": {"float": [0.1, 10], "log": True}}, n_trials=2, cv=2,
                    backend="inprocess", error_score="raise", random_state=0),
])
def test_sklearn_estimator_checks(estimator: Any, check: Any) -> None:
    # error_score="raise", as scikit-learn checks its own GridSearchCV: the checks want fit() to
    # raise what the estimator raises on bad input (NaN, objects). No check is expected to fail.
    check(estimator)


def test_init_only_stores_and_clone_keeps_every_parameter() -> None:
    space = {"alpha": Float(0.1, 10.0, log=True)}  # tunelab distributions are a space too
    est = TunelabSearchCV(Ridge(), space, n_trials=0, scoring="no-such-scorer", workers=-3, backend="nowhere")
    assert est.get_params()["n_trials"] == 0 and est.space is space  # nothing validated before fit
    copy = clone(est)
    assert copy.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert copy.space == space and copy.space is not space
    copy.set_params(estimator__alpha=3.0, n_trials=5)
    assert copy.estimator.alpha == 3.0 and copy.n_trials == 5 and est.estimator.alpha == 1.0


# ---- bad input: a ConfigError that is also a ValueError, before any trial ----------------------


@pytest.mark.parametrize("params,field", [
    (dict(estimator="ridge"), "estimator"),
    (dict(space=[("alpha", 1.0)]), "space"),
    (dict(space={"alpha": {"float": [5, 1]}}), "space.alpha"),
    (dict(space={"alhpa": {"float": [1, 5]}}), "space.alhpa"),
    (dict(n_trials=0), "n_trials"),
    (dict(n_trials=2.5), "n_trials"),
    (dict(workers=0), "workers"),
    (dict(scoring="accuracyy"), "scoring"),
    (dict(scoring=["accuracy", "f1_macro"]), "refit"),
    (dict(scoring={"acc": "accuracy"}, refit="f1"), "refit"),
    (dict(refit="yes"), "refit"),
    (dict(error_score="ignore"), "error_score"),
    (dict(random_state="seed"), "random_state"),
    (dict(scheduler="pbt"), "scheduler"),
    (dict(scheduler="mediam"), "scheduler.type"),
    (dict(scheduler=MedianStoppingScheduler("accuracy")), "scheduler"),
    (dict(backend="nowhere"), "backend"),
    (dict(sampler="tpx"), "sampler"),
    (dict(study_name="kept"), "storage"),
])
def test_bad_input_names_the_parameter_before_any_trial(params: dict[str, Any], field: str, digits: Any,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    est = search(trial_dir=str(tmp_path / "runs"), **params)
    with pytest.raises(SearchConfigError) as info:
        est.fit(*digits)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ConfigError)
    assert info.value.field == field, str(info.value)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("trial_*"))  # no trial started
    assert not hasattr(est, "cv_results_")


def test_storage_without_a_study_name_is_refused(digits: Any, tmp_path: Path) -> None:
    with pytest.raises(SearchConfigError, match="study_name"):
        search(storage=str(tmp_path / "s.journal")).fit(*digits)
    assert not (tmp_path / "s.journal").exists()


# ---- results -------------------------------------------------------------------------------------


def test_cv_results_follow_sklearn_and_best_score_matches(digits: Any) -> None:
    X, y = digits
    est = search(return_train_score=True).fit(X, y)
    r = est.cv_results_
    n = 8
    for key in ("params", "param_alpha", "mean_test_score", "std_test_score", "rank_test_score", "mean_fit_time",
                "std_fit_time", "mean_score_time", "std_score_time", "mean_train_score", "split3_train_score",
                "trial_number", "state", "n_splits_evaluated"):
        assert len(r[key]) == n, key
    folds = np.column_stack([r[f"split{k}_test_score"] for k in range(4)])
    assert "split4_test_score" not in r and est.n_splits_ == 4
    np.testing.assert_allclose(r["mean_test_score"], folds.mean(axis=1))
    np.testing.assert_allclose(r["std_test_score"], folds.std(axis=1))
    assert list(r["param_alpha"]) == [p["alpha"] for p in r["params"]]
    assert est.best_score_ == r["mean_test_score"][est.best_index_] == np.max(r["mean_test_score"])
    assert r["rank_test_score"][est.best_index_] == 1 and sorted(r["rank_test_score"])[0] == 1
    assert est.best_params_ == r["params"][est.best_index_]
    assert est.study_.best_trial.number == r["trial_number"][est.best_index_]
    assert est.study_.best_trial.values[0] == est.best_score_  # the study's value is the mean of the folds
    # The refit estimator: fitted on all of X with the best params, and it predicts.
    assert est.best_estimator_.alpha == est.best_params_["alpha"]
    assert est.predict(X[:7]).shape == (7,) and est.decision_function(X[:7]).shape == (7, 10)
    assert est.score(X, y) == pytest.approx(float(np.mean(est.best_estimator_.predict(X) == y)))
    assert list(est.classes_) == list(range(10)) and est.n_features_in_ == 64
    assert est.refit_time_ >= 0 and not hasattr(est, "predict_proba")  # RidgeClassifier has none
    restored = pickle.loads(pickle.dumps(est))  # the study's live handle stays behind
    assert not hasattr(restored, "study_") and (restored.predict(X) == est.predict(X)).all()


def test_same_random_state_same_trials_and_another_differs(digits: Any) -> None:
    def params(seed: int) -> list[float]:
        return [p["alpha"] for p in search(sampler=None, n_trials=4, cv=2, random_state=seed).fit(*digits)
                .cv_results_["params"]]

    assert params(3) == params(3)
    assert params(3) != params(4)
    rs = [p["alpha"] for p in search(n_trials=3, cv=2, random_state=np.random.RandomState(5))
          .fit(*digits).cv_results_["params"]]
    assert rs == [p["alpha"] for p in search(n_trials=3, cv=2, random_state=np.random.RandomState(5))
                  .fit(*digits).cv_results_["params"]]


def test_median_stopping_prunes_bad_configs_after_a_few_folds(digits: Any) -> None:
    est = search(n_trials=10, scheduler={"type": "median", "min_trials": 2}).fit(*digits)
    r = est.cv_results_
    pruned = r["state"] == "pruned"
    assert pruned.sum() >= 2, r["state"]
    assert (r["n_splits_evaluated"][pruned] < 4).all() and (r["n_splits_evaluated"][~pruned] == 4).all()
    # Pruned trials are shown with the folds they ran and no cross-validation score.
    assert np.isnan(r["mean_test_score"][pruned]).all()
    assert (r["rank_test_score"][pruned] == (~pruned).sum() + 1).all()  # tied after every complete trial
    for i in np.flatnonzero(pruned):
        ran = r["n_splits_evaluated"][i]
        assert not np.isnan([r[f"split{k}_test_score"][i] for k in range(ran)]).any()
        assert np.isnan([r[f"split{k}_test_score"][i] for k in range(ran, 4)]).all()
    assert not np.isnan(r["mean_fit_time"][pruned]).any()
    # What was stopped was worse, fold for fold, than the best config.
    best = r["split0_test_score"][est.best_index_]
    assert (r["split0_test_score"][pruned] < best).all()
    assert sum(t.state.value == "pruned" for t in est.study_.trials()) == pruned.sum()


def test_a_scheduler_object_on_the_running_mean(digits: Any) -> None:
    scheduler = MedianStoppingScheduler("test_score", "maximize", min_trials=2)
    est = search(n_trials=10, scheduler=scheduler).fit(*digits)
    assert (est.cv_results_["state"] == "pruned").any()


def test_asha_takes_the_folds_as_its_resource(digits: Any) -> None:
    est = search(n_trials=9, scheduler="asha").fit(*digits)
    r = est.cv_results_
    assert (r["state"] == "pruned").any()
    assert set(r["n_splits_evaluated"][r["state"] == "pruned"]) <= {1, 3}  # ASHA's rungs: 1 and 3 folds of 4


def test_several_scorers_with_refit_naming_the_optimized_one(digits: Any) -> None:
    X, y = digits
    est = search(n_trials=4, scoring={"acc": "accuracy", "bal": "balanced_accuracy"}, refit="bal").fit(X, y)
    r = est.cv_results_
    assert est.multimetric_ and set(est.scorer_) == {"acc", "bal"}
    assert {"mean_test_acc", "rank_test_acc", "split0_test_bal", "rank_test_bal"} <= set(r)
    assert est.best_index_ == int(np.argmin(r["rank_test_bal"]))
    assert est.best_score_ == r["mean_test_bal"][est.best_index_]
    assert est.score(X, y) == pytest.approx(balanced_accuracy_score(y, est.predict(X)))


def test_refit_false_keeps_best_params_but_no_estimator(digits: Any) -> None:
    est = search(n_trials=3, cv=2, refit=False).fit(*digits)
    assert est.best_params_ == est.cv_results_["params"][est.best_index_]
    assert not hasattr(est, "best_estimator_") and not hasattr(est, "predict")
    with pytest.raises(AttributeError) as info:
        est.predict(digits[0])
    assert "refit=False" in str(info.value) + str(info.value.__cause__)


def test_pipeline_parameters_by_nested_name(digits: Any) -> None:
    est = search(estimator=make_pipeline(StandardScaler(), RidgeClassifier()), n_trials=3, cv=2,
                 space={"ridgeclassifier__alpha": {"float": [0.1, 100], "log": True},
                        "standardscaler__with_mean": {"choice": [True, False]}}).fit(*digits)
    assert set(est.best_params_) == {"ridgeclassifier__alpha", "standardscaler__with_mean"}
    assert est.best_estimator_.get_params()["ridgeclassifier__alpha"] == est.best_params_["ridgeclassifier__alpha"]


# ---- failing fits ------------------------------------------------------------------------------------


class Picky(ClassifierMixin, BaseEstimator):
    """A classifier that refuses ``mood="bad"`` (as an estimator refuses a parameter combination)."""

    def __init__(self, mood: str = "good", bias: float = 0.0) -> None:
        self.mood = mood
        self.bias = bias

    def fit(self, X: Any, y: Any) -> "Picky":
        if self.mood == "bad":
            raise TypeError("bad mood")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X: Any) -> Any:
        return np.full(len(X), self.classes_[0])


PICKY = {"mood": {"choice": ["good", "bad"]}, "bias": {"float": [0, 1]}}


def test_a_failing_fit_is_a_failed_trial_with_nan_scores(digits: Any) -> None:
    with pytest.warns(FitFailedWarning, match="infeasible: fold 0: TypeError: bad mood"):
        est = search(estimator=Picky(), space=PICKY, n_trials=6, cv=2).fit(*digits)
    r = est.cv_results_
    bad = np.array([p["mood"] == "bad" for p in r["params"]])
    assert bad.any() and (~bad).any()
    assert (r["state"][bad] == "failed").all() and np.isnan(r["split0_test_score"][bad]).all()
    assert est.best_params_["mood"] == "good"


def test_a_numeric_error_score_scores_the_fold_and_goes_on(digits: Any) -> None:
    with pytest.warns(FitFailedWarning, match=r"\d+ fit\(s\) failed and were scored error_score=-1.0"):
        est = search(estimator=Picky(), space=PICKY, n_trials=6, cv=2, error_score=-1.0).fit(*digits)
    r = est.cv_results_
    bad = np.array([p["mood"] == "bad" for p in r["params"]])
    assert (r["state"] == "complete").all() and (r["mean_test_score"][bad] == -1.0).all()


def test_error_score_raise_raises_what_the_estimator_raised(digits: Any) -> None:
    with pytest.raises(TypeError, match="bad mood"):
        search(estimator=Picky(), space={"mood": {"choice": ["bad"]}}, n_trials=2, cv=2,
               error_score="raise").fit(*digits)


def test_all_trials_failing_is_an_error(digits: Any) -> None:
    with pytest.raises(ValueError, match="All 2 trials failed"):
        search(estimator=Picky(), space={"mood": {"choice": ["bad"]}}, n_trials=2, cv=2).fit(*digits)


# ---- storage and output ---------------------------------------------------------------------------


def test_a_kept_study_is_a_tunelab_study(digits: Any, tmp_path: Path) -> None:
    from tunelab import load_study

    path = str(tmp_path / "search.journal")
    est = search(n_trials=3, cv=2, storage=path, study_name="digits-ridge").fit(*digits)
    view = load_study(path, "digits-ridge")
    assert [t.number for t in view.trials()] == list(est.cv_results_["trial_number"])
    assert view.best_trial.values[0] == est.best_score_


def test_quiet_unless_verbose(digits: Any, capsys: pytest.CaptureFixture[str]) -> None:
    search(n_trials=2, cv=2).fit(*digits)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    search(n_trials=2, cv=2, verbose=1).fit(*digits)
    assert "complete" in capsys.readouterr().out  # tunelab's start line and summary
