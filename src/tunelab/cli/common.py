"""What the study-reading commands share: finding the study, printing values."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from tunelab.errors import TunelabError

STUDY_FILES = ("study.yaml", "study.yml", "tunelab.yaml")


def add_study_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", help="storage URL or journal file (default: from the study file here)")
    parser.add_argument("--study", help="study name (default: from the study file here, or the only study)")
    parser.add_argument("--config", help="study YAML to read the storage and name from (default: ./study.yaml)")


def open_study(args: argparse.Namespace) -> Any:
    """The study named by --storage/--study, defaulting to the study file in the working directory."""
    from tunelab.study import load_study

    url, name = study_location(args)
    return load_study(url, name)


def study_location(args: argparse.Namespace) -> tuple[str, str | None]:
    """The resolved storage URL and the study name that --storage/--study/--config point at."""
    from tunelab.storage import resolve_storage_url, storage_exists

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
    return url, name


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


def add_format_arg(parser: argparse.ArgumentParser, *formats: str) -> None:
    parser.add_argument("--format", choices=formats, default=formats[0],
                        help=f"output format (default: {formats[0]})")


#: Narrowest a truncated column gets before other columns are hidden instead.
MIN_TRUNCATED = 24


def fit_columns(headers: list[str], cells: list[list[str]], width: int | None, *,
                drop_order: Sequence[int] = (), shrinkable: Sequence[int] = ()) -> tuple[list[int], list[int]]:
    """The columns shown and their widths so that a table fits ``width`` characters: shrink the
    ``shrinkable`` columns (down to ``MIN_TRUNCATED``), then hide columns in ``drop_order``.
    ``width=None`` shows everything as it is. Returns (indices shown, width per column)."""
    natural = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    shown = list(range(len(headers)))
    if width is None:
        return shown, natural
    floor = {i: min(natural[i], max(MIN_TRUNCATED, len(headers[i]))) for i in shrinkable}

    def total(widths: dict[int, int]) -> int:
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1)

    widths = dict(enumerate(natural))
    if total(widths) > width:
        widths.update(floor)
        for i in drop_order:
            if total(widths) <= width:
                break
            if i in shown and len(shown) > 1:
                shown.remove(i)
        # Give the room left back to the shrunk columns (or, on a very narrow terminal, take more).
        for i in shrinkable:
            if i in shown:
                widths[i] = max(len(headers[i]), min(natural[i], widths[i] + width - total(widths)))
    return shown, [widths[i] for i in range(len(headers))]


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None, *, width: int | None = None,
                headers: Mapping[str, str] | None = None, drop_order: Sequence[str] = (),
                shrinkable: Sequence[str] = (),
                out: Any = None) -> list[str]:
    """Print rows as an aligned table, fitted to ``width`` (see ``fit_columns``); the columns
    that did not fit are returned (in their table order)."""
    out = out or sys.stdout
    if not rows:
        print("(no trials)", file=out)
        return []
    columns = list(columns or list(rows[0]))
    titles = [(headers or {}).get(c, c) for c in columns]
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    index = {c: i for i, c in enumerate(columns)}
    shown, widths = fit_columns(titles, cells, width, drop_order=[index[c] for c in drop_order if c in index],
                                shrinkable=[index[c] for c in shrinkable if c in index])

    def line(values: list[str]) -> str:
        return "  ".join(_clip(values[i], widths[i]).ljust(widths[i]) for i in shown).rstrip()

    print(line(titles), file=out)
    for row in cells:
        print(line(row), file=out)
    return [c for i, c in enumerate(columns) if i not in shown]


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."
