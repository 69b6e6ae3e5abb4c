"""A headless Chromium for static images (``tunelab report --png``) and the report's tests.

We drive the system's Chromium (Debian's ``chromium`` package) through Playwright with
``executable_path``: Playwright's own browser download needs the network, and Kaleido 1.x also
needs a Chrome and fetches MathJax from a CDN by default. One browser renders every plot exactly
as the HTML report shows it, with no network: every request that is not a local file is refused.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tunelab.errors import MissingDependencyError, require

#: Headless, quiet, and never calling home (no sync, no component updates, no background traffic).
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str:
    """The Chromium executable: ``explicit`` if given, else the first of ``chromium``, ... on PATH."""
    if explicit:
        found = shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
        if found is None:
            raise MissingDependencyError(f"No browser at {explicit!r}. Pass the path of a Chromium executable.")
        return found
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise MissingDependencyError(
        "No Chromium found (looked for chromium, chromium-browser, google-chrome on PATH). "
        "Install Debian's `chromium` package (`sudo bash scripts/system-deps.sh`, or "
        "`apt-get install chromium`), or pass --browser PATH.")


@contextlib.contextmanager
def browser_context(executable: str | None = None, *, offline: bool = True,
                    viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A Playwright browser context on a fresh profile; with ``offline``, only file: URLs load."""
    path = find_chromium(executable)
    sync_api = require("playwright.sync_api", "report")
    with tempfile.TemporaryDirectory(prefix="tunelab-chromium-") as profile, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=path, headless=True, args=list(CHROMIUM_ARGS),
            viewport={"width": viewport[0], "height": viewport[1]})
        try:
            if offline:
                context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                              else route.abort())
            yield context
        finally:
            context.close()


#: JavaScript: for each plot on the page, its id and how many data points its traces hold.
PLOT_POINTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  id: gd.id,
  traces: (gd.data || []).length,
  points: (gd.data || []).reduce((n, t) => n + (
      t.dimensions ? (t.dimensions[0] ? t.dimensions[0].values.length : 0)
      : (t.x || t.y || []).filter(v => v !== null && v !== undefined).length), 0),
  drawn: gd.querySelectorAll('.scatterlayer .trace .point, .barlayer .point, .parcoords .trace, path.js-line').length,
}))"""
