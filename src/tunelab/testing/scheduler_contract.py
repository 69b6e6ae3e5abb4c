"""The scheduler contract, reusable by every scheduler (like Optuna's ``pytest_samplers``).

``replay`` drives the REAL ``Tuner`` with a scheduler: an in-memory Optuna study, a sampler
that proposes the given configs in order, and the ``SimulatedExecutor`` (synthetic learning
curves, trials at different speeds on a simulated clock; no process, no sleep). So the
scheduler's ``suggest`` is asked when a worker frees (a clone starts from its parent's
checkpoint step), every report reaches ``on_result`` after it is stored, a STOP prunes the
trial, and each finished record goes to ``on_end``: exactly what a study does.
``check_scheduler_contract`` drives a scheduler factory through it and checks the protocol.
In a test::

    @pytest.mark.parametrize("make", [lambda metric, mode: MyScheduler(metric, mode)])
    def test_contract(make):
        check_scheduler_contract(make)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from tunelab.metrics import MetricSet
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


class Recording:
    """A scheduler that records what the one it wraps decides and suggests (and checks the
    types of its answers), forwarding everything else (``observe``, ``to_dict``)."""

    def __init__(self, inner: Scheduler, out: Replay) -> None:
        self.inner = inner
        self.out = out

    def suggest(self, history: Sequence[TrialRecord]) -> Suggestion | None:
        suggestion = self.inner.suggest(history)
        if suggestion is not None:
            assert isinstance(suggestion, Suggestion), f"suggest returned {suggestion!r}"
            parent = suggestion.from_checkpoint
            assert parent is None or parent in {r.trial_id for r in history}, f"checkpoint of unknown trial {parent}"
            self.out.suggestions.append(suggestion)
        return suggestion

    def on_result(self, trial: TrialRecord, step: float, metrics: Mapping[str, float]) -> Decision:
        decision = self.inner.on_result(trial, step, metrics)
        assert isinstance(decision, Decision), f"on_result returned {decision!r}"
        self.out.decisions.append((trial.trial_id, step, decision))
        return decision

    def on_end(self, trial: TrialRecord) -> None:
        assert self.inner.on_end(trial) is None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


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
    mode: str | None = None,
) -> Replay:
    """Run ``configs`` (then scheduler suggestions) through the real ``Tuner``; see the module doc.

    Args:
        scheduler: The scheduler under test.
        configs: What the sampler proposes, in order.
        value: The metric of a config at a step.
        metric: Name under which ``value`` is reported.
        steps: The report steps of a full trial.
        workers: Trials running at once.
        step_seconds: Simulated seconds one step of a trial takes (uneven, so results interleave).
        trials: Budget of trials, clones included; defaults to ``len(configs)``.
        mode: The study's direction; defaults to the scheduler's ``mode`` (or maximize).
    """
    from tunelab.testing.simulate import simulated_tuner

    out = Replay()
    goal = mode or getattr(scheduler, "mode", "maximize")
    sim = simulated_tuner(
        curve=lambda c, s: {metric: value(c, s)}, steps=steps, scheduler=Recording(scheduler, out),  # type: ignore[arg-type]
        metrics=MetricSet.parse([{"name": metric, "goal": goal}]), configs=configs, workers=workers,
        step_seconds=lambda tid, _c: step_seconds(tid), trials=len(configs) if trials is None else trials,
    )
    sim.tuner.run()
    from tunelab.study import StudyView

    for info in StudyView(sim.study).trials():
        out.records[info.number] = TrialRecord(info.number, info.config, info.state, info.history,
                                               info.failure_kind, info.parent)
    return out


def check_scheduler_contract(make: MakeScheduler, *, best_survives: bool = True) -> None:
    """Check that ``make(metric, mode)`` builds a scheduler that keeps the protocol.

    Checks: it is a ``Scheduler`` with a ``repr`` (and a ``to_dict`` with a ``type`` if it has
    one); through ``replay`` (the real ``Tuner``) it returns a ``Decision`` for every report and ``None`` or a
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
