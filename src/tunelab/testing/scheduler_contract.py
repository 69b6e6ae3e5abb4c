"""The scheduler contract, reusable by every scheduler (like Optuna's ``pytest_samplers``).

``replay`` runs a simulated asynchronous tuner: a few workers, trials at different speeds on a
simulated clock, synthetic learning curves, no processes and no sleeps. It asks ``suggest``
whenever a worker frees (launching a clone from a checkpoint when it gets one), feeds every
report to ``on_result``, stops a trial when told to, and hands each finished record to
``on_end``. ``check_scheduler_contract`` drives a scheduler factory through it and checks the
protocol. In a test::

    @pytest.mark.parametrize("make", [lambda metric, mode: MyScheduler(metric, mode)])
    def test_contract(make):
        check_scheduler_contract(make)
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from tunelab.schedulers.base import Decision, Scheduler, Suggestion
from tunelab.trial import FailureKind, Report, State, TrialRecord

ValueFn = Callable[[Mapping[str, Any], float], float]
MakeScheduler = Callable[[str, str], Scheduler]  # (metric, mode) -> a fresh scheduler

#: Twelve curves ``a - b/step``; the one at ``CONTRACT_BEST`` beats every other at every step.
CONTRACT_CONFIGS: tuple[dict[str, float], ...] = tuple(
    {"a": 1.0, "b": 0.01} if i == 5
    else {"a": round(0.6 + 0.03 * (5 * i % 12), 2), "b": round(0.05 + 0.04 * (7 * i % 12), 2)}
    for i in range(12)
)
CONTRACT_BEST = 5


def curve(config: Mapping[str, Any], step: float) -> float:
    """A saturating learning curve ``a - b / step``: higher ``a`` and lower ``b`` are better."""
    return float(config["a"]) - float(config["b"]) / step


@dataclass
class Replay:
    """What happened in a ``replay``: final records, decisions in order, suggestions taken."""

    records: dict[int, TrialRecord] = field(default_factory=dict)
    decisions: list[tuple[int, float, Decision]] = field(default_factory=list)
    suggestions: list[Suggestion] = field(default_factory=list)

    def stopped(self) -> dict[int, float]:
        """trial_id -> the step at which the scheduler stopped it."""
        return {tid: step for tid, step, d in self.decisions if d is Decision.STOP}

    def log(self) -> tuple[Any, ...]:
        """Everything observable, for comparing two runs."""
        return tuple(self.decisions), tuple(self.suggestions), tuple(self.records.values())


def replay(
    scheduler: Scheduler,
    configs: Sequence[Mapping[str, Any]],
    value: ValueFn = curve,
    *,
    metric: str = "score",
    steps: Sequence[float] = (1, 2, 3, 4, 5, 6, 7, 8, 9),
    workers: int = 3,
    step_seconds: Callable[[int], float] = lambda trial_id: 1.0 + 0.5 * (trial_id % 3),
    trials: int | None = None,
) -> Replay:
    """Run ``configs`` (then scheduler suggestions) on a simulated clock; see the module doc.

    Args:
        scheduler: The scheduler under test.
        configs: What the sampler would propose, in order.
        value: The metric of a config at a step.
        metric: Name under which ``value`` is reported.
        steps: The report steps of a full trial.
        workers: Trials running at once.
        step_seconds: Simulated seconds one step of a trial takes (uneven, so results interleave).
        trials: Budget of trials, clones included; defaults to ``len(configs)``.
    """
    out = Replay()
    pending = deque(configs)
    budget = len(configs) if trials is None else trials
    clock: list[tuple[float, int, int, int]] = []  # (time, tiebreak, trial_id, index into steps)
    order = itertools.count()

    def launch(now: float) -> None:
        if len(out.records) >= budget:
            return
        suggestion = scheduler.suggest(tuple(out.records.values()))
        if suggestion is None:
            if not pending:
                return
            config, parent, first = pending.popleft(), None, 0
        else:
            assert isinstance(suggestion, Suggestion), f"suggest returned {suggestion!r}"
            parent = suggestion.from_checkpoint
            assert parent is None or parent in out.records, f"checkpoint of unknown trial {parent}"
            config, first = dict(suggestion.config), _resume_index(out.records, parent, steps)
            out.suggestions.append(suggestion)
        trial_id = len(out.records)
        out.records[trial_id] = TrialRecord(trial_id, dict(config), parent_id=parent)
        if first >= len(steps):  # cloned from a finished trial: nothing left to train
            finish(trial_id, State.COMPLETE, now)
        else:
            heapq.heappush(clock, (now + step_seconds(trial_id), next(order), trial_id, first))

    def finish(trial_id: int, state: State, now: float) -> None:
        out.records[trial_id] = replace(out.records[trial_id], state=state)
        scheduler.on_end(out.records[trial_id])
        launch(now)

    for _ in range(workers):
        launch(0.0)
    while clock:
        now, _, trial_id, index = heapq.heappop(clock)
        record = out.records[trial_id]
        metrics = {metric: value(record.config, steps[index])}
        record = replace(record, history=record.history + (Report(steps[index], metrics),))
        out.records[trial_id] = record
        decision = scheduler.on_result(record, steps[index], metrics)
        assert isinstance(decision, Decision), f"on_result returned {decision!r}"
        out.decisions.append((trial_id, steps[index], decision))
        if decision is Decision.STOP:
            finish(trial_id, State.PRUNED, now)
        elif index + 1 == len(steps):
            finish(trial_id, State.COMPLETE, now)
        else:
            heapq.heappush(clock, (now + step_seconds(trial_id), next(order), trial_id, index + 1))
    return out


def _resume_index(records: Mapping[int, TrialRecord], parent: int | None, steps: Sequence[float]) -> int:
    """Index of the first step after the checkpoint's last report (0 without a checkpoint)."""
    if parent is None or not records[parent].history:
        return 0
    last = records[parent].history[-1].step
    return next((i for i, s in enumerate(steps) if s > last), len(steps))


