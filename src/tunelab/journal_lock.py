"""The journal file's lock: one appender at a time, and a lock whose owner died is taken over at once.

Optuna's own journal locks (a symlink or an ``O_EXCL`` file) do not say who holds them, so a
process killed during an append leaves a lock that every later process waits out: 30 s, the
grace period. This lock names its owner (host, pid namespace, pid, the process's start time from
``/proc`` and the thread), so a lock left by a process of this host that is gone (or whose pid
now belongs to another process) is broken as soon as it is seen. The record the dead owner was
writing may be cut short: it never completed, so the broken tail is cut off before the next
append, which would otherwise be glued to it and make both unreadable.

The lock is a symbolic link whose target is the owner's name: made in one system call, so no
process ever sees a lock without its owner, and short enough (under 60 bytes) to live in the
link's inode, so taking the lock writes no data block for the journal's ``fsync`` to commit. It
measured 18 µs an acquire and release here against 25 µs for Optuna's symlink lock and 56 µs for
the owner file this replaced. Where a file system has no symbolic links, the owner is written to
a file that is then hard-linked (or, lacking those too, created with ``O_EXCL``).

A lock held by a live process is never broken. One whose owner cannot be checked from here
(another host, another pid namespace, or a lock from Optuna, which names no owner) is broken, as
Optuna does, when it has not changed for ``grace_period_s``.

It is the same file as Optuna's lock (``<journal>.lock``), so tunelab and plain Optuna processes
appending to one journal still exclude each other. Optuna's ``JournalFileBackend`` takes any
object with ``acquire()`` and ``release()`` as its ``lock_obj``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from typing import Iterator

from tunelab.driver import driver_alive, this_driver
from tunelab.filelock import file_lock

logger = logging.getLogger("tunelab.storage")

LOCK_SUFFIX = ".lock"


OWNER_TAG = "tl1"  # the first word of an owner's name: a tunelab lock, in this format


def _pid_namespace() -> str:
    """Processes in another pid namespace (a container) on this host are not ours to check."""
    try:
        return "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())  # "pid:[4026531836]"
    except OSError:
        return ""


def _host_id(host: str) -> str:
    """A host name in 8 characters, which keeps the owner's name short enough for the link's inode."""
    return hashlib.blake2s(host.encode(), digest_size=4).hexdigest()


_THREAD_NUMBERS = itertools.count(1)
_thread = threading.local()


def _thread_number() -> int:
    """A small number per thread of this process (a thread ident takes 15 digits)."""
    number = getattr(_thread, "number", None)
    if number is None:
        number = _thread.number = next(_THREAD_NUMBERS)
    return number


class JournalLock:
    """A lock file next to a journal, naming its owner (see the module's docstring)."""

    def __init__(self, journal_path: str, grace_period_s: float = 30.0) -> None:
        self.journal_path = journal_path
        self.path = journal_path + LOCK_SUFFIX
        self.grace_period_s = grace_period_s
        self.taken_over = 0  # locks of dead owners broken by this object
        self._me: tuple[int, dict] | None = None  # (pid, this process as an owner): a fork is another

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
        # Judged by the owner it names, which no other process or thread can name: a lock broken
        # meanwhile (its owner unreachable for the grace period) and taken by another stays.
        if self._read_text() == self._owner_text():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    # ---- the lock file ------------------------------------------------------------------------

    def _process(self) -> dict:
        if self._me is None or self._me[0] != os.getpid():
            host, pid, start = this_driver().rsplit(":", 2)
            self._me = (os.getpid(), {"host_id": _host_id(host), "pid": int(pid), "start": start,
                                      "pidns": _pid_namespace()})
        return self._me[1]

    def _owner_text(self) -> str:
        me = self._process()
        return f"{OWNER_TAG} {me['host_id']} {me['pidns'] or '-'} {me['pid']} {me['start']} {_thread_number()}"

    def _create(self, text: str) -> bool:
        """Make the lock naming ``text``, atomically: no one ever sees a lock without its owner."""
        try:
            os.symlink(text, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
        except BaseException:
            self._unmake_if_mine(text)  # interrupted (Ctrl-C) after the link was made
            raise
        return self._create_file(text)

    def _create_file(self, text: str) -> bool:
        """The lock as a file holding ``text``: for file systems without symbolic links."""
        tmp = f"{self.path}.{os.getpid()}.{_thread_number()}.tmp"
        try:
            with open(tmp, "w") as handle:
                handle.write(text)
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError as exc:  # no hard links either
                if exc.errno not in _UNSUPPORTED:
                    raise
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            return True
        except BaseException:
            self._unmake_if_mine(text)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _unmake_if_mine(self, text: str) -> None:
        """Do not leave a lock behind for this process when making it was interrupted."""
        if self._read_text() == text:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _read_text(self) -> str | None:
        """What the lock says of its owner (a link's target, a file's text; an Optuna lock's is no
        owner's name); None when there is no lock."""
        try:
            return os.readlink(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: not a link, so a lock file
                raise
        try:
            with open(self.path) as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    def _read(self) -> tuple[tuple[int, int], str] | None:
        """The lock's identity (inode, mtime: which lock it is, for breaking) and its owner's name;
        None when there is none."""
        while True:
            try:
                info = os.lstat(self.path)
            except FileNotFoundError:
                return None
            text = self._read_text()
            if text is None:
                return None
            try:
                again = os.lstat(self.path)
            except FileNotFoundError:
                return None
            if (again.st_ino, again.st_mtime_ns) == (info.st_ino, info.st_mtime_ns):
                return (info.st_ino, info.st_mtime_ns), text
            # replaced between the two looks: read the new one

    def _alive(self, owner: dict | None) -> bool | None:
        """Whether the owner runs; None when that cannot be told from here (another host, another
        pid namespace, no /proc to tell a live process from a reused pid, no owner written)."""
        me = self._process()
        if owner is None or owner.get("host_id") != me["host_id"] or owner.get("pidns") != me["pidns"]:
            return None
        if str(owner.get("start")) == "0" or me["start"] == "0":
            return None
        return driver_alive(f"{socket.gethostname()}:{owner['pid']}:{owner['start']}")

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


_UNSUPPORTED = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)


def _parse(text: str) -> dict | None:
    """The owner a lock names: this format, or the JSON file of tunelab before it; None for
    anything else (Optuna's lock names no owner)."""
    words = text.split(" ")
    if len(words) == 6 and words[0] == OWNER_TAG and words[3].isdigit():
        host_id, pidns, pid, start = words[1], words[2], int(words[3]), words[4]
        return {"host": f"host {host_id}", "host_id": host_id, "pidns": "" if pidns == "-" else pidns,
                "pid": pid, "start": start}
    try:
        owner = json.loads(text)
    except ValueError:
        return None
    if not isinstance(owner, dict) or not {"host", "pid", "start"} <= owner.keys():
        return None
    pidns = "".join(c for c in str(owner.get("pidns", "")) if c.isdigit())
    return {**owner, "host_id": _host_id(str(owner["host"])), "pidns": pidns}
