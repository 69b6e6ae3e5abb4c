"""Where studies live: storage URLs to Optuna storages.

The default is an Optuna journal file in the study's directory: an append-only log that
several local processes may share safely (a lock file guards appends; one left by a killed
process is taken over at once, see ``journal_lock``). It measured several times faster per
trial than SQLite on disk (see ``benchmarks/results/overhead.md``). Database URLs work too
(``sqlite:///x.db``, ``postgresql://...``); ``memory`` is a storage of one call only. Optuna's
Redis journal is refused: it stores pickles, and nothing read from a storage is unpickled.

Database URLs (SQLAlchemy form) for a study shared by several drivers or machines::

    postgresql://USER:PASSWORD@HOST:5432/DB                      psycopg 3 or psycopg2, whichever is installed
    postgresql://USER@HOST/DB?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem
    postgresql://USER@HOST/DB?pool_size=2&max_overflow=0&pool_recycle=1800

Query parameters named after SQLAlchemy engine options (``pool_size``, ``max_overflow``,
``pool_timeout``, ``pool_recycle``, ``pool_pre_ping``) configure the connection pool and are
removed from the URL; every other parameter (``sslmode``, ``sslrootcert``, ``sslcert``,
``sslkey``, ``connect_timeout``, ``application_name``, ...) goes to the database driver as it
is. A password can also come from ``~/.pgpass`` or ``PGPASSWORD`` (libpq reads them), so it
need not be written in the study file. The tables are created on first use; several drivers
starting at once on an empty database create them once (a database lock serializes it; for
SQLite a file lock, ``<file>.lock`` beside the database).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tunelab.errors import ConfigError
from tunelab.filelock import file_lock

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE_FILE = "tunelab.journal"
_RDB_SCHEMES = ("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+", "oracle:", "mssql")


def resolve_storage_url(storage: str | None, base_dir: Path | None = None) -> str:
    """A normalized storage string: RDB URLs as given, journal files as absolute paths."""
    base = Path(base_dir or Path.cwd())
    if storage is None or storage == "":
        return str((base / DEFAULT_STORAGE_FILE).resolve())
    if _is_redis(storage):
        raise _redis_refused(storage)
    if storage == "memory" or storage.startswith(_RDB_SCHEMES):
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            return "sqlite:///" + str((base / storage[len("sqlite:///"):]).resolve())
        return storage
    path = storage[len("journal:"):] if storage.startswith("journal:") else storage
    if "://" in path:
        raise ConfigError("storage", f"{storage!r} is not a storage this version knows.",
                          "use a journal file path, sqlite:///file.db or postgresql://user@host/db.")
    return str((base / path).resolve())


def open_storage(url: str) -> "optuna.storages.BaseStorage":
    """Open the Optuna storage behind a resolved URL.

    Every call opens anew: ``memory`` is a fresh, empty storage each time (it lives as long as
    the study that uses it), and a journal or database opened twice reads what the other wrote.
    """
    import optuna

    if url == "memory":
        return optuna.storages.InMemoryStorage()
    if _is_redis(url):
        raise _redis_refused(url)
    if url.startswith(_RDB_SCHEMES):
        return _open_rdb(url)
    from tunelab._optuna import journal_file_backend
    from tunelab.journal_lock import JournalLock

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    # tunelab's lock names its owner, so a lock left by a killed process is taken over at once.
    return optuna.storages.JournalStorage(journal_file_backend(url, lock_obj=JournalLock(url)))


def _is_redis(url: str) -> bool:
    return url.startswith(("redis:", "rediss:"))


def _redis_refused(url: str) -> ConfigError:
    # Optuna's Redis journal stores its snapshots with pickle: whoever can write to the Redis
    # server could make the next `tunelab run` execute code while loading the study.
    return ConfigError("storage", f"{_hide_password(url)!r}: Optuna's Redis journal keeps its snapshots as pickles, "
                                  "and tunelab never unpickles what it reads from a storage.",
                       "use a database shared by the drivers (postgresql://user@host/db) or a journal file on a "
                       "shared file system (storage: /shared/tunelab.journal).")


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local processes: wait for the write lock instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


#: Engine options accepted as URL query parameters, with their types.
POOL_OPTIONS = {"pool_size": int, "max_overflow": int, "pool_timeout": float, "pool_recycle": int,
                "pool_pre_ping": bool}


def rdb_engine_options(url: str) -> tuple[str, dict[str, Any]]:
    """The URL for SQLAlchemy (driver chosen, pool options removed) and the engine options."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's ArgumentError and friends
        raise ConfigError("storage", f"{_hide_password(url)!r} is not a database URL ({exc}).",
                          "write e.g. postgresql://user@host:5432/db.") from None
    kwargs = _engine_kwargs(url)
    for name, kind in POOL_OPTIONS.items():
        if name not in parsed.query:
            continue
        raw = parsed.query[name]
        raw = raw[-1] if isinstance(raw, tuple) else raw
        try:
            kwargs[name] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        except ValueError:
            raise ConfigError("storage", f"`{name}={raw}` in the storage URL is not a {kind.__name__}.") from None
    parsed = parsed.difference_update_query(list(POOL_OPTIONS))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=f"postgresql+{_postgres_driver()}")
    return parsed.render_as_string(hide_password=False), kwargs


