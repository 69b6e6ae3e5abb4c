"""What the study-reading commands share: finding the study, printing values."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError

STUDY_FILES = ("study.yaml", "study.yml", "tunelab.yaml")


def add_study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="storage URL or journal file (default: from the study file here)")
    parser.add_argument("--study", help="study name (default: from the study file here, or the only study)")
    parser.add_argument("--config", help="study YAML to read the storage and name from (default: ./study.yaml)")


def open_study(args: argparse.Namespace) -> Any:
    """The study named by --storage/--study, defaulting to the study file in the working directory."""
    from tunelab.storage import resolve_storage_url, storage_exists
    from tunelab.study import load_study

    storage, name, base = args.storage, args.study, Path.cwd()
    if name is not None:
        from tunelab.names import check_study_name

        check_study_name(name, "--study")
    config_path = Path(args.config) if getattr(args, "config", None) else next(
        (Path(f) for f in STUDY_FILES if Path(f).exists()), None)
    if config_path is not None and (storage is None or name is None):
        from tunelab.config import load_yaml

        raw = load_yaml(config_path) or {}
        base = config_path.resolve().parent
        if storage is None:
            storage = raw.get("storage")
        if name is None:
            name = raw.get("name", config_path.stem)
    url = resolve_storage_url(storage, base)
    if not storage_exists(url):
        raise TunelabError(f"No study storage at {url}. Run `tunelab run STUDY.yaml` first, or pass --storage.")
    return load_study(url, name)


def fmt(value: Any) -> str:
    """A value as a person reads it: floats short but exact enough, everything else as is."""
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if value is None:
        return "-"
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, allow_nan=True)


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    if not rows:
        print("(no trials)")
        return
    columns = columns or list(rows[0])
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
