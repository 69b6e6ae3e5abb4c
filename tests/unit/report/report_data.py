"""Synthetic trials for the report tests: every state, a log, an int, a choice and a conditional
parameter, fractional steps; and a two-objective study with a constraint."""

from __future__ import annotations

import datetime as dt

from tunelab.metrics import MetricSet
from tunelab.report.data import ReportData
from tunelab.study import TrialInfo
from tunelab.trial import Report, State

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)
SPACE = {"lr": {"float": [1e-5, 1e-1], "log": True}, "layers": {"int": [1, 6]},
         "optimizer": {"choice": ["adamw", "sgd"]}, "momentum": {"float": [0.8, 0.99], "when": {"optimizer": "sgd"}},
         "epochs": {"fixed": 3}}


def trial(number: int, state: State, lr: float, *, slot: int, start: float, end: float | None, curve=(),
          kind: str | None = None, optimizer: str = "adamw", feasible: bool = True, metrics=None,
          message: str = "") -> TrialInfo:
    config = {"lr": lr, "layers": 1 + number % 6, "optimizer": optimizer, "epochs": 3}
    if optimizer == "sgd":
        config["momentum"] = 0.9
    history = tuple(Report(0.5 * (i + 1), {"accuracy": v}) for i, v in enumerate(curve))
    final = dict(metrics) if metrics is not None else ({"accuracy": curve[-1]} if state == State.COMPLETE else {})
    values = tuple(final[k] for k in ("accuracy",) if k in final) if state == State.COMPLETE else None
    return TrialInfo(number=number, state=state, config=config, metrics=final, values=values or None,
                     feasible=feasible, failure_kind=kind, message=message, history=history,
                     start=T0 + dt.timedelta(seconds=start),
                     end=T0 + dt.timedelta(seconds=end) if end is not None else None, slot=slot)


def single_objective() -> ReportData:
    trials = (
        trial(0, State.COMPLETE, 1e-3, slot=0, start=0, end=30, curve=(0.6, 0.7, 0.8)),
        trial(1, State.COMPLETE, 3e-2, slot=1, start=0, end=28, curve=(0.5, 0.6, 0.65), optimizer="sgd"),
        trial(2, State.PRUNED, 1e-5, slot=0, start=31, end=40, curve=(0.3,)),
        trial(3, State.FAILED, 9e-2, slot=1, start=29, end=33, curve=(0.2,), kind="nan",
              message="metric 'accuracy' is nan"),
        trial(4, State.FAILED, 5e-2, slot=1, start=34, end=35, kind="oom", optimizer="sgd",
              message="trial process was killed by signal 9.\nepoch 1\n<script>alert(1)</script>"),
        trial(5, State.COMPLETE, 2e-4, slot=0, start=41, end=70, curve=(0.7, 0.8, 0.9)),
        trial(6, State.RUNNING, 4e-4, slot=1, start=36, end=None, curve=(0.75,)),
    )
    metrics = MetricSet.parse([{"name": "accuracy", "goal": "maximize"}])
    return ReportData("demo", trials, metrics, SPACE, (trials[5],), {"sampler": "tpe", "seed": 0},
                      now=T0 + dt.timedelta(seconds=80))


def two_objectives() -> ReportData:
    metrics = MetricSet.parse([{"name": "accuracy", "goal": "maximize"}, {"name": "latency_ms", "goal": "minimize"},
                               {"name": "memory_mb", "strategy": "constraint", "max": 100}])
    points = [(0.9, 30.0, 50, True), (0.8, 10.0, 60, True), (0.85, 40.0, 70, True), (0.95, 20.0, 300, False),
              (0.7, 5.0, 20, True)]
    trials = tuple(trial(i, State.COMPLETE, 10 ** (-1 - i / 2), slot=i % 2, start=10 * i, end=10 * i + 9,
                         curve=(acc,), feasible=ok, metrics={"accuracy": acc, "latency_ms": lat, "memory_mb": mem})
                   for i, (acc, lat, mem, ok) in enumerate(points))
    trials = tuple(TrialInfo(**{**t.__dict__, "values": (t.metrics["accuracy"], t.metrics["latency_ms"])})
                   for t in trials)
    front = tuple(t for t in trials if t.number in (0, 1, 4))
    return ReportData("pareto", trials, metrics, SPACE, front, now=T0 + dt.timedelta(seconds=60))