def _postgres_driver() -> str:
    """psycopg (3) when installed, else psycopg2: a bare postgresql:// works with either."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is not None:
        return "psycopg"
    if importlib.util.find_spec("psycopg2") is not None:
        return "psycopg2"
    from tunelab.errors import require

    require("psycopg", "postgres")  # raises, naming the extra (which installs psycopg 3)
    return "psycopg2"


def _open_rdb(url: str) -> Any:
    import optuna

    sa_url, kwargs = rdb_engine_options(url)
    if sa_url.startswith("sqlite"):
        with sqlite_creation_lock(sa_url):
            return optuna.storages.RDBStorage(sa_url, engine_kwargs=kwargs)
    if not sa_url.startswith(("postgresql", "mysql")):
        return optuna.storages.RDBStorage(sa_url, engine_kwargs=kwargs)
    # Several drivers may start at once on an empty database: creating the tables and stamping
    # the schema version is not safe to race, so it happens under a database-wide lock.
    import sqlalchemy

    engine = sqlalchemy.create_engine(sa_url, poolclass=sqlalchemy.pool.NullPool,
                                      **{k: v for k, v in kwargs.items() if k == "connect_args"})
    postgres = sa_url.startswith("postgresql")
    lock = "SELECT pg_advisory_lock(7226511)" if postgres else "SELECT GET_LOCK('tunelab_schema', 120)"
    unlock = "SELECT pg_advisory_unlock(7226511)" if postgres else "SELECT RELEASE_LOCK('tunelab_schema')"
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(lock))
            try:
                return optuna.storages.RDBStorage(sa_url, engine_kwargs=kwargs)
            finally:
                conn.execute(sqlalchemy.text(unlock))
    except sqlalchemy.exc.OperationalError as exc:
        raise ConfigError("storage", f"cannot connect to {_hide_password(url)}: {str(exc.orig).strip()}",
                          "check the host, port, user and database, and that the server accepts connections "
                          "from this machine.") from None
    finally:
        engine.dispose()


@contextlib.contextmanager
def sqlite_creation_lock(sa_url: str) -> Iterator[None]:
    """Serialize opening a SQLite file (``<file>.lock`` beside it): creating the tables and stamping
    the schema version of a new file races when several drivers start at once (``table ... already
    exists``, ``UNIQUE constraint failed: alembic_version``). The kernel drops the lock with its
    holder, so a killed driver leaves nothing to wait for."""
    path = sa_url.split("///", 1)[1].split("?", 1)[0] if "///" in sa_url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with file_lock(f"{path}.lock"):
        yield


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("@")[-1]


def storage_exists(url: str) -> bool:
    if url == "memory" or url.startswith(_RDB_SCHEMES[1:]):
        return True
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).exists()
    return Path(url).exists()
