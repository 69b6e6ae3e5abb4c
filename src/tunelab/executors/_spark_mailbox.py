"""The driver's mailbox for trials running as Spark tasks: a small authenticated server.

Spark tasks cannot receive messages from the driver, so each trial's task connects back to
this server: it says it started, sends each report and waits for the scheduler's decision,
and takes the driver's stop. The server listens on the driver's address only (127.0.0.1 for
a local master) and accepts a connection only from a client that proves it holds the study's
random token: ``multiprocessing.connection`` runs an HMAC challenge with the token as its key
before any message is read, so nothing from an unauthenticated peer is ever unpickled.

Every message that arrives goes to one queue the executor reads; the executor answers on
the trial's connection (``send``).
"""

from __future__ import annotations

import queue
import secrets
import socket
import threading
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any


class Mailbox:
    """Listens on ``(host, port 0)``; ``address`` and ``token`` are what a trial needs to reach it."""

    def __init__(self, host: str, inbox: "queue.Queue[tuple[Any, ...]]") -> None:
        self.token = secrets.token_bytes(32)
        self._sock = socket.create_server((host, 0))
        self.address: tuple[str, int] = self._sock.getsockname()[:2]
        self._inbox = inbox
        self._closed = False
        self._conns: list[Connection] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="tunelab-spark-mailbox", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return  # closed
            conn = Connection(raw.detach())
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: Connection) -> None:
        """Authenticate one client (in its own thread, so a silent peer holds only this one),
        then pass its messages on until it closes."""
        try:
            deliver_challenge(conn, self.token)
            answer_challenge(conn, self.token)
        except Exception:  # noqa: BLE001 - a wrong token, a peer that is no trial: drop it
            self._drop(conn)
            return
        try:
            while True:
                message = conn.recv()
                self._inbox.put((*message, conn) if message[0] == "started" else message)
        except Exception:  # noqa: BLE001 - closed, or a message that does not unpickle: end it
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        hang_up(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for conn in conns:
            hang_up(conn)


def hang_up(conn: Connection) -> None:
    """Close a connection, waking a thread blocked reading it (a plain close would not)."""
    try:
        with socket.fromfd(conn.fileno(), socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def connect(address: tuple[str, int], token: bytes) -> Connection:
    """The trial's side: a connection to the driver's mailbox, authenticated both ways."""
    raw = socket.create_connection(address, timeout=60)
    raw.settimeout(None)
    conn = Connection(raw.detach())
    answer_challenge(conn, token)
    deliver_challenge(conn, token)
    return conn
