"""The trial process: ``python -m tunelab.executors._child FD``.

A fresh interpreter per trial (spawn semantics, without re-importing the driver's
``__main__``). It talks to the driver over the socket FD: first the driver's ``sys.path``,
then the pickled payload (objective, trial spec, resources); then it sends
``("result", step, metrics)`` and waits for the stop decision, and finally ``("ended", Ended)``.
Heavy imports (the objective's torch, ...) happen only after the environment is set.
"""

from __future__ import annotations

import os
import signal
import sys


def _die_with_parent(parent_pid: int) -> None:
    # If the driver is killed (even with SIGKILL), the kernel kills this trial too.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the driver died before prctl took effect
        os._exit(1)


class _PipeChannel:
    def __init__(self, conn) -> None:  # type: ignore[no-untyped-def]
        self.conn = conn

    def send_result(self, step, metrics):  # type: ignore[no-untyped-def]
        self.conn.send(("result", step, dict(metrics)))
        return bool(self.conn.recv())


def main() -> None:
    import pickle
    import socket
    from multiprocessing.connection import Connection

    fd = int(sys.argv[1])
    parent_pid = int(sys.argv[2])
    _die_with_parent(parent_pid)
    conn = Connection(socket.socket(fileno=fd).detach())
    for entry in reversed(conn.recv()):
        if entry not in sys.path:
            sys.path.insert(1, entry)
    payload = pickle.loads(conn.recv_bytes())

    from tunelab.executors._run_trial import run_objective
    from tunelab.worker import Reporter

    spec, objective, resources = payload["spec"], payload["objective"], payload["resources"]
    reporter = Reporter(spec.trial_id, dict(spec.config), spec.trial_dir, _PipeChannel(conn),
                        resources, spec.from_checkpoint)
    ended = run_objective(objective, reporter)
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send(("ended", ended))
    conn.close()


if __name__ == "__main__":
    main()
