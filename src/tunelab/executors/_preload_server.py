"""The fork server: ``python -m tunelab.executors._preload_server FD DRIVER_PID``.

Started once per local executor, it imports what trials spend their first seconds importing
(torch, transformers, tunelab's trial runner), starting no thread, and then forks one process
per trial on the driver's request. The forked process becomes exactly what a fresh
``python -m tunelab.executors._child`` would be: its own session, stdin ``/dev/null``,
stdout/stderr the trial's log, the trial's environment and working directory, the trial's
socket; then ``_child.run_trial`` splits it into the supervisor and the trial process.

Commands come only from the driver, as JSON over the private socketpair ``FD`` (never
pickles, never a file). The messages, one per ``SOCK_SEQPACKET`` packet:

- driver -> server: ``{"op": "hello", "sys_path": [...], "modules": [...]}`` (once, first);
  ``{"op": "spawn", "env": {...}, "cwd": "..."}`` with two file descriptors attached (the
  trial's socket, its log); ``{"op": "reap", "pid": N}`` once the driver has the exit status.
- server -> driver: ``{"op": "ready", ...}`` or ``{"op": "unavailable", "why": ...}`` (once);
  ``{"op": "spawned", "pid": N}`` or ``{"op": "refused", "why": ...}`` per spawn;
  ``{"op": "exited", "pid": N, "returncode": R}`` when a trial's supervisor ended (R as
  ``subprocess.Popen.returncode``). The exited process stays a zombie until the driver's
  ``reap``, so its pid cannot be reused while the driver may still signal it.

The server dies with the driver: the kernel's parent-death signal (SIGKILL, even after
``kill -9`` of the driver), and the end of the socket (the driver closed it or exited). Its
trials' supervisors then get their own parent-death signal and end their trees.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

#: Largest message either side sends (an environment of a few hundred KiB fits).
MAX_MESSAGE = 4 * 2**20


def send(sock: socket.socket, message: dict[str, Any], fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.sendall(data)


def thread_count() -> int:
    """Threads of this process as the kernel sees them (C threads included); 0 if unknown."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def fork_blocker() -> str | None:
    """Why forking now would be unsafe (a thread, an initialized GPU); None when it is safe."""
    import threading

    if threading.active_count() != 1 or thread_count() != 1:
        return f"the fork server runs {thread_count()} threads (a fork copies only one)"
    torch = sys.modules.get("torch")
    if (torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_initialized()) \
            or cuda_driver_loaded():
        return "CUDA was initialized in the fork server (a forked child cannot use it)"
    return None


