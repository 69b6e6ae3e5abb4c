"""Shared helpers for the benchmarks: machine facts, versions, subprocess workers, tables.

Only the standard library is imported here, so a benchmark's worker process pays nothing
for it. Each benchmark runs every system in a fresh interpreter (``run_worker``), so one
system's imports and caches never help another, and reads back one ``RESULT {json}`` line.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

RESULT_PREFIX = "RESULT "
REPO = Path(__file__).resolve().parent.parent

#: Environment for peers that would otherwise phone home, open dashboards or bind public ports.
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    "RAY_DEDUP_LOGS": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # On Linux this only makes Ray use the loopback address as the node address
    # (ray._private.services.get_node_ip_address), so its servers bind 127.0.0.1.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "PYTHONWARNINGS": "ignore",
    "PYTHONHASHSEED": "0",
}


def emit(result: dict[str, Any]) -> None:
    """Worker side: hand one result to the driver on stdout."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def run_worker(argv: Sequence[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Driver side: run ``python argv...`` in a fresh interpreter and return its RESULT."""
    full_env = dict(os.environ)
    full_env.update(QUIET_ENV)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, *argv], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    raise RuntimeError(f"worker {' '.join(argv)} exited with {proc.returncode} and no result:\n{tail}")


def time_command(argv: Sequence[str], *, cwd: Path | None = None) -> float:
    """Wall seconds of one short command (for interpreter start-up baselines)."""
    import time

    start = time.perf_counter()
    subprocess.run(list(argv), cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def versions(packages: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "load_average": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        return out + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def loaded_source_fingerprint(package: str = "tunelab") -> str:
    """A hash of the source files of ``package``'s modules loaded in this process, so a run whose
    code changed midway (others edit the tree while benchmarks run) can say so."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted({m.__file__ for name, m in list(sys.modules.items())
                    if (name == package or name.startswith(package + ".")) and getattr(m, "__file__", None)})
    for path in files:
        digest.update(Path(path).name.encode())
        try:
            digest.update(Path(path).read_bytes())
        except OSError:
            pass
    return digest.hexdigest()[:12]


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1000
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"
