"""The tunable settings of text-classification fine-tuning, their defaults and their checks.

Names follow Hugging Face ``TrainingArguments`` where one exists, and so do the defaults, so a
config copied from a Trainer script means the same thing here. ``batch_size`` is an alias of
``per_device_train_batch_size``. Torch-free: the driver checks a search space with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from tunelab.errors import ConfigError, shown

SCHEDULERS = ("linear", "cosine", "constant_with_warmup")
ALIASES = {"batch_size": "per_device_train_batch_size"}

MAX_BATCH = 2**16  # larger batches, epochs or lengths are typos; they would only exhaust memory or time
# name -> (kind, low, high, low_open, high_open); None bounds mean unbounded.
_RULES: dict[str, tuple[str, float | None, float | None, bool, bool]] = {
    "learning_rate": ("float", 0.0, None, True, False),
    "per_device_train_batch_size": ("int", 1, MAX_BATCH, False, False),
    "weight_decay": ("float", 0.0, None, False, False),
    "warmup_ratio": ("float", 0.0, 1.0, False, False),
    "num_train_epochs": ("float", 0.0, 10_000, True, False),
    "max_grad_norm": ("float", 0.0, None, False, False),
    "gradient_accumulation_steps": ("int", 1, MAX_BATCH, False, False),
    "lr_scheduler_type": ("str", None, None, False, False),
    "adam_beta1": ("float", 0.0, 1.0, False, True),
    "adam_beta2": ("float", 0.0, 1.0, False, True),
    "adam_epsilon": ("float", 0.0, None, True, False),
    "label_smoothing_factor": ("float", 0.0, 1.0, False, True),
    "seed": ("int", 0, 2**32 - 1, False, False),
    "hidden_dropout_prob": ("float", 0.0, 1.0, False, True),
    "attention_probs_dropout_prob": ("float", 0.0, 1.0, False, True),
    "classifier_dropout": ("float", 0.0, 1.0, False, True),
    "max_length": ("int", 2, 2**20, False, False),
}

#: Every name a search space (or the objective's defaults) may set.
TUNABLE = tuple(_RULES)
DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")


@dataclass(frozen=True)
class TrainSettings:
    """One trial's hyperparameters, with Hugging Face ``TrainingArguments`` defaults.

    Dropouts left at ``None`` keep the model's own values.
    """

    learning_rate: float = 5e-5
    per_device_train_batch_size: int = 8
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    num_train_epochs: float = 3.0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    label_smoothing_factor: float = 0.0
    seed: int = 42
    hidden_dropout_prob: float | None = None
    attention_probs_dropout_prob: float | None = None
    classifier_dropout: float | None = None
    max_length: int = 128

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def coerce(name: str, value: Any, where: str) -> Any:
    """Check one setting's value and return it with its proper type (``32.0`` -> ``32``)."""
    kind, low, high, low_open, high_open = _RULES[canonical(name)]
    if kind == "str":
        if not isinstance(value, str) or value not in SCHEDULERS:
            raise ConfigError(where, f"is {shown(value)}, but must be one of {list(SCHEDULERS)}.",
                              f"use e.g. `{SCHEDULERS[0]}`.")
        return value
    if value is None and canonical(name) in DROPOUTS:
        return None
    if isinstance(value, str):  # YAML 1.1 reads `1e-5` as a string
        try:
            value = float(value)
        except ValueError:
            pass
    huge = isinstance(value, int) and abs(value) > 2**53  # beyond every bound; float() of it could overflow
    if huge or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(where, f"is {shown(value)}, which is not a finite number in range.",
                          "give a number, e.g. 0.1.")
    if kind == "int":
        if float(value) != int(value):
            raise ConfigError(where, f"is {value!r}, but must be a whole number.",
                              "use an `int` or a `choice` of ints.")
        value = int(value)
    else:
        value = float(value)
    _check_bounds(value, low, high, low_open, high_open, where)
    return value


def _check_bounds(value: float, low: float | None, high: float | None, low_open: bool, high_open: bool,
                  where: str) -> None:
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ConfigError(where, f"is {value!r}, but must lie in {interval}.", "give a value in that range.")


def unknown_setting(name: str, where: str) -> ConfigError:
    return ConfigError(
        where, f"`{name}` is not a setting of the text_classification objective.",
        f"use one of {sorted(TUNABLE)} (`batch_size` is an alias of `per_device_train_batch_size`).",
    )


def check_defaults(raw: Mapping[str, Any], field: str) -> dict[str, Any]:
    """Validate the objective's default settings; return them under canonical names."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        where = f"{field}.{name}"
        if canonical(name) not in _RULES:
            raise unknown_setting(name, where)
        if canonical(name) in out:
            raise ConfigError(where, f"sets `{canonical(name)}` a second time (through an alias).", "keep one.")
        out[canonical(name)] = coerce(name, value, where)
    return out


def check_space(space: Any, field: str = "space") -> None:
    """Every parameter of ``space`` must be a known setting whose values fit its type and range."""
    from tunelab.space import Choice, Fixed, Float

    seen: dict[str, str] = {}
    for name, param in space.params.items():
        where = f"{field}.{name}"
        key = canonical(name)
        if key not in _RULES:
            raise unknown_setting(name, where)
        if key in seen:
            raise ConfigError(where, f"tunes `{key}` a second time (as `{seen[key]}` too).", "keep one of them.")
        seen[key] = name
        kind = _RULES[key][0]
        if isinstance(param, Fixed):
            coerce(name, param.value, where)
        elif isinstance(param, Choice):
            for value in param.choices:
                coerce(name, value, f"{where}.choice")
        elif kind == "str" or (kind == "int" and isinstance(param, Float)):
            wanted = "a `choice`" if kind == "str" else "an `int` range or a `choice` of ints"
            raise ConfigError(where, f"is a {type(param).__name__.lower()} range, but `{key}` needs {wanted}.")
        else:  # a Float or Int range: both ends must be valid values
            coerce(name, param.low, f"{where}.low")
            coerce(name, param.high, f"{where}.high")


def resolve(defaults: Mapping[str, Any], config: Mapping[str, Any]) -> TrainSettings:
    """A trial's settings: the objective's defaults overridden by the trial's config."""
    values = dict(defaults)
    for name, value in config.items():
        if canonical(name) not in _RULES:
            raise unknown_setting(name, f"config.{name}")
        values[canonical(name)] = coerce(name, value, f"config.{name}")
    known = {f.name for f in fields(TrainSettings)}
    return TrainSettings(**{k: v for k, v in values.items() if k in known})
