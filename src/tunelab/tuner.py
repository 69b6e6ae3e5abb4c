"""The loop: ask the sampler (or the scheduler), launch on the executor, route results.

The tuner is the only place that touches both the search (sampler, scheduler) and the
executor, and the only writer of trial results. Every result is written to storage before it
is acted on, so killing the driver at any moment loses nothing: the next run marks trials
that were running as ``failed: interrupted`` and queues their configs again, once (a queued
trial taken by a driver that died before starting it goes back to the queue as it was).

A config that repeats a complete trial's is not run: the trial records the earlier result
(``duplicate_of``). A scheduler's suggestion runs in a trial created for it, with its lineage
(parent, start step, mutations, the trial it replaces) in the ``run`` attribute; before each
decision the scheduler is given what other drivers stored, so all drivers decide alike, and a
suggestion that replaces a trial runs once however many drivers make it (``_claim``). Under a
scheduler that continues interrupted trials (PBT), a trial interrupted after it reported is not
queued to run cold: the scheduler continues it from its checkpoint. Time is read from ``clock``
(a simulated one in tests). Directories read from storage are used only inside the trial root, and
Optuna's private API is reached only through ``tunelab._optuna``.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from tunelab import _optuna
from tunelab.callbacks import CallbackList
from tunelab.cma import pickled_state_keys
from tunelab.driver import driver_alive, this_driver
from tunelab.executors.base import RESTORE, TrialSpec, copy_parent_checkpoint
from tunelab.failures import failure_line
from tunelab.interrupts import deferred_interrupts
from tunelab.metrics import MetricSet
from tunelab.proposals import DUPLICATE_OF, RESAMPLED, completed_keys, config_key
from tunelab.repeats import (REPEAT_OF, SEED, Repeats, earlier_twin, is_repeat, kept_checkpoints, missing_repeats,
                             repeat_config, search_after_repeats)
from tunelab.schedulers.base import BaseScheduler, Decision, FIFOScheduler, Suggestion
from tunelab.space import Space
from tunelab.study import REPORT_PREFIX, StudyView, reports_of, stored_config, trial_dir_name, trial_info, trial_state
from tunelab.trial import LEARNABLE_FAILURES, Ended, Event, Report, Result, State, TrialRecord
from tunelab.warm_start import is_warm

if TYPE_CHECKING:
    import optuna

    from tunelab.executors.base import Executor
    from tunelab.schedulers.base import Scheduler

FAILURE_CONSTRAINT = "tunelab_failure"
#: A running trial with no driver recorded yet is left alone this long (another driver asked for it).
_UNCLAIMED_GRACE_S = 60.0
#: Repeated configs in a row after which a study with no trial budget stops (its space is used up).
_MAX_REUSE_STREAK = 50
#: Failures that do not use up the trial budget: the config runs again, or never ran.
UNCOUNTED_FAILURES = frozenset({"interrupted", "cancelled"})


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays."""

    running: int
    complete: int
    pruned: int
    failed: int
    best: float | None
    elapsed_s: float
    eta_s: float | None
    last: str = ""
    #: One line per trial that failed since the previous snapshot (``failure_line``), to print.
    failures: tuple[str, ...] = ()


@dataclass
class _Live:
    trial: "optuna.trial.Trial"
    record: TrialRecord
    slot: int
    trial_dir: Path
    trial_id: int
    optuna_step: int = -1
    started: float = 0.0


