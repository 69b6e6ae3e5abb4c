"""Exporting a trial's checkpoint as a ready-to-use model, and scoring a model on new data.

``export_checkpoint`` writes a standard Hugging Face directory that
``AutoModelForSequenceClassification.from_pretrained(out)`` and
``pipeline("text-classification", model=out)`` load, plus ``tunelab.json``::

    config.json  model.safetensors  tokenizer.json  tokenizer_config.json ...
    tunelab.json   the caller's info (hyperparameter values, the metrics it was chosen by,
                   study/trial ids) + checkpoint step and metrics, base model, max_length,
                   labels, the data files and their fingerprint, library versions
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tunelab.errors import ConfigError, TunelabError
from tunelab.nlp.checkpoint import RECORD, read_record, versions, write_json
from tunelab.nlp.checkpoint import model_dir as best_model_dir

EXPORT_RECORD = "tunelab.json"


def export_checkpoint(checkpoint_dir: Path, out_dir: Path, info: Mapping[str, Any],
                      overwrite: bool = False) -> Path:
    """Copy a trial checkpoint to ``out_dir`` as a Hugging Face model dir with ``tunelab.json``.

    ``checkpoint_dir`` is a trial's ``checkpoint/``: its ``best/`` is exported (a trial saved
    before ``best/`` was kept apart holds the model in ``checkpoint/`` itself, and exports too).
    """
    checkpoint_dir, out_dir = best_model_dir(Path(checkpoint_dir)), Path(out_dir)
    record = read_record(checkpoint_dir)
    if not record or not (checkpoint_dir / "config.json").is_file():
        raise TunelabError(f"{checkpoint_dir} holds no complete tunelab checkpoint (no {RECORD} or config.json); "
                           "the trial may have failed before its first evaluation, or its checkpoint was "
                           "removed by retention.")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise TunelabError(f"{out_dir} exists and is not empty; choose another directory or overwrite it.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for file in checkpoint_dir.iterdir():
            if file.is_file() and file.name != RECORD and not file.name.startswith("."):
                shutil.copy2(file, staging / file.name)
        summary = {
            "checkpoint": {"step": record.get("step"), "metrics": record.get("metrics"),
                           "trial_id": record.get("trial_id")},
            "hyperparameters": record.get("config"),
            "settings": record.get("settings"),
            "base_model": record.get("model"),
            "model_kwargs": record.get("model_kwargs"),
            "max_length": record.get("max_length"),
            "labels": record.get("labels"),
            "data": record.get("data"),
            "versions": record.get("versions"),
            "exported_with": versions(),
        }
        write_json(staging / EXPORT_RECORD, {**summary, **info})
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def evaluate_model(model_dir: Path, data_path: Path, text: str = "text", text_pair: str | None = None,
                   label: str = "label", format: str | None = None, batch_size: int = 64,
                   max_length: int | None = None, device: str = "auto") -> dict[str, float]:
    """Accuracy, f1, f1_macro, mcc and loss of an exported (or checkpoint) model on a labelled file."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.nlp import fastpath, readers
    from tunelab.nlp.cache import TokenizedSplit, tokenize
    from tunelab.nlp.data import DataSpec
    from tunelab.nlp.model import choose_device, choose_precision, quiet_transformers
    from tunelab.nlp.train import evaluate

    model_dir, data_path = best_model_dir(Path(model_dir)), Path(data_path)
    if not (model_dir / "config.json").is_file():
        raise ConfigError("model", f"{str(model_dir)!r} is not a model directory (no config.json).",
                          "point at a directory written by `tunelab export`.")
    spec = DataSpec(train=str(data_path.absolute()), validation=str(data_path.absolute()), text=text,
                    text_pair=text_pair, label=label, format=format)
    spec.check(field="data")
    fmt = readers.detect_format(data_path, format, "data")
    table = readers.read_table(data_path, fmt, "test", spec.columns(), "data")
    frame = table.frame
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32)
    labels = _label_ids(frame[label].to_numpy(), model.config.label2id, table.class_names.get(label))
    if max_length is None:
        recorded = read_record(model_dir).get("max_length") or _export_info(model_dir).get("max_length")
        max_length = int(recorded or min(getattr(tokenizer, "model_max_length", 512), 512))
    texts = frame[text].fillna("").astype(str).tolist()
    pairs = frame[text_pair].fillna("").astype(str).tolist() if text_pair else None
    arrays = tokenize(tokenizer, texts, pairs, max_length)
    split = TokenizedSplit(arrays["ids"], arrays["offsets"], labels, arrays.get("type_ids"))
    dev = choose_device(device)
    model.to(dev)
    fastpath.apply(model, 0, dev)  # exact; in evaluation only the first-token last layer matters
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    metrics = evaluate(model, split, batch_size, pad_id, choose_precision(dev), model.config.num_labels)
    return {**metrics, "examples": float(len(split))}


def _export_info(model_dir: Path) -> dict[str, Any]:
    import json

    path = model_dir / EXPORT_RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def _label_ids(values: np.ndarray, label2id: Mapping[str, int], class_names: list[str] | None) -> np.ndarray:
    """Map the file's labels to the model's ids: by name, else integers as ids."""
    if class_names:
        values = np.asarray([class_names[int(v)] for v in values], dtype=object)
    keys = [str(int(v)) if isinstance(v, (int, np.integer)) else str(v) for v in values]
    if all(k in label2id for k in keys):
        return np.asarray([label2id[k] for k in keys], dtype=np.int64)
    numeric = np.asarray(values)
    if numeric.dtype.kind in "iu" and len(numeric) and 0 <= numeric.min() and numeric.max() < len(label2id):
        return numeric.astype(np.int64)
    unknown = sorted({k for k in keys if k not in label2id})[:5]
    raise ConfigError("data.label", f"has labels {unknown} that the model does not know.",
                      f"the model's labels are {sorted(label2id)}.")
