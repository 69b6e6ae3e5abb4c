"""The journal file's lock: one appender at a time, and a lock whose owner died is taken over at once.

Optuna's own journal locks (a symlink or an ``O_EXCL`` file) do not say who holds them, so a
process killed during an append leaves a lock that every later process waits out: 30 s, the
grace period. This lock file holds its owner (host, pid namespace, pid and the process's start
time from ``/proc``), so a lock left by a process of this host that is gone (or whose pid now
belongs to another process) is broken as soon as it is seen. The record the dead owner was
writing may be cut short: it never completed, so the broken tail is cut off before the next
append, which would otherwise be glued to it and make both unreadable.

A lock held by a live process is never broken. One whose owner cannot be checked from here
(another host, another pid namespace, or a lock from Optuna or an older tunelab) is broken, as
Optuna does, when it has not changed for ``grace_period_s``.

It is the same file as Optuna's lock (``<journal>.lock``), so tunelab and plain Optuna processes
appending to one journal still exclude each other. Optuna's ``JournalFileBackend`` takes any
object with ``acquire()`` and ``release()`` as its ``lock_obj``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from typing import Iterator

from tunelab.driver import driver_alive, this_driver
from tunelab.filelock import file_lock

logger = logging.getLogger("tunelab.storage")

LOCK_SUFFIX = ".lock"


def _pid_namespace() -> str:
    """Processes in another pid namespace (a container) on this host are not ours to check."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


