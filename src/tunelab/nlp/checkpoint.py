"""A trial's best checkpoint: a standard Hugging Face model directory plus a small record.

Layout of ``reporter.checkpoint_dir`` (loadable as it is with ``from_pretrained``)::

    config.json                 with id2label / label2id
    model.safetensors           the weights of the best evaluation so far
    tokenizer.json, tokenizer_config.json, ...   the tokenizer that made the cached ids
    tunelab_checkpoint.json     step, metrics, hyperparameters, data fingerprint, versions

The record is written last (atomically), so a directory with a record is complete; files are
replaced one by one with ``os.replace``, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

RECORD = "tunelab_checkpoint.json"


def versions() -> dict[str, str]:
    """Library versions worth recording next to a model."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("tunelab", "torch", "transformers", "tokenizers", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)


def save_checkpoint(model: Any, directory: Path, tokenizer_dir: Path, record: Mapping[str, Any]) -> None:
    """Write ``model`` (safetensors), the tokenizer files and ``record`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    from tunelab.nlp.model import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(str(staging))
    for file in staging.iterdir():
        os.replace(file, directory / file.name)
    staging.rmdir()
    for file in tokenizer_dir.iterdir():
        if file.is_file() and not (directory / file.name).exists():
            shutil.copy2(file, directory / file.name)
    write_json(directory / RECORD, record)


def read_record(directory: Path) -> dict[str, Any]:
    path = Path(directory) / RECORD
    if not path.is_file():
        return {}
    return json.loads(path.read_text())
