"""One way to make an asyncio Redis client: a *blocking* connection pool.

redis-py's default pool raises ``MaxConnectionsError`` as soon as more calls are in flight than it has
connections; under load that reads as "Redis is down" and rate limits, cooldowns and budget caps would
stop being shared. A blocking pool makes the extra callers wait (up to ``timeout``) for a connection.
"""

from __future__ import annotations

from typing import Any

__all__ = ["async_client"]


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
