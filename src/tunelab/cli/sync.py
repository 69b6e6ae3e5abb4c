"""``tunelab sync``: send what a study queued while its MLflow server was unreachable."""

from __future__ import annotations

import argparse
from typing import Any

from tunelab.cli.common import add_study_args, open_study


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("sync", help="send queued MLflow records (after a tracking outage)")
    add_study_args(p)
    p.add_argument("--mlflow-uri", help="send to this tracking URI instead of the one the study used")
    p.set_defaults(func=sync)


def sync(args: argparse.Namespace) -> int:
    from tunelab.tracking.sync import sync_study

    study = open_study(args)
    result = sync_study(study, uri=args.mlflow_uri)
    if result.sent == 0 and result.left == 0:
        print(f"study {study.name}: nothing queued for MLflow ({result.uri})")
        return 0
    line = f"study {study.name}: sent {result.sent} record(s) to {result.uri}"
    if result.rejected:
        line += f" ({result.rejected} rejected by MLflow, see the warnings)"
    print(line)
    if result.left:
        print(f"{result.left} record(s) still queued in {result.spool}: the tracking server did not answer. "
              "Run `tunelab sync` again once it is up.")
        return 1
    return 0
