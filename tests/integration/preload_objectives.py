"""Objectives for the preloaded-worker tests: they record what their trial process looks like."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _supervisor_parent() -> int:
    with open(f"/proc/{os.getppid()}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _fd_kinds() -> list[str]:
    kinds = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        if int(fd) > 2:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:  # the directory listing's own descriptor, closed meanwhile
                continue
            kinds.append(target.split(":")[0] if ":" in target else "file")
    return kinds


def probe(config: dict, reporter) -> dict:
    """Writes probe.json: its process, session, streams, environment, thread counts."""
    record = {
        "preloaded": sorted(m for m in ("torch", "transformers") if m in sys.modules),
        "threads_at_start": len(os.listdir("/proc/self/task")),
        "pid": os.getpid(), "supervisor": os.getppid(), "supervisor_parent": _supervisor_parent(),
        "sid": os.getsid(0), "pgid": os.getpgid(0), "cwd": os.getcwd(),
        "stdin": os.readlink("/proc/self/fd/0"), "stdout": os.readlink("/proc/self/fd/1"),
        "stderr": os.readlink("/proc/self/fd/2"),
        "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                 "TOKENIZERS_PARALLELISM", "PRELOAD_TEST_MARK", "JE_ARROW_MALLOC_CONF")},
        "fds": _fd_kinds(),
    }
    if "torch" in sys.modules or config.get("torch"):
        import torch

        record["torch_threads"] = torch.get_num_threads()
    if "numpy" in sys.modules:
        record["numpy_draw"] = float(sys.modules["numpy"].random.random_sample())
    print("probe says hello", flush=True)
    Path(reporter.trial_dir, "probe.json").write_text(json.dumps(record))
    reporter.report(1, score=config["x"])
    if config.get("hang"):
        time.sleep(600)
    return {"score": config["x"] * 2}


def exits(config: dict, reporter) -> dict:
    """Leaves by sys.exit (or a KeyboardInterrupt) after registering an atexit function and
    starting a non-daemon thread: a fresh interpreter waits for the thread, runs the function."""
    import atexit
    import threading

    done = Path(reporter.trial_dir, "atexit")
    atexit.register(lambda: done.write_text("ran"))
    thread = Path(reporter.trial_dir, "thread")
    threading.Thread(target=lambda: (time.sleep(0.5), thread.write_text("ran"))).start()
    if config["how"] == "interrupt":
        raise KeyboardInterrupt
    sys.exit(config["code"])
