"""``tunelab report``: the study as one offline HTML file, and optionally each plot as a PNG."""

from __future__ import annotations

import argparse
from typing import Any

from tunelab.cli.common import add_study_args, open_study


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("report", help="write an HTML report with plots (works offline)")
    add_study_args(p)
    p.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")
    p.add_argument("--png", metavar="DIR", help="also write each plot as a PNG into DIR (needs Chromium)")
    p.add_argument("--browser", metavar="PATH", help="the Chromium executable for --png (default: chromium on PATH)")
    p.set_defaults(func=report)


def report(args: argparse.Namespace) -> int:
    from tunelab.errors import require

    require("plotly", "report")
    from tunelab.report.html import write_report

    study = open_study(args)
    path = write_report(study, args.out)
    print(f"wrote {path}")
    if args.png:
        from tunelab.report.png import write_pngs

        for image in write_pngs(path, args.png, browser=args.browser):
            print(f"wrote {image}")
    return 0
