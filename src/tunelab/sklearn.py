"""scikit-learn: ``TunelabSearchCV``, a search estimator over a tunelab space, on any backend.

Each trial cross-validates one config fold by fold and reports, after fold k, the running mean
of its test scores as step k (as Optuna's ``OptunaSearchCV`` does), so a scheduler (``median``,
``asha``) can stop a poor config after a few folds. The search itself is ``tunelab.tune``: the
backend (``local``, ``ray``, ``spark``, ``inprocess``) is passed through unchanged.

The estimator, the data and the splits travel to the trial processes the way every function
objective does: the executor cloudpickles the objective once and sends it to processes it
started. What comes back through the study storage is numbers only: ``cv_results_`` is built
from each trial's reports (one per fold), never from anything unpickled.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import tempfile
import time
import warnings
from typing import Any, Mapping, Sequence

from tunelab.errors import ConfigError, TrialFailed, require, shown
from tunelab.messages import TunelabWarning

require("sklearn", "sklearn")

import numpy as np  # noqa: E402
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier  # noqa: E402
from sklearn.exceptions import FitFailedWarning  # noqa: E402
from sklearn.metrics import check_scoring, get_scorer  # noqa: E402
from sklearn.model_selection import check_cv  # noqa: E402
from sklearn.utils import _safe_indexing, get_tags, indexable  # noqa: E402
from sklearn.utils.metaestimators import available_if  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

__all__ = ["TunelabSearchCV", "SearchConfigError"]

#: What a failed fit is recorded as: the config is the only thing that differs between trials,
#: so an estimator refusing it says something about that region, and the sampler learns from it.
FIT_FAILED_KIND = "infeasible"
_SCHEDULERS_WITH_RESOURCE = ("asha", "hyperband")


class SearchConfigError(ConfigError, ValueError):
    """A bad parameter of ``TunelabSearchCV``: a tunelab ``ConfigError`` (field, problem, fix)
    that is also the ``ValueError`` scikit-learn code expects from a bad parameter."""


class _CrossValidation:
    """The trial: fit and score one config on every split, reporting the running mean after each.

    Reports at step k (k folds done): ``test_<m>`` (running mean of the folds so far, for every
    scorer m), ``fold_test_<m>`` and ``fold_train_<m>`` (this fold's scores), ``fit_time``,
    ``score_time`` and ``fold_failed`` (1 when the fold failed and was scored ``error_score``).
    """

    def __init__(self, estimator: Any, X: Any, y: Any, splits: Sequence[tuple[Any, Any]], scorers: Mapping[str, Any],
                 fit_params: Mapping[str, Any], error_score: Any, return_train_score: bool, pairwise: bool) -> None:
        self.estimator = estimator
        self.X = X
        self.y = y
        self.splits = list(splits)
        self.scorers = dict(scorers)
        self.fit_params = dict(fit_params)
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.pairwise = pairwise

    def __call__(self, config: Mapping[str, Any], reporter: Any) -> dict[str, float]:
        test: dict[str, list[float]] = {m: [] for m in self.scorers}
        for k, (train, test_idx) in enumerate(self.splits):
            fold = self._fold(config, k, train, test_idx)
            for m in self.scorers:
                test[m].append(fold[f"fold_test_{m}"])
            # np.mean of the folds so far: the same arithmetic cv_results_ uses, so they agree exactly.
            running = {f"test_{m}": float(np.mean(v)) for m, v in test.items()}
            reporter.report(k + 1, **running, **fold)
        return {f"test_{m}": float(np.mean(v)) for m, v in test.items()}

    def _fold(self, config: Mapping[str, Any], k: int, train: Any, test: Any) -> dict[str, float]:
        X_train, y_train = self._split(train, train)
        X_test, y_test = self._split(test, train)
        fit_params = {name: _safe_indexing(v, train) if _sample_aligned(v, _n_samples(self.X)) else v
                      for name, v in self.fit_params.items()}
        out: dict[str, float] = {}
        start = time.perf_counter()
        try:
            # Parameters may themselves be estimators (a pipeline step searched over): clone them too.
            estimator = clone(self.estimator).set_params(**clone(dict(config), safe=False))
            if y_train is None:
                estimator.fit(X_train, **fit_params)
            else:
                estimator.fit(X_train, y_train, **fit_params)
            out["fit_time"] = time.perf_counter() - start
            start = time.perf_counter()
            out.update({f"fold_test_{m}": v for m, v in self._score(estimator, X_test, y_test).items()})
            out["score_time"] = time.perf_counter() - start
            if self.return_train_score:
                out.update({f"fold_train_{m}": v for m, v in self._score(estimator, X_train, y_train).items()})
        except Exception as exc:  # noqa: BLE001 - the estimator's own failure, whatever it is
            message = f"fold {k}: {type(exc).__name__}: {exc}"
            if isinstance(self.error_score, str) or math.isnan(self.error_score):
                raise TrialFailed(FIT_FAILED_KIND, message) from None
            # A number: score the fold with it and go on, as scikit-learn does (said in the trial log).
            warnings.warn(f"{message}; scored error_score={self.error_score}", FitFailedWarning, stacklevel=2)
            out = {"fit_time": out.get("fit_time", time.perf_counter() - start), "score_time": 0.0,
                   "fold_failed": 1.0, **{f"fold_test_{m}": float(self.error_score) for m in self.scorers}}
            if self.return_train_score:
                out.update({f"fold_train_{m}": float(self.error_score) for m in self.scorers})
            return out
        out["fold_failed"] = 0.0
        return out

    def _split(self, rows: Any, columns: Any) -> tuple[Any, Any]:
        X = _safe_indexing(self.X, rows)
        if self.pairwise:  # a precomputed kernel or distance matrix: columns are the training samples
            X = _safe_indexing(X, columns, axis=1)
        return X, None if self.y is None else _safe_indexing(self.y, rows)

    def _score(self, estimator: Any, X: Any, y: Any) -> dict[str, float]:
        scores = {}
        for name, scorer in self.scorers.items():
            value = scorer(estimator, X, y)
            if isinstance(value, Mapping):
                raise TypeError(f"scoring {name!r} returned a dict; pass several scorers as scoring={{name: scorer}}.")
            scores[name] = float(value)
        return scores


def _n_samples(X: Any) -> int:
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def _sample_aligned(value: Any, n: int) -> bool:
    """Whether a fit parameter is per sample (``sample_weight``), so that it is split with X."""
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__"):
        return False
    try:
        return _n_samples(value) == n
    except TypeError:
        return False


def _search_estimator_has(attr: str) -> Any:
    """Delegate ``attr`` to the refit estimator (or, before fit, to the estimator given)."""

    def check(self: "TunelabSearchCV") -> bool:
        _check_refit(self, attr)
        getattr(self.best_estimator_ if hasattr(self, "best_estimator_") else self.estimator, attr)
        return True

    return check


def _check_refit(search: "TunelabSearchCV", attr: str) -> None:
    if not search.refit:
        raise AttributeError(f"{type(search).__name__} was created with refit=False: {attr} needs the refit "
                             "estimator. Fit one on best_params_ yourself, or pass refit=True.")


class TunelabSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Search ``estimator``'s parameters over a tunelab space with cross-validation, on any backend.

    Every trial cross-validates one config and reports the running mean of its test scores after
    each fold; a ``scheduler`` (``"median"``, ``"asha"``) may stop a config after a few folds.
    Pruned trials stay in ``cv_results_`` with the folds they ran, their mean ``NaN`` (they have
    no full cross-validation score) and ``state == "pruned"``.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.linear_model import LogisticRegression
        >>> X, y = load_iris(return_X_y=True)
        >>> search = TunelabSearchCV(LogisticRegression(max_iter=500), {"C": {"float": [0.01, 10], "log": True}},
        ...                          n_trials=4, cv=3, backend="inprocess", random_state=0).fit(X, y)
        >>> sorted(search.best_params_)
        ['C']

    Args:
        estimator: a scikit-learn estimator; each trial fits a clone with the sampled parameters.
        space: the parameters to search, in the study file's syntax (``{"C": {"float": [0.01, 10],
            "log": True}, "penalty": {"choice": ["l1", "l2"]}}``), as tunelab distributions
            (``{"C": tunelab.Float(0.01, 10, log=True)}``) or a ``tunelab.Space``. Nested names
            (``"clf__C"``) reach into pipelines.
        n_trials: configs to try.
        cv: as scikit-learn's (an int, a splitter, an iterable of splits; default 5 folds,
            stratified for classifiers).
        scoring: as scikit-learn's: ``None`` (the estimator's ``score``), a scorer name, a
            callable, or a list/dict of them (then ``refit`` names the one to optimize).
        refit: ``True``, ``False``, or (with several scorers) the scorer to optimize and refit on.
        scheduler: early stopping across folds: ``None`` (every config runs every fold),
            ``"median"``, ``"asha"``, ``"hyperband"``, a dict (``{"type": "median", "min_trials":
            3}``) or a tunelab scheduler. ASHA and Hyperband default to ``min_resource=1,
            max_resource=n_splits``.
        sampler: a tunelab sampler name (``tpe``, ``random``, ``gp``, ...); tunelab's default if None.
        backend: where trials run: ``"local"`` (a fresh process per trial), ``"inprocess"``
            (threads; no isolation), ``"ray"`` or ``"spark"``, passed to ``tunelab.tune``.
        workers: trials at once (scikit-learn's ``n_jobs``).
        timeout: a time limit per trial (``"10m"`` or seconds).
        error_score: a fold whose fit fails: ``np.nan`` (the trial fails as ``infeasible`` and the
            sampler learns to avoid it), a number (the fold scores that and the trial goes on), or
            ``"raise"`` (``fit`` raises after the search, naming the failed trial).
        return_train_score: also score each fold's training set (costs a scoring pass per fold).
        random_state: seeds the sampler (same seed, same configs with one worker).
        storage, study_name: keep the study (a journal path or database URL, and its name; both
            or neither). By default the study lives in memory for the duration of ``fit``.
        trial_dir: where trial logs go; a temporary directory (removed after ``fit``) if None.
        verbose: 0 prints nothing; more shows tunelab's start line, progress bar and summary.

    Attributes:
        cv_results_: scikit-learn's format (``params``, ``param_<name>``, ``split<k>_test_<m>``,
            ``mean_test_<m>``, ``std_test_<m>``, ``rank_test_<m>``, ``mean_fit_time``, ...), a row
            per trial, plus ``trial_number``, ``state`` and ``n_splits_evaluated``.
        best_index_, best_params_, best_score_, best_estimator_ (with refit), refit_time_,
        n_splits_, scorer_, multimetric_, study_ (the ``tunelab.StudyView``).
    """

    def __init__(
        self,
        estimator: Any,
        space: Any,
        *,
        n_trials: int = 10,
        cv: Any = None,
        scoring: Any = None,
        refit: bool | str = True,
        scheduler: Any = None,
        sampler: str | None = None,
        backend: str = "local",
        workers: int = 1,
        timeout: str | float | None = None,
        error_score: Any = np.nan,
        return_train_score: bool = False,
        random_state: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        trial_dir: str | None = None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.space = space
        self.n_trials = n_trials
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.scheduler = scheduler
        self.sampler = sampler
        self.backend = backend
        self.workers = workers
        self.timeout = timeout
        self.error_score = error_score
        self.return_train_score = return_train_score
        self.random_state = random_state
        self.storage = storage
        self.study_name = study_name
        self.trial_dir = trial_dir
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = copy.deepcopy(inner.classifier_tags)
        tags.regressor_tags = copy.deepcopy(inner.regressor_tags)
        tags.target_tags = copy.deepcopy(inner.target_tags)  # a 2-d y, or none, as the estimator takes it
        tags.input_tags.pairwise = inner.input_tags.pairwise  # splits cut a precomputed matrix both ways
        tags.input_tags.sparse = inner.input_tags.sparse
        return tags

    def __getstate__(self) -> dict[str, Any]:
        # ``study_`` is a live handle on the study's storage (its sampler, a database
        # connection): not part of the fitted model, so it is not pickled. cv_results_ is.
        state = super().__getstate__()
        state.pop("study_", None)
        return state

    # ---- fit -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None, *, groups: Any = None, **fit_params: Any) -> "TunelabSearchCV":
        """Run the search, then refit the best config on all of ``X`` (with ``refit``).

        ``groups`` goes to the splitter; other keyword arguments go to the estimator's ``fit``
        (per-sample ones, such as ``sample_weight``, split with ``X``).
        """
        from tunelab.api import tune
        from tunelab.space import Space

        if not all(callable(getattr(self.estimator, m, None)) for m in ("fit", "get_params")):
            raise SearchConfigError("estimator", f"is {shown(self.estimator)}, which is not a scikit-learn estimator.",
                                    "pass an estimator (with fit and get_params), e.g. LogisticRegression().")
        space = self._checked_space(Space)
        scorers, multimetric = self._checked_scoring()
        refit_metric = self._checked_refit(scorers, multimetric)
        self._check_plain_params()
        if y is None and get_tags(self.estimator).target_tags.required:
            raise ValueError(f"{type(self.estimator).__name__} requires y to be passed, but the target y is None.")
        X, y = indexable(X, y)
        splitter = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        splits = list(splitter.split(X, y, groups))
        n_splits = len(splits)
        if n_splits < 1:
            raise SearchConfigError("cv", "gave no splits.", "pass cv=5 or a splitter that yields splits.")
        primary = f"test_{refit_metric}"
        objective = _CrossValidation(self.estimator, X, y, splits, scorers, fit_params, self.error_score,
                                     bool(self.return_train_score), bool(get_tags(self.estimator).input_tags.pairwise))
        with tempfile.TemporaryDirectory(prefix="tunelab-search-") as scratch, warnings.catch_warnings():
            # That no trial completed is said below, as an error; tune()'s warning would point
            # to logs in a directory that is gone by then.
            warnings.filterwarnings("ignore", message="no trial completed", category=TunelabWarning)
            try:
                view = tune(
                    objective, space, metrics=[{"name": primary, "goal": "maximize"}], sampler=self.sampler,
                    seed=_seed(self.random_state), scheduler=_scheduler_spec(self.scheduler, primary, n_splits),
                    trials=self.n_trials, workers=self.workers, backend=self.backend, timeout=self.timeout,
                    storage=self.storage if self.storage is not None else "memory",
                    study_name=self.study_name if self.study_name is not None else "tunelab-search-cv",
                    trial_dir=self.trial_dir if self.trial_dir is not None else scratch,
                    progress=bool(self.verbose),
                )
            except SearchConfigError:
                raise
            except ConfigError as exc:  # tune() names its own argument; say it in this estimator's terms
                raise SearchConfigError(_ARGUMENTS.get(exc.field, exc.field), exc.problem, exc.fix) from None
        trials = [t for t in view.trials() if t.state.value in ("complete", "pruned", "failed")]
        self._raise_or_warn_failures(trials)
        results = _cv_results(trials, list(scorers), n_splits, bool(self.return_train_score))
        self.study_ = view
        self.n_splits_ = n_splits
        self.multimetric_ = multimetric
        self.scorer_ = scorers if multimetric else scorers["score"]
        self.cv_results_ = results
        if self.refit or not multimetric:
            self.best_index_ = int(np.argmin(results[f"rank_test_{refit_metric}"]))
            self.best_score_ = float(results[f"mean_test_{refit_metric}"][self.best_index_])
            self.best_params_ = dict(results["params"][self.best_index_])
        if self.refit:
            self.best_estimator_ = clone(self.estimator).set_params(**clone(self.best_params_, safe=False))
            start = time.perf_counter()
            if y is None:
                self.best_estimator_.fit(X, **fit_params)
            else:
                self.best_estimator_.fit(X, y, **fit_params)
            self.refit_time_ = time.perf_counter() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        return self

    def _checked_space(self, space_cls: Any) -> Any:
        if not isinstance(self.space, (Mapping, space_cls)):
            raise SearchConfigError("space", f"is {shown(self.space)}, but must be a dict of parameter names to "
                                    "definitions.", 'pass e.g. {"C": {"float": [0.01, 10], "log": True}}.')
        try:
            space = space_cls.from_dict(self.space)
        except ConfigError as exc:
            raise SearchConfigError(exc.field, exc.problem, exc.fix) from None
        valid = self.estimator.get_params(deep=True)
        for name in space:
            if name not in valid:
                close = ", ".join(sorted(valid)[:12]) or "none"
                raise SearchConfigError(f"space.{name}", f"is not a parameter of {type(self.estimator).__name__}.",
                                        f"use one of its parameters ({close}); `step__param` reaches into pipelines.")
        return space

    def _checked_scoring(self) -> tuple[dict[str, Any], bool]:
        """The scorers by name (``score`` when there is one) and whether there are several."""
        scoring = self.scoring
        try:
            if scoring is None or isinstance(scoring, str) or callable(scoring):
                return {"score": check_scoring(self.estimator, scoring)}, False
            if isinstance(scoring, Mapping):
                items = list(scoring.items())
            elif isinstance(scoring, (list, tuple, set)):
                items = [(s, s) for s in scoring]
            else:
                raise SearchConfigError("scoring", f"is {shown(scoring)}.", "pass a scorer name, a callable, or a "
                                        "list or dict of them.")
            if not items or any(not isinstance(name, str) or not name for name, _ in items):
                raise SearchConfigError("scoring", f"is {shown(scoring)}, but several scorers need non-empty names.",
                                        'pass e.g. ["accuracy", "f1_macro"] or {"acc": "accuracy"}.')
            return {name: get_scorer(s) if isinstance(s, str) else s for name, s in items}, True
        except SearchConfigError:
            raise
        except (ValueError, TypeError) as exc:  # an unknown scorer name; an estimator without score()
            raise SearchConfigError("scoring", f"is {shown(scoring)}: {exc}",
                                    "use a name from sklearn.metrics.get_scorer_names(), or a callable.") from None

    def _checked_refit(self, scorers: Mapping[str, Any], multimetric: bool) -> str:
        """The metric the search optimizes (and refits on): ``score``, or the scorer ``refit`` names."""
        if not multimetric:
            if not isinstance(self.refit, (bool, np.bool_)):
                raise SearchConfigError("refit", f"is {shown(self.refit)}, but with one scorer must be True or False.")
            return "score"
        if isinstance(self.refit, str) and self.refit in scorers:
            return self.refit
        raise SearchConfigError("refit", f"is {shown(self.refit)}, but with several scorers it must name the one the "
                                f"search optimizes: one of {sorted(scorers)}.", f"pass refit={next(iter(scorers))!r}.")

    def _check_plain_params(self) -> None:
        n = self.n_trials
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise SearchConfigError("n_trials", f"is {shown(n)}, but must be an integer >= 1.",
                                    "pass e.g. n_trials=20.")
        w = self.workers
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise SearchConfigError("workers", f"is {shown(w)}, but must be an integer >= 1.", "pass e.g. workers=2.")
        e = self.error_score
        if not (e == "raise" if isinstance(e, str) else isinstance(e, numbers.Real) and not isinstance(e, bool)):
            raise SearchConfigError("error_score", f"is {shown(e)}, but must be 'raise' or a number.",
                                    "pass np.nan (the default), 0, or 'raise'.")
        if (self.storage is None) != (self.study_name is None):
            missing = "study_name" if self.study_name is None else "storage"
            raise SearchConfigError(missing, "is missing: a kept study needs both storage= and study_name=.",
                                    "pass both (to keep and resume the study), or neither (a study in memory).")
        if self.storage is not None and (not isinstance(self.storage, (str, os.PathLike)) or str(self.storage) == ""):
            raise SearchConfigError("storage", f"is {shown(self.storage)}, but must be a journal path or a "
                                    "database URL.", 'pass e.g. storage="search.journal".')

    def _raise_or_warn_failures(self, trials: Sequence[Any]) -> None:
        failed = [t for t in trials if t.state.value == "failed"]
        if failed and self.error_score == "raise":
            t = failed[0]
            raise _error_type(t.message)(f"trial {t.number} failed with {dict(t.config)} (error_score='raise'): "
                                         f"{t.failure_kind}: {t.message}")
        if not any(t.state.value == "complete" for t in trials):
            detail = f" The first failure: trial {failed[0].number}: {failed[0].message}" if failed else ""
            raise ValueError(f"All {len(trials)} trials failed or were pruned: no config has a cross-validation "
                             f"score.{detail}")
        folds = sum(r.metrics.get("fold_failed", 0.0) > 0 for t in trials for r in t.history)
        if folds:  # a numeric error_score: the trials went on, but scikit-learn users expect to hear of it
            warnings.warn(f"{folds} fit(s) failed and were scored error_score={self.error_score} (the trial logs "
                          "say why).", FitFailedWarning, stacklevel=3)
        if failed:
            warnings.warn(f"{len(failed)} of {len(trials)} trials failed (scored NaN in cv_results_); the first: "
                          f"trial {failed[0].number}: {failed[0].failure_kind}: {failed[0].message}",
                          FitFailedWarning, stacklevel=3)

    # ---- the refit estimator ---------------------------------------------------------------

    def score(self, X: Any, y: Any = None) -> float:
        """The refit estimator's score on ``X`` by the scorer the search optimized."""
        _check_refit(self, "score")
        check_is_fitted(self)
        scorer = self.scorer_[self.refit] if self.multimetric_ else self.scorer_
        return float(scorer(self.best_estimator_, X, y))

    @available_if(_search_estimator_has("predict"))
    def predict(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.predict(X)

    @available_if(_search_estimator_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.predict_proba(X)

    @available_if(_search_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.predict_log_proba(X)

    @available_if(_search_estimator_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.decision_function(X)

    @available_if(_search_estimator_has("score_samples"))
    def score_samples(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.score_samples(X)

    @available_if(_search_estimator_has("transform"))
    def transform(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.transform(X)

    @available_if(_search_estimator_has("inverse_transform"))
    def inverse_transform(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.best_estimator_.inverse_transform(X)

    @property
    def classes_(self) -> Any:
        _search_estimator_has("classes_")(self)
        return self.best_estimator_.classes_

    @property
    def n_features_in_(self) -> int:
        if not hasattr(self, "best_estimator_"):  # AttributeError, so hasattr() is False before fit
            raise AttributeError(f"{type(self).__name__} has no n_features_in_ before fit (or without refit).")
        return self.best_estimator_.n_features_in_


#: ``tune()`` argument names -> this estimator's.
_ARGUMENTS = {"trials": "n_trials", "seed": "random_state"}


def _error_type(message: str | None) -> type[Exception]:
    """The builtin exception type a fold failed with (``fold 0: TypeError: ...``, written by
    ``_CrossValidation``), so error_score='raise' raises what the estimator raised; else ValueError."""
    import builtins
    import re

    match = re.match(r"fold \d+: (\w+): ", message or "")
    found = getattr(builtins, match.group(1), None) if match else None
    if isinstance(found, type) and issubclass(found, Exception) and not issubclass(found, (Warning, OSError)):
        return found
    return ValueError


def _seed(random_state: Any) -> int | None:
    """The sampler's seed: the int given, one drawn from a ``RandomState``, or None."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise SearchConfigError("random_state", f"is {shown(random_state)}, but must be None, an int or a "
                            "numpy RandomState.", "pass e.g. random_state=0.")


def _scheduler_spec(scheduler: Any, metric: str, n_splits: int) -> Any:
    """The scheduler, with folds as its resource: ASHA and Hyperband run from 1 to ``n_splits``."""
    from tunelab.schedulers import Scheduler

    if isinstance(scheduler, Scheduler):
        watched = getattr(scheduler, "metric", metric)
        if watched != metric:
            raise SearchConfigError("scheduler", f"watches the metric {watched!r}, but the search reports {metric!r} "
                                    "(the running mean of the test scores).", f"build it with metric={metric!r}.")
        return scheduler
    if isinstance(scheduler, str):
        scheduler = {"type": scheduler}
    if isinstance(scheduler, Mapping):
        spec = dict(scheduler)
        kind = str(spec.get("type", "")).strip().lower()
        if kind == "pbt":
            raise SearchConfigError("scheduler", "is pbt, which continues trials from checkpoints; a fold has none.",
                                    "use median, asha or hyperband.")
        if kind in _SCHEDULERS_WITH_RESOURCE:
            spec.setdefault("min_resource", 1)
            spec.setdefault("max_resource", n_splits)
        return spec
    return scheduler  # None, or something make_scheduler refuses with a message naming `scheduler`


def _cv_results(trials: Sequence[Any], scorer_names: Sequence[str], n_splits: int,
                return_train_score: bool) -> dict[str, Any]:
    """scikit-learn's ``cv_results_`` from the trials' fold reports (step k = fold k - 1)."""
    n = len(trials)

    def per_fold(key: str) -> np.ndarray:
        out = np.full((n, n_splits), np.nan)
        for i, t in enumerate(trials):
            for report in t.history:
                k = int(round(report.step)) - 1
                if 0 <= k < n_splits and key in report.metrics:
                    out[i, k] = report.metrics[key]
        return out

    complete = np.array([t.state.value == "complete" for t in trials], dtype=bool)
    results: dict[str, Any] = {}
    for key in ("fit_time", "score_time"):  # over the folds each trial ran
        values = per_fold(key)
        ran = ~np.isnan(values)
        count = ran.sum(axis=1)
        mean = np.where(count > 0, np.nansum(values, axis=1) / np.maximum(count, 1), np.nan)
        spread = np.where(ran, values - mean[:, None], 0.0)
        results[f"mean_{key}"] = mean
        results[f"std_{key}"] = np.where(count > 0, np.sqrt((spread ** 2).sum(axis=1) / np.maximum(count, 1)), np.nan)
    params = [dict(t.config) for t in trials]
    results.update(_param_columns(params))
    results["params"] = params
    for m in scorer_names:
        for side in ("test", "train") if return_train_score else ("test",):
            folds = per_fold(f"fold_{side}_{m}")
            for k in range(n_splits):
                results[f"split{k}_{side}_{m}"] = folds[:, k]
            # Only a trial that ran every fold has a cross-validation score; a pruned one has NaN.
            full = complete & ~np.isnan(folds).any(axis=1)
            mean = np.full(n, np.nan)
            std = np.full(n, np.nan)
            for i in np.flatnonzero(full):  # np.mean of one row: the arithmetic the trial's value used
                mean[i] = np.mean(folds[i])
                std[i] = np.std(folds[i])
            results[f"mean_{side}_{m}"] = mean
            results[f"std_{side}_{m}"] = std
            if side == "test":
                results[f"rank_test_{m}"] = _rank(mean)
    results["trial_number"] = np.array([t.number for t in trials], dtype=int)
    results["state"] = np.array([t.state.value for t in trials], dtype=object)
    results["n_splits_evaluated"] = (~np.isnan(per_fold("fit_time"))).sum(axis=1).astype(int)
    return results


def _rank(means: np.ndarray) -> np.ndarray:
    """scikit-learn's ranking: 1 is best, ties share the lowest rank, NaN ties with the worst."""
    if np.isnan(means).all():
        return np.ones(len(means), dtype=np.int32)
    filled = np.where(np.isnan(means), np.nanmin(means) - 1, means)
    return (1 + (filled[None, :] > filled[:, None]).sum(axis=1)).astype(np.int32)


def _param_columns(params: Sequence[Mapping[str, Any]]) -> dict[str, np.ma.MaskedArray]:
    """``param_<name>`` columns, masked where a trial has no such parameter (a condition was off)."""
    names = list(dict.fromkeys(name for p in params for name in p))
    columns = {}
    for name in names:
        values = [p.get(name) for p in params]
        present = [name in p for p in params]
        try:
            kind = np.array([v for v, ok in zip(values, present) if ok]).dtype
            dtype = kind if kind.kind not in "UO" else np.dtype(object)
        except ValueError:
            dtype = np.dtype(object)
        column = np.ma.MaskedArray(np.empty(len(params), dtype=dtype), mask=True)
        for i, (value, ok) in enumerate(zip(values, present)):
            if ok:
                column[i] = value
        columns[f"param_{name}"] = column
    return columns