class JournalLock:
    """A lock file next to a journal, naming its owner (see the module's docstring)."""

    def __init__(self, journal_path: str, grace_period_s: float = 30.0) -> None:
        self.journal_path = journal_path
        self.path = journal_path + LOCK_SUFFIX
        self.grace_period_s = grace_period_s
        self.taken_over = 0  # locks of dead owners broken by this object
        self._me: tuple[int, dict] | None = None  # (pid, this process as an owner): a fork is another
        # (pid, thread) -> the identity (inode, mtime) of the lock file it created and holds
        self._held: dict[tuple[int, int], tuple[int, int]] = {}

    # ---- the Optuna lock interface ----------------------------------------------------------

    def acquire(self) -> bool:
        me = self._owner_text()
        delay = 0.001
        waiting_on: tuple[int, int] | None = None
        since = time.monotonic()
        warned = since
        broke = False
        while True:
            if self._create(me):
                break
            seen = self._read()
            if seen is None:  # released meanwhile
                continue
            identity, text = seen
            if identity != waiting_on:  # another holder (or a new lock): its own grace period
                waiting_on, since = identity, time.monotonic()
            owner = _parse(text)
            if self._owner_gone(owner) or (time.monotonic() - since > self.grace_period_s
                                           and not self._owner_alive(owner)):
                if self._break(identity, text):
                    broke = True
                    self._tell_broken(owner, time.monotonic() - since)
                continue
            if time.monotonic() - warned > 10.0:
                warned = time.monotonic()
                who = f"process {owner['pid']} on {owner['host']}" if owner else "another process"
                logger.warning("Waiting for the journal lock %s, held by %s.", self.path, who)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        if broke:
            try:
                self._cut_broken_tail()
            except BaseException:
                self.release()
                raise
        return True

    def release(self) -> None:
        # A lock broken meanwhile (its owner unreachable for the grace period) is someone else's
        # now: a new file, so another identity (its mtime is at least the grace period later).
        held = self._held.pop((os.getpid(), threading.get_ident()), None)
        if held is not None:
            try:
                info = os.lstat(self.path)
            except FileNotFoundError:
                return
            mine = (info.st_ino, info.st_mtime_ns) == held
        else:  # not acquired through this object in this thread: judged by the owner it names
            seen = self._read()
            mine = seen is not None and seen[1] == self._owner_text()
        if mine:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    # ---- the lock file ------------------------------------------------------------------------

    def _process(self) -> dict:
        if self._me is None or self._me[0] != os.getpid():
            host, pid, start = this_driver().rsplit(":", 2)
            self._me = (os.getpid(), {"host": host, "pid": int(pid), "start": start, "pidns": _pid_namespace()})
        return self._me[1]

    def _owner_text(self) -> str:
        return json.dumps({**self._process(), "thread": threading.get_ident()}, sort_keys=True)

    def _hold(self, info: os.stat_result) -> None:
        """Remember the identity of the lock file this thread just made, for ``release``."""
        self._held[(os.getpid(), threading.get_ident())] = (info.st_ino, info.st_mtime_ns)

    def _create(self, text: str) -> bool:
        """Create the lock file holding ``text``, atomically: no one ever sees it empty."""
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "w") as handle:
                handle.write(text)
                handle.flush()
                # The lock file's identity once linked: a link changes no mtime.
                info = os.fstat(handle.fileno())
            try:
                os.link(tmp, self.path)
                self._hold(info)
                return True
            except FileExistsError:
                return False
            except OSError as exc:  # a file system without hard links
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                self._hold(os.fstat(fd))
            return True
        except BaseException:
            # Interrupted after the lock was made (Ctrl-C): do not leave it behind for this process.
            seen = self._read()
            if seen is not None and seen[1] == text:
                os.unlink(self.path)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _read(self) -> tuple[tuple[int, int], str] | None:
        """The lock file's identity (inode, mtime) and its text; None when there is none."""
        try:
            info = os.lstat(self.path)
            if os.path.islink(self.path):  # Optuna's symlink lock: no owner in it
                return (info.st_ino, info.st_mtime_ns), ""
            with open(self.path) as handle:
                text = handle.read()
            return (info.st_ino, info.st_mtime_ns), text
        except FileNotFoundError:
            return None

    def _alive(self, owner: dict | None) -> bool | None:
        """Whether the owner runs; None when that cannot be told from here (another host, another
        pid namespace, no /proc to tell a live process from a reused pid, no owner written)."""
        me = self._process()
        if owner is None or owner.get("host") != me["host"] or owner.get("pidns") != me["pidns"]:
            return None
        if str(owner.get("start")) == "0" or me["start"] == "0":
            return None
        return driver_alive(f"{owner['host']}:{owner['pid']}:{owner['start']}")

    def _owner_gone(self, owner: dict | None) -> bool:
        return self._alive(owner) is False

    def _owner_alive(self, owner: dict | None) -> bool:
        return self._alive(owner) is True

    def _break(self, identity: tuple[int, int], text: str) -> bool:
        """Remove the lock file if it is still the one judged stale (two breakers may race)."""
        with self._breakers():
            seen = self._read()
            if seen is None or seen != (identity, text):
                return False
            os.unlink(self.path)
            self.taken_over += 1
            return True

    @contextlib.contextmanager
    def _breakers(self) -> Iterator[None]:
        """Breaking a lock happens one process at a time, so none removes a lock another just made."""
        with file_lock(self.journal_path):
            yield

    def _tell_broken(self, owner: dict | None, waited_s: float) -> None:
        if owner is not None and self._owner_gone(owner):
            logger.warning("The journal lock %s was left by process %s, which is gone (killed during a write); "
                           "took it over.", self.path, owner["pid"])
        else:
            who = f"process {owner['pid']} on {owner['host']}" if owner else "an unknown process"
            logger.warning("The journal lock %s, held by %s, did not change for %.0f s; took it over.",
                           self.path, who, waited_s)

    def _cut_broken_tail(self) -> None:
        """Cut a record the dead owner did not finish writing (we hold the lock: nobody writes)."""
        with open(self.journal_path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            end = size
            while end > 0:
                start = max(0, end - 65536)
                handle.seek(start)
                block = handle.read(end - start)
                cut = block.rfind(b"\n")
                if cut >= 0:
                    keep = start + cut + 1
                    break
                end = start
            else:
                keep = 0
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
            logger.warning("Cut %d bytes of an unfinished record from the end of %s.", size - keep,
                           self.journal_path)


def _parse(text: str) -> dict | None:
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    if not isinstance(owner, dict) or not {"host", "pid", "start"} <= owner.keys():
        return None
    return owner
