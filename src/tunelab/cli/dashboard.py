"""``tunelab dashboard``: optuna-dashboard on 127.0.0.1 for the study's storage.

tunelab studies are plain Optuna studies, so the dashboard opens them as they are; our
attributes (config values, reports, failure kinds) show as user and system attributes. It is
given the storage URL, not a storage object: no private Optuna attribute is needed.
"""

from __future__ import annotations

import argparse
from typing import Any

from tunelab.cli.common import add_study_args, study_location


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("dashboard", help="start optuna-dashboard for the study's storage (127.0.0.1)")
    add_study_args(p)
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default: 8080)")
    p.set_defaults(func=dashboard)


#: URL prefixes of database storages (what SQLAlchemy opens).
RDB_PREFIXES = ("sqlite:", "postgresql", "mysql", "oracle", "mssql")


def dashboard_storage(url: str) -> str:
    """What optuna-dashboard is given for a resolved storage URL: the URL itself (it opens journal
    files and Redis URLs as they are), a database URL with the driver tunelab uses and without
    tunelab's pool options."""
    from tunelab.storage import rdb_engine_options

    return rdb_engine_options(url)[0] if url.startswith(RDB_PREFIXES) else url


def dashboard(args: argparse.Namespace) -> int:
    from tunelab.errors import require
    from tunelab.study import load_study

    optuna_dashboard = require("optuna_dashboard", "dashboard")
    url, name = study_location(args)
    study = load_study(url, name)  # the study must exist: a typo is said here, not in the browser
    print(f"optuna-dashboard for study {study.name}: http://127.0.0.1:{args.port}/ (Ctrl-C to stop)", flush=True)
    optuna_dashboard.run_server(dashboard_storage(url), host="127.0.0.1", port=args.port)
    return 0