class Tuner:
    def __init__(
        self,
        *,
        study: "optuna.Study",
        space: Space,
        metrics: MetricSet,
        executor: "Executor",
        scheduler: "Scheduler",
        trial_root: Path,
        trials: int | None = None,
        time_s: float | None = None,
        target: float | None = None,
        trial_timeout_s: float | None = None,
        keep_checkpoints: int = 3,
        on_progress: Callable[[Progress], None] | None = None,
        callbacks: Sequence[Any] = (),
        storage: Any = None,
        epochs: float | None = None,
        repeats: Repeats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.study = study
        self._opened = storage  # the storage the study was opened on (Optuna keeps it private)
        self.storage = _optuna.storage_of(study, storage)
        self.space = space
        self.metrics = metrics
        self.executor = executor
        self.scheduler = scheduler
        self.trial_root = Path(trial_root)
        self._resolved_root: Path | None = None
        self.trials = trials
        self.time_s = time_s
        self.target = target
        self.epochs = epochs  # a budget of training steps, summed over trials (a clone's own only)
        self.repeats = repeats  # seed repeats after the search (tunelab.repeats), on top of the budget
        self._repeating: set[int] = set()  # repeats this driver runs: never pruned, no scheduler
        self.clock = clock  # seconds, for time budgets, durations and the ETA (simulated in tests)
        self.trial_timeout_s = trial_timeout_s
        self.keep_checkpoints = keep_checkpoints
        self.on_progress = on_progress
        self.callbacks = CallbackList(callbacks)
        self.driver = this_driver()
        self._live: dict[int, _Live] = {}
        self._finished: list[TrialRecord] = []
        self._finished_counted = 0  # of those, the ones the trial budget counts (kept as they come)
        self._counts = {State.COMPLETE: 0, State.PRUNED: 0, State.FAILED: 0}
        self._durations_n = 0  # trials that ended here, and their seconds in all (the ETA's mean)
        self._durations_total = 0.0
        self._best: float | None = None
        self._ranked: list[tuple[float, int, str]] = []  # (score, number, dir) of feasible complete trials
        self._held_back: dict[int, tuple[str, bool]] = {}  # pinned checkpoints to delete later (dir, whole)
        self._started = clock()
        self._stopping = False
        self._begun = False
        self._finished_run = False
        self._stop_requested: Callable[[], bool] = lambda: False  # a Ctrl-C / SIGTERM while run() runs
        # Other drivers' trials as last given to the scheduler: number -> (system attrs, state).
        self._seen_reports: dict[int, tuple[int, State]] = {}
        self._own: set[int] = set()  # trials this driver ran, or loaded as finished at start
        self._foreign: dict[int, TrialRecord] = {}  # other drivers' trials, as last read from storage
        self._last_message = ""
        self._new_failures: list[str] = []
        self._reuse_streak = 0  # proposals in a row that repeated a finished config
        # Trials whose config repeats one this driver is running: they take its result when it ends.
        self._twins: dict[int, list[tuple["optuna.trial.Trial", dict[str, Any]]]] = {}

    # ---- the loop --------------------------------------------------------------------------

    def run(self) -> StudyView:
        with deferred_interrupts() as interrupted:
            self._stop_requested = interrupted
            self.begin()
            try:
                while not interrupted() and self.launch_ready():
                    self.step()
            finally:
                self.finish()
            if interrupted():  # the running trials were stopped and marked interrupted by finish()
                raise KeyboardInterrupt
        return StudyView(self.study)

    # run() in parts, so that a test can interleave several drivers on one simulated clock.

    def begin(self) -> None:
        self._begun = True
        self._started = self.clock()
        self._recover_interrupted()
        self._load_finished()
        self._refresh_scheduler()  # trials other drivers are running now
        self._warn_pickled_state()
        if self._budget_left() and (note := search_after_repeats(self.study.get_trials(deepcopy=False))):
            warnings.warn(note, stacklevel=2)
        if self.callbacks:
            self.callbacks.call("on_study_start", StudyView(self.study))

    def launch_ready(self) -> bool:
        """Start what the budget and the executor allow; whether any trial runs."""
        self._check_stop_conditions()
        while (not self._stopping and not self._stop_requested() and self.executor.capacity() > 0
               and self._budget_left()):
            if not self._launch_next():
                break
        self._launch_repeats()
        self._emit_progress()  # after launching, so "running" counts the new trials
        return bool(self._live)

    def step(self) -> None:
        """Wait for the executor's next events and act on them."""
        for event in self.executor.poll(0.5):
            self._handle(event)

    def finish(self) -> None:
        if not self._begun or self._finished_run:
            return
        self._finished_run = True
        try:
            self._shutdown()
        finally:
            if self.callbacks:
                self.callbacks.call("on_study_end", StudyView(self.study))

    def _budget_left(self) -> bool:
        if self.epochs is not None and self.used_epochs() >= self.epochs:
            if not self._stopping and not self._live:
                self._last_message = f"epoch budget of {self.epochs:g} reached"
            return False
        if self.trials is None:
            return True
        if _optuna.n_trials(self.study, self._opened) < self.trials:
            return True  # fewer trials of any kind than the budget: no need to count
        return self._counted_trials() < self.trials

    def _counted_trials(self, below: int | None = None) -> int:
        """Trials that use up the budget (finished but interrupted or cancelled ones, and running),
        read from storage so that several drivers on one study share the budget."""
        from optuna.trial import TrialState

        n = 0
        for t in self.study.get_trials(deepcopy=False):
            if t.state == TrialState.WAITING or (below is not None and t.number >= below):
                continue
            if (t.user_attrs.get("failure") or {}).get("kind") in UNCOUNTED_FAILURES:
                continue
            if is_repeat(t) or is_warm(t):  # on top of the budget / not this study's trials
                continue
            n += 1
        return n

    def used_epochs(self) -> float:
        """Steps trained so far, summed over the study's trials (from storage, so drivers share
        the budget): each trial's last reported step, less the step a clone started from."""
        used = 0.0
        for t in self.study.get_trials(deepcopy=False):
            reports = reports_of(t)
            if not reports:
                continue
            start = (t.user_attrs.get("run") or {}).get("start_step") or 0.0
            used += max(0.0, max(r.step for r in reports) - float(start))
        return used

    def _check_stop_conditions(self) -> None:
        if self._stopping:
            return
        reason = None
        if self.time_s is not None and self.clock() - self._started >= self.time_s:
            reason = "time budget reached"
        elif self.target is not None and self._best is not None and not self.metrics.primary.better(self.target, self._best):
            reason = f"target {self.target:g} reached"
        if reason:
            self._stopping = True
            self._last_message = reason
            for trial_id in list(self._live):
                self.executor.stop(trial_id)

    # ---- launching -------------------------------------------------------------------------

    def _launch_next(self) -> bool:
        from optuna.trial import TrialState

        sampler = self.study.sampler
        self._refresh_scheduler()
        # Every trial the scheduler knows of, built only for a scheduler that reads it (O(trials)).
        history = self._history() if self._scheduler_reads_history else ()
        suggestion = self.scheduler.suggest(history)
        if suggestion is not None:
            return self._launch_suggestion(suggestion)
        full = getattr(self.scheduler, "population_full", None)  # PBT: its members are all sampled
        if callable(full) and full(history) and not self._has_waiting():
            return False
        if hasattr(sampler, "is_exhausted") and sampler.is_exhausted(self.study) and not self._has_waiting():
            return False
        slot = self._free_slot()
        run: dict[str, Any] = {"slot": slot, "root": str(self.trial_root), "driver": self.driver}
        if self.space.fixed:
            run["fixed"] = self.space.fixed
        trial, queued = _optuna.ask_with_run(self.study, run, self._opened)
        number = trial.number
        if self._over_trial_budget(trial):
            return False
        config = self.space.sample(trial)
        resampled = getattr(sampler, "resampled", lambda n: 0)(number)
        if resampled:
            trial.set_user_attr(RESAMPLED, resampled)
        if not queued and self.space.searched and (self._reuse_duplicate(trial, config)
                                                   or self._wait_for_twin(trial, config)):
            self._reuse_streak += 1
            if self.trials is None and self._reuse_streak >= _MAX_REUSE_STREAK:
                # No trial budget to end it: a space whose every config is taken would loop here.
                self._stopping = True
                self._last_message = f"the last {_MAX_REUSE_STREAK} proposals all repeated configs already tried"
                return False
            return True
        self._reuse_streak = 0
        self._start(trial, config, slot)
        return True

    def _launch_repeats(self) -> None:
        """Seed repeats of the best configs (``tunelab.repeats``), once the search has used its
        budget and none of its trials runs; what to run is read from storage each time, so an
        interrupted phase continues where it was."""
        from optuna.trial import TrialState

        if self.repeats is None or self._stopping or self.metrics.is_multi_objective:
            return
        if any(n not in self._repeating for n in self._live) or self._budget_left():
            return
        todo = missing_repeats(self.study.get_trials(deepcopy=False), StudyView(self.study).ranked_trials(),
                               self.repeats, self.repeats.base_seed)
        for original, seed in todo:
            if self.executor.capacity() <= 0:
                break
            slot = self._free_slot()
            config = repeat_config(original, seed)
            # The config stays in ``run``, not Optuna params: no sampler learns it as a new point.
            run = {"slot": slot, "root": str(self.trial_root), "driver": self.driver, "config": config}
            trial = _optuna.create_trial(self.study, run, None, self._opened,
                                         user_attrs={REPEAT_OF: original.number, SEED: seed})
            twin = earlier_twin(self.study.get_trials(deepcopy=False), trial.number, original.number, seed)
            if twin is not None:  # another driver planned the same repeat at the same moment: its runs
                trial.set_user_attr("failure", {"kind": "cancelled", "message": f"trial {twin} runs this repeat"})
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            self._repeating.add(trial.number)
            self._start(trial, config, slot)
            self._last_message = f"trial {trial.number} repeats trial {original.number} with seed {seed}"

    def _launch_suggestion(self, suggestion: Suggestion) -> bool:
        """Run the scheduler's suggestion in a trial created for it, never through the study's
        queue (where another driver, or this one, would pop a queued retry in its place).

        A clone (``from_checkpoint``) records its lineage in ``run``: ``parent``, ``start_step``
        (the parent's step it continues from) and ``mutations``. Its config is kept in ``run``
        and not as Optuna params: it is told its result, so it can win the study, but samplers
        (TPE, GP) skip trials without the searched params, and so never learn a clone, which
        did not train from scratch, as an independent point of the space.
        """
        config = self.space.coerce(suggestion.config)
        parent = _number(suggestion.from_checkpoint)
        replaces = _number(suggestion.replaces)
        slot = self._free_slot()
        run: dict[str, Any] = {"slot": slot, "root": str(self.trial_root), "driver": self.driver}
        if replaces is not None:
            run["replaces"] = replaces
        start_step: float | None = None
        if parent is None:
            params = {k: v for k, v in config.items() if k in self.space.searched}
            if self.space.fixed:
                run["fixed"] = self.space.fixed
            trial = _optuna.create_trial(self.study, run, params, self._opened)
        else:
            start_step = suggestion.start_step if suggestion.start_step is not None else self._last_step(parent)
            run.update({"config": config, "parent": parent, "start_step": start_step,
                        "mutations": dict(suggestion.mutations or {})})
            trial = _optuna.create_trial(self.study, run, None, self._opened)
        if self._over_trial_budget(trial):
            return False
        if replaces is not None and not self._claim(trial, replaces):
            return True  # another driver launched it first: the scheduler, refreshed, decides anew
        if parent is None:
            config = self.space.sample(trial)  # the fixed params: Optuna records them as the trial's
        self._start(trial, config, slot, parent, start_step, replaces)
        if parent is not None:  # the progress line says it, with Ray Tune's change log
            at = f" at step {start_step:g}" if start_step is not None else ""
            changes = "; ".join(f"{k}: {v}" for k, v in (suggestion.mutations or {}).items())
            self._last_message = (f"trial {trial.number} clones trial {parent}{at}: {changes}" if changes else
                                  f"trial {trial.number} continues trial {parent}{at}")
        return True

    def _claim(self, trial: "optuna.trial.Trial", replaces: int) -> bool:
        """Whether ``trial`` is the one that replaces trial ``replaces``: of the trials created to
        replace it (by any driver) and not ended unrun, the first one. The storage numbers trials
        in the order it creates them, and each driver reads after its own creation, so every
        driver sees the first one and exactly one goes ahead; the others end ``cancelled``
        (which uses up no budget), before anything ran."""
        from optuna.trial import TrialState

        rivals = [t.number for t in self.study.get_trials(deepcopy=False)
                  if (t.user_attrs.get("run") or {}).get("replaces") == replaces and not _never_trained(t)]
        if not rivals or min(rivals) == trial.number:
            return True
        first = min(rivals)
        trial.set_user_attr("failure", {"kind": "cancelled", "message": f"trial {first} replaces trial {replaces} "
                                        "already (another driver launched it first)"})
        self.study.tell(trial, state=TrialState.FAIL)
        self._own.add(trial.number)
        record = TrialRecord(trial.number, {}, State.FAILED, (), "cancelled", None, replaces)
        self._add_finished(record)
        self.scheduler.on_end(record)
        self._last_message = f"trial {trial.number} cancelled: trial {first} replaces trial {replaces}"
        return False

    def _start(self, trial: "optuna.trial.Trial", config: dict[str, Any], slot: int,
               parent: int | None = None, start_step: float | None = None, replaces: int | None = None) -> None:
        number = trial.number
        trial_dir = self.trial_root / trial_dir_name(number)
        from_checkpoint, start_step = self._restore_point(number, parent, trial_dir, start_step)
        record = TrialRecord(number, config, State.RUNNING, (), None, parent, replaces)
        # Live before the launch: a launch cut short (an exception, a second Ctrl-C) still ends
        # the trial as interrupted at shutdown, and storage never keeps it "running".
        self._live[number] = _Live(trial, record, slot, trial_dir, _optuna.trial_id_of(trial, self.study, self.storage),
                                   started=self.clock())
        self._own.add(number)
        self.executor.launch(TrialSpec(number, config, trial_dir, from_checkpoint, self.trial_timeout_s, slot,
                                       start_step))
        self.callbacks.call("on_trial_start", number, config)

    def _free_slot(self) -> int:
        return min(set(range(self._workers())) - {live.slot for live in self._live.values()})

    def _over_trial_budget(self, trial: "optuna.trial.Trial") -> bool:
        """Trial numbers come from the storage in order, so a number below the budget can never
        exceed it; above, count: another driver may have taken the last of the budget."""
        from optuna.trial import TrialState

        number = trial.number
        if self.trials is not None and number >= self.trials and self._counted_trials(below=number) >= self.trials:
            trial.set_user_attr("failure", {
                "kind": "cancelled", "message": "the trial budget was used up by another driver"})
            self.study.tell(trial, state=TrialState.FAIL)
            return True
        return False

    def _last_step(self, number: int) -> float | None:
        """The last step trial ``number`` reported (its latest checkpoint), from storage."""
        live = self._live.get(number)
        if live is not None and live.record.history:
            return live.record.history[-1].step
        found = self.study.get_trials(deepcopy=False)
        frozen = next((t for t in found if t.number == number), None)
        reports = reports_of(frozen) if frozen is not None else ()
        return reports[-1].step if reports else None

    def _restore_point(self, number: int, parent: Any, trial_dir: Path,
                       start_step: float | None) -> tuple[Path | None, float | None]:
        """A clone's copy of its parent's checkpoint, made in its own directory before it starts
        (so the parent's later saves and retention cannot touch it), and the step it continues
        at: the copied state's own step when it records one."""
        if not isinstance(parent, int) or isinstance(parent, bool):  # a trial number, maybe read from storage
            return None, start_step
        owned = self._owned_dir(str(self.trial_root / trial_dir_name(parent)), parent)
        if owned is None:
            return None, start_step
        restore, step = copy_parent_checkpoint(owned / "checkpoint", trial_dir)
        if restore is None:
            warnings.warn(f"trial {number} continues trial {parent}, which left no checkpoint at "
                          f"{owned / 'checkpoint'}; it starts from scratch.", stacklevel=2)
        return restore, step if step is not None else start_step

    def _workers(self) -> int:
        return int(getattr(self.executor, "workers", 1))

    def _reuse_duplicate(self, trial: "optuna.trial.Trial", config: Mapping[str, Any]) -> bool:
        """A config equal to a complete trial's is not run again: the trial records the earlier
        result (and ``duplicate_of``), uses up one trial of the budget and costs no run."""
        names = list(self.space.searched)
        earlier = completed_keys(self.study, names).get(config_key(config, names))
        if earlier is None or earlier.number == trial.number or earlier.values is None:
            return False
        self._own.add(trial.number)
        trial.set_user_attr(DUPLICATE_OF, earlier.number)
        if earlier.user_attrs.get("metrics"):
            trial.set_user_attr("metrics", earlier.user_attrs["metrics"])
        for key, value in earlier.system_attrs.items():
            if key.startswith("constraints:"):  # the same feasibility as the trial it repeats
                _optuna.set_system_attr(trial, key, value)
        self.study.tell(trial, list(earlier.values))
        record = TrialRecord(trial.number, dict(config), State.COMPLETE)
        self._add_finished(record)
        self.scheduler.on_end(record)
        self._counts[State.COMPLETE] += 1
        self._last_message = f"trial {trial.number} repeats trial {earlier.number}: its result is reused"
        return True

    def _wait_for_twin(self, trial: "optuna.trial.Trial", config: Mapping[str, Any]) -> bool:
        """A config that repeats one running here (every other config taken) is not run twice:
        the trial waits, with no run, and takes the running trial's result when it ends."""
        names = list(self.space.searched)
        wanted = config_key(config, names)
        for number, live in self._live.items():
            if config_key(live.record.config, names) == wanted:
                self._own.add(trial.number)
                self._twins.setdefault(number, []).append((trial, dict(config)))
                self._last_message = f"trial {trial.number} repeats running trial {number}: it waits for its result"
                return True
        return False

    def _resolve_twins(self, number: int) -> None:
        """Trial ``number`` ended: its twins reuse its result, or (when it did not complete) are
        cancelled, which does not use up the budget, so another config takes their place."""
        from optuna.trial import TrialState

        for trial, config in self._twins.pop(number, []):
            if self._reuse_duplicate(trial, config):
                continue
            trial.set_user_attr("failure", {"kind": "cancelled",
                                            "message": f"it repeated trial {number}, which did not complete"})
            self.study.tell(trial, state=TrialState.FAIL)

    # ---- the scheduler's view of the study: every trial in storage -------------------------------

    @property
    def _scheduler_reads_history(self) -> bool:
        """False for a scheduler whose ``suggest`` is the base one (it proposes nothing)."""
        return getattr(type(self.scheduler), "suggest", None) is not BaseScheduler.suggest \
            or hasattr(self.scheduler, "population_full")

    def _add_finished(self, record: TrialRecord) -> None:
        self._finished.append(record)
        self._finished_counted += record.failure_kind not in UNCOUNTED_FAILURES

    def _history(self) -> tuple[TrialRecord, ...]:
        """Every trial the scheduler knows of: this driver's, and other drivers' (from storage)."""
        known = dict(self._foreign)
        known.update((r.trial_id, r) for r in self._finished)
        known.update((n, live.record) for n, live in self._live.items())
        return tuple(known[n] for n in sorted(known))

    def _refresh_scheduler(self) -> None:
        """Give the scheduler what other drivers stored since the last refresh (their reports,
        running or ended), so that every driver on a study decides on the same rungs, medians and
        population, as Optuna's pruners read the storage. Called before each decision; only
        trials with new reports or a new state are passed on."""
        if type(self.scheduler) is FIFOScheduler:
            return  # it decides nothing: no storage read per report
        changed: list[TrialRecord] = []
        for t in self.study.get_trials(deepcopy=False):
            if t.number in self._own or is_warm(t):
                continue  # this driver gives its own trials' reports as they come
            state = trial_state(t)
            if state == State.WAITING:
                continue
            key = (len(t.system_attrs), state)  # a report is a system attr: parse only what changed
            if self._seen_reports.get(t.number) == key:
                continue
            self._seen_reports[t.number] = key
            reports = reports_of(t)
            run = t.user_attrs.get("run") or {}
            failure = (t.user_attrs.get("failure") or {}).get("kind") if state == State.FAILED else None
            record = TrialRecord(t.number, stored_config(t), state, reports, failure, _number(run.get("parent")),
                                 _number(run.get("replaces")))
            self._foreign[t.number] = record
            changed.append(record)
        if not changed:
            return
        observe = getattr(self.scheduler, "observe", None)
        if callable(observe):
            observe(tuple(changed))
        else:  # a scheduler without ``observe`` hears of other drivers' trials when they end
            for record in changed:
                if record.state not in (State.RUNNING, State.WAITING):
                    self.scheduler.on_end(record)

    def _has_waiting(self) -> bool:
        from optuna.trial import TrialState

        return bool(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    # ---- events ----------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        live = self._live.get(event.trial_id)
        if live is None:
            return
        if isinstance(event, Result):
            self._on_result(live, event)
        else:
            self._on_end(live, event)

    def _on_result(self, live: _Live, event: Result) -> None:
        tid = live.trial_id
        index = len(live.record.history)
        self.storage.set_trial_system_attr(
            tid, f"{REPORT_PREFIX}{index}", {"s": event.step, "m": dict(event.metrics), "t": time.time()}
        )
        primary = event.metrics.get(self.metrics.primary.name)
        if not self.metrics.is_multi_objective and primary is not None and math.isfinite(primary):
            step = float(event.step)
            candidate = int(step) if step.is_integer() else -1
            live.optuna_step = candidate if candidate > live.optuna_step else live.optuna_step + 1
            self.storage.set_trial_intermediate_value(tid, live.optuna_step, primary)
        live.record = replace(live.record, history=live.record.history + (Report(event.step, dict(event.metrics)),))
        if event.trial_id in self._repeating:  # a repeat trains to the end: its seeds are compared
            stop = False
        else:
            self._refresh_scheduler()
            stop = self.scheduler.on_result(live.record, event.step, event.metrics) == Decision.STOP
        self.executor.reply(event.trial_id, stop)
        self.callbacks.call("on_result", event.trial_id, event.step, dict(event.metrics))

    def _on_end(self, live: _Live, event: Ended) -> None:
        from optuna.trial import TrialState

        self._live.pop(event.trial_id)
        metrics = dict(event.metrics)
        if "__value__" in metrics:
            metrics[self.metrics.primary.name] = metrics.pop("__value__")
        state, kind, message = event.state, event.kind, event.message
        values: list[float] | None = None
        if state == State.COMPLETE:
            missing = [m.name for m in self.metrics.objectives if m.name not in metrics]
            if missing:
                state, kind = State.FAILED, "crash"
                message = (f"the objective returned no value for `{missing[0]}` (got {sorted(metrics) or 'nothing'}); "
                           f"return it or report it")
            else:
                values = [metrics[m.name] for m in self.metrics.objectives]
                if not all(math.isfinite(v) for v in values):
                    state, kind, message = State.FAILED, "nan", "the objective value is not finite"
        tid = live.trial_id
        objective_names = {m.name for m in self.metrics.objectives}
        if metrics and (state != State.COMPLETE or set(metrics) - objective_names):
            self.storage.set_trial_user_attr(tid, "metrics", metrics)
        if state == State.FAILED:
            kind = kind or "crash"
            self.storage.set_trial_user_attr(tid, "failure", {"kind": kind, "message": message[-4000:]})
        if state == State.COMPLETE:
            for constraint in self.metrics.constraints:
                self.storage.set_trial_system_attr(tid, f"constraints:{constraint.name}",
                                                   float(min(constraint.violation(metrics.get(constraint.name)), 1e300)))
            self.study.tell(live.trial, values)
        elif state == State.PRUNED:
            self.study.tell(live.trial, state=TrialState.PRUNED)
        elif kind in LEARNABLE_FAILURES:
            # Told as pruned with a violated constraint: samplers learn to avoid this region.
            self.storage.set_trial_system_attr(tid, f"constraints:{FAILURE_CONSTRAINT}", 1.0)
            self.study.tell(live.trial, state=TrialState.PRUNED)
        else:
            if kind == "interrupted" and not self._continued(bool(live.record.history)):
                # Queued before the trial is told: a kill between the two writes leaves a running
                # trial that the next start recovers (and does not queue twice), never a lost retry.
                self._requeue(live.record.trial_id, live.record.config,
                              retried=self._is_retry(live.trial) or live.record.parent_id is not None
                              or event.trial_id in self._repeating)  # a repeat is planned again
            self.study.tell(live.trial, state=TrialState.FAIL)
        record = replace(live.record, state=state, failure_kind=kind)
        self._add_finished(record)
        if event.trial_id not in self._repeating:
            self.scheduler.on_end(record)
        self._counts[state] += 1
        self._durations_n += 1
        self._durations_total += self.clock() - live.started
        feasible = state == State.COMPLETE and self.metrics.feasible(metrics)
        if feasible and values and not self.metrics.is_multi_objective:
            if self._best is None or self.metrics.primary.better(values[0], self._best):
                self._best = values[0]
        if state == State.FAILED:
            self._last_message = failure_line(event.trial_id, kind, message)
            if kind != "interrupted":  # those run again; the stop that caused them is said once
                self._new_failures.append(self._last_message)
        else:
            self._last_message = f"trial {event.trial_id} {state.value}"
        if not (kind == "interrupted" and self._continued(bool(live.record.history))):
            # (an interrupted trial that the scheduler continues keeps its checkpoint to copy)
            self._apply_retention(event.trial_id, str(live.trial_dir), values if feasible else None)
        if self.callbacks:
            self.callbacks.call("on_trial_end", trial_info(self.storage.get_trial(tid), self.metrics))
        self._resolve_twins(event.trial_id)

    # ---- resume ----------------------------------------------------------------------------

    def _recover_interrupted(self) -> None:
        """Trials left running by a driver that died: mark them interrupted, queue them again."""
        from optuna.trial import TrialState

        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            driver = (t.user_attrs.get("run") or {}).get("driver")
            claimers = _optuna.claimed_by(t)
            taken_by_dead = bool(claimers) and all(driver_alive(c) is False for c in claimers)
            if (driver is None and not taken_by_dead and t.datetime_start is not None
                    and _age_s(t.datetime_start) < _UNCLAIMED_GRACE_S):
                continue  # another driver has just asked for it and is about to record itself
            if driver_alive(driver) is not False:
                continue  # its driver still runs (here or on another machine)
            run = t.user_attrs.get("run") or {}
            if self.space.searched and not t.params and not run.get("config"):  # a clone keeps its config in run
                # The driver died between taking the trial and choosing its config: it never ran.
                ended = _optuna.mark_ended(self.study, t, {"failure": {
                    "kind": "cancelled", "message": "the driver stopped before this trial started"}},
                    TrialState.FAIL, self.storage)
                queued = _optuna.queued_params(t)
                if ended and queued is not None:
                    # A queued config (a retry, a scheduler's suggestion) goes back to the queue as
                    # it was, so it still runs once.
                    attrs = {k: v for k, v in t.user_attrs.items() if k not in ("run", "failure")}
                    self.study.enqueue_trial(queued, user_attrs=attrs)
                continue
            # The retry is queued before the trial is marked: a kill between the two writes is
            # recovered by the next start, which finds the retry already queued.
            # A clone is not queued again: run cold, its config would be another, untrained point;
            # its scheduler decides what takes its place.
            if is_repeat(t) or not self._continued(bool(reports_of(t))):  # no scheduler continues a repeat
                self._requeue(t.number, stored_config(t),
                              retried="retry_of" in t.user_attrs or run.get("parent") is not None
                              or is_repeat(t))  # the repeat phase plans an interrupted repeat again
            _optuna.mark_ended(self.study, t, {"failure": {
                "kind": "interrupted", "message": "the driver stopped while this trial ran"}},
                TrialState.FAIL, self.storage)

    def _continued(self, reported: bool) -> bool:
        """Whether an interrupted trial is left to the scheduler, which continues it from its
        checkpoint (PBT), rather than queued to run again from scratch: once it has reported."""
        return reported and bool(getattr(self.scheduler, "continues_interrupted", False))

    def _is_retry(self, trial: "optuna.trial.Trial") -> bool:
        return "retry_of" in trial.user_attrs

    def _warn_pickled_state(self) -> None:
        """Optuna's CMA-ES keeps pickled state in trial attributes; tunelab never loads it, and
        says so when it finds some (someone could have written code there)."""
        found = [(t.number, keys[0]) for t in self.study.get_trials(deepcopy=False)
                 if (keys := pickled_state_keys(t))]
        if found:
            numbers = ", ".join(str(n) for n, _ in found[:5]) + (" ..." if len(found) > 5 else "")
            warnings.warn(f"trials {numbers} hold pickled sampler state (e.g. `{found[0][1]}`); "
                          "tunelab never loads it and rebuilds its CMA-ES state from the trials.", stacklevel=2)

    def _requeue(self, number: int, config: Mapping[str, Any], retried: bool) -> None:
        if retried:
            return  # a config is re-queued once; a second interruption is final
        if any(t.user_attrs.get("retry_of") == number for t in self.study.get_trials(deepcopy=False)):
            return  # queued already (by a driver killed before it marked the trial, or by another one)
        params = {k: v for k, v in config.items() if k in self.space.searched}
        self.study.enqueue_trial(params, user_attrs={"retry_of": number})

    def _load_finished(self) -> None:
        view = StudyView(self.study)
        replaces = {t.number: _number((t.user_attrs.get("run") or {}).get("replaces"))
                    for t in self.study.get_trials(deepcopy=False)}
        for info in view.trials():
            if info.state in (State.COMPLETE, State.PRUNED, State.FAILED):
                record = TrialRecord(info.number, info.config, info.state, info.history, info.failure_kind,
                                     _number(info.parent), replaces.get(info.number))
                self._add_finished(record)
                self._own.add(info.number)
                self.scheduler.on_end(record)  # a resumed study's rungs and medians are refilled
        best = view.best_trial
        if best is not None and not self.metrics.is_multi_objective:
            self._best = best.values[0] if best.values else None
            sign = 1.0 if self.metrics.primary.goal == "maximize" else -1.0
            ranked, outside = [], []
            for t in view.ranked_trials():
                if t.trial_dir is None or self._inside_root(t.trial_dir) is not None:
                    ranked.append((sign * t.values[0], t.number, t.trial_dir or ""))
                else:
                    outside.append(t)
            self._ranked = ranked[: self.keep_checkpoints]
            if outside:  # e.g. a study resumed under another trial root: one line, not one per trial
                warnings.warn(f"{len(outside)} trials of this study record directories outside the trial root "
                              f"{self._resolved_trial_root()} (trial {outside[0].number}: {outside[0].trial_dir}); "
                              "tunelab leaves them alone: their checkpoints are neither kept among the best nor "
                              "deleted. Resume with the trial root they were written under to manage them.",
                              stacklevel=2)

    # ---- retention and shutdown -------------------------------------------------------------

    def _apply_retention(self, number: int, trial_dir: str, values: list[float] | None) -> None:
        """Keep the best k trials' checkpoints (their ``best/``); as trials finish, delete the
        rest, and the finished trial's ``latest/`` and ``restore/``, which only resuming or
        cloning needs. A trial that a queued clone will copy is pinned: its checkpoint is kept
        whole until the clone has its own copy (deletions it held back are retried here)."""
        if self.metrics.is_multi_objective:
            view = StudyView(self.study)
            front = {t.number for t in view.best_trials}
            dropped = [(t.number, t.trial_dir) for t in view.trials()
                       if t.number not in front and t.trial_dir and t.state not in (State.RUNNING, State.WAITING)]
        elif values is None:
            dropped = [(number, trial_dir)]
        else:
            sign = 1.0 if self.metrics.primary.goal == "maximize" else -1.0
            self._ranked.append((sign * values[0], number, trial_dir))
            self._ranked.sort(key=lambda r: (-r[0], r[1]))
            dropped = [(n, d) for _, n, d in self._ranked[self.keep_checkpoints:]]
            self._ranked = self._ranked[: self.keep_checkpoints]
        todo = {**self._held_back, **{n: (d, True) for n, d in dropped if d}}
        if number not in todo and trial_dir:
            todo[number] = (trial_dir, False)  # kept: only its latest/ and restore/ go
        self._held_back = {}
        pinned: set[int] | None = None  # read from storage only when there is something to delete
        for n, (directory, whole) in todo.items():
            # Look (a stat, nothing written) before resolving the path: most trials of a cheap
            # objective leave no checkpoint, and resolving costs a system call per component.
            if not self._checkpoint_parts(self._trial_root_path(directory), whole):
                continue
            owned = self._owned_dir(directory, n)
            if owned is None:
                continue
            parts = self._checkpoint_parts(owned, whole)
            if not parts:
                continue
            pinned = self._pinned() if pinned is None else pinned
            if n in pinned:
                self._held_back[n] = (directory, whole)
                continue
            for part in parts:
                shutil.rmtree(part, ignore_errors=True)

    @staticmethod
    def _checkpoint_parts(trial_dir: Path, whole: bool) -> list[Path]:
        """What retention deletes of a trial: its whole ``checkpoint/`` or only ``latest/``, and
        its ``restore/`` copy; real directories only (a link is never followed)."""
        checkpoint = trial_dir / "checkpoint"
        return [p for p in ([checkpoint] if whole else [checkpoint / "latest"]) + [trial_dir / RESTORE]
                if p.is_dir() and not p.is_symlink()]

    def _trial_root_path(self, directory: str) -> Path:
        path = Path(directory)
        return path if path.is_absolute() else self.trial_root / path

    def _pinned(self) -> set[int]:
        """Trials whose checkpoint a clone still has to copy: the parents of queued clones
        (a running clone has its copy: it was made before it started)."""
        from optuna.trial import TrialState

        parents = set()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            lineage = t.user_attrs.get("lineage")
            for parent in (t.user_attrs.get("parent"), lineage.get("parent") if isinstance(lineage, Mapping) else None):
                if isinstance(parent, int) and not isinstance(parent, bool):
                    parents.add(parent)
        if self.repeats is not None and not self.metrics.is_multi_objective:
            view = StudyView(self.study)  # the repeated configs' originals and best seeds (export)
            parents.update(kept_checkpoints(self.study.get_trials(deepcopy=False), view.ranked_trials(),
                                            self.repeats, self.metrics.primary.goal))
        return parents

    def _owned_dir(self, directory: str, number: int | None = None) -> Path | None:
        """``directory`` (read from storage) if it lies inside the trial root, else None with a
        warning: a stored path must never make tunelab write or delete anywhere else."""
        owned = self._inside_root(directory)
        if owned is None:
            which = f"trial {number}" if number is not None else "a trial"
            warnings.warn(f"{which} records the directory {directory}, outside the trial root "
                          f"{self._resolved_trial_root()}; tunelab leaves it alone.", stacklevel=2)
        return owned

    def _inside_root(self, directory: str) -> Path | None:
        """``directory`` resolved (links followed) if it lies inside the trial root, else None."""
        root = self._resolved_trial_root()
        path = Path(directory)
        resolved = (path if path.is_absolute() else root / path).resolve()
        return resolved if resolved != root and root in resolved.parents else None

    def _resolved_trial_root(self) -> Path:
        if self._resolved_root is None:  # resolved once: it is the same directory all study long
            self._resolved_root = self.trial_root.resolve()
        return self._resolved_root

    def _shutdown(self) -> None:
        try:
            self.executor.shutdown()
        finally:
            # Whatever still runs is recorded as interrupted, so storage never says "running".
            for number, live in list(self._live.items()):
                self._on_end(live, Ended(number, State.FAILED, live.record.history[-1].metrics
                                         if live.record.history else {}, "interrupted", "the study was stopped"))
            self._emit_progress()

    def _emit_progress(self) -> None:
        if self.on_progress is None:
            return
        eta = None
        if self._durations_n and self.trials is not None:
            # An estimate from what this driver knows: no storage scan on every progress tick.
            used = len(self._live) + self._finished_counted
            now = self.clock()
            total = self.trials + (self.repeats.extra_trials if self.repeats is not None else 0)
            eta = estimate_eta(self._durations_total / self._durations_n, max(0, total - used),
                               [now - live.started for live in self._live.values()], self._workers())
        failures, self._new_failures = tuple(self._new_failures), []
        self.on_progress(Progress(len(self._live), self._counts[State.COMPLETE], self._counts[State.PRUNED],
                                  self._counts[State.FAILED], self._best, self.clock() - self._started, eta,
                                  self._last_message, failures))


def estimate_eta(mean_s: float, unstarted: int, running_ages_s: Sequence[float], workers: int) -> float:
    """Seconds until the budget is used: what the running trials have left (a mean trial each,
    at least none) plus the unstarted ones, shared by the workers; never less than the longest
    running trial still needs."""
    left = [max(0.0, mean_s - age) for age in running_ages_s]
    return max((sum(left) + unstarted * mean_s) / max(1, workers), max(left, default=0.0))


def _number(value: Any) -> int | None:
    """A trial number, maybe read from storage: an int, never a bool."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _never_trained(frozen: Any) -> bool:
    """A trial that ended before its first report because it was interrupted or cancelled."""
    from optuna.trial import TrialState

    return (frozen.state == TrialState.FAIL and not reports_of(frozen)
            and (frozen.user_attrs.get("failure") or {}).get("kind") in UNCOUNTED_FAILURES)


def _age_s(start: Any) -> float:
    import datetime as dt

    # Journal storages keep aware UTC times, database storages naive local ones.
    now = dt.datetime.now(tz=start.tzinfo) if start.tzinfo else dt.datetime.now()
    return (now - start).total_seconds()
