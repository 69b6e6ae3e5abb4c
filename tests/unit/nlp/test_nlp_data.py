"""Reading data files of every supported format, label mapping, splits and subsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nlp_fixtures
from tunelab.errors import ConfigError
from tunelab.nlp.data import DataSpec, load_splits


def _spec(files: dict[str, Path], **extra: object) -> DataSpec:
    return DataSpec.from_config({"train": str(files["train"]), "validation": str(files["validation"]),
                                 "text": "text", "label": "label", **extra})


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_formats_give_the_same_splits(tmp_path: Path, suffix: str) -> None:
    files = nlp_fixtures.make_dataset(tmp_path, n_train=20, n_val=10, suffix=suffix)
    splits, labels = load_splits(_spec(files))
    expected = nlp_fixtures.rows(20, 0)
    assert splits["train"].texts == [r["text"] for r in expected]
    assert labels.names == ("neg", "pos")
    assert splits["train"].labels.tolist() == [int(r["label"] == "pos") for r in expected]
    assert len(splits["validation"].labels) == 10


def _save_to_disk(directory: Path, rows: list[dict], class_names: list[str] | None) -> Path:
    """A directory as `datasets.Dataset.save_to_disk` writes it (Arrow stream + json)."""
    import pyarrow as pa

    directory.mkdir(parents=True)
    table = pa.table({"text": [r["text"] for r in rows],
                      "label": [class_names.index(r["label"]) if class_names else r["label"] for r in rows]})
    with pa.OSFile(str(directory / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (directory / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    label_feature = {"names": class_names, "_type": "ClassLabel"} if class_names else {"dtype": "string",
                                                                                        "_type": "Value"}
    (directory / "dataset_info.json").write_text(json.dumps({"features": {
        "text": {"dtype": "string", "_type": "Value"}, "label": label_feature}}))
    return directory


def test_save_to_disk_directories_with_class_labels(tmp_path: Path) -> None:
    names = ["neg", "pos"]
    root = tmp_path / "dd"
    _save_to_disk(root / "train", nlp_fixtures.rows(20, 0), names)
    _save_to_disk(root / "validation", nlp_fixtures.rows(8, 1), names)
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "validation"]}))
    spec = DataSpec.from_config({"train": str(root), "validation": str(root), "text": "text", "label": "label"})
    spec.check()
    splits, labels = load_splits(spec)
    assert labels.names == ("neg", "pos")
    assert splits["train"].labels.tolist() == [int(r["label"] == "pos") for r in nlp_fixtures.rows(20, 0)]
    bad = DataSpec.from_config({"train": str(root), "validation": str(root), "test": str(root)})
    with pytest.raises(ConfigError, match="no split 'test'"):
        bad.check()


def test_real_datasets_save_to_disk_is_read_without_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = nlp_fixtures.rows(12, 0)
    ds = datasets.Dataset.from_list(rows).class_encode_column("label")
    datasets.DatasetDict(train=ds, validation=ds).save_to_disk(str(tmp_path / "saved"))
    spec = DataSpec.from_config({"train": str(tmp_path / "saved"), "validation": str(tmp_path / "saved" /
                                                                                     "validation")})
    splits, labels = load_splits(spec)
    assert labels.names == tuple(ds.features["label"].names)
    assert [labels.names[i] for i in splits["validation"].labels] == [r["label"] for r in rows]


def test_integer_labels_keep_their_values(tmp_path: Path) -> None:
    files = nlp_fixtures.make_dataset(tmp_path, n_train=20, n_val=6, int_labels=True)
    splits, labels = load_splits(_spec(files))
    assert labels.names == ("0", "1") and labels.kind == "int"
    assert splits["train"].labels.tolist() == [r["label"] for r in nlp_fixtures.rows(20, 0, int_labels=True)]


def test_validation_split_and_subsets_are_seeded(tmp_path: Path) -> None:
    files = nlp_fixtures.make_dataset(tmp_path, n_train=100, n_val=10)
    spec = DataSpec.from_config({"train": str(files["train"]), "validation_split": 0.2, "max_train_samples": 50})
    a, _ = load_splits(spec)
    b, _ = load_splits(spec)
    assert len(a["validation"].texts) == 20 and len(a["train"].texts) == 50
    assert a["train"].texts == b["train"].texts and a["validation"].texts == b["validation"].texts
    assert not set(a["train"].texts) & set(a["validation"].texts)
    assert 10 < int(np.sum(a["train"].labels)) < 40  # a shuffled subset, not the first rows


def test_unknown_validation_label_is_a_config_error(tmp_path: Path) -> None:
    files = nlp_fixtures.make_dataset(tmp_path, n_train=10, n_val=4)
    nlp_fixtures.write_rows(files["validation"], [{"text": "good", "label": "maybe"}])
    with pytest.raises(ConfigError, match="maybe"):
        load_splits(_spec(files))


def test_data_spec_errors_name_the_field(tmp_path: Path) -> None:
    files = nlp_fixtures.make_dataset(tmp_path, n_train=10, n_val=4)
    with pytest.raises(ConfigError) as err:
        _spec(files, text="review").check()
    assert err.value.field == "objective.data.text" and "['text', 'label']" in str(err.value)
    with pytest.raises(ConfigError) as err:
        DataSpec.from_config({"train": str(tmp_path / "nope.csv"), "validation_split": 0.1}).check()
    assert err.value.field == "objective.data.train" and "does not exist" in str(err.value)
    with pytest.raises(ConfigError, match="validation_split"):
        DataSpec.from_config({"train": "a.csv"})
    with pytest.raises(ConfigError) as err:
        DataSpec.from_config({"train": "a.csv", "validation_split": 0.1, "txt": "x"})
    assert err.value.field == "objective.data.txt"
    (tmp_path / "a.txt").write_text("text,label\n")
    with pytest.raises(ConfigError, match="format"):
        _spec({"train": tmp_path / "a.txt", "validation": files["validation"]}).check()


def test_relative_paths_are_read_from_base_dir(tmp_path: Path) -> None:
    nlp_fixtures.make_dataset(tmp_path / "data", n_train=10, n_val=4)
    spec = DataSpec.from_config({"train": "data/train.csv", "validation": "data/validation.csv"}, base_dir=tmp_path)
    assert Path(spec.train) == tmp_path / "data" / "train.csv"
    spec.check()
