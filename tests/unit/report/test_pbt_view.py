"""The report's PBT view, from a stored PBT study: members' hyperparameters over steps, and exploits."""

from __future__ import annotations

from pathlib import Path

from pbt_study import write_pbt_study
from report_data import single_objective

from tunelab.report.data import BEST_COLOR, ReportData
from tunelab.report.html import render_html
from tunelab.report.pbt_view import lineage_panel, pbt_panels, schedule_panel
from tunelab.study import load_study


def pbt_data(tmp_path: Path) -> ReportData:
    return ReportData.from_study(load_study(write_pbt_study(tmp_path / "pbt.db"), "pbt"))


def test_report_data_reads_the_lineage(tmp_path: Path) -> None:
    data = pbt_data(tmp_path)
    assert {n: (l.parent, l.parent_step) for n, l in data.links.items()} == {
        0: (None, None), 1: (None, None), 2: (None, None), 3: (0, 2.0), 4: (3, 4.0)}


def test_schedule_panel_draws_each_member_over_the_steps_it_trained(tmp_path: Path) -> None:
    panel = schedule_panel(pbt_data(tmp_path))
    fig = panel.figure
    assert [a.text for a in fig.layout.annotations] == ["learning_rate", "batch_size"]
    assert fig.layout.yaxis.type == "log"  # learning_rate is log in the space
    spans = {(tuple(t.x), tuple(t.y)) for t in fig.data if t.mode == "lines+markers" and t.yaxis in (None, "y")}
    # trial 3 trains (2, 4] with 3.6e-05; trial 4 (4, 6]; trial 0 (0, 2]
    assert ((2.0, 4.0), (3.6e-05, 3.6e-05)) in spans and ((4.0, 6.0), (3.6e-05, 3.6e-05)) in spans
    assert ((0.0, 2.0), (3e-05, 3e-05)) in spans
    best = [t for t in fig.data if t.name == "best trial's lineage"]
    assert best and all(t.line.color == BEST_COLOR for t in best)
    hovers = " ".join(" ".join(t.text or ()) for t in fig.data)
    assert "learning_rate: 3e-05 --- (* 1.2) --> 3.6e-05" in hovers
    jumps = [t for t in fig.data if t.line.dash == "dot"]
    assert any(tuple(t.y) == ("16", "32") for t in jumps)  # batch_size: a choice, drawn as categories


def test_lineage_panel_has_one_arrow_per_exploit(tmp_path: Path) -> None:
    fig = lineage_panel(pbt_data(tmp_path)).figure
    arrows = [t for t in fig.data if t.name == "exploits"]
    assert sorted((tuple(t.x), tuple(t.y)) for t in arrows) == [((2.0, 2.0), (0, 3)), ((4.0, 4.0), (3, 4))]
    assert "batch_size: 16 --- (resample) --> 32" in arrows[1].text[1] + arrows[0].text[1]


def test_the_view_is_in_the_html_report_only_for_pbt_studies(tmp_path: Path) -> None:
    page = render_html(load_study(write_pbt_study(tmp_path / "pbt.db"), "pbt"))
    assert "id='pbt-schedule'" in page and "id='pbt-lineage'" in page
    assert pbt_panels(single_objective()) == []
