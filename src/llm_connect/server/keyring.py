"""Keeps a gateway's key table in step with the key store, on every replica.

* **poll** — every ``keys.poll_seconds`` (0.5 s) one ``SELECT`` of the store's change counter; when it moved,
  the whole table is read again and swapped into the :class:`~llm_connect.server.auth.Authenticator`
  (requests never wait for it: they keep using the previous table until the swap);
* **push** — with ``redis`` configured, a change made through this gateway is announced on the channel
  ``<namespace>:keys:changed`` and every replica polls at once (typically a few milliseconds);
* **last use** — the authenticator notes each key's last use in memory; it is written to the store in one
  batch every ``flush_seconds`` (2 s), never once per request.

A change made through this gateway's own admin API is applied before the API answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ..keys.merge import merge

if TYPE_CHECKING:
    from ..config import RedisConfig
    from ..keys import KeyStore, Snapshot
    from .auth import Authenticator

__all__ = ["KeyRing"]

log = logging.getLogger("llm_connect.server")


class KeyRing:
    """See the module docstring."""

    def __init__(
        self,
        store: KeyStore,
        auth: Authenticator,
        own: Snapshot,
        *,
        poll_seconds: float = 0.5,
        flush_seconds: float = 2.0,
        redis: RedisConfig | None = None,
    ) -> None:
        self.store = store
        self.auth = auth
        self._own = own
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self._channel = f"{redis.namespace}:keys:changed" if redis is not None else None
        self._redis_url = redis.url if redis is not None else None
        self._publisher: Any = None
        self.version = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._reload_lock: asyncio.Lock | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def load(self) -> None:
        """Read the store and install its keys (synchronously: at start-up, before the first request)."""
        self._install(self.store.snapshot())

    def _install(self, snap: Snapshot) -> None:
        self.auth.install(merge(self._own, snap))
        self.version = snap.version

    def start(self) -> None:
        """Start polling (and listening on Redis) in the running loop; idempotent."""
        if self._tasks:
            return
        self._wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll(), name="llm-connect-keys-poll"))
        if self._channel is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._listen(), name="llm-connect-keys-listen"))

    async def reload(self, *, force: bool = False) -> None:
        """Read the store again if its counter moved (or ``force``) and swap the table."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            if not force and await asyncio.to_thread(self.store.version) == self.version:
                return
            # read and build the new table in a worker thread (thousands of keys are milliseconds of work the
            # event loop should not wait for); the swap itself is one assignment
            await asyncio.to_thread(lambda: self._install(self.store.snapshot()))

    async def changed(self) -> None:
        """A change was just made through this process: apply it now and tell the other replicas."""
        await self.reload(force=True)
        if self._channel is None:
            return
        try:
            if self._publisher is None:
                from .._redis import async_client

                self._publisher = async_client(self._redis_url)  # type: ignore[arg-type]
            await self._publisher.publish(self._channel, str(self.version))
        except Exception as exc:  # the poll still carries the change, within poll_seconds
            log.warning("could not announce a key change on Redis (%s); replicas see it on their next poll", exc)

    async def flush(self) -> None:
        """Write the last-use times noted since the previous flush (one batch)."""
        used, self.auth.used = self.auth.used, {}
        if used:
            await asyncio.to_thread(self.store.touch, used)

    async def _poll(self) -> None:
        assert self._wake is not None
        last_flush = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
            try:
                await self.reload()
                if time.monotonic() - last_flush >= self.flush_seconds:
                    last_flush = time.monotonic()
                    await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is unreachable: keep the table we have, try again
                log.warning("key store poll failed (%s: %s); keeping the current keys", type(exc).__name__, exc)

    async def _listen(self) -> None:
        import redis.asyncio as aredis

        assert self._wake is not None and self._redis_url is not None
        while True:
            client = aredis.Redis.from_url(self._redis_url, socket_connect_timeout=1.0)
            try:
                pubsub = client.pubsub()
                await pubsub.subscribe(self._channel)
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("key change listener: %s; reconnecting", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception):
            await self.flush()
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.aclose()
            self._publisher = None
        await asyncio.to_thread(self.store.close)
