"""The study report: one offline HTML file with a summary and plots (``tunelab report``)."""

from __future__ import annotations

from typing import Any

_LAZY = {"write_report": "tunelab.report.html", "render_html": "tunelab.report.html",
         "LiveReport": "tunelab.report.live", "write_pngs": "tunelab.report.png"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # plotly loads only when a report is made
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tunelab.report' has no attribute {name!r}")
