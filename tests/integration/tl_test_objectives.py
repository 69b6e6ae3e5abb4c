"""Objectives the integration tests run in real trial processes (copied next to each study)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tunelab.errors import TrialFailed


def curve(config: dict, reporter) -> dict:
    """A learning curve that rises with `quality`; reports every epoch."""
    value = 0.0
    for epoch in range(1, config.get("epochs", 4) + 1):
        value = config["quality"] * (1 - 0.5 / epoch)
        reporter.report(epoch, score=value)
    return {"score": value}


def slow(config: dict, reporter) -> dict:
    """Writes its pid, then takes `seconds` per epoch: long enough to be killed mid-study."""
    Path(reporter.trial_dir, "pid").write_text(str(os.getpid()))
    for epoch in range(1, 4):
        time.sleep(config.get("seconds", 0.3))
        reporter.report(epoch, score=config["quality"] * epoch)
    return {"score": config["quality"] * 3}


def spawns_child(config: dict, reporter) -> dict:
    """Starts a grandchild process that would outlive a careless executor."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(reporter.trial_dir, "pid").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(600)
    return {"score": 0.0}


def environment(config: dict, reporter) -> dict:
    """Writes the variables named in `names` as the trial process sees them."""
    import json

    Path(reporter.trial_dir, "env.json").write_text(json.dumps({k: os.environ.get(k) for k in config["names"]}))
    return {"score": 1.0}


def fails_by_kind(config: dict, reporter) -> dict:
    kind = config["kind"]
    if kind == "ok":
        return {"score": 1.0}
    if kind == "exit":
        os._exit(3)
    if kind == "hang":
        time.sleep(600)
    if kind == "raise":
        raise ValueError("boom")
    if kind == "nan":
        reporter.report(1, score=float("nan"))
    if kind == "memory":
        raise MemoryError("simulated")
    raise TrialFailed(kind, f"declared {kind}")


def seeded(config: dict, reporter) -> dict:
    """`quality` plus a small deterministic effect of `config["seed"]` (what seed repeats vary)."""
    seed = config.get("seed", 0)
    value = config["quality"] + ((seed * 7919) % 11 - 5) / 1000
    for epoch in (1, 2):
        reporter.report(epoch, score=value * epoch / 2)
    return {"score": value}