def check_scheduler_contract(make: MakeScheduler, *, best_survives: bool = True) -> None:
    """Check that ``make(metric, mode)`` builds a scheduler that keeps the protocol.

    Checks: it is a ``Scheduler`` with a ``repr`` (and a ``to_dict`` with a ``type`` if it has
    one); through ``replay`` it returns a ``Decision`` for every report and ``None`` or a
    ``Suggestion`` from ``suggest``; two fresh instances decide identically (determinism);
    minimizing the negated curves gives the same decisions as maximizing (mode mirror); a
    report without the metric is answered CONTINUE; ``on_end`` takes records of every final
    state; and, unless ``best_survives`` is False, the curve that is best at every step is
    never stopped.

    Raises:
        AssertionError: saying which part of the contract failed.
    """
    scheduler = make("score", "maximize")
    assert isinstance(scheduler, Scheduler), f"{type(scheduler).__name__} misses a protocol method"
    assert repr(scheduler)
    if hasattr(scheduler, "to_dict"):
        settings = scheduler.to_dict()  # type: ignore[attr-defined]
        assert isinstance(settings, dict) and "type" in settings, f"to_dict gave {settings!r}"

    first = replay(make("score", "maximize"), CONTRACT_CONFIGS)
    again = replay(make("score", "maximize"), CONTRACT_CONFIGS)
    assert first.log() == again.log(), "two fresh schedulers decided differently on the same replay"
    mirror = replay(make("score", "minimize"), CONTRACT_CONFIGS, lambda c, s: -curve(c, s))
    assert [d for *_, d in mirror.decisions] == [d for *_, d in first.decisions], "minimize does not mirror maximize"
    if best_survives:
        best = CONTRACT_CONFIGS[CONTRACT_BEST]
        ids = [tid for tid, r in first.records.items() if r.config == best and r.parent_id is None]
        assert ids and not set(ids) & set(first.stopped()), f"the best curve was stopped: {first.stopped()}"

    fresh = make("score", "maximize")
    lonely = TrialRecord(100, {"a": 0.5}, history=(Report(1, {"other": 1.0}),))
    decision = fresh.on_result(lonely, 1, {"other": 1.0})
    assert decision is Decision.CONTINUE, f"a report without the metric got {decision!r}"
    ended = [
        TrialRecord(101, {}, State.COMPLETE, (Report(1, {"score": 0.5}),)),
        TrialRecord(102, {}, State.PRUNED, (Report(1, {"score": 0.1}),)),
        TrialRecord(103, {}, State.FAILED, (Report(1, {"score": 0.2}),), FailureKind.OOM.value),
        TrialRecord(104, {}, State.FAILED, (), FailureKind.CRASH.value),  # died before reporting
        replace(lonely, state=State.COMPLETE),
    ]
    for record in ended:
        assert fresh.on_end(record) is None
    suggestion = fresh.suggest(tuple(ended))
    assert suggestion is None or isinstance(suggestion, Suggestion), f"suggest returned {suggestion!r}"
