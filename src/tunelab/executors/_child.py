"""The trial process: ``python -m tunelab.executors._child FD DRIVER_PID``.

A fresh interpreter per trial (spawn semantics, without re-importing the driver's
``__main__``), or a process forked from the preloaded worker (``_preload_server``), which
then calls ``run_trial`` as ``main`` does. It forks in two:

- the **supervisor** (the process the driver started, the leader of the trial's session) is a
  child subreaper that owns the trial's whole process tree. When the trial process exits, when
  the driver asks (SIGTERM: pass it on, then kill; SIGUSR1: kill now) or when the driver dies
  (the kernel's parent-death signal, even after ``kill -9``), it SIGKILLs every process below
  it, daemons that left with ``setsid`` included (they re-parent to it), reaps them and exits
  with the trial process's status. Where it can create one, the trial also runs in a cgroup of
  its own (``_tree``), killed and removed at the end.
- the **trial process** talks to the driver over the socket FD: first the driver's
  ``sys.path``, then the pickled payload (objective, trial spec, resources); then it sends
  ``("result", step, metrics)`` and waits for the stop decision, and finally
  ``("ended", Ended)``. Heavy imports (the objective's torch, ...) happen only after the fork.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Callable

#: Sent by the driver (and by the kernel when the driver dies): kill the trial's tree now.
KILL_NOW = signal.SIGUSR1
_STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_WATCHED = {signal.SIGCHLD, KILL_NOW, *_STOP}
_GRACE_S = 5.0  # after a SIGTERM, when the driver is not there to follow up with SIGUSR1


def _supervise(worker: int, cgroup: "Path | None") -> int:
    """Wait for the trial process or a signal; then end the whole tree. Returns the wait status."""
    import time

    from tunelab.executors._tree import descendants, kill_cgroup, kill_descendants, signal_all

    status: int | None = None
    deadline: float | None = None
    while True:
        try:
            while True:  # reap what has exited (orphans re-parented here too)
                pid, code = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid == worker:
                    status = code
        except ChildProcessError:
            pass
        if status is not None:
            break
        timeout = 3600.0 if deadline is None else deadline - time.monotonic()
        if timeout <= 0:
            break
        # The signals are blocked: one that arrives between the reap and here stays pending.
        info = signal.sigtimedwait(_WATCHED, timeout)
        if info is None or info.si_signo == KILL_NOW:
            if info is not None or deadline is not None:
                break
        elif info.si_signo in _STOP and deadline is None:
            signal_all(descendants(os.getpid()), signal.SIGTERM)
            deadline = time.monotonic() + _GRACE_S
    try:  # the trial's process group first: all there is to find where /proc is missing
        os.killpg(worker, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    kill_descendants()
    kill_cgroup(cgroup)
    return status if status is not None else -1


def _exit_like(status: int) -> None:
    """Exit as the trial process did (the driver tells a crash or an OOM kill by it)."""
    if status >= 0 and os.WIFSIGNALED(status):
        import resource

        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the user's directory
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.WEXITSTATUS(status) if status >= 0 and os.WIFEXITED(status) else 1)


def _fork_trial(fd: int, driver_pid: int) -> None:
    """Become the supervisor; return only in the trial process."""
    from tunelab.executors._tree import (become_subreaper, create_cgroup, die_with_parent, join_cgroup,
                                         trial_cgroup)

    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    become_subreaper()
    die_with_parent(KILL_NOW)
    if os.getppid() != driver_pid:  # the driver died before prctl took effect
        os._exit(1)
    supervisor = os.getpid()
    cgroup = create_cgroup(trial_cgroup(supervisor))
    worker = os.fork()
    if worker == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        os.setpgid(0, 0)
        die_with_parent(signal.SIGKILL)  # if the supervisor is killed, so is the trial
        if os.getppid() != supervisor:
            os._exit(1)
        if cgroup is not None:
            join_cgroup(cgroup)  # before anything runs: all the trial starts is in it too
        return
    os.close(fd)  # the driver sees the trial's end as the end of this socket
    _exit_like(_supervise(worker, cgroup))


class _PipeChannel:
    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.conn = conn

    def send_result(self, step, metrics):  # type: ignore[no-untyped-def]
        self.conn.send(("result", step, dict(metrics)))
        return bool(self.conn.recv())


def main() -> None:
    run_trial(int(sys.argv[1]), int(sys.argv[2]))


def run_trial(fd: int, parent_pid: int, prepare: "Callable[[], None] | None" = None) -> None:
    """Split into supervisor and trial process (``parent_pid``: the driver, or the fork server
    that forked this process), then run the trial; ``prepare`` runs first in the trial process."""
    import pickle
    import socket
    from multiprocessing.connection import Connection

    _fork_trial(fd, parent_pid)
    if prepare is not None:
        prepare()
    conn = Connection(socket.socket(fileno=fd).detach())
    for entry in reversed(conn.recv()):
        if entry not in sys.path:
            sys.path.insert(1, entry)
    payload = pickle.loads(conn.recv_bytes())

    from tunelab.executors._run_trial import make_reporter, run_objective

    spec, objective, resources = payload["spec"], payload["objective"], payload["resources"]
    reporter = make_reporter(spec, _PipeChannel(conn), resources)
    ended = run_objective(objective, reporter)
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send(("ended", ended))
    conn.close()


if __name__ == "__main__":
    main()
