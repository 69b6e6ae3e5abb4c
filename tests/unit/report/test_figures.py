"""Each plot of the report, from synthetic trials: data where there should be data, the right
axes, failed and pruned trials marked, and a note instead of a crash when there is too little."""

from __future__ import annotations

import dataclasses

from report_data import single_objective, two_objectives
from tunelab.report import figures


def points(fig) -> int:
    total = 0
    for trace in fig.data:
        if trace.type == "parcoords":
            total += len(trace.dimensions[0].values)
        else:
            total += sum(v is not None for v in (trace.x if trace.x is not None else trace.y))
    return total


def by_name(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_history_has_values_and_best_so_far_by_number_and_time() -> None:
    panel = figures.history(single_objective())
    traces = by_name(panel.figure)
    assert {"complete trials", "pruned trials", "best so far"} <= set(traces)
    best = [t for t in panel.figure.data if t.name == "best so far"]
    assert len(best) == 2  # against trial number, and against wall time
    assert list(best[0].y) == [0.8, 0.8, 0.9]
    assert list(best[0].x) == [0, 1, 5]
    assert panel.figure.layout.annotations[1].text == "by wall time (seconds)"


def test_sensitivity_uses_log_axes_and_marks_failed_and_pruned() -> None:
    panel = figures.sensitivity(single_objective())
    fig = panel.figure
    assert [a.text for a in fig.layout.annotations] == ["lr", "layers", "optimizer", "momentum"]
    assert fig.layout.xaxis.type == "log"  # lr
    assert fig.layout.xaxis3.type == "category" and list(fig.layout.xaxis3.categoryarray) == ["adamw", "sgd"]
    names = {t.name for t in fig.data}
    assert {"complete", "pruned (last value)", "failed"} <= names
    failed = [t for t in fig.data if t.name == "failed" and t.xaxis == "x"][0]
    assert len(failed.x) == 2 and max(failed.y) < 0.3  # on a line below every value
    assert any("oom" in text for text in failed.text)
    momentum = [t for t in fig.data if t.xaxis == "x4"]
    assert sum(len(t.x) for t in momentum) == 2  # only the trials where the conditional param was active


def test_parallel_coordinates_encode_log_and_choice_params() -> None:
    fig = figures.parallel_coordinates(single_objective()).figure
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert set(dims) == {"lr (log)", "layers", "optimizer", "momentum", "accuracy"}
    assert list(dims["optimizer"].ticktext) == ["adamw", "sgd"]
    assert list(dims["lr (log)"].values) == [-3.0, pytest_approx(-1.5228787), pytest_approx(-3.69897)]
    assert points(fig) == 3  # the complete trials


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, abs=1e-6)


def test_learning_curves_show_every_state_with_its_own_style() -> None:
    fig = figures.learning_curves(single_objective()).figure
    traces = by_name(fig)
    assert set(traces) == {"complete trials", "pruned trials", "failed trials", "running trials"}
    assert traces["pruned trials"].line.dash == "dash" and traces["failed trials"].line.dash == "dot"
    assert [x for x in traces["complete trials"].x if x is not None] == [0.5, 1.0, 1.5] * 3


def test_timeline_has_a_bar_per_trial_per_slot() -> None:
    panel = figures.timeline(single_objective())
    bars = panel.figure.data
    assert sum(len(b.x) for b in bars) == 7
    assert {y for b in bars for y in b.y} == {"slot 0", "slot 1"}
    running = by_name(panel.figure)["running trials"]
    assert running.x[0] == 80 - 36  # still running: drawn up to now
    assert "2 worker slot(s)" in panel.note


def test_pareto_front_marks_constraint_violations() -> None:
    data = two_objectives()
    panel = figures.pareto(data)
    traces = by_name(panel.figure)
    assert sorted(traces["Pareto front"].x) == [0.7, 0.8, 0.9]
    assert list(traces["violates a constraint"].x) == [0.95]
    assert list(traces["dominated"].x) == [0.85]
    assert figures.pareto(single_objective()) is None  # single objective: no Pareto plot


def test_too_little_data_gives_a_note_not_an_error() -> None:
    empty = dataclasses.replace(single_objective(), trials=(), best=())
    for make in (figures.history, figures.sensitivity, figures.parallel_coordinates, figures.learning_curves,
                 figures.timeline):
        panel = make(empty)
        assert panel.figure is None and panel.note
    panel = figures.importance(single_objective(), study=None)
    assert panel.figure is None and "three complete trials" in panel.note
