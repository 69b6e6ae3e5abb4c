"""``tunelab report --png DIR``: each plot of a report as a PNG, rendered by headless Chromium.

Plotly's own ``Plotly.toImage`` draws each plot in the page, the same renderer the HTML report
uses, so the images match what people see; no Kaleido and no network needed.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from tunelab.report.browser import browser_context

_TO_IMAGE_JS = """async ([id, scale]) => {
  const gd = document.getElementById(id);
  return await Plotly.toImage(gd, {format: 'png', scale: scale,
                                   width: gd._fullLayout.width, height: gd._fullLayout.height});
}"""
_PLOTS_READY_JS = ("() => typeof Plotly !== 'undefined' && Array.from(document.querySelectorAll('.js-plotly-plot'))"
                   ".every(gd => gd._fullLayout)")


def write_pngs(report: str | Path, out_dir: str | Path, *, browser: str | None = None, scale: float = 2.0) -> list[Path]:
    """Open the report file and write ``<plot>.png`` for each plot in it (``history.png``, ...)."""
    with browser_context(browser) as context:
        page = context.new_page()
        page.goto(Path(report).resolve().as_uri(), wait_until="load")
        return page_pngs(page, out_dir, scale=scale)


def page_pngs(page: Any, out_dir: str | Path, *, scale: float = 2.0) -> list[Path]:
    """``<plot>.png`` for each plot of a report already open in ``page``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page.wait_for_function(_PLOTS_READY_JS)
    written = []
    for plot_id in page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => d.id)"):
        data_url = page.evaluate(_TO_IMAGE_JS, [plot_id, scale])
        path = out_dir / f"{plot_id.removeprefix('plot-')}.png"
        path.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
        written.append(path)
    return written
