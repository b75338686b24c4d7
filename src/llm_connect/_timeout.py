"""``async with Timeout(seconds)``: :func:`asyncio.timeout` for the hot path, at about half its cost; plain
``with Timeout(seconds)`` inside a coroutine works the same and also saves the two coroutines of ``async with``.

The same contract (on expiry the block is cancelled and ``TimeoutError`` raised from the ``CancelledError``; a
cancellation from elsewhere is never swallowed; ``None`` means no limit), without asyncio.Timeout's state machine
and re-scheduling: one TimerHandle, armed on entry and cancelled on exit. A gateway request passes three of
these (the body read, the request guard, the provider call).

:class:`Deadline` is the same contract for many awaits under one absolute deadline (each chunk of a stream):
one timer for the whole stream instead of one armed and cancelled per chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import TracebackType
from typing import TypeVar

__all__ = ["Deadline", "Timeout"]

T = TypeVar("T")


class Timeout:
    __slots__ = ("_cancelling", "_delay", "_entered", "_handle", "_task", "_when", "expired")

    def __init__(self, delay: float | None = None, *, when: float | None = None) -> None:
        """``delay`` seconds from entry, or an absolute ``when`` on the loop's clock; neither: no limit."""
        self._delay = delay
        self._when = when
        self._handle: asyncio.Handle | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._entered = False
        #: True once the time ran out (the block was cancelled by this timeout)
        self.expired = False

    async def __aenter__(self) -> Timeout:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __enter__(self) -> Timeout:
        """``with Timeout(...)`` in a coroutine: the same, without the two coroutines ``async with`` costs."""
        if self._entered:
            raise RuntimeError("Timeout has already been entered")
        self._entered = True
        if self._delay is None and self._when is None:
            return self
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Timeout should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        now = loop.time()
        when = self._when if self._when is not None else now + self._delay  # type: ignore[operator]
        if when <= now:
            # already due: cancel at the block's next step, as asyncio.timeout does. A timer would only run
            # after the ready callbacks, so a block that yields once (sleep(0), a ready chunk) would finish first
            self._handle = loop.call_soon(self._expire)
        else:
            self._handle = loop.call_at(when, self._expire)
        return self

    def _expire(self) -> None:
        self._handle = None
        self.expired = True
        assert self._task is not None
        self._task.cancel()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.expired:
            assert self._task is not None
            # our cancel() is balanced here; only when no other cancellation is pending is this a timeout
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc


class Deadline:
    """An absolute deadline (``when`` on the loop's clock; None: none) over many awaits: ``await d.run(aw)``
    is ``async with Timeout(when=when): await aw`` — ``TimeoutError`` from the ``CancelledError`` if the time
    runs out while ``aw`` waits, an outside cancellation never swallowed — with one timer for all of them.
    Time that runs out between two awaits expires the next one as a past deadline does. :meth:`close` when done.
    """

    __slots__ = ("_handle", "_task", "expired")

    def __init__(self, when: float | None) -> None:
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None
        #: True once the time ran out
        self.expired = False
        if when is not None:
            self._handle = asyncio.get_running_loop().call_at(when, self._expire)

    def _expire(self) -> None:
        self._handle = None
        self.expired = True
        if self._task is not None:
            self._task.cancel()

    async def run(self, aw: Awaitable[T]) -> T:
        if self._handle is None:
            if not self.expired:  # no deadline
                return await aw
            async with Timeout(0):  # past: cancelled at its first suspension, as Timeout does
                return await aw
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline should be used inside a task")
        cancelling = task.cancelling()
        self._task = task
        try:
            return await aw
        except asyncio.CancelledError as exc:
            # our cancel() is balanced here; only when no other cancellation is pending is this a timeout
            if self.expired and task.uncancel() <= cancelling:
                raise TimeoutError from exc
            raise
        finally:
            self._task = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
