"""The HTML report in a real headless Chromium: every plot drawn with data, no console errors, no
network; a screenshot kept under the test's tmp dir; each plot exported as a PNG."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

import tunelab
from tunelab.errors import MissingDependencyError, TrialFailed
from tunelab.report.browser import PLOT_POINTS_JS, browser_context, find_chromium
from tunelab.report.html import write_report
from tunelab.report.png import page_pngs

PLOTS = ["history", "sensitivity", "parallel", "importance", "curves", "pareto", "timeline"]


def tradeoff(config: dict, reporter: Any) -> dict:
    """Two objectives and a memory constraint; wide models run out of memory; ASHA prunes."""
    if config["width"] == 8:
        raise TrialFailed("oom", "simulated")
    accuracy = 0.0
    for epoch in (1, 2, 3):
        accuracy = config["width"] / 10 + config["lr"] + 0.01 * epoch
        reporter.report(epoch, accuracy=accuracy)
    return {"accuracy": accuracy, "latency_ms": config["width"] * 3.0, "memory_mb": config["width"] * 20.0}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("study")
    return tunelab.tune(
        tradeoff, {"lr": {"float": [1e-3, 1e-1], "log": True}, "width": {"int": [1, 8]},
                   "optimizer": {"choice": ["adamw", "sgd"]}},
        metrics=[{"name": "accuracy", "goal": "maximize"}, {"name": "latency_ms", "goal": "minimize"},
                 {"name": "memory_mb", "max": 120}],
        scheduler={"type": "asha", "min_resource": 1, "max_resource": 3, "reduction_factor": 3},
        trials=16, seed=0, workers=2, backend="inprocess", storage=str(tmp / "s.journal"), study_name="demo",
        trial_dir=str(tmp / "runs"))


def require_browser() -> None:
    """Debian's Chromium, driven by Playwright. Missing? Fail, saying what to install (no skip)."""
    try:
        find_chromium()
    except MissingDependencyError as exc:
        pytest.fail(f"{exc}\nThe browser tests need Chromium: run `sudo bash scripts/system-deps.sh` "
                    "(`make test` runs it) or `apt-get install chromium`.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("The browser tests need Playwright's Python package: pip install playwright "
                    "(no browser download: the system's Chromium is used).")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_every_plot_renders_with_data_offline(study: Any, tmp_path: Path) -> None:
    states = {t.state.value for t in study.trials()}
    assert {"complete", "pruned", "failed"} <= states  # every kind of trial is on the plots
    path = write_report(study, tmp_path / "report.html")
    require_browser()
    with browser_context(offline=True) as context:
        page = context.new_page()
        errors: list[str] = []
        outside: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else outside.append(r.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot')).length > 0 && "
                               "Array.from(document.querySelectorAll('.js-plotly-plot')).every(gd => gd._fullLayout)")
        found = {p["id"].removeprefix("plot-"): p for p in page.evaluate(PLOT_POINTS_JS)}
        assert list(found) == PLOTS
        for plot_id, info in found.items():
            assert info["traces"] > 0 and info["points"] > 0, (plot_id, info)
            if plot_id != "parallel":  # parallel coordinates draw lines in WebGL: no SVG points to count
                assert info["drawn"] > 0, (plot_id, info)
        assert page.evaluate("() => document.querySelectorAll('#plot-parallel .parcoords .y-axis').length") == 4  # lr, width, optimizer, accuracy
        failures = page.locator("#failures")  # the failures table, with each failed trial's message
        assert failures.is_visible() and "oom" in failures.inner_text() and "simulated" in failures.inner_text()
        shot = tmp_path / "report-screenshot.png"  # the test artifact
        page.screenshot(path=str(shot), full_page=True)
        images = page_pngs(page, tmp_path / "png", scale=1.0)  # what `tunelab report --png DIR` writes
        assert errors == []
        assert outside == []  # works offline: no CDN, no fonts, nothing fetched
    assert png_size(shot)[1] > 2000
    assert sorted(p.stem for p in images) == sorted(PLOTS)
    for image in images:
        width, height = png_size(image)
        assert width >= 800 and height >= 200, image
    print(f"screenshot: {shot}")
