"""The ledger's writer thread: group commit, the spool for outages, and failure reports; the upkeep thread.

One thread per ledger owns the write connection. Events queued while a commit runs are written together in
the next transaction. A batch the database refuses (after one retry on a fresh connection) goes to the spool,
durably, and its callers are answered as if it had been written; the spool is written back after the next
successful commit, or every ``replay_interval`` seconds while the ledger is idle. Nothing here drops an event
without telling: every event that does not reach the table the normal way is reported to ``report`` (the
ledger's ``on_failure`` hook) and logged; one that reaches neither the table nor the spool fails its caller.

Upkeep that takes milliseconds (the bulk of SQLite's WAL checkpoint, with its fsyncs) runs on an :class:`Upkeep`
thread, which the writer only wakes, so that no commit waits behind it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .events import UsageEvent
from .spool import Spool

__all__ = ["GroupCommitWriter", "Item", "Upkeep"]

log = logging.getLogger("llm_connect.usage")

_STOP = object()

#: ``report(kind, events, error)``: how many events a failure of that kind touched
Report = Callable[[str, int, BaseException | None], None]


class Item:
    """One queued event, its row, and how its caller is answered (a threading.Event or a future)."""

    __slots__ = ("done", "error", "event", "fut", "inserted", "loop", "row")

    def __init__(
        self, event: UsageEvent, row: tuple[Any, ...], loop: asyncio.AbstractEventLoop | None = None, fut: Any = None
    ):
        self.event = event
        self.row = row
        self.loop = loop
        self.fut = fut
        self.done = threading.Event() if fut is None else None
        self.inserted = False
        self.error: BaseException | None = None


def _resolve_futures(items: list[Item]) -> None:
    for it in items:
        fut = it.fut
        if fut.done():  # the caller was cancelled
            continue
        if it.error is not None:
            fut.set_exception(it.error)
        else:
            fut.set_result(it.inserted)


def _close_thread(owner: GroupCommitWriter | Upkeep, stop: Callable[[], None]) -> None:
    """Mark ``owner`` closed (once), then ``stop()`` its thread and wait for it."""
    with owner._lock:
        if owner._closed:
            return
        owner._closed = True
        thread = owner._thread
    if thread is not None:
        stop()
        thread.join()


class GroupCommitWriter:
    """The writer thread of one ledger (see the module docstring). Started on the first submit, and again
    in a forked child (the parent's thread does not survive a fork)."""

    def __init__(
        self,
        *,
        connect: Callable[[], Any],
        write: Callable[[Any, Sequence[tuple[Any, ...]]], list[bool]],
        to_row: Callable[[UsageEvent], tuple[Any, ...]],
        spool: Spool | None,
        batch_max: int,
        report: Report,
        replay_interval: float = 5.0,
        after_answer: Callable[[Any], None] | None = None,
    ) -> None:
        self._connect = connect
        #: upkeep on the connection (a WAL checkpoint) once a batch's callers are answered, so none waits for it
        self._after_answer = after_answer
        self._write = write
        self._to_row = to_row
        self.spool = spool
        self.batch_max = batch_max
        self._report = report
        self.replay_interval = replay_interval
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        #: the spool may hold events (from this process or an earlier one): replay it when idle
        self._spool_pending = spool is not None and spool.pending

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, item: Item) -> None:
        """Queue ``item``; raises RuntimeError once closed."""
        with self._lock:
            if self._closed:
                raise RuntimeError("closed")
            if self._pid != os.getpid():  # forked (e.g. a prefork worker): the writer thread stayed behind
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._thread = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="llm-connect-ledger", daemon=True)
                self._thread.start()
            self._queue.put(item)

    def close(self) -> None:
        """Finish queued writes and stop the thread."""
        _close_thread(self, lambda: self._queue.put(_STOP))

    # -- the thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        conn: Any = None
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self.replay_interval if self._spool_pending else None)
            except queue.Empty:  # idle with a spool to write back
                conn = self._replay(conn)
                continue
            if first is _STOP:
                break
            batch: list[Item] = [first]
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            try:
                conn = self._commit(conn, batch)
            except BaseException as exc:  # never leave a caller waiting, never let the thread die
                log.exception("usage ledger writer failed on a batch of %d event(s)", len(batch))
                self._safe_report("lost", len(batch), exc)
                for it in batch:
                    it.error, it.inserted = exc, False
                conn = self._discard(conn)
            self._answer(batch)
            if self._after_answer is not None and conn is not None:
                try:
                    self._after_answer(conn)
                except Exception as exc:  # upkeep that fails is retried after the next batch
                    log.debug("ledger upkeep failed: %s", exc)
        self._discard(conn)

    def _commit(self, conn: Any, batch: list[Item]) -> Any:
        rows = [it.row for it in batch]
        error: BaseException | None = None
        inserted: list[bool] = []
        for _attempt in (0, 1):  # one retry on a fresh connection (dropped server connection, ...)
            try:
                if conn is None:
                    conn = self._connect()
                inserted = self._write(conn, rows)
                error = None
                break
            except Exception as exc:
                error = exc
                conn = self._discard(conn)
        if error is not None:
            error, inserted = self._to_spool(batch, error)
        elif self.spool is not None and (self._spool_pending or self.spool.pending):
            conn = self._replay(conn)
        for i, it in enumerate(batch):
            it.error = error
            it.inserted = inserted[i] if error is None else False
        return conn

    @staticmethod
    def _answer(batch: list[Item]) -> None:
        waiting: dict[asyncio.AbstractEventLoop, list[Item]] = {}
        for it in batch:
            if it.done is not None:
                it.done.set()
            else:
                assert it.loop is not None
                waiting.setdefault(it.loop, []).append(it)
        for loop, items in waiting.items():  # one wake-up per event loop, not one per event
            try:
                loop.call_soon_threadsafe(_resolve_futures, items)
            except RuntimeError:  # the caller's loop is closed; nobody is waiting
                pass

    def _to_spool(self, batch: list[Item], error: BaseException) -> tuple[BaseException | None, list[bool]]:
        if self.spool is None:
            self._safe_report("lost", len(batch), error)
            return error, []
        try:
            self.spool.append([it.event for it in batch])
        except Exception as exc:
            log.error("ledger write failed (%s) and the spool %s cannot be written: %s", error, self.spool.path, exc)
            self._safe_report("lost", len(batch), error)
            return error, []
        self._spool_pending = True
        log.warning(
            "ledger write failed (%s); %d event(s) kept in %s until it recovers", error, len(batch), self.spool.path
        )
        self._safe_report("spooled", len(batch), error)
        return None, [True] * len(batch)

    def _replay(self, conn: Any) -> Any:
        """Write the spool back (idempotent: an event already stored is skipped)."""
        spool = self.spool
        if spool is None:
            self._spool_pending = False
            return conn

        def write_back(events: list[UsageEvent]) -> None:
            nonlocal conn
            if conn is None:
                conn = self._connect()
            self._write(conn, [self._to_row(e) for e in events])

        try:
            n = spool.drain(write_back)
        except Exception as exc:
            log.warning("ledger spool replay failed, will retry: %s", exc)
            self._safe_report("replay", 1, exc)
            return self._discard(conn)
        self._spool_pending = False
        if n:
            log.warning("ledger recovered: %d spooled event(s) written back", n)
        return conn

    def _safe_report(self, kind: str, events: int, error: BaseException | None) -> None:
        try:
            self._report(kind, events, error)
        except Exception:  # a broken hook must not break the writer
            log.exception("the ledger's on_failure hook failed")

    @staticmethod
    def _discard(conn: Any) -> None:
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
        return None


class Upkeep:
    """``work()`` on a thread of its own, run when :meth:`poke` is called (pokes that arrive while it runs are
    folded into one more run); ``done()`` runs on that thread when it stops (:meth:`close`), e.g. to close the
    connection ``work`` opened. Started on the first poke, and again in a forked child. ``work`` that raises
    is logged and tried again on the next poke."""

    def __init__(self, work: Callable[[], None], done: Callable[[], None], *, name: str) -> None:
        self._work = work
        self._done = done
        self._name = name
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def poke(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._pid != os.getpid():  # forked: the thread stayed behind
                self._pid = os.getpid()
                self._wake = threading.Event()
                self._thread = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, args=(self._wake,), name=self._name, daemon=True)
                self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Let a run in progress finish, then stop the thread."""
        _close_thread(self, self._wake.set)

    def _run(self, wake: threading.Event) -> None:
        try:
            while True:
                wake.wait()
                wake.clear()
                if self._closed:
                    return
                try:
                    self._work()
                except Exception as exc:
                    log.debug("ledger upkeep failed: %s", exc)
        finally:
            try:
                self._done()
            except Exception as exc:
                log.debug("ledger upkeep clean-up failed: %s", exc)
