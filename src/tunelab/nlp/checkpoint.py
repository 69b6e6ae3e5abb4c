"""A trial's checkpoints: ``best/`` (what export takes) kept apart from ``latest/`` (what resumes).

Layout of ``reporter.checkpoint_dir``::

    best/      a standard Hugging Face model directory (loadable as it is with ``from_pretrained``)
        config.json, model.safetensors, tokenizer files
        tunelab_checkpoint.json     step, metrics, hyperparameters, data fingerprint, versions
    latest/    the full training state at the last evaluation
        config.json, model.safetensors      the weights (a Hugging Face model directory too)
        optimizer.safetensors               the optimizer's tensors, flat ...
        optimizer.json                      ... and the structure they sit in (an index)
        rng.safetensors                     torch's CPU (and CUDA) generator states
        trainer_state.json                  step, epoch, data order position, LR schedule, the
                                            python/numpy/dropout generator states, grad scaler
                                            (written last: the directory is complete when it is there)

Tensors are safetensors and the rest JSON: nothing read back is unpickled. ``best/`` files are
replaced one by one with ``os.replace``, so a reader never sees a half-written file. ``latest/``
is written whole into a staging directory, then swapped in with two renames; every version gets
a fresh ``token``, so a copy taken while the trial runs (a clone's, by the driver) can tell that
it saw one version throughout (``copy_latest``).

Trials written before this layout hold the best weights directly in ``checkpoint/``
(``model_dir`` finds either).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

RECORD = "tunelab_checkpoint.json"
BEST, LATEST = "best", "latest"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer"
RNG = "rng.safetensors"


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


def _save_model(model: Any, directory: Path) -> None:
    staging = directory / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    from tunelab.nlp.model import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(str(staging))
    for file in staging.iterdir():
        os.replace(file, directory / file.name)
    staging.rmdir()


def save_checkpoint(model: Any, directory: Path, tokenizer_dir: Path, record: Mapping[str, Any]) -> None:
    """Write ``model`` (safetensors), the tokenizer files and ``record`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    _save_model(model, directory)
    for file in tokenizer_dir.iterdir():
        if file.is_file() and not (directory / file.name).exists():
            shutil.copy2(file, directory / file.name)
    write_json(directory / RECORD, record)


def read_record(directory: Path) -> dict[str, Any]:
    path = Path(directory) / RECORD
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def model_dir(checkpoint_dir: Path) -> Path:
    """The model directory of a trial's checkpoint: ``best/``, or the directory itself (the old
    layout, or a model directory given directly)."""
    checkpoint_dir = Path(checkpoint_dir)
    best = checkpoint_dir / BEST
    return best if (best / RECORD).is_file() else checkpoint_dir


# ---- structure <-> (JSON, tensors) ------------------------------------------------------------


def flatten(obj: Any, tensors: dict[str, Any], prefix: str = "t") -> Any:
    """``obj`` (dicts, lists, tuples, numbers, strings, tensors, numpy arrays) as JSON, its tensors
    moved to ``tensors`` under generated keys; ``unflatten`` reverses it exactly (key types and
    tuples included)."""
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten(v, tensors, prefix) for k, v in obj.items()}
        return {"__items__": [[flatten(k, tensors, prefix), flatten(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [flatten(v, tensors, prefix) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def unflatten(data: Any, tensors: Mapping[str, Any]) -> Any:
    import numpy as np

    if isinstance(data, list):
        return [unflatten(v, tensors) for v in data]
    if not isinstance(data, dict):
        return data
    if "__tensor__" in data:
        return tensors[data["__tensor__"]]
    if "__ndarray__" in data:
        return np.asarray(data["__ndarray__"], dtype=data["dtype"])
    if "__tuple__" in data:
        return tuple(unflatten(v, tensors) for v in data["__tuple__"])
    if "__items__" in data:
        return {unflatten(k, tensors): unflatten(v, tensors) for k, v in data["__items__"]}
    return {k: unflatten(v, tensors) for k, v in data.items()}


def save_tree(obj: Any, directory: Path, name: str) -> None:
    """``obj`` as ``name.safetensors`` (its tensors) plus ``name.json`` (the structure)."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    structure = flatten(obj, tensors)
    save_file(tensors, str(directory / f"{name}.safetensors"))
    write_json(directory / f"{name}.json", {"structure": structure})


def load_tree(directory: Path, name: str, device: Any = "cpu") -> Any:
    from safetensors.torch import load_file

    tensors = load_file(str(directory / f"{name}.safetensors"), device=str(device))
    return unflatten(json.loads((directory / f"{name}.json").read_text())["structure"], tensors)


# ---- latest/ ----------------------------------------------------------------------------------


def save_latest(checkpoint_dir: Path, model: Any, optimizer_state: Mapping[str, Any],
                rng_tensors: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Write the full training state as ``checkpoint_dir/latest`` (atomically, as a whole)."""
    from safetensors.torch import save_file

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    staging = checkpoint_dir / f".latest-new-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        _save_model(model, staging)
        save_tree(dict(optimizer_state), staging, OPTIMIZER)
        save_file({k: v.contiguous() for k, v in rng_tensors.items()}, str(staging / RNG))
        write_json(staging / STATE, {**state, "token": uuid.uuid4().hex})
        latest = checkpoint_dir / LATEST
        old = checkpoint_dir / f".latest-old-{uuid.uuid4().hex[:8]}"
        if latest.exists():
            os.replace(latest, old)
        os.replace(staging, latest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_state(directory: Path) -> dict[str, Any] | None:
    """The trainer state of a ``latest/`` directory, or None when it holds none (yet)."""
    path = Path(directory) / STATE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def copy_latest(source: Path, target: Path, attempts: int = 20) -> dict[str, Any] | None:
    """Copy a ``latest/`` that its trial may be replacing meanwhile; return its state (None when
    ``source`` holds no complete state). The copy is retried until the version's token is the
    same before and after it, so the files all come from one version."""
    for _ in range(attempts):
        before = read_state(source)
        if before is None and not source.is_dir():
            return None
        shutil.rmtree(target, ignore_errors=True)
        try:
            shutil.copytree(source, target)
        except (FileNotFoundError, shutil.Error):
            continue  # swapped or removed while copied: again
        after = read_state(source)
        if before is not None and after is not None and before.get("token") == after.get("token"):
            return read_state(target)
    shutil.rmtree(target, ignore_errors=True)
    return None
