"""Trial processes forked from a preloaded worker: the driver's side of the fork server.

A fresh interpreter per trial pays its imports (torch and transformers: seconds) every time.
The local executor instead starts one fork server (``_preload_server``) at its first launch,
which imports them once, starts no thread, and forks one process per trial: still one fresh
process per trial, with everything ``_child`` gives it (its session, supervisor, process tree,
cgroup, log, environment, exit status), only without the imports.

``Preloader.spawn`` returns a ``Forked`` handle that stands in for the ``subprocess.Popen``
of a fresh trial (``pid``, ``returncode``, ``poll``, ``wait``), or None when the trial must
start as a fresh interpreter instead: where fork is not safe (not Linux: macOS forks badly
once system frameworks are loaded), when the server could not import without starting a
thread, when CUDA was initialized in it, or when it is gone.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunelab.executors._preload_server import MAX_MESSAGE, send

log = logging.getLogger("tunelab")

#: Always preloaded: what every trial process imports.
BASE_MODULES = ("tunelab.executors._child", "tunelab.executors._run_trial", "tunelab.worker", "cloudpickle")
#: A text-classification trial's imports (the model machinery, the training loop, the data cache);
#: the model's own module (``modeling_<model_type>``) is added from its ``config.json``.
NLP_MODULES = ("numpy", "torch", "transformers", "transformers.modeling_utils",
               "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
               "transformers.optimization", "safetensors.torch", "tunelab.objectives.text_classification",
               "tunelab.nlp.train", "threadpoolctl")
#: Preloaded as well when the driver has imported them (its objective probably uses them).
HEAVY_MODULES = ("numpy", "torch", "transformers", "sklearn", "threadpoolctl")
#: How long the first launch waits for the server's imports (a busy machine is slow).
READY_TIMEOUT_S = 120.0


def supported() -> str | None:
    """Why this platform cannot fork trials from a preloaded worker; None where it can."""
    if not sys.platform.startswith("linux"):
        return f"fork is not safe on {sys.platform} once libraries are loaded"
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds") or not hasattr(socket, "SOCK_SEQPACKET"):
        return "this Python lacks fork or file-descriptor passing"
    return None


def modules_for(objective: Any) -> list[str]:
    """What the server imports for ``objective``: only what its trials would import anyway."""
    nlp = sys.modules.get("tunelab.objectives.text_classification")  # not imported: not such an objective
    modules = list(BASE_MODULES)
    if nlp is not None and isinstance(objective, nlp.TextClassification):
        modules += NLP_MODULES
        modules += _model_module(objective)
    modules += [m for m in HEAVY_MODULES if m in sys.modules]
    return list(dict.fromkeys(modules))


def _model_module(objective: Any) -> list[str]:
    """``transformers.models.bert.modeling_bert`` for a BERT checkpoint: most of a trial's import
    time is the model class's module (and what it pulls in), imported by ``from_pretrained``."""
    import re

    try:
        source = Path(objective.model_source())
        model_type = json.loads((source / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, ImportError, AttributeError, TypeError):
        return []  # a hub name not yet downloaded, or no config: the trial imports it itself
    if not isinstance(model_type, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", model_type):
        return []
    name = model_type.replace("-", "_")
    return [f"transformers.models.{name}.modeling_{name}"]


def server_env() -> dict[str, str]:
    """The server's own environment: the driver's, with every thread pool that would start at
    import time held at one thread (a fork copies only the forking thread)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    # pyarrow's jemalloc starts a background purging thread when loaded (pandas imports pyarrow).
    env.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    # An import that asks torch.cuda.is_available() then counts GPUs with NVML, not with cuInit
    # (after which no forked child could use CUDA).
    env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    return env


class Preloader:
    """The local executor's fork server, started at the first ``spawn``."""

    def __init__(self, modules: list[str]) -> None:
        self.modules = modules
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.unavailable: str | None = supported()
        self.info: dict[str, Any] = {}
        self._exits: dict[int, int] = {}  # pid -> returncode, read but not yet collected

    # ---- the server ------------------------------------------------------------------------

    def start(self) -> bool:
        if self.sock is not None or self.unavailable is not None:
            return self.sock is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tunelab.executors._preload_server", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, env=server_env(), cwd=os.getcwd(), start_new_session=True)
        except OSError as exc:
            ours.close()
            self.unavailable = f"the fork server did not start ({exc})"
            return False
        finally:
            theirs.close()
        self.sock = ours
        try:
            send(ours, {"op": "hello", "sys_path": list(sys.path), "modules": self.modules})
            reply = self._receive(READY_TIMEOUT_S)
        except (OSError, EOFError) as exc:  # it died while importing
            reply = {"op": "unavailable", "why": str(exc)}
        if reply is None or reply.get("op") != "ready":
            why = "it did not get ready in time" if reply is None else reply.get("why", reply)
            self._fail(f"the fork server is not usable: {why}")
            return False
        self.info = reply
        return True

    def _fail(self, why: str, *, close: bool = True) -> None:
        log.info("trials start as fresh interpreters: %s", why)
        self.unavailable = why
        if close:
            self.close()

    def close(self) -> None:
        """End the server (it exits at the end of its socket; trials still running end too)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    # ---- trials ----------------------------------------------------------------------------

    def spawn(self, trial_fd: int, log_fd: int, env: dict[str, str]) -> Forked | None:
        """Fork a trial process; None: start it as a fresh interpreter instead."""
        if self.unavailable is not None or not self.start():
            return None
        assert self.sock is not None
        try:
            send(self.sock, {"op": "spawn", "env": env, "cwd": os.getcwd()}, (trial_fd, log_fd))
            while True:
                reply = self._receive(60.0)
                if reply is None or reply.get("op") in ("spawned", "refused"):
                    break
        except (OSError, EOFError) as exc:  # gone, or a message too large for the socket
            reply = {"op": "refused", "why": str(exc)}
        if reply is None or reply["op"] != "spawned":
            # No more forks; the server stays until shutdown, as its trials still running would end with it.
            self._fail("the fork server did not answer" if reply is None else reply.get("why", "refused"),
                       close=False)
            return None
        return Forked(self, int(reply["pid"]))

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message (an exit is also kept for ``collect``); None on timeout.
        Raises ``EOFError`` when the server is gone."""
        import select

        deadline = time.monotonic() + timeout
        while self.sock is not None:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            data = self.sock.recv(MAX_MESSAGE)
            if not data:
                raise EOFError("the fork server is gone")
            message = json.loads(data)
            if message.get("op") == "exited":
                self._exits[int(message["pid"])] = int(message["returncode"])
            return message
        raise EOFError("the fork server is closed")

    def collect(self, pid: int, timeout: float | None) -> int | None:
        """``pid``'s return code once it has exited (waiting up to ``timeout``); then the
        server may reap it. None: still running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self._exits:
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            if left < 0:
                return None
            try:
                self._receive(max(0.0, left))
            except (EOFError, OSError):
                # The server died (its trials' supervisors died with it): no status to be had.
                if self.sock is not None:
                    self._fail("the fork server died")
                self._exits[pid] = 1
        code = self._exits.pop(pid)
        if self.sock is not None:
            try:
                send(self.sock, {"op": "reap", "pid": pid})
            except OSError:
                pass
        return code


class Forked:
    """A trial process forked by the server, as much of ``subprocess.Popen`` as the executor uses."""

    def __init__(self, server: Preloader, pid: int) -> None:
        self.server, self.pid = server, pid
        self.returncode: int | None = None
        self.args = ["fork of the preloaded worker", pid]

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.collect(self.pid, 0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server.collect(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return self.returncode
