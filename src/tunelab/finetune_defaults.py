"""Defaults for fine-tuning: what a ``text_classification`` study with no ``space`` searches.

The space (README, "Defaults for fine-tuning"):

- ``learning_rate``: log-uniform 1e-5 .. 3e-4 (BERT's recommended 2e-5 .. 5e-5 with room on
  both sides; small and cut models want the upper end: the demo's 2-layer MiniLM did not learn
  at 5e-5 in 126 updates and did at 2e-4, ``benchmarks/results/parity.md``);
- ``batch_size``: 16 or 32 (BERT's recommendation);
- ``warmup_ratio``: 0 .. 0.1 (the Trainer's 0 to BERT's 10% of the steps);
- ``weight_decay``: 0 .. 0.1 (the Trainer's 0 to RoBERTa's 0.1).

The epochs are not searched: they are the scheduler's resource. Trials train
``num_train_epochs`` (the objective's, default 3), evaluate every epoch (or as the objective
says), and ASHA stops the weaker ones at its rungs: no stop before one full epoch, and a
reduction factor of 2 (half of the trials go on at each rung), gentler than the usual 3,
because on a held-out learning-curve benchmark successive halving with factor 3 from the first
epoch did worse than no early stopping at equal epochs (issue 13). Measured on the demo's data
(``benchmarks/results/defaults.md``: curves replayed at 6, 12 and 24 epochs a study), this
choice is at or above no early stopping on validation at every budget and factor 3 is worse at
the smallest; all choices were within 0.7 points there.

A setting the objective fixes (``objective: {weight_decay: 0.01}``) is left out of the space
(and of the start points): what the user gives is kept.

Known-good start points run first (enqueued when the study is new), as many as fit in a third
of the trial budget (all six for 18 trials or more), with no warmup and no weight decay (the
Trainer's defaults). Which grid depends on the size of the encoder (its layers after
``model_kwargs``, read from the model's ``config.json``):

- base-size and larger encoders, or a model whose size is unknown here (a hub name): BERT's grid
  (Devlin et al. 2019), learning rate 2e-5, 3e-5 and 5e-5 with batch 32 then 16;
- compact encoders (under ``COMPACT_MAX_PARAMETERS`` in their layers: MiniLM, BERT-mini/small/medium,
  a model cut to a few layers): the grid Google's compact BERTs were fine-tuned over (Turc et al.
  2019, "Well-Read Students Learn Better": 3e-4, 1e-4, 5e-5, 3e-5), from its middle outwards,
  1e-4, 3e-4 then 5e-5, with batch 32 then 16. BERT's rates are made for 85M parameters of
  layers: on the demo's 2-layer MiniLM (3.5M) they stayed at chance for 2 epochs
  (``benchmarks/results/defaults_curves.json``, ``outcome.md``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    import optuna

DEFAULT_SPACE: dict[str, Any] = {
    "learning_rate": {"float": [1.0e-5, 3.0e-4], "log": True},
    "batch_size": {"choice": [16, 32]},
    "warmup_ratio": {"float": [0.0, 0.1]},
    "weight_decay": {"float": [0.0, 0.1]},
}


def _grid(rates: Sequence[float]) -> tuple[dict[str, Any], ...]:
    return tuple({"learning_rate": lr, "batch_size": batch, "warmup_ratio": 0.0, "weight_decay": 0.0}
                 for batch in (32, 16) for lr in rates)


#: BERT's fine-tuning grid (Devlin et al. 2019), for base-size encoders.
START_POINTS = _grid((2e-5, 3e-5, 5e-5))
#: The compact BERTs' grid (Turc et al. 2019) less its lowest rate, from its middle outwards.
COMPACT_START_POINTS = _grid((1e-4, 3e-4, 5e-5))
#: Encoders with fewer parameters in their layers (embeddings not counted) are compact. BERT-base
#: has 85M, DistilBERT 42M; BERT-medium 25M, MiniLM-L12-H384 21M, the demo's 2-layer MiniLM 3.5M.
COMPACT_MAX_PARAMETERS = 30_000_000
#: No trial is stopped before this many epochs; then half of those at a rung go on.
GRACE_EPOCHS = 1
REDUCTION_FACTOR = 2
DEFAULT_EPOCHS = 3.0
#: Trial user attr of an enqueued start point.
START_POINT = "start_point"


def _given(objective: Any) -> set[str]:
    """Settings the objective fixes itself (its defaults, by canonical name): never searched."""
    from tunelab.nlp.settings import canonical

    return {canonical(name) for name in (getattr(objective, "defaults", None) or {})}


def default_space(objective: Any) -> dict[str, Any]:
    """``DEFAULT_SPACE`` less the settings the objective fixes (``objective: {weight_decay: 0.01}``)."""
    from tunelab.nlp.settings import canonical

    given = _given(objective)
    return {name: spec for name, spec in DEFAULT_SPACE.items() if canonical(name) not in given}


def layer_parameters(config: Mapping[str, Any], model_kwargs: Mapping[str, Any] | None = None) -> int | None:
    """Parameters in an encoder's layers (attention and feed-forward weights) from its
    ``config.json`` and the ``model_kwargs`` overrides; ``None`` when the config does not say."""
    merged = {**config, **(model_kwargs or {})}
    layers = merged.get("num_hidden_layers", merged.get("n_layers"))  # BERT-like, DistilBERT
    hidden = merged.get("hidden_size", merged.get("dim"))
    inner = merged.get("intermediate_size", merged.get("hidden_dim"))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (layers, hidden, inner)):
        return None
    return layers * (4 * hidden * hidden + 2 * hidden * inner)


def _model_layer_parameters(objective: Any) -> int | None:
    """``layer_parameters`` of the objective's model, when it is a local directory (JSON only)."""
    try:
        config = json.loads((Path(objective.model_source()) / "config.json").read_text())
    except (AttributeError, ImportError, OSError, ValueError):
        return None  # a hub name, a missing package: checked later, with a clear error
    if not isinstance(config, Mapping):
        return None
    return layer_parameters(config, getattr(objective, "model_kwargs", None))


