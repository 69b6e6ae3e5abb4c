"""The driver's mailbox on a Ray cluster: an async actor that carries results and decisions.

A trial calls ``report(trial_id, step, metrics)`` and waits on the answer: the actor files the
result in its outbox and returns the stop decision once the driver posts it with ``decide``.
The driver collects the outbox with ``take(wait_s)``, which returns as soon as anything
arrived (or after ``wait_s``), so results stream to the driver as they are reported without
the driver busy-polling. One mailbox serves every trial of a driver; it holds no CPU.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Mailbox:
    """Made a Ray actor by the executor (``ray.remote(Mailbox)``), so importing this needs no Ray."""

    def __init__(self) -> None:
        self._outbox: list[tuple[Any, ...]] = []
        self._arrived: asyncio.Event | None = None
        self._decisions: dict[int, asyncio.Future[bool]] = {}

    def _event(self) -> asyncio.Event:
        if self._arrived is None:  # created on the actor's event loop, at first use
            self._arrived = asyncio.Event()
        return self._arrived

    def _post(self, message: tuple[Any, ...]) -> None:
        self._outbox.append(message)
        self._event().set()

    async def started(self, trial_id: int, info: dict[str, Any]) -> None:
        """The trial's process is up (pid, node, how long the objective took to load)."""
        self._post(("started", trial_id, info))

    async def report(self, trial_id: int, step: float, metrics: dict[str, float]) -> bool:
        """File a result; return the driver's decision (True: stop the trial)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._decisions[trial_id] = future
        self._post(("result", trial_id, step, metrics))
        return await future

    async def decide(self, trial_id: int, stop: bool) -> None:
        future = self._decisions.pop(trial_id, None)
        if future is not None and not future.done():
            future.set_result(bool(stop))

    async def forget(self, trial_id: int) -> None:
        """A trial ended: drop a decision it can no longer wait for."""
        future = self._decisions.pop(trial_id, None)
        if future is not None and not future.done():
            future.set_result(True)

    async def take(self, wait_s: float) -> list[tuple[Any, ...]]:
        """Everything posted since the last take; waits up to ``wait_s`` for the first message."""
        event = self._event()
        if not self._outbox and wait_s > 0:
            try:
                await asyncio.wait_for(event.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        messages, self._outbox = self._outbox, []
        event.clear()
        return messages
