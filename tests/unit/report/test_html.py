"""The HTML report: one file, plotly.js inlined once, no network, every section there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tunelab
from report_data import single_objective, two_objectives
from tunelab.report.figures import all_panels, importance
from tunelab.report.html import render_data, write_report
from tunelab.errors import TrialFailed


def objective(config: dict, reporter) -> dict:
    if config["width"] == 5:
        raise TrialFailed("oom", "too wide")
    score = 0.0
    for epoch in (1, 2, 3):
        score = 1.0 - (config["lr"] - 0.01) ** 2 * 1e3 - 0.01 * config["width"] + 0.01 * epoch
        reporter.report(epoch, score=score)
    return {"score": score}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("study")
    return tunelab.tune(objective, {"lr": {"float": [1e-4, 1e-1], "log": True}, "width": {"int": [1, 6]}},
                        metrics=[{"name": "score", "goal": "maximize"}], trials=10, backend="inprocess", seed=0,
                        storage=str(tmp / "s.journal"), study_name="html", trial_dir=str(tmp / "runs"))


def scripts(text: str) -> list[str]:
    return re.findall(r"<script[^>]*>", text)


def test_report_is_self_contained(study, tmp_path: Path) -> None:
    path = write_report(study, tmp_path / "out" / "report.html")
    text = path.read_text()
    assert text.count("Plotly.newPlot(") == 6  # history, sensitivity, parallel, importance, curves, timeline
    assert all("src=" not in tag for tag in scripts(text))  # nothing loaded from anywhere
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()[:300]) == 1  # the library itself, inline, once
    for section in ("summary", "history", "sensitivity", "parallel", "importance", "curves", "timeline", "trials"):
        assert f"id='{section}'" in text
    assert "http-equiv='refresh'" not in text
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # written atomically, no leftovers


def test_summary_states_best_config_and_failure_kinds(study) -> None:
    text = render_data(single_objective(), [], live=True)
    assert "http-equiv='refresh'" in text and "The study is running" in text
    assert "Best trial: 5" in text
    assert "nan 1, oom 1" in text  # failed trials by kind
    assert "compute time" in text and "wall time" in text


def test_multi_objective_report_has_a_pareto_front_table_and_plot() -> None:
    data = two_objectives()
    text = render_data(data, all_panels(data, None))
    assert "Pareto front" in text and "id='pareto'" in text
    assert "latency_ms (minimize)" in text and "memory_mb (constraint &lt;= 100)" in text


def test_importance_from_optuna(study) -> None:
    from tunelab.report.data import ReportData

    panel = importance(ReportData.from_study(study), study.optuna_study)
    assert panel.figure is not None, panel.note
    scores = dict(zip(panel.figure.data[0].y, panel.figure.data[0].x))
    assert set(scores) == {"lr", "width"} and sum(scores.values()) == pytest.approx(1.0)
    assert "fANOVA" in panel.note


def test_importance_with_too_few_trials_is_a_note(tmp_path: Path) -> None:
    from tunelab.report.data import ReportData

    two = tunelab.tune(objective, {"lr": {"float": [1e-4, 1e-1], "log": True}, "width": {"int": [1, 2]}},
                       metrics=[{"name": "score", "goal": "maximize"}], trials=2, backend="inprocess", seed=0,
                       storage=str(tmp_path / "s.journal"), study_name="few", trial_dir=str(tmp_path / "runs"))
    panel = importance(ReportData.from_study(two), two.optuna_study)
    assert panel.figure is None and "three complete trials" in panel.note


def test_a_study_without_trials_still_renders() -> None:
    import dataclasses

    empty = dataclasses.replace(single_objective(), trials=(), best=())
    text = render_data(empty, all_panels(empty, None))
    assert text.count("Nothing to plot yet") == 6
    summary = text[text.index("<section id='summary'>"):text.index("<section id='trials'>")]
    assert "No trial has run yet." in summary and "constraint" not in summary  # the study has no constraint
    assert "id='failures'" not in text


def test_failures_table_with_kinds_and_messages() -> None:
    text = render_data(single_objective(), [])
    section = text[text.index("<section id='failures'>"):]
    section = section[: section.index("</section>")]
    assert "<a href='#failures'>Failures</a>" in text
    assert "2 failed trial(s)" in section and "tunelab logs N" in section
    # By kind: count, latest trial, its first line.
    assert "<td>nan</td><td>1</td><td>3</td><td>metric &#x27;accuracy&#x27; is nan</td>" in section
    assert "<td>oom</td><td>1</td><td>4</td><td>trial process was killed by signal 9.</td>" in section
    # Each failed trial: the first line, the whole message a click away, escaped.
    assert "<summary>trial process was killed by signal 9.</summary><pre>trial process was killed by signal 9.\n" \
           "epoch 1\n&lt;script&gt;alert(1)&lt;/script&gt;</pre>" in section
    assert "<script>alert" not in text
    trials_table = text[text.index("<section id='trials'>"):]
    assert "failure_message" in trials_table and "epoch 1" not in trials_table  # one line per trial there


def test_no_best_names_the_failures_not_constraints() -> None:
    import dataclasses

    data = single_objective()
    failed_only = dataclasses.replace(data, trials=tuple(t for t in data.trials if t.state.value == "failed"), best=())
    text = render_data(failed_only, [])
    assert "No trial completed yet (2 failed: oom 1, nan 1; see the failures below)." in text
