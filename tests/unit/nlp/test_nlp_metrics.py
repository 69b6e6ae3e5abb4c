"""Metrics against values computed by hand (and checked against scikit-learn once)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunelab.nlp.metrics import classification_metrics, confusion, mcc


def test_binary_metrics_match_hand_computed_values() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    preds = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    m = classification_metrics(labels, preds, 2, loss=0.5)
    tp, fp, fn, tn = 3, 2, 1, 4
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    f1_neg = 2 * tn / (2 * tn + fn + fp)
    assert m["f1_macro"] == pytest.approx((m["f1"] + f1_neg) / 2)
    expected_mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m["mcc"] == pytest.approx(expected_mcc)
    assert m["loss"] == 0.5


def test_multiclass_f1_is_macro_and_mcc_is_gorodkin() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0, 2])
    m = classification_metrics(labels, preds, 3)
    assert m["f1"] == m["f1_macro"]
    # per-class F1 0.5, 0.8, 0.8; MCC = (5*7 - 16) / sqrt((49 - 17) * (49 - 17)) = 19/32
    assert m["f1_macro"] == pytest.approx(0.7)
    assert m["mcc"] == pytest.approx(19 / 32)


def test_degenerate_cases_are_zero_not_nan() -> None:
    labels = np.array([1, 1, 1])
    m = classification_metrics(labels, np.array([1, 1, 1]), 2)
    assert m["accuracy"] == 1.0 and m["mcc"] == 0.0 and m["f1"] == 1.0
    assert mcc(confusion(np.array([0, 1]), np.array([0, 0]), 2)) == 0.0
    # a class nobody predicts or has is left out of the macro average, as scikit-learn does
    assert classification_metrics(np.array([0, 1]), np.array([0, 1]), 3)["f1_macro"] == 1.0
