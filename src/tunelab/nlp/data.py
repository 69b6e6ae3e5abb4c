"""The ``data:`` section of the text-classification objective, and loading it into splits.

```yaml
data:
  train: data/train.csv          # CSV/TSV, JSON Lines, Parquet or a save_to_disk directory
  validation: data/dev.csv       # or `validation_split: 0.1` (a seeded split of train)
  test: data/test.csv            # optional: the best checkpoint is scored on it at the end
  text: sentence1                # the text column ...
  text_pair: sentence2           # ... and the second one for sentence pairs (optional)
  label: label                   # strings or integers
  max_train_samples: 2000        # optional seeded subsets, for quick studies
```

Labels become ids 0..K-1 in sorted order of the training labels (or in ``ClassLabel`` order
for a saved ``datasets`` split), so integer labels 0..K-1 keep their values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tunelab.errors import ConfigError
from tunelab.nlp import readers

ROLES = ("train", "validation", "test")
SPLIT_SEED = 0  # fixed on purpose: every trial and every study sees the same split and subsets


@dataclass(frozen=True)
class DataSpec:
    """Where the data is and which columns to read. Paths are absolute after ``from_config``."""

    train: str
    validation: str | None = None
    test: str | None = None
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    validation_split: float | None = None
    format: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    @classmethod
    def from_config(cls, raw: Any, field: str = "objective.data", base_dir: Path | None = None) -> DataSpec:
        if isinstance(raw, DataSpec):
            return raw
        if not isinstance(raw, Mapping):
            raise ConfigError(field, "must be a mapping.", "write e.g. `{train: train.csv, validation: dev.csv, "
                                                           "text: text, label: label}`.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{field}.{unknown[0]}", "is not a data setting.", f"valid keys are {known}.")
        values = dict(raw)
        if not values.get("train"):
            raise ConfigError(f"{field}.train", "is missing.", "name the training data file.")
        for role in ROLES:
            if values.get(role) is not None:
                values[role] = str(_resolve(values[role], base_dir))
        for key in ("text", "text_pair", "label", "format"):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise ConfigError(f"{field}.{key}", f"is {values[key]!r}, but must be a string.")
        if values.get("format") is not None and values["format"] not in readers.FORMATS:
            raise ConfigError(f"{field}.format", f"is {values['format']!r}, "
                              f"but must be one of {list(readers.FORMATS)}.")
        split = values.get("validation_split")
        if split is not None:
            if isinstance(split, bool) or not isinstance(split, (int, float)) or not 0 < split < 1:
                raise ConfigError(f"{field}.validation_split", f"is {split!r}, but must be a fraction in (0, 1).")
            if values.get("validation"):
                raise ConfigError(f"{field}.validation_split", "is set together with `validation`.", "keep one.")
        elif not values.get("validation"):
            raise ConfigError(f"{field}.validation", "is missing.",
                              "name a validation file, or set `validation_split: 0.1` to hold out part of train.")
        for key in ("max_train_samples", "max_eval_samples"):
            n = values.get(key)
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise ConfigError(f"{field}.{key}", f"is {n!r}, but must be a positive integer.")
        return cls(**values)

    def files(self) -> dict[str, Path]:
        """The data file of each role that has one (validation is absent when split from train)."""
        return {role: Path(p) for role in ROLES if (p := getattr(self, role)) is not None}

    def columns(self) -> list[str]:
        return [c for c in (self.text, self.text_pair, self.label) if c is not None]

    def check(self, field: str = "objective.data") -> None:
        """Cheap checks for the driver: files exist and have the named columns."""
        for role, path in self.files().items():
            where = f"{field}.{role}"
            if not path.exists():
                raise ConfigError(where, f"{str(path)!r} does not exist.", "fix the path (relative paths are "
                                  "read from the study file's directory).")
            fmt = readers.detect_format(path, self.format, where)
            available = readers.list_columns(path, fmt, role, where)
            for key in ("text", "text_pair", "label"):
                column = getattr(self, key)
                if column is not None and column not in available:
                    raise ConfigError(f"{field}.{key}", f"names column {column!r}, which {role} data "
                                      f"{str(path)!r} does not have.", f"use one of {available}.")

    def fingerprint(self) -> str:
        return readers.fingerprint(list(self.files().values()))


def _resolve(value: Any, base_dir: Path | None) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    return path.absolute()


@dataclass(frozen=True)
class Split:
    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray  # int64 label ids


@dataclass(frozen=True)
class LabelMap:
    """Label values <-> ids. ``names`` are what ``id2label`` holds; ``kind`` is int or str."""

    names: tuple[str, ...]
    kind: str

    @classmethod
    def from_values(cls, values: Any, class_names: list[str] | None = None) -> LabelMap:
        if class_names:  # values were already turned into these names
            return cls(tuple(class_names), "str")
        if _all_ints(values):
            return cls(tuple(str(v) for v in sorted({int(v) for v in values})), "int")
        return cls(tuple(sorted({str(v) for v in values})), "str")

    def encode(self, values: Any, where: str) -> np.ndarray:
        if self.kind == "int" and _all_ints(values):
            keys = [str(int(v)) for v in values]
        else:
            keys = [str(v) for v in values]
        ids = {name: i for i, name in enumerate(self.names)}
        unseen = sorted({k for k in keys if k not in ids})
        if unseen:
            raise ConfigError(where, f"has labels {unseen[:5]} that the training data does not have "
                              f"(training labels: {list(self.names)[:20]}).", "fix the labels or the files.")
        return np.fromiter((ids[k] for k in keys), dtype=np.int64, count=len(keys))


def _all_ints(values: Any) -> bool:
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return True
    if arr.dtype.kind == "f":
        return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    return False


def load_splits(spec: DataSpec, field: str = "objective.data") -> tuple[dict[str, Split], LabelMap]:
    """Read every split, hold out validation if asked, take the seeded subsets, encode labels."""
    rng = np.random.default_rng(SPLIT_SEED)
    tables: dict[str, readers.Table] = {}
    for role, path in spec.files().items():
        fmt = readers.detect_format(path, spec.format, f"{field}.{role}")
        tables[role] = readers.read_table(path, fmt, role, spec.columns(), f"{field}.{role}")
    frames = {role: _clean(t.frame, spec, f"{field}.{role}") for role, t in tables.items()}
    for role, table in tables.items():
        names = table.class_names.get(spec.label)
        if names:  # a ClassLabel column: integer values index its names
            frames[role] = frames[role].assign(**{spec.label: [names[int(v)] for v in frames[role][spec.label]]})
    if spec.validation_split is not None:
        order = rng.permutation(len(frames["train"]))
        n_val = max(1, int(round(len(order) * spec.validation_split)))
        frames["validation"] = frames["train"].iloc[np.sort(order[:n_val])]
        frames["train"] = frames["train"].iloc[np.sort(order[n_val:])]
    for role, limit in (("train", spec.max_train_samples), ("validation", spec.max_eval_samples),
                        ("test", spec.max_eval_samples)):
        if limit is not None and role in frames and len(frames[role]) > limit:
            # A seeded subset, not the first rows: files are often sorted by label.
            frames[role] = frames[role].iloc[np.sort(rng.permutation(len(frames[role]))[:limit])]
    labels = LabelMap.from_values(frames["train"][spec.label].to_numpy(),
                                  tables["train"].class_names.get(spec.label))
    splits = {}
    for role in ROLES:
        if role not in frames:
            continue
        frame = frames[role]
        splits[role] = Split(
            texts=frame[spec.text].astype(str).tolist(),
            pairs=frame[spec.text_pair].astype(str).tolist() if spec.text_pair else None,
            labels=labels.encode(frame[spec.label].to_numpy(), f"{field}.{role}"),
        )
    return splits, labels


def _clean(frame: Any, spec: DataSpec, where: str) -> Any:
    missing = int(frame[spec.label].isna().sum())
    if missing:
        raise ConfigError(where, f"has {missing} rows without a label in column {spec.label!r}.",
                          "drop those rows or give them a label.")
    if len(frame) == 0:
        raise ConfigError(where, "has no rows.")
    text_cols = [c for c in (spec.text, spec.text_pair) if c is not None]
    return frame.assign(**{c: frame[c].fillna("") for c in text_cols})
