"""The trials table: a row per trial, params as values, metrics, state, timing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from tunelab.metrics import MetricSet
from tunelab.trial import State

if TYPE_CHECKING:
    import pandas as pd

    from tunelab.study import TrialInfo


def trial_rows(trials: Sequence["TrialInfo"], metrics: MetricSet) -> list[dict[str, Any]]:
    """Plain dict rows (JSON-ready): number, state, failure kind and message, params, metrics,
    duration. The message is whole here; displays show its first line (``failures.headline``)."""
    param_names: list[str] = []
    for t in trials:
        for name in t.config:
            if name not in param_names:
                param_names.append(name)
    metric_names = metrics.names() + sorted(
        {m for t in trials for m in t.metrics} - set(metrics.names())
    )
    repeats = any(t.repeat_of is not None for t in trials)  # a column only for studies with seed repeats
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.value,
            "failure_kind": t.failure_kind,
            "failure_message": (t.message or None) if t.state == State.FAILED else None,
        }
        for name in param_names:
            row[f"params.{name}"] = t.config.get(name)
        for name in metric_names:
            row[name] = t.metrics.get(name)
        primary = metrics.primary
        best = t.best_report(primary.name, primary.goal)
        row[f"best_{primary.name}"] = best.metrics[primary.name] if best else None
        row["best_step"] = best.step if best else None
        row["feasible"] = t.feasible
        row["start"] = t.start.isoformat(timespec="seconds") if t.start else None
        row["end"] = t.end.isoformat(timespec="seconds") if t.end else None
        row["duration_s"] = round(t.duration, 3) if t.duration is not None else None
        row["slot"] = t.slot
        row["parent"] = t.parent
        row["retry_of"] = t.retry_of
        if repeats:
            row["repeat_of"] = t.repeat_of
        rows.append(row)
    return rows


def trials_frame(trials: Sequence["TrialInfo"], metrics: MetricSet) -> "pd.DataFrame":
    """The rows as a DataFrame; ints stay ints (nullable ``Int64``) where some rows lack them."""
    import pandas as pd

    rows = trial_rows(trials, metrics)
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        values = [r[column] for r in rows if r.get(column) is not None]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            # pandas turns [1, None] into floats; a batch size of 32.0 is not what the trial used.
            frame[column] = pd.array([r.get(column) for r in rows], dtype="Int64")
        elif values and all(isinstance(v, bool) for v in values):
            frame[column] = pd.array([r.get(column) for r in rows], dtype="boolean")
    for column in ("start", "end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def parquet_ready(frame: "pd.DataFrame") -> "pd.DataFrame":
    """A copy Parquet can store: a column mixing types (``choice: [16, auto]``) becomes strings."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            kinds = {type(v) for v in out[column] if v is not None}
            if len(kinds) > 1:
                out[column] = [None if v is None else str(v) for v in out[column]]
    return out
