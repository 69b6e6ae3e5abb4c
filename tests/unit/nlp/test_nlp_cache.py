"""The token cache: built once, memory-mapped, reused, keyed by everything that changes tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nlp_fixtures
from tunelab.nlp.cache import cache_key, ensure_cache
from tunelab.nlp.data import DataSpec


@pytest.fixture()
def count_tokenizer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from transformers import PreTrainedTokenizerBase

    calls = [0]
    original = PreTrainedTokenizerBase.__call__

    def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", counting)
    return calls


def _spec(files: dict[str, Path], **extra: object) -> DataSpec:
    return DataSpec.from_config({"train": str(files["train"]), "validation": str(files["validation"]), **extra})


def test_cache_is_built_once_and_memory_mapped(tmp_path: Path, tiny_model: Path, tiny_data: dict[str, Path],
                                               count_tokenizer_calls: list[int]) -> None:
    spec = _spec(tiny_data)
    first = ensure_cache(spec, str(tiny_model), 32, tmp_path)
    assert count_tokenizer_calls[0] > 0
    calls = count_tokenizer_calls[0]
    again = ensure_cache(spec, str(tiny_model), 32, tmp_path)
    assert count_tokenizer_calls[0] == calls and again.path == first.path
    train = again.split("train")
    assert isinstance(train.ids, np.memmap) and train.ids.dtype == np.int32
    assert len(train) == 320 and train.lengths.max() <= 32
    assert again.label_names == ["neg", "pos"] and again.pad_id == 0
    assert (again.tokenizer_dir / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []  # no half entries left


def test_ids_match_the_tokenizer(tmp_path: Path, tiny_model: Path, tiny_data: dict[str, Path]) -> None:
    from transformers import AutoTokenizer

    cache = ensure_cache(_spec(tiny_data), str(tiny_model), 8, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    text = nlp_fixtures.rows(320, 0)[5]["text"]
    split = cache.split("train")
    row = split.ids[split.offsets[5]:split.offsets[6]].tolist()
    assert row == tokenizer(text, truncation=True, max_length=8)["input_ids"]


def test_key_changes_with_max_length_content_and_columns(tmp_path: Path, tiny_model: Path) -> None:
    files = nlp_fixtures.make_dataset(tmp_path / "d", n_train=20, n_val=6)
    spec = _spec(files)
    fp = spec.fingerprint()
    base = cache_key(spec, str(tiny_model), 32, fp)
    assert cache_key(spec, str(tiny_model), 64, fp) != base
    assert cache_key(_spec(files, max_train_samples=10), str(tiny_model), 32, fp) != base
    nlp_fixtures.write_rows(files["train"], nlp_fixtures.rows(20, 99))
    assert spec.fingerprint() != fp


def test_sentence_pairs_store_token_types(tmp_path: Path, tiny_model: Path, pair_data: dict[str, Path]) -> None:
    spec = _spec(pair_data, text="premise", text_pair="hypothesis")
    cache = ensure_cache(spec, str(tiny_model), 48, tmp_path)
    split = cache.split("validation")
    assert split.type_ids is not None and set(np.unique(split.type_ids).tolist()) == {0, 1}
    assert cache.label_names == ["contradiction", "entailment"]


def test_a_stale_entry_without_meta_is_rebuilt(tmp_path: Path, tiny_model: Path, tiny_data: dict[str, Path]) -> None:
    spec = _spec(tiny_data)
    key = cache_key(spec, str(tiny_model), 16, spec.fingerprint())
    (tmp_path / key / "train").mkdir(parents=True)  # e.g. a copy interrupted half-way
    cache = ensure_cache(spec, str(tiny_model), 16, tmp_path)
    assert len(cache.split("train")) == 320
