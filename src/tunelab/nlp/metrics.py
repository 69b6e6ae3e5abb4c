"""Classification metrics in plain numpy: accuracy, f1, f1_macro, mcc (and the mean loss).

``f1`` is the binary F1 of label id 1 when there are two labels (the usual "positive" class),
the macro average otherwise. ``mcc`` is the multiclass Matthews correlation (Gorodkin's R_K),
which equals the binary MCC for two labels. Undefined ratios (0/0) count as 0, as scikit-learn
does with ``zero_division=0``; the macro average runs over the classes that occur in the labels
or the predictions, as scikit-learn's does.
"""

from __future__ import annotations

import numpy as np

EVAL_METRICS = ("accuracy", "f1", "f1_macro", "mcc", "loss")


def confusion(labels: np.ndarray, preds: np.ndarray, num_labels: int) -> np.ndarray:
    """``matrix[true, predicted]`` counts."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return matrix


def _ratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b != 0)


def per_class_f1(matrix: np.ndarray) -> np.ndarray:
    tp = np.diag(matrix).astype(np.float64)
    return _ratio(2 * tp, matrix.sum(axis=0) + matrix.sum(axis=1))


def mcc(matrix: np.ndarray) -> float:
    m = matrix.astype(np.float64)
    n = m.sum()
    correct = np.trace(m)
    pred, true = m.sum(axis=0), m.sum(axis=1)
    cov = correct * n - pred @ true
    denom = np.sqrt((n * n - pred @ pred) * (n * n - true @ true))
    return float(cov / denom) if denom > 0 else 0.0


def classification_metrics(labels: np.ndarray, preds: np.ndarray, num_labels: int,
                           loss: float | None = None) -> dict[str, float]:
    """The metrics every evaluation reports."""
    matrix = confusion(labels, preds, num_labels)
    f1s = per_class_f1(matrix)
    present = (matrix.sum(axis=0) + matrix.sum(axis=1)) > 0  # as scikit-learn: classes seen at all
    f1_macro = float(f1s[present].mean()) if present.any() else 0.0
    out = {
        "accuracy": float(np.trace(matrix) / max(1, matrix.sum())),
        "f1": float(f1s[1]) if num_labels == 2 else f1_macro,
        "f1_macro": f1_macro,
        "mcc": mcc(matrix),
    }
    if loss is not None:
        out["loss"] = float(loss)
    return out
