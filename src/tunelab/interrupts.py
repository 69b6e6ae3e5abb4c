"""Ctrl-C and SIGTERM stop a study between two steps of the tuner's loop, never inside one.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Raised inside an
executor (between forking a trial and recording its pid, between reading a trial's exit and
keeping it), it leaves a trial the executor does not know about, or an exit it waits for
forever, and the driver hangs instead of stopping. So while a study runs, the first signal
only asks the loop to stop; the loop, which wakes at least every half second, then raises
``KeyboardInterrupt`` from a safe point, and shutdown ends every trial. A second signal is
the user insisting: it interrupts at once, as Python would.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

#: Signals that stop a study: Ctrl-C, and SIGTERM (what a scheduler or ``kill`` sends).
STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Within the block, a stopping signal sets a flag (read by the returned function) instead of
    raising; the previous handlers come back at the end. Outside the main thread, where Python
    delivers no signal, the flag stays false and nothing changes."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: Any) -> None:
        if received:  # the second one: stop now
            raise KeyboardInterrupt
        received.append(signum)

    for signum in STOPPING_SIGNALS:
        handler = signal.getsignal(signum)
        if signum == signal.SIGTERM and handler in (signal.SIG_DFL, None):
            continue  # nobody turned SIGTERM into a stop: it keeps ending the process outright
        if handler == signal.SIG_IGN:
            continue  # ignored on purpose (nohup, a parent's choice): stays ignored
        previous[signum] = handler
        signal.signal(signum, on_signal)
    try:
        yield lambda: bool(received)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