def cuda_driver_loaded() -> bool:
    """Whether the CUDA driver library is mapped: it is loaded by the first CUDA call (``cuInit``,
    also from ``torch.cuda.is_available()`` without NVML), after which a fork cannot use CUDA."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return b"/libcuda.so" in f.read()
    except OSError:
        return False


@dataclass
class Trial:
    """What a forked child needs to become a trial process (returned only in the child)."""

    trial_fd: int
    log_fd: int
    env: dict[str, str]
    cwd: str
    server_pid: int


def serve(sock: socket.socket) -> Trial | None:
    """Answer the driver until its end of the socket closes (returns None), or, in a forked
    child, return that child's ``Trial``."""
    import selectors

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    live: set[int] = set()  # forked, exit not yet told to the driver
    told: set[int] = set()  # exit told, a zombie until the driver says "reap"
    try:
        while True:
            for key, _ in selector.select(timeout=1.0):  # the timeout: a SIGCHLD lost to a full pipe
                if key.fileobj == wake_r:
                    try:
                        os.read(wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                try:
                    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
                except OSError:
                    return None
                if not data:
                    return None  # the driver is gone or done
                message = json.loads(data)
                op = message.get("op")
                if op == "spawn":
                    why = fork_blocker() if len(fds) == 2 else "a spawn request needs two file descriptors"
                    if why is not None:
                        for fd in fds:
                            os.close(fd)
                        send(sock, {"op": "refused", "why": why})
                        continue
                    pid = os.fork()
                    if pid == 0:  # the trial: leave the server's loop and its file descriptors
                        selector.close()
                        signal.set_wakeup_fd(-1)
                        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                        os.close(wake_r)
                        os.close(wake_w)
                        sock.close()
                        return Trial(fds[0], fds[1], dict(message["env"]), str(message["cwd"]), os.getppid())
                    for fd in fds:
                        os.close(fd)
                    live.add(pid)
                    send(sock, {"op": "spawned", "pid": pid})
                elif op == "reap" and message.get("pid") in told:
                    os.waitpid(message["pid"], 0)
                    told.discard(message["pid"])
                else:
                    for fd in fds:
                        os.close(fd)
            for pid in list(live):
                # WNOWAIT: learn the status but leave the zombie (the pid stays reserved).
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                if info is None:
                    continue
                code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
                live.discard(pid)
                told.add(pid)
                send(sock, {"op": "exited", "pid": pid, "returncode": code})
    except (BrokenPipeError, ConnectionResetError):
        return None


def become_trial(trial: Trial) -> None:
    """Make this forked child what ``subprocess.Popen`` makes of a fresh trial interpreter."""
    os.setsid()  # start_new_session=True
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(trial.log_fd, 1)
    os.dup2(trial.log_fd, 2)
    for fd in {devnull, trial.log_fd}:
        os.close(fd)
    os.chdir(trial.cwd)
    os.environ.clear()  # the trial's environment exactly (putenv/unsetenv: C code sees it too)
    os.environ.update(trial.env)


def apply_trial_settings(env: dict[str, str]) -> None:
    """In the trial process: what a fresh interpreter would have read from its environment at
    start-up, but the server read with its own (thread counts, random seeds)."""
    threads = env.get("OMP_NUM_THREADS", "")
    torch = sys.modules.get("torch")
    if threads.isdigit() and int(threads) > 0:
        if torch is not None:
            torch.set_num_threads(int(threads))  # intra-op; starts no thread until used
        if int(threads) > 1 and "threadpoolctl" in sys.modules:  # numpy's BLAS, loaded with 1 thread
            sys.modules["threadpoolctl"].threadpool_limits(int(threads), user_api="blas")
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()  # a fresh interpreter seeds numpy's global generator from the OS


def _import_all(modules: list[str]) -> tuple[list[str], list[str]]:
    import importlib
    import importlib.util

    loaded, skipped = [], []
    for name in modules:
        try:
            if importlib.util.find_spec(name.split(".")[0]) is None:
                skipped.append(f"{name} (not installed)")
                continue
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - a module that fails here fails in the trial, with its traceback
            skipped.append(f"{name} ({type(exc).__name__}: {exc})")
    return loaded, skipped


def _warm_up(loaded: list[str]) -> None:
    """Build what a trial would build first thing and keep: transformers' table of checkpoint
    conversions (about a thousand regular expressions, built once per process by
    ``from_pretrained``). Pure Python, no thread; skipped where transformers has no such table."""
    if "transformers.modeling_utils" in loaded:
        try:
            from transformers.conversion_mapping import get_checkpoint_conversion_mapping

            get_checkpoint_conversion_mapping("bert")
        except Exception:  # noqa: BLE001 - another transformers version: the trial builds it itself
            pass


def main() -> None:
    from tunelab.executors._tree import die_with_parent

    fd, driver_pid = int(sys.argv[1]), int(sys.argv[2])
    die_with_parent(signal.SIGKILL)
    if os.getppid() != driver_pid:  # the driver died before prctl took effect
        os._exit(1)
    sock = socket.socket(fileno=fd)
    hello = json.loads(sock.recv(MAX_MESSAGE) or b"{}")
    for entry in reversed(hello.get("sys_path", [])):
        if entry not in sys.path:
            sys.path.insert(1, entry)
    loaded, skipped = _import_all(list(hello.get("modules", [])))
    _warm_up(loaded)
    why = fork_blocker()
    if why is not None:
        send(sock, {"op": "unavailable", "why": f"{why} after importing {', '.join(loaded)}"})
        return
    send(sock, {"op": "ready", "pid": os.getpid(), "loaded": loaded, "skipped": skipped})
    trial = serve(sock)
    if trial is None:
        return
    # The forked trial: from here on as `python -m tunelab.executors._child`, and it exits as
    # that one would, with the same status.
    become_trial(trial)
    from tunelab.executors._child import run_trial

    try:
        run_trial(trial.trial_fd, trial.server_pid, prepare=lambda: apply_trial_settings(trial.env))
        code = 0
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException as exc:  # noqa: BLE001 - reported as the interpreter reports it
        import traceback

        traceback.print_exc()
        code = -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
    leave(code)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def leave(code: int) -> None:
    """Exit as the interpreter's own shutdown would (wait for non-daemon threads, run the
    ``atexit`` functions, flush), without tearing down every module: in a process forked from
    one holding torch and transformers that teardown touches every object (copy-on-write) and
    takes seconds. A negative code is a signal to die by (an unhandled Ctrl-C)."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
