"""Every use of Optuna's private API, in one place, each with a public-API fallback.

Optuna has no public handle on a study's storage, its id, or a trial's id, and ``Study.ask``
cannot create a trial that already holds attributes. tunelab needs those for fewer storage
writes per trial and for claiming queued trials safely. Each function here tries the private
attribute first and falls back to what the public API offers when a future Optuna drops it;
``tests/unit/test_optuna_adapter.py`` runs both paths.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

#: Where ``Study.enqueue_trial`` keeps a queued trial's params (a stored data key, not code).
_FIXED_PARAMS_KEY = "fixed_params"
#: System attr a driver writes on a queued trial just before taking it: ``tunelab:claim:<driver>``.
CLAIM_PREFIX = "tunelab:claim:"


#: ``JournalFileBackend``'s private map from a log number to its byte offset in the file.
_OFFSETS_ATTR = "_log_number_offset"


def journal_file_backend(path: str, lock_obj: Any) -> Any:
    """Optuna's ``JournalFileBackend`` that looks at the file's size before reading it.

    Every storage call re-reads the journal from where the last read ended; with nothing new,
    Optuna still opens the file to find out. Here a ``stat`` answers that (about a tenth of the
    cost): the file's size equal to the offset of ``log_number_from`` (Optuna's private
    ``_log_number_offset``) means no log follows, which is exactly when Optuna's own reader yields
    none. Anything else, or an Optuna without that attribute, reads as Optuna does.
    """
    backend = _stat_first_backend_class()(path, lock_obj=lock_obj)
    backend.tunelab_path = path  # our own name for it: Optuna's ``_file_path`` is private
    return backend


@functools.cache
def _stat_first_backend_class() -> type:
    """Made on first use, so that importing this module does not import Optuna's journal."""
    from optuna.storages.journal import JournalFileBackend

    class StatFirstJournalFileBackend(JournalFileBackend):  # type: ignore[misc]
        tunelab_path: str

        def read_logs(self, log_number_from: int) -> Any:
            offsets = getattr(self, _OFFSETS_ATTR, None)
            end = offsets.get(log_number_from) if isinstance(offsets, dict) else None
            if end is not None:
                try:
                    if os.stat(self.tunelab_path).st_size == end:
                        return iter(())
                except OSError:
                    pass  # Optuna's reader says what is wrong
            return super().read_logs(log_number_from)

    return StatFirstJournalFileBackend


def storage_of(study: "optuna.Study", opened: "optuna.storages.BaseStorage | None" = None) -> Any:
    """The storage behind ``study``; ``opened`` (the storage the caller built the study on) is
    the fallback, as Optuna offers no public accessor."""
    storage = getattr(study, "_storage", None)
    if storage is not None:
        return storage
    if opened is not None:
        return opened
    raise RuntimeError("this Optuna version hides the study's storage; pass the storage the study was opened with")


def study_id_of(study: "optuna.Study", opened: Any = None) -> int:
    study_id = getattr(study, "_study_id", None)
    if study_id is not None:
        return int(study_id)
    return int(storage_of(study, opened).get_study_id_from_name(study.study_name))


def trial_id_of(trial: "optuna.trial.Trial | FrozenTrial", study: "optuna.Study", opened: Any = None) -> int:
    """A trial's storage id (live or frozen); by study id and trial number when it is hidden."""
    trial_id = getattr(trial, "_trial_id", None)
    if trial_id is not None:
        return int(trial_id)
    storage = storage_of(study, opened)
    return int(storage.get_trial_id_from_study_id_trial_number(study_id_of(study, opened), trial.number))


def n_trials(study: "optuna.Study", opened: Any = None) -> int:
    """How many trials the study holds (a count query where the storage offers one)."""
    storage = getattr(study, "_storage", None) or opened
    if storage is not None:
        return int(storage.get_n_trials(study_id_of(study, storage)))
    return len(study.get_trials(deepcopy=False))


def cached_trials(study: "optuna.Study", states: tuple[Any, ...] | None) -> list["FrozenTrial"]:
    """The study's trials (``states`` None: all, in number order) as samplers see them: Optuna's per-ask snapshot (dropped at every ask
    and tell), so that a check per proposal adds no storage round trip on a database."""
    private = getattr(study, "_get_trials", None)
    if private is not None:
        try:
            return list(private(deepcopy=False, states=states, use_cache=True))
        except TypeError:
            pass  # another signature: the public call below
    return list(study.get_trials(deepcopy=False, states=states))


def set_system_attr(trial: "optuna.trial.Trial", key: str, value: Any) -> None:
    """A system attribute on a live trial (``Trial.set_system_attr`` was removed from Optuna);
    ``trial.storage`` is a public attribute, the trial id may not be."""
    trial.storage.set_trial_system_attr(trial_id_of(trial, trial.study, trial.storage), key, value)


def frozen_of(trial: "optuna.trial.Trial") -> "FrozenTrial":
    return trial.storage.get_trial(trial_id_of(trial, trial.study, trial.storage))


def queued_params(frozen: "FrozenTrial") -> dict[str, Any] | None:
    """The params a trial was queued with (``enqueue_trial``), or None for a sampled trial."""
    fixed = frozen.system_attrs.get(_FIXED_PARAMS_KEY)
    return dict(fixed) if isinstance(fixed, Mapping) else None


