"""The local MLflow store (``sqlite:///mlflow.db``): created whole or not at all, repaired when half made.

MLflow creates a new SQLite store in place, in some 1,700 statements (tables, then the schema
migrations) over several seconds. A process killed meanwhile left a half-migrated file that no
later open could use (``table guardrails already exists``): every run after that queued its
records and ``tunelab sync`` failed, for good. So:

- a missing store is created in a temporary file beside it and moved into place when whole;
- one whose schema is not at this MLflow's head and that holds no runs (a creation cut short,
  by an older tunelab or by MLflow itself) is moved aside as ``mlflow.db.broken-<time>`` and
  created anew; one that holds runs is left to MLflow, which migrates an older one when it
  opens it;
- both happen under a file lock (``mlflow.db.lock``, dropped by the kernel when its holder dies),
  so several drivers starting at once create it once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator

from tunelab.filelock import file_lock

logger = logging.getLogger("tunelab.tracking")

_CREATING = ".creating-"
#: SQLite's companions of a database file: a hot journal must never meet another database.
_SIDECARS = ("-journal", "-wal", "-shm")


def local_sqlite_path(uri: str) -> Path | None:
    """The database file of a local ``sqlite:///`` tracking URI; None for anything else."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def prepare_local_store(uri: str) -> None:
    """Make sure the local SQLite store behind ``uri`` exists whole (nothing for other URIs)."""
    path = local_sqlite_path(uri)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        _remove_leftovers(path)
        if path.exists():
            version, head = _schema_version(path), _head_revision()
            if version == head or _runs_in(path):
                return  # whole; or older, holding runs: MLflow migrates it when it opens it
            _set_aside(path, f"its schema is at {version or 'no version'}, not {head}")
        _create(path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with file_lock(f"{path}.lock"):
        yield


def _artifact_root(path: Path) -> str:
    return str(path.parent / "mlartifacts")


def _create_store(path: Path) -> None:
    """Create a store with MLflow (tables, then its migrations), then let it go."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", _artifact_root(path))
    store.engine.dispose()


def _head_revision() -> str:
    """The schema version this MLflow creates: the head of its alembic migrations."""
    import importlib.util

    from alembic.script import ScriptDirectory

    spec = importlib.util.find_spec("mlflow.store.db_migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("this MLflow has no mlflow.store.db_migrations: cannot tell a whole store")
    heads = ScriptDirectory(list(spec.submodule_search_locations)[0]).get_heads()
    return heads[0] if len(heads) == 1 else ",".join(sorted(heads))


def _connect(path: Path) -> sqlite3.Connection:
    # Read-write: SQLite rolls back a transaction a killed writer left (a hot journal) on open.
    return sqlite3.connect(path, timeout=60)


def _schema_version(path: Path) -> str | None:
    try:
        with contextlib.closing(_connect(path)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    except sqlite3.DatabaseError:  # not a database at all (a file cut short)
        return None
    return row[0] if row else None


def _runs_in(path: Path) -> int:
    try:
        with contextlib.closing(_connect(path)) as conn:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    except sqlite3.DatabaseError:
        return 0


def _set_aside(path: Path, reason: str) -> None:
    aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", *_SIDECARS):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    logger.warning("The MLflow store %s was left half-created (a process was stopped while creating it; %s). It "
                   "held no runs: moved it to %s and created a new one.", path, reason, aside)


def _create(path: Path) -> None:
    tmp = path.with_name(f".{path.name}{_CREATING}{os.getpid()}")
    try:
        _create_store(tmp)
        try:
            os.link(tmp, path)  # never over a store that appeared meanwhile (an `mlflow ui`, say)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        for suffix in ("", *_SIDECARS):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tmp}{suffix}")


def _remove_leftovers(path: Path) -> None:
    """Temporary stores of creations that were killed (under the lock, nobody else is creating)."""
    for leftover in path.parent.glob(f".{path.name}{_CREATING}*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