def start_grid(objective: Any) -> tuple[dict[str, Any], ...]:
    """BERT's grid, or the compact grid for an encoder under ``COMPACT_MAX_PARAMETERS``."""
    size = _model_layer_parameters(objective)
    return COMPACT_START_POINTS if size is not None and size < COMPACT_MAX_PARAMETERS else START_POINTS


def default_start_points(objective: Any) -> tuple[dict[str, Any], ...]:
    """The start grid (``start_grid``) over the default space left by the objective's own
    settings, without repeats."""
    names = set(default_space(objective))
    out: list[dict[str, Any]] = []
    for point in start_grid(objective):
        kept = {k: v for k, v in point.items() if k in names}
        if kept and kept not in out:
            out.append(kept)
    return tuple(out)


def default_scheduler(objective: Any) -> dict[str, Any]:
    """ASHA over the objective's epochs (a rung per epoch from the first, factor 2)."""
    epochs = float((getattr(objective, "defaults", None) or {}).get("num_train_epochs", DEFAULT_EPOCHS))
    max_resource = max(GRACE_EPOCHS + 1, math.ceil(epochs))
    return {"type": "asha", "min_resource": GRACE_EPOCHS, "max_resource": max_resource,
            "reduction_factor": REDUCTION_FACTOR}


def fit_to_budget(points: Sequence[Mapping[str, Any]], trials: int | None) -> list[dict[str, Any]]:
    """The start points that fit in a third of the trial budget (all of them without one)."""
    if trials is None:
        return [dict(p) for p in points]
    return [dict(p) for p in points[: max(1, trials // 3)]]


def enqueue_start_points(study: "optuna.Study", points: Sequence[Mapping[str, Any]]) -> int:
    """Queue the start points in a study that has no trial yet; how many were queued."""
    if not points or study.get_trials(deepcopy=False):
        return 0
    for point in points:
        study.enqueue_trial(dict(point), user_attrs={START_POINT: True})
    return len(points)
