"""An exclusive lock on a file, held by the kernel: it is dropped with its holder, so a process
killed while holding it leaves nothing for the next one to wait for or clean up."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def file_lock(path: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing; its content is untouched).

    Yields True while held; with ``wait=False`` yields False at once, holding nothing, when
    another process holds it.
    """
    with open(path, "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
