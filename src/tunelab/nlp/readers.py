"""Reading tables of labelled text: CSV/TSV, JSON Lines, Parquet, and ``datasets`` directories.

A ``datasets`` directory written by ``Dataset.save_to_disk`` (``state.json`` plus Arrow stream
files) is read with pyarrow directly, so the ``datasets`` package is not needed. A
``DatasetDict`` directory (``dataset_dict.json``) is read by split name; ``ClassLabel`` names
are kept so integer labels get their names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from tunelab.errors import ConfigError

FORMATS = ("csv", "tsv", "jsonl", "parquet", "arrow")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
             ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Table:
    """The columns that were asked for, and the class names of ``ClassLabel`` columns."""

    frame: pd.DataFrame
    class_names: dict[str, list[str]] = field(default_factory=dict)


def detect_format(path: Path, declared: str | None, where: str) -> str:
    if declared is not None:
        return declared
    if path.is_dir():
        return "arrow"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(where, f"cannot tell the format of {str(path)!r} from its extension.",
                          f"name the format with `objective.data.format`, one of {list(FORMATS)}.")
    return fmt


def dataset_dir(path: Path, split: str, where: str) -> Path:
    """The directory of one ``datasets`` split: ``path`` itself or its ``split`` subdirectory."""
    if (path / "state.json").is_file():
        return path
    index = path / "dataset_dict.json"
    if index.is_file():
        splits = json.loads(index.read_text()).get("splits", [])
        if split in splits:
            return path / split
        raise ConfigError(where, f"the DatasetDict at {str(path)!r} has no split {split!r} (it has {splits}).",
                          f"point at one split's directory, e.g. `{path / splits[0]}`." if splits else None)
    raise ConfigError(where, f"{str(path)!r} is a directory but not a `datasets` save_to_disk directory "
                             "(no state.json or dataset_dict.json).", "point at a data file or a saved dataset.")


def list_columns(path: Path, fmt: str, split: str, where: str) -> list[str]:
    """Column names, read cheaply (a header, a schema or a first line)."""
    if fmt in ("csv", "tsv"):
        return [str(c) for c in pd.read_csv(path, nrows=0, sep="\t" if fmt == "tsv" else ",").columns]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as fh:
            first = next((line for line in fh if line.strip()), "{}")
        try:
            row = json.loads(first)
        except json.JSONDecodeError as exc:
            raise ConfigError(where, f"{str(path)!r} is not JSON Lines ({exc}).",
                              "write one JSON object per line.") from None
        return list(row) if isinstance(row, dict) else []
    return list(_arrow_schema(dataset_dir(path, split, where)).names)


def read_table(path: Path, fmt: str, split: str, columns: Sequence[str], where: str) -> Table:
    """Read ``columns`` of a data file (or saved dataset) into a DataFrame."""
    cols = list(dict.fromkeys(columns))
    if fmt in ("csv", "tsv"):
        # Text columns read as str so that "NA" or "null" reviews stay text.
        frame = pd.read_csv(path, usecols=cols, sep="\t" if fmt == "tsv" else ",",
                            keep_default_na=False, na_values=[""])
        return Table(frame)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return Table(pq.read_table(path, columns=cols).to_pandas())
    if fmt == "jsonl":
        return Table(pd.read_json(path, lines=True, dtype=False)[cols])
    directory = dataset_dir(path, split, where)
    table = _read_arrow(directory).select(cols)
    return Table(table.to_pandas(), _class_names(directory))


def _arrow_files(directory: Path) -> list[Path]:
    state = json.loads((directory / "state.json").read_text())
    return [directory / f["filename"] for f in state.get("_data_files", [])]


def _arrow_schema(directory: Path):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    with pa.memory_map(str(_arrow_files(directory)[0])) as source:
        return pa.ipc.open_stream(source).schema


def _read_arrow(directory: Path):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    tables = []
    for file in _arrow_files(directory):
        with pa.memory_map(str(file)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables)


def _class_names(directory: Path) -> dict[str, list[str]]:
    info = directory / "dataset_info.json"
    if not info.is_file():
        return {}
    features = json.loads(info.read_text()).get("features") or {}
    return {name: list(spec["names"]) for name, spec in features.items()
            if isinstance(spec, dict) and spec.get("_type") == "ClassLabel" and spec.get("names")}


def fingerprint(paths: Sequence[Path]) -> str:
    """A content hash of data files and directories (names and bytes), for the token cache key."""
    digest = hashlib.sha256()
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with open(file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()
