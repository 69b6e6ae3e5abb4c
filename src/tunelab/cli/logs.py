"""``tunelab logs TRIAL``: print a trial's log (its stdout and stderr).

The log is ``<trial_dir>/trial.log``, written by the process that ran the trial. On a cluster
whose trial directory is shared it is read like a local file; otherwise it is fetched through
Ray from the node that holds it (``--address``, default: the cluster this machine is part of).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tunelab.cli.common import add_study_args, open_study
from tunelab.errors import TunelabError

from tunelab.executors._running import LOG_NAME


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("logs", help="print a trial's log (stdout and stderr), from any node")
    p.add_argument("trial", type=int, help="the trial number")
    add_study_args(p)
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--address", help="Ray cluster to fetch the log from when it is not on this machine "
                                     "(default: auto, the cluster this machine joined)")
    p.set_defaults(func=logs)


def logs(args: argparse.Namespace) -> int:
    study = open_study(args)
    trial = next((t for t in study.trials() if t.number == args.trial), None)
    if trial is None:
        numbers = [t.number for t in study.trials()]
        raise TunelabError(f"study {study.name} has no trial {args.trial} "
                           f"(trials: {_ranges(numbers) or 'none'}).")
    if not trial.trial_dir:
        raise TunelabError(f"trial {args.trial} has no trial directory: it never started.")
    path = Path(trial.trial_dir) / LOG_NAME
    text = path.read_bytes() if path.is_file() else _remote(path, args.address)
    if args.tail is not None:
        text = b"\n".join(text.splitlines()[-max(0, args.tail):]) + (b"\n" if text.endswith(b"\n") else b"")
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
    return 0


def _remote(path: Path, address: str | None) -> bytes:
    from tunelab.executors._ray_logs import fetch_file

    found = fetch_file(str(path), address or "auto")
    if found is None:
        raise TunelabError(f"{path} is neither on this machine nor on any live node of the Ray cluster. "
                           "Its node may be gone; a shared `execution.trial_dir` keeps logs reachable.")
    return found


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``."""
    spans: list[list[int]] = []
    for n in sorted(numbers):
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
