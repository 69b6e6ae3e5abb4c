"""Read a file that lives on some node of a Ray cluster (a trial's log when the trial directory
is not shared): a zero-CPU task pinned to each live node looks for it, the first hit wins."""

from __future__ import annotations

import logging
import os

from tunelab.errors import TunelabError, require

_MAX_BYTES = 64 * 1024 * 1024


def _read(path: str) -> bytes | None:
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read(_MAX_BYTES)


def fetch_file(path: str, address: str = "auto") -> bytes | None:
    """The file's bytes from the first live node that has it, or None."""
    ray = require("ray", "ray")
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    owns = not ray.is_initialized()
    if owns:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise TunelabError(f"the log is not on this machine, and no Ray cluster answers at {address!r} "
                               f"to fetch it from ({exc}). Pass --address HOST:6379.") from None
    try:
        read = ray.remote(num_cpus=0, max_retries=0)(_read)
        refs = [read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
                .remote(path) for node in ray.nodes() if node.get("Alive")]
        for ref in refs:
            try:
                data = ray.get(ref, timeout=60)
            except ray.exceptions.RayError:
                continue
            if data is not None:
                return data
        return None
    finally:
        if owns:
            ray.shutdown()
