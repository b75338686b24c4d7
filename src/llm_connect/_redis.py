"""One way to make an asyncio Redis client: a *blocking* connection pool.

redis-py's default pool raises ``MaxConnectionsError`` as soon as more calls are in flight than it has
connections; under load that reads as "Redis is down" and rate limits, cooldowns and budget caps would
stop being shared. A blocking pool makes the extra callers wait (up to ``timeout``) for a connection.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

__all__ = ["LoopClients", "async_client"]


def async_client(
    url: str,
    *,
    max_connections: int = 64,
    timeout: float = 5.0,
    socket_timeout: float = 2.0,
    socket_connect_timeout: float = 1.0,
) -> Any:
    import redis.asyncio as aredis

    pool = aredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
    )
    return aredis.Redis(connection_pool=pool)


class LoopClients:
    """One :func:`async_client` per event loop (a client is bound to the loop it was made in), made on first
    use: ``clients.get()`` in a coroutine, ``await clients.aclose()`` closes the running loop's."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = async_client(self.url)
        return client

    async def aclose(self) -> None:
        try:
            client = self._clients.pop(asyncio.get_running_loop(), None)
        except RuntimeError:  # no running loop: nothing of this loop to close
            return
        if client is not None:
            await client.aclose()
