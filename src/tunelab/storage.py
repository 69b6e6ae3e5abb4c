"""Where studies live: storage URLs to Optuna storages.

The default is an Optuna journal file in the study's directory: an append-only log that
several local processes may share safely (a lock file guards appends). It measured several
times faster per trial than SQLite on disk (see ``benchmarks/results/overhead.md``).
Any Optuna storage URL works too (``sqlite:///x.db``, ``postgresql://...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE_FILE = "tunelab.journal"
_RDB_SCHEMES = ("sqlite:", "postgresql:", "postgresql+", "mysql:", "mysql+", "oracle:", "mssql")


def resolve_storage_url(storage: str | None, base_dir: Path | None = None) -> str:
    """A normalized storage string: RDB URLs as given, journal files as absolute paths."""
    base = Path(base_dir or Path.cwd())
    if storage is None or storage == "":
        return str((base / DEFAULT_STORAGE_FILE).resolve())
    if storage == "memory" or storage.startswith(_RDB_SCHEMES) or storage.startswith("redis:"):
        if storage.startswith("sqlite:///") and not storage.startswith("sqlite:////"):
            return "sqlite:///" + str((base / storage[len("sqlite:///"):]).resolve())
        return storage
    path = storage[len("journal:"):] if storage.startswith("journal:") else storage
    if "://" in path:
        raise ConfigError("storage", f"{storage!r} is not a storage this version knows.",
                          "use a journal file path, sqlite:///file.db or postgresql://user@host/db.")
    return str((base / path).resolve())


_OPEN: dict[str, Any] = {}


def open_storage(url: str) -> "optuna.storages.BaseStorage":
    """Open (once per process) the Optuna storage behind a resolved URL."""
    if url in _OPEN:
        return _OPEN[url]
    import optuna

    if url == "memory":
        storage: Any = optuna.storages.InMemoryStorage()
    elif url.startswith(_RDB_SCHEMES):
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    elif url.startswith("redis:"):
        from optuna.storages.journal import JournalRedisBackend

        storage = optuna.storages.JournalStorage(JournalRedisBackend(url))
    else:
        from optuna.storages.journal import JournalFileBackend

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.JournalStorage(JournalFileBackend(url))
    _OPEN[url] = storage
    return storage


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Several local processes: wait for the write lock instead of failing at once.
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def storage_exists(url: str) -> bool:
    if url == "memory" or url.startswith(_RDB_SCHEMES[1:]) or url.startswith("redis:"):
        return True
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).exists()
    return Path(url).exists()
