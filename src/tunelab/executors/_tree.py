"""A trial's process tree on Linux: find every process a trial started, and end them all.

The trial's supervisor (``_child``) is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): a
process the trial started whose parent exits, even a daemon that left with ``setsid`` and a
double fork, is re-parented to the supervisor instead of to init. So the supervisor's
descendants are exactly what the trial started, and walking ``/proc`` finds them all.
"""

from __future__ import annotations

import os
import signal

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
