"""Worker threads and one-slot mailboxes: blocking work kept off the kernel's loop.

A :class:`WorkerThread` belongs to a session: started on demand, stopped and joined on close
without blocking the loop (its end is signalled to the loop, then ``join`` returns at once).
Between the media path and anything slower the newest item wins: a :class:`LatestSlot`
(for a thread) or :class:`AsyncLatestSlot` (for a coroutine) holds one item; putting a new one
replaces the one not yet taken, and the replaced ones are counted as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class WorkerThread:
    """One daemon thread running ``target``; :meth:`join` awaits its end without blocking."""

    def __init__(self, name: str, target: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[None] = self._loop.create_future()
        self._target = target
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _main(self) -> None:
        try:
            self._target()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits
                self._loop.call_soon_threadsafe(self._set_ended)

    def _set_ended(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)

    async def join(self) -> None:
        """Wait until ``target`` has returned (the caller makes it return)."""
        await asyncio.shield(self._ended)
        self._thread.join()


class LatestSlot(Generic[T]):
    """One item handed from any thread to one worker thread; the newest wins."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.skipped = 0
        """Items replaced before they were taken."""

    def put(self, item: T) -> None:
        """Offer ``item``, replacing one not yet taken; never waits."""
        with self._condition:
            if self._item is not None:
                self.skipped += 1
            self._item = item
            self._condition.notify()

    def take(self) -> T | None:
        """Wait for the next item; None once closed."""
        with self._condition:
            while self._item is None and not self._closed:
                self._condition.wait()
            item, self._item = self._item, None
            return None if self._closed else item

    def close(self) -> None:
        """Make :meth:`take` return None from now on."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class AsyncLatestSlot(Generic[T]):
    """One item handed to one coroutine on the loop; the newest wins."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self.skipped = 0
        """Items replaced before they were taken."""

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Offer ``item`` (on the loop); True when it replaced one not yet taken."""
        replaced = self._item is not None
        if replaced:
            self.skipped += 1
        self._item = item
        self._ready.set()
        return replaced

    async def get(self) -> T | None:
        """The newest item, once there is one; None once closed."""
        while self._item is None and not self._closed:
            self._ready.clear()
            await self._ready.wait()
        item, self._item = self._item, None
        return None if self._closed else item

    def close(self) -> None:
        self._closed = True
        self._ready.set()
