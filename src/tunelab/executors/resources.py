"""Worker slots and their resources: CPU threads per trial and GPUs (fractions allowed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from tunelab.errors import ConfigError

_UNITS = 1000  # GPU shares are counted in thousandths, so 0.5 + 0.5 is exactly one GPU


def visible_gpus() -> list[int]:
    """GPU indices this driver may hand out, without initializing CUDA in the driver."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [int(x) for x in env.split(",") if x.strip().isdigit()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(x) for x in out.split() if x.strip().isdigit()]


@dataclass
class GpuPool:
    """Hands out GPUs per trial: a fraction packs several trials on one GPU."""

    gpus: list[int]
    per_trial: float
    _free: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.per_trial < 0:
            raise ConfigError("execution.gpus_per_trial", f"is {self.per_trial}, but must be >= 0.")
        if self.per_trial > 1 and not float(self.per_trial).is_integer():
            raise ConfigError("execution.gpus_per_trial", f"is {self.per_trial}; above 1 it must be whole.",
                              "use 0.25, 0.5, 1, 2, ...")
        if self.per_trial > 0 and len(self.gpus) < max(1, self.per_trial):
            raise ConfigError(
                "execution.gpus_per_trial",
                f"is {self.per_trial}, but {len(self.gpus)} GPU(s) are visible on this machine.",
                "set `gpus_per_trial: 0` to train on the CPU, or run where GPUs are visible.",
            )
        self._free = {g: _UNITS for g in self.gpus}

    @property
    def units(self) -> int:
        return int(round(self.per_trial * _UNITS))

    def slots(self) -> int:
        """How many trials fit on the GPUs at once (unbounded when trials use none)."""
        if self.per_trial == 0:
            return 1 << 30
        if self.per_trial <= 1:
            return sum(_UNITS // self.units for _ in self.gpus)
        return len(self.gpus) // int(self.per_trial)

    def take(self) -> tuple[int, ...] | None:
        if self.per_trial == 0:
            return ()
        if self.per_trial <= 1:
            # Pack: the busiest GPU that still fits, so whole GPUs stay free for others.
            fits = [g for g in self.gpus if self._free[g] >= self.units]
            if not fits:
                return None
            gpu = min(fits, key=lambda g: (self._free[g], g))
            self._free[gpu] -= self.units
            return (gpu,)
        idle = [g for g in self.gpus if self._free[g] == _UNITS][: int(self.per_trial)]
        if len(idle) < int(self.per_trial):
            return None
        for g in idle:
            self._free[g] = 0
        return tuple(idle)

    def give_back(self, gpus: tuple[int, ...]) -> None:
        for g in gpus:
            self._free[g] = min(_UNITS, self._free[g] + (self.units if self.per_trial <= 1 else _UNITS))


def cpus_per_trial(workers: int, requested: int | None = None) -> int:
    """Threads per trial: the requested number, or an even share of this machine's cores."""
    if requested is not None:
        return max(1, int(requested))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))
