"""``tunelab dashboard``: optuna-dashboard on 127.0.0.1 for the study's storage.

tunelab studies are plain Optuna studies, so the dashboard opens them as they are; our
attributes (config values, reports, failure kinds) show as user and system attributes.
"""

from __future__ import annotations

import argparse
from typing import Any

from tunelab.cli.common import add_study_args, open_study


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("dashboard", help="start optuna-dashboard for the study's storage (127.0.0.1)")
    add_study_args(p)
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default: 8080)")
    p.set_defaults(func=dashboard)


def dashboard_storage(study: Any) -> Any:
    """What optuna-dashboard is given: an RDB storage's URL, any other storage object as it is
    (a journal file has no URL the dashboard understands; the JournalStorage object works)."""
    import optuna

    storage = study.optuna_study._storage
    if type(storage).__name__ == "_CachedStorage":  # Optuna wraps RDB storages in a cache
        storage = storage._backend
    if isinstance(storage, optuna.storages.RDBStorage):
        return storage.url
    return storage


def dashboard(args: argparse.Namespace) -> int:
    from tunelab.errors import require

    optuna_dashboard = require("optuna_dashboard", "dashboard")
    study = open_study(args)
    print(f"optuna-dashboard for study {study.name}: http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
    optuna_dashboard.run_server(dashboard_storage(study), host="127.0.0.1", port=args.port)
    return 0
