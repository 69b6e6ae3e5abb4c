"""A trial's process tree on Linux: find every process a trial started, and end them all.

The trial's supervisor (``_child``) is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): a
process the trial started whose parent exits, even a daemon that left with ``setsid`` and a
double fork, is re-parented to the supervisor instead of to init. So the supervisor's
descendants are exactly what the trial started, and walking ``/proc`` finds them all.

Where the machine lets tunelab create a cgroup (v2) below its own, the trial process and all
it starts also live in a cgroup of their own (``tunelab-trial-<supervisor pid>``): killing the
cgroup ends them even if the supervisor itself was killed (the driver does it then).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies (even by SIGKILL)."""
    return _prctl(PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> bool:
    """Orphaned descendants re-parent to this process (not to init): they stay findable."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (zombies included), parents before children."""
    children: dict[int, list[int]] = {}
    try:
        entries = list(os.scandir("/proc"))
    except OSError:  # no /proc (not Linux): nothing to find this way
        return []
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                # The command name may contain spaces and parentheses: the fields follow the last ')'.
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # it exited meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_descendants() -> None:
    """SIGKILL everything below this process and reap it; returns when nothing is left.

    Each round kills what is there and reaps one child: killed parents hand their children
    (and zombies) to this subreaper, so the next round sees and reaps them too.
    """
    me = os.getpid()
    while True:
        below = descendants(me)
        if not below:
            return
        signal_all(below, signal.SIGKILL)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            # Nothing is our child (the subreaper bit did not take): what is left is init's.
            signal_all(descendants(me), signal.SIGKILL)
            return


# ---- a cgroup (v2) per trial, where the machine lets this process create one ---------------------


def trial_cgroup(supervisor_pid: int) -> Path | None:
    """Where the cgroup of the trial whose supervisor is ``supervisor_pid`` lives: a child of this
    process's own cgroup in the unified (v2) hierarchy; ``None`` without one."""
    try:
        with open("/proc/self/cgroup") as f:
            own = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        mount = None
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if parts[parts.index("-") + 1] == "cgroup2":
                    mount = parts[4]
                    break
    except (OSError, ValueError, IndexError):
        return None
    if own is None or mount is None or "(deleted)" in own:
        return None
    return Path(mount) / own.lstrip("/") / f"tunelab-trial-{supervisor_pid}"


def create_cgroup(path: Path | None) -> Path | None:
    if path is None:
        return None
    try:
        path.mkdir()
    except OSError:  # not delegated to us (a container, a non-root user without systemd's delegation)
        return None
    return path


def join_cgroup(path: Path) -> bool:
    """Move this process (and so everything it will start) into ``path``."""
    try:
        (path / "cgroup.procs").write_text("0\n")
        return True
    except OSError:
        return False


def kill_cgroup(path: Path | None) -> None:
    """SIGKILL every process in the cgroup, wait until it is empty, and remove it."""
    import time

    if path is None or not path.is_dir():
        return
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            (path / "cgroup.kill").write_text("1\n")  # Linux 5.14+: the whole cgroup at once
        except OSError:
            try:
                signal_all([int(p) for p in (path / "cgroup.procs").read_text().split()], signal.SIGKILL)
            except (OSError, ValueError):
                pass
        try:
            path.rmdir()  # fails while a process is still in it
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
