"""``tunelab sync``: send what a study queued while a tracker (MLflow, W&B, TensorBoard) was unreachable."""

from __future__ import annotations

import argparse
from typing import Any

from tunelab.cli.common import add_study_args, open_study


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("sync", help="send queued tracking records (after a tracking outage)")
    add_study_args(p)
    p.add_argument("--mlflow-uri", help="send to this MLflow tracking URI instead of the one the study used")
    p.set_defaults(func=sync)


def sync(args: argparse.Namespace) -> int:
    from tunelab.errors import TunelabError
    from tunelab.tracking.sync import sync_study, tracked_with

    study = open_study(args)
    trackers = tracked_with(study)
    if not trackers:
        raise TunelabError(f"study {study.name!r} was never tracked; nothing to sync.")
    code = 0
    for tracker in trackers:
        result = sync_study(study, tracker=tracker, uri=args.mlflow_uri if tracker == "mlflow" else None)
        if result.sent == 0 and result.left == 0:
            print(f"study {study.name}: nothing queued for {tracker} ({result.uri})")
            continue
        line = f"study {study.name}: sent {result.sent} record(s) to {tracker} ({result.uri})"
        if result.rejected:
            line += f" ({result.rejected} rejected, see the warnings)"
        print(line)
        if result.left:
            print(f"{result.left} record(s) still queued in {result.spool}: {tracker} did not answer. "
                  "Run `tunelab sync` again once it is up.")
            code = 1
    return code
