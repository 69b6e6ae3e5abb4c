"""A small, real training objective: logistic regression by gradient descent on a noisy
two-moons-like dataset, in plain NumPy. It reports validation accuracy every epoch, so
ASHA can stop poor configurations early."""

from __future__ import annotations

import numpy as np


def _data(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n = 600
    angle = rng.uniform(0, np.pi, n)
    label = rng.integers(0, 2, n)
    x = np.stack([np.cos(angle) + label * 1.0, np.sin(angle) * (1 - 2 * label) + label * 0.4], axis=1)
    x += rng.normal(0, 0.25, x.shape)
    # Random Fourier features make the problem learnable by a linear model.
    w = rng.normal(0, 1.5, (2, 64))
    b = rng.uniform(0, 2 * np.pi, 64)
    feats = np.cos(x @ w + b)
    return feats[:400], label[:400], feats[400:], label[400:]


def train(config: dict, reporter) -> dict:
    xt, yt, xv, yv = _data()
    rng = np.random.default_rng(config.get("seed", 0))
    weights = np.zeros(xt.shape[1])
    bias = 0.0
    lr, l2, batch = config["learning_rate"], config["weight_decay"], config["batch_size"]
    accuracy = 0.0
    for epoch in range(1, config["epochs"] + 1):
        order = rng.permutation(len(xt))
        for start in range(0, len(xt), batch):
            idx = order[start:start + batch]
            p = 1 / (1 + np.exp(-(xt[idx] @ weights + bias)))
            grad = p - yt[idx]
            weights -= lr * (xt[idx].T @ grad / len(idx) + l2 * weights)
            bias -= lr * grad.mean()
        accuracy = float(((xv @ weights + bias > 0) == yv).mean())
        reporter.report(epoch, accuracy=accuracy)
    return {"accuracy": accuracy}
