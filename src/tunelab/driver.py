"""Who runs a trial: a driver id stored on each trial, so a resumed study can tell trials whose
driver died (interrupted) from trials another live driver is still running."""

from __future__ import annotations

import os
import socket


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22 (starttime) follows the command name, which may contain spaces.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_driver() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or 0}"


def driver_alive(driver: str | None) -> bool | None:
    """True/False for a driver on this host; None when it runs elsewhere (unknown here)."""
    if not driver:
        return False
    try:
        host, pid_text, ticks = driver.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return None
    current = _start_ticks(pid)
    return current is not None and (ticks == "0" or current == ticks)
