"""The token cache: tokenize once per (tokenizer, max_length, data), memory-map in every trial.

One cache entry is a directory named by a hash of the tokenizer files, ``max_length``, the data
files' content and the data settings::

    <cache_dir>/<key>/meta.json            label names, pad id, sizes, fingerprints
    <cache_dir>/<key>/tokenizer/           the tokenizer that made the ids (copied into checkpoints)
    <cache_dir>/<key>/<split>/ids.npy      int32, every example's token ids, concatenated
    <cache_dir>/<key>/<split>/offsets.npy  int64, example i is ids[offsets[i]:offsets[i+1]]
    <cache_dir>/<key>/<split>/labels.npy   int64 label ids
    <cache_dir>/<key>/<split>/type_ids.npy int8 token type ids (sentence pairs only)

An entry is built in a temporary directory and renamed into place under a file lock, so a
trial never sees half a cache and parallel trials build it once. Entries are never modified.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tunelab.errors import ConfigError
from tunelab.nlp.data import DataSpec, load_splits

CACHE_VERSION = 1
DEFAULT_CACHE_DIR = "~/.cache/tunelab/tokens"
_NOT_TOKENIZER = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ot", ".ckpt", ".md")


@dataclass(frozen=True)
class TokenizedSplit:
    """One split's token ids as flat arrays (memory-mapped when read from the cache)."""

    ids: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    type_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class TokenCache:
    path: Path
    meta: dict[str, Any]

    @property
    def label_names(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def pad_id(self) -> int:
        return int(self.meta["pad_id"])

    @property
    def tokenizer_dir(self) -> Path:
        return self.path / "tokenizer"

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def split(self, role: str) -> TokenizedSplit:
        folder = self.path / role
        type_ids = folder / "type_ids.npy"
        return TokenizedSplit(
            ids=np.load(folder / "ids.npy", mmap_mode="r"),
            offsets=np.load(folder / "offsets.npy", mmap_mode="r"),
            labels=np.load(folder / "labels.npy", mmap_mode="r"),
            type_ids=np.load(type_ids, mmap_mode="r") if type_ids.exists() else None,
        )


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir or DEFAULT_CACHE_DIR).expanduser().absolute()


def tokenizer_fingerprint(source: str) -> str:
    """A hash of a local model directory's tokenizer and config files (not its weights).

    A hub name (no local directory) is fingerprinted by its name.
    """
    path = Path(source)
    digest = hashlib.sha256()
    if not path.is_dir():
        digest.update(f"hub:{source}".encode())
        return digest.hexdigest()
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        if file.name.startswith(".") or file.suffix.lower() in _NOT_TOKENIZER:
            continue
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def cache_key(spec: DataSpec, source: str, max_length: int, data_fingerprint: str) -> str:
    """The entry name: changes whenever the tokens could change."""
    settings = {k: getattr(spec, k) for k in ("text", "text_pair", "label", "validation_split", "format",
                                               "max_train_samples", "max_eval_samples")}
    payload = {
        "version": CACHE_VERSION,
        "tokenizer": tokenizer_fingerprint(source),
        "max_length": int(max_length),
        "data": data_fingerprint,
        "roles": sorted(spec.files()),
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def open_cache(path: Path) -> TokenCache:
    return TokenCache(path, json.loads((path / "meta.json").read_text()))


def ensure_cache(spec: DataSpec, source: str, max_length: int, cache_dir: Path) -> TokenCache:
    """Return the cache entry for these inputs, building it (once, under a lock) if missing."""
    from filelock import FileLock  # a dependency of huggingface_hub, hence of transformers

    data_fingerprint = spec.fingerprint()
    key = cache_key(spec, source, max_length, data_fingerprint)
    final = cache_dir / key
    if (final / "meta.json").is_file():
        return open_cache(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{key}.lock")):
        if (final / "meta.json").is_file():  # another process built it while we waited
            return open_cache(final)
        if final.exists():  # left over from a copy or a manual edit: never trust it
            shutil.rmtree(final)
        tmp = cache_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            _build(tmp, spec, source, max_length, data_fingerprint)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return open_cache(final)


def load_tokenizer(source: str) -> Any:
    """The tokenizer of ``source``, with a pad token (the EOS or UNK token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ConfigError("objective.model", f"the tokenizer of {source!r} has no pad, EOS or UNK token.",
                              "use a model whose tokenizer defines a pad token.")
        tokenizer.pad_token = fallback
    return tokenizer


def _build(tmp: Path, spec: DataSpec, source: str, max_length: int, data_fingerprint: str) -> None:
    splits, labels = load_splits(spec)
    tokenizer = load_tokenizer(source)
    tmp.mkdir(parents=True)
    sizes = {}
    for role, split in splits.items():
        arrays = tokenize(tokenizer, split.texts, split.pairs, max_length)
        folder = tmp / role
        folder.mkdir()
        for name, array in {**arrays, "labels": split.labels}.items():
            np.save(folder / f"{name}.npy", array)
        sizes[role] = {"examples": len(split.labels), "tokens": int(arrays["offsets"][-1])}
    tokenizer.save_pretrained(str(tmp / "tokenizer"))
    meta = {
        "version": CACHE_VERSION,
        "labels": list(labels.names),
        "label_kind": labels.kind,
        "pad_id": int(tokenizer.pad_token_id),
        "max_length": int(max_length),
        "splits": list(splits),
        "sizes": sizes,
        "model": source,
        "data": {"files": {r: str(p) for r, p in spec.files().items()}, "fingerprint": data_fingerprint,
                 "text": spec.text, "text_pair": spec.text_pair, "label": spec.label,
                 "validation_split": spec.validation_split, "max_train_samples": spec.max_train_samples,
                 "max_eval_samples": spec.max_eval_samples},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))  # written last: marks the entry complete


def tokenize(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int,
             chunk: int = 2048) -> dict[str, np.ndarray]:
    """Tokenize without padding into flat ``ids`` + ``offsets`` (+ ``type_ids`` for pairs)."""
    ids: list[list[int]] = []
    type_ids: list[list[int]] = []
    for start in range(0, len(texts), chunk):
        enc = tokenizer(
            list(texts[start:start + chunk]),
            list(pairs[start:start + chunk]) if pairs is not None else None,
            truncation=True, max_length=max_length, padding=False,
            return_attention_mask=False, return_token_type_ids=pairs is not None,
        )
        ids.extend(enc["input_ids"])
        if pairs is not None and "token_type_ids" in enc:
            type_ids.extend(enc["token_type_ids"])
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = {"ids": np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1])),
           "offsets": offsets}
    if type_ids:
        out["type_ids"] = np.fromiter(itertools.chain.from_iterable(type_ids), dtype=np.int8,
                                      count=int(offsets[-1]))
    return out