def mark_ended(study: "optuna.Study", frozen: "FrozenTrial", user_attrs: Mapping[str, Any], state: Any,
               opened: Any = None) -> bool:
    """Record a trial another driver left running: attributes first, then the final state,
    without calling the sampler (the trial never reported to it). False when another driver
    ended it first (so only one of them queues it again)."""
    from optuna.exceptions import UpdateFinishedTrialError

    storage = storage_of(study, opened)
    trial_id = trial_id_of(frozen, study, storage)
    try:
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return bool(storage.set_trial_state_values(trial_id, state))
    except UpdateFinishedTrialError:
        return False


def claimed_by(frozen: "FrozenTrial") -> list[str]:
    """Drivers that tried to take this queued trial (one of them took it)."""
    return [k[len(CLAIM_PREFIX):] for k in frozen.system_attrs if k.startswith(CLAIM_PREFIX)]


def ask_with_run(study: "optuna.Study", run: Mapping[str, Any], opened: Any = None) -> "tuple[optuna.trial.Trial, bool]":
    """``study.ask()`` with the trial holding its ``run`` attribute from the moment it runs.

    Returns the trial and whether it came from the queue. A new trial is created with ``run``
    in one write. A queued trial is claimed (``tunelab:claim:<driver>``, a key per driver, so
    no driver overwrites another's) just before it is taken, then gets ``run``: a driver killed
    in between leaves a running trial whose claimers are all dead, which the next start
    reclaims at once. The public fallback is ask, then write.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import FrozenTrial, TrialState

    storage = getattr(study, "_storage", None)
    study_id = getattr(study, "_study_id", None)
    local = getattr(study, "_thread_local", None)
    if storage is None or study_id is None or local is None or not hasattr(local, "cached_all_trials"):
        waiting = bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        trial = study.ask()
        trial.set_user_attr("run", dict(run))
        queued = waiting and queued_params(frozen_of(trial)) is not None
        return trial, queued
    local.cached_all_trials = None  # what ask() does: samplers see the storage as it is now
    claim = f"{CLAIM_PREFIX}{run.get('driver')}"
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = trial_id_of(frozen, study, storage)
        try:
            storage.set_trial_system_attr(trial_id, claim, True)
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue  # another driver took it first
        except UpdateFinishedTrialError:
            continue
        storage.set_trial_user_attr(trial_id, "run", dict(run))
        return optuna.Trial(study, trial_id), True
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=dt.datetime.now(),
        datetime_complete=None, params={}, distributions={}, user_attrs={"run": dict(run)},
        system_attrs={}, intermediate_values={}, trial_id=-1,
    )
    return optuna.Trial(study, storage.create_new_trial(study_id, template_trial=template)), False


def create_trial(study: "optuna.Study", run: Mapping[str, Any], params: Mapping[str, Any] | None = None,
                 opened: Any = None, user_attrs: Mapping[str, Any] | None = None) -> "optuna.trial.Trial":
    """A new running trial made for one config (a scheduler's suggestion), holding ``run`` from
    its first write and, when given, ``params`` as its fixed params (``suggest_*`` returns them,
    as for a queued trial), and any other ``user_attrs`` (a seed repeat's marks), in the same
    write. It never goes through the study's queue, so no driver can take it
    and no queued trial takes its place. Storage's ``create_new_trial`` and ``optuna.Trial``
    are public; ``fixed_params`` is the key ``enqueue_trial`` writes."""
    import optuna
    from optuna.trial import FrozenTrial, TrialState

    storage = storage_of(study, opened)
    system_attrs = {_FIXED_PARAMS_KEY: dict(params)} if params else {}
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=dt.datetime.now(),
        datetime_complete=None, params={}, distributions={}, user_attrs={**dict(user_attrs or {}), "run": dict(run)},
        system_attrs=system_attrs, intermediate_values={}, trial_id=-1,
    )
    trial_id = storage.create_new_trial(study_id_of(study, opened), template_trial=template)
    return optuna.Trial(study, trial_id)


def reseed_sampler(sampler: Any, seed: int) -> bool:
    """Give a finished trial's TPE or random sampler ``seed``, as if built anew with it.

    Building a sampler per trial (``tunelab.proposals``) costs its construction and, for TPE,
    a cold search-space cache that rescans every trial: a third of a no-op trial's bookkeeping.
    TPE's and random's only per-seed state is their ``LazyRandomState`` (TPE's own and its
    random start-up sampler's); the rest is caches of the trials. False, with nothing changed,
    for any other sampler, a subclass, or an Optuna whose samplers are laid out otherwise: the
    caller then builds a fresh one (the public path).
    """
    from optuna.samplers import RandomSampler, TPESampler

    try:
        from optuna.samplers._lazy_random_state import LazyRandomState
    except ImportError:
        return False
    if type(sampler) is RandomSampler:
        owners = [sampler]
    elif type(sampler) is TPESampler and type(getattr(sampler, "_random_sampler", None)) is RandomSampler:
        owners = [sampler, sampler._random_sampler]
    else:
        return False
    if not all(isinstance(getattr(o, "_rng", None), LazyRandomState) for o in owners):
        return False
    for owner in owners:
        # RandomState.seed resets the whole state (its cached normal too), as a fresh one
        # seeded alike; it skips drawing the fresh one's entropy first.
        owner._rng.rng.seed(seed)
    return True
