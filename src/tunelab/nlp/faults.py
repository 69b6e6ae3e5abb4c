"""Injected failures for tests: they drive the real recovery paths (OOM, NaN) on a CPU."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from tunelab.errors import ConfigError


@dataclass(frozen=True)
class Faults:
    """``objective.fault_injection``; leave it empty outside tests.

    ``oom_above_micro_batch``: a forward pass on more examples raises ``torch.OutOfMemoryError``.
    ``nan_at_update``: the loss of this optimizer update (1-based) becomes NaN.
    """

    oom_above_micro_batch: int | None = None
    nan_at_update: int | None = None

    @classmethod
    def from_config(cls, raw: Any, field_name: str = "objective.fault_injection") -> Faults:
        if isinstance(raw, Faults):
            return raw
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise ConfigError(field_name, f"is {raw!r}, but must be a mapping.")
        known = [f.name for f in fields(cls)]
        for key, value in raw.items():
            if key not in known:
                raise ConfigError(f"{field_name}.{key}", "is not a fault to inject.", f"use one of {known}.")
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{field_name}.{key}", f"is {value!r}, but must be a non-negative integer.")
        return cls(**raw)

    def check_batch(self, size: int) -> None:
        """Raise the out-of-memory error a GPU would, for a forward pass on ``size`` examples."""
        if self.oom_above_micro_batch is not None and size > self.oom_above_micro_batch:
            import torch

            raise torch.OutOfMemoryError(f"injected: micro-batch of {size} > {self.oom_above_micro_batch}")
