"""`study.trials_frame()`: a row per trial, params as values (ints stay ints), timings, lineage."""

from __future__ import annotations

import pandas as pd

from report_data import single_objective
from tunelab.frame import parquet_ready, trials_frame


def test_columns_and_types(tmp_path) -> None:
    data = single_objective()
    frame = trials_frame(data.trials, data.metrics)
    for column in ("number", "state", "failure_kind", "params.lr", "params.layers", "params.optimizer",
                   "params.momentum", "params.epochs", "accuracy", "best_accuracy", "best_step", "start", "end",
                   "duration_s", "slot", "parent"):
        assert column in frame, column
    assert str(frame["params.layers"].dtype) == "Int64"  # not 3.0
    assert frame["params.layers"].tolist() == [1, 2, 3, 4, 5, 6, 1]
    assert frame["params.momentum"].isna().sum() == 5  # only the sgd trials have it
    assert str(frame["slot"].dtype) == "Int64"
    assert frame["state"].tolist() == ["complete", "complete", "pruned", "failed", "failed", "complete", "running"]
    assert frame["failure_kind"].tolist()[3:5] == ["nan", "oom"]
    assert frame.loc[0, "best_accuracy"] == 0.8 and frame.loc[0, "best_step"] == 1.5
    assert frame.loc[0, "duration_s"] == 30.0
    assert pd.api.types.is_datetime64_any_dtype(frame["start"])
    assert pd.isna(frame.loc[6, "end"])
    frame.to_parquet(tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert back["params.layers"].tolist() == [1, 2, 3, 4, 5, 6, 1]


def test_mixed_choice_values_survive_parquet(tmp_path) -> None:
    frame = pd.DataFrame({"params.batch": [16, "auto", None]})
    parquet_ready(frame).to_parquet(tmp_path / "m.parquet")
    back = pd.read_parquet(tmp_path / "m.parquet")["params.batch"]
    assert back.tolist()[:2] == ["16", "auto"] and pd.isna(back[2])
