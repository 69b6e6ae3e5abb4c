"""Write ``docs/report-screenshot.png``: the report of a finished study, as Chromium shows it.

Run it on the demo study once it has run (the README shows the image)::

    python docs/make_screenshot.py --config examples/demo/study.yaml
    python docs/make_screenshot.py --storage path/to/tunelab.journal --study NAME --out docs/x.png

It needs what ``tunelab report --png`` needs: plotly, playwright (the Python package only) and the
system's Chromium (``scripts/system-deps.sh`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    from tunelab.cli.common import add_study_args, open_study
    from tunelab.report.browser import browser_context
    from tunelab.report.html import write_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_study_args(parser)
    parser.add_argument("--out", default=str(HERE / "report-screenshot.png"), help="the PNG to write")
    parser.add_argument("--height", type=int, default=2400,
                        help="pixels from the top of the page (0: the whole page)")
    parser.add_argument("--browser", help="the Chromium executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    if args.config and not (args.storage and args.study):
        import os

        os.chdir(Path(args.config).resolve().parent)  # the study file's storage is relative to it
        args.config = Path(args.config).name
    study = open_study(args)
    with tempfile.TemporaryDirectory(prefix="tunelab-shot-") as tmp:
        report = write_report(study, Path(tmp) / "report.html")
        with browser_context(args.browser, viewport=(1400, 1000)) as context:
            page = context.new_page()
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_function("() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
                                   ".every(gd => gd._fullLayout)")
            page.wait_for_timeout(300)  # let WebGL plots finish their first frame
            out = Path(args.out).resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            if args.height:
                height = min(args.height, page.evaluate("() => document.body.scrollHeight"))
                page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": height})
            else:
                page.screenshot(path=str(out), full_page=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
