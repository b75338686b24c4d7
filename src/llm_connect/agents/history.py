"""Conversation state per thread: the turns (history), pending system notes (budget warnings for the next
prompt), which agents took part, and the final usage recorded when the thread ends.

:class:`RedisThreadHistory` keeps it in Redis with a TTL refreshed on every write, shared by every worker
process; :class:`MemoryThreadHistory` is the fallback when no Redis URL is configured (one process only).
Keys (``{ns}`` = namespace, ``{ref}`` = ``tenant/thread/agent``, ``{thread}`` = ``tenant/thread``)::

    {ns}:agents:history:{ref}     list   JSON turns {"role", "content"}, oldest first, capped
    {ns}:agents:notes:{ref}       list   system notes waiting for the agent's next prompt
    {ns}:agents:members:{thread}  set    agent names that answered in the thread
    {ns}:agents:budgets:{thread}  set    delegated sub-budget ids opened under the thread
    {ns}:agents:usage:{thread}    hash   <agent>:prompt / <agent>:completion / <agent>:turns counters
    {ns}:agents:final:{thread}    string JSON final usage, written by cleanup
"""

from __future__ import annotations

import functools
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import LLMConfigurationError

__all__ = ["MemoryThreadHistory", "RedisThreadHistory", "ThreadHistory", "ThreadState", "open_history"]

#: how long a recorded final usage is kept
FINAL_TTL_SECONDS = 30 * 86400


@dataclass(frozen=True, slots=True)
class ThreadState:
    """What a thread's bookkeeping holds: agents with a thread budget, delegated sub-budget ids, and
    per-agent counters ``{agent: {"prompt_tokens", "completion_tokens", "turns"}}``."""

    members: tuple[str, ...] = ()
    budgets: tuple[str, ...] = ()
    usage: dict[str, dict[str, int]] = field(default_factory=dict)


_USAGE_FIELDS = {"prompt": "prompt_tokens", "completion": "completion_tokens", "turns": "turns"}


def _usage_from(flat: Mapping[str, int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for k, v in flat.items():
        agent, _, what = k.rpartition(":")
        if what in _USAGE_FIELDS:
            row = out.setdefault(agent, {"prompt_tokens": 0, "completion_tokens": 0, "turns": 0})
            row[_USAGE_FIELDS[what]] = int(v)
    return out


class ThreadHistory(ABC):
    """Async interface of the per-thread conversation state."""

    def __init__(self, *, ttl: float, max_messages: int) -> None:
        if not ttl > 0:
            raise ValueError(f"history ttl must be positive seconds, got {ttl!r}")
        if max_messages < 0:
            raise ValueError(f"max_messages must be >= 0, got {max_messages!r}")
        self.ttl = float(ttl)
        self.max_messages = int(max_messages)

    @abstractmethod
    async def load(self, ref: str) -> list[dict[str, Any]]:
        """The stored turns of ``ref``, oldest first (at most ``max_messages``)."""

    @abstractmethod
    async def append(self, ref: str, turns: Sequence[Mapping[str, Any]]) -> None:
        """Add turns, trim to ``max_messages``, refresh the TTL."""

    @abstractmethod
    async def push_notes(self, ref: str, notes: Sequence[str]) -> None:
        """Queue system notes for the next prompt of ``ref``."""

    @abstractmethod
    async def pop_notes(self, ref: str) -> list[str]:
        """Take (and remove) every queued note of ``ref``, oldest first."""

    @abstractmethod
    async def note_turn(
        self,
        thread: str,
        agent: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        member: bool = True,
        budget_id: str | None = None,
    ) -> None:
        """Count one model call of ``agent`` in ``thread``; ``member`` marks the agent as holding a thread
        budget there, ``budget_id`` records a delegated sub-budget opened under the thread."""

    @abstractmethod
    async def thread_state(self, thread: str) -> ThreadState:
        """Members, delegated sub-budgets and usage counters of ``thread``."""

    @abstractmethod
    async def forget(self, thread: str, refs: Sequence[str]) -> None:
        """Delete the thread's bookkeeping and the history and notes of ``refs``."""

    @abstractmethod
    async def record_final(self, thread: str, record: Mapping[str, Any]) -> None:
        """Keep the thread's final usage (JSON-safe mapping) for ``FINAL_TTL_SECONDS``."""

    @abstractmethod
    async def final(self, thread: str) -> dict[str, Any] | None:
        """The recorded final usage of ``thread``, or None."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class _Entry:
    __slots__ = ("expires", "value")

    def __init__(self, value: Any, expires: float) -> None:
        self.value = value
        self.expires = expires


class MemoryThreadHistory(ThreadHistory):
    """In-process fallback (thread-safe). State is lost with the process and not shared between workers."""

    def __init__(self, *, ttl: float = 7 * 86400, max_messages: int = 50) -> None:
        super().__init__(ttl=ttl, max_messages=max_messages)
        self._data: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _get(self, key: str, now: float) -> Any:
        e = self._data.get(key)
        if e is None:
            return None
        if e.expires <= now:
            del self._data[key]
            return None
        return e.value

    def _sweep(self, now: float) -> None:
        if len(self._data) > 10_000:
            for k in [k for k, e in self._data.items() if e.expires <= now]:
                del self._data[k]

    async def load(self, ref: str) -> list[dict[str, Any]]:
        with self._lock:
            turns = self._get("h:" + ref, time.monotonic())
            return [dict(t) for t in turns] if turns else []

    async def append(self, ref: str, turns: Sequence[Mapping[str, Any]]) -> None:
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            cur = self._get("h:" + ref, now) or []
            cur = [*cur, *(dict(t) for t in turns)]
            if self.max_messages:
                cur = cur[-self.max_messages :]
            else:
                cur = []
            self._data["h:" + ref] = _Entry(cur, now + self.ttl)

    async def push_notes(self, ref: str, notes: Sequence[str]) -> None:
        if not notes:
            return
        now = time.monotonic()
        with self._lock:
            cur = self._get("n:" + ref, now) or []
            self._data["n:" + ref] = _Entry([*cur, *notes], now + self.ttl)

    async def pop_notes(self, ref: str) -> list[str]:
        with self._lock:
            cur = self._get("n:" + ref, time.monotonic()) or []
            self._data.pop("n:" + ref, None)
            return list(cur)

    async def note_turn(
        self,
        thread: str,
        agent: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        member: bool = True,
        budget_id: str | None = None,
    ) -> None:
        now = time.monotonic()
        with self._lock:
            st = self._get("t:" + thread, now) or {"members": set(), "budgets": set(), "usage": {}}
            if member:
                st["members"].add(agent)
            if budget_id:
                st["budgets"].add(budget_id)
            u = st["usage"]
            for what, n in (("prompt", prompt_tokens), ("completion", completion_tokens), ("turns", 1)):
                u[f"{agent}:{what}"] = u.get(f"{agent}:{what}", 0) + n
            self._data["t:" + thread] = _Entry(st, now + self.ttl)

    async def thread_state(self, thread: str) -> ThreadState:
        with self._lock:
            st = self._get("t:" + thread, time.monotonic())
            if st is None:
                return ThreadState()
            return ThreadState(tuple(sorted(st["members"])), tuple(sorted(st["budgets"])), _usage_from(st["usage"]))

    async def forget(self, thread: str, refs: Sequence[str]) -> None:
        with self._lock:
            self._data.pop("t:" + thread, None)
            for ref in refs:
                self._data.pop("h:" + ref, None)
                self._data.pop("n:" + ref, None)

    async def record_final(self, thread: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._data["f:" + thread] = _Entry(dict(record), time.monotonic() + FINAL_TTL_SECONDS)

    async def final(self, thread: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._get("f:" + thread, time.monotonic())
            return dict(rec) if rec is not None else None


class RedisThreadHistory(ThreadHistory):
    """Thread state in Redis (``redis.asyncio``); the client belongs to the event loop that first uses it,
    so open one per loop (each Celery task's ``asyncio.run``) and :meth:`aclose` it at the end."""

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "llmc",
        ttl: float = 7 * 86400,
        max_messages: int = 50,
        client: Any = None,
        socket_timeout: float = 2.0,
    ) -> None:
        super().__init__(ttl=ttl, max_messages=max_messages)
        if client is None:
            try:
                import redis.asyncio as aredis
            except ImportError as exc:  # pragma: no cover - only without the extra
                raise LLMConfigurationError(
                    "thread history in Redis needs redis-py: pip install 'llm-connect[agents]'"
                ) from exc
            client = aredis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        self._r = client
        self.url = url
        self.namespace = namespace
        self._ttl_ms = int(self.ttl * 1000)

    def _k(self, kind: str, name: str) -> str:
        return f"{self.namespace}:agents:{kind}:{name}"

    async def load(self, ref: str) -> list[dict[str, Any]]:
        raw = await self._r.lrange(self._k("history", ref), -self.max_messages if self.max_messages else 0, -1)
        if not self.max_messages:
            return []
        return [orjson.loads(x) for x in raw]

    async def append(self, ref: str, turns: Sequence[Mapping[str, Any]]) -> None:
        if not turns:
            return
        key = self._k("history", ref)
        async with self._r.pipeline(transaction=True) as p:
            p.rpush(key, *(orjson.dumps(dict(t)) for t in turns))
            if self.max_messages:
                p.ltrim(key, -self.max_messages, -1)
            else:
                p.delete(key)
            p.pexpire(key, self._ttl_ms)
            await p.execute()

    async def push_notes(self, ref: str, notes: Sequence[str]) -> None:
        if not notes:
            return
        key = self._k("notes", ref)
        async with self._r.pipeline(transaction=True) as p:
            p.rpush(key, *notes)
            p.pexpire(key, self._ttl_ms)
            await p.execute()

    async def pop_notes(self, ref: str) -> list[str]:
        key = self._k("notes", ref)
        async with self._r.pipeline(transaction=True) as p:
            p.lrange(key, 0, -1)
            p.delete(key)
            raw, _ = await p.execute()
        return [x.decode() if isinstance(x, bytes) else x for x in raw]

    async def note_turn(
        self,
        thread: str,
        agent: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        member: bool = True,
        budget_id: str | None = None,
    ) -> None:
        members, budgets, usage = (self._k(k, thread) for k in ("members", "budgets", "usage"))
        async with self._r.pipeline(transaction=True) as p:
            if member:
                p.sadd(members, agent)
                p.pexpire(members, self._ttl_ms)
            if budget_id:
                p.sadd(budgets, budget_id)
                p.pexpire(budgets, self._ttl_ms)
            p.hincrby(usage, f"{agent}:prompt", prompt_tokens)
            p.hincrby(usage, f"{agent}:completion", completion_tokens)
            p.hincrby(usage, f"{agent}:turns", 1)
            p.pexpire(usage, self._ttl_ms)
            await p.execute()

    async def thread_state(self, thread: str) -> ThreadState:
        async with self._r.pipeline(transaction=False) as p:
            p.smembers(self._k("members", thread))
            p.smembers(self._k("budgets", thread))
            p.hgetall(self._k("usage", thread))
            members, budgets, usage = await p.execute()

        def s(x: Any) -> str:
            return x.decode() if isinstance(x, bytes) else x

        return ThreadState(
            tuple(sorted(s(m) for m in members)),
            tuple(sorted(s(b) for b in budgets)),
            _usage_from({s(k): int(v) for k, v in usage.items()}),
        )

    async def forget(self, thread: str, refs: Sequence[str]) -> None:
        keys = [self._k(k, thread) for k in ("members", "budgets", "usage")]
        for ref in refs:
            keys += (self._k("history", ref), self._k("notes", ref))
        await self._r.delete(*keys)

    async def record_final(self, thread: str, record: Mapping[str, Any]) -> None:
        await self._r.set(self._k("final", thread), orjson.dumps(dict(record)), ex=FINAL_TTL_SECONDS)

    async def final(self, thread: str) -> dict[str, Any] | None:
        raw = await self._r.get(self._k("final", thread))
        return None if raw is None else orjson.loads(raw)

    async def drop_namespace(self) -> int:
        """Delete every agents key of this namespace (tests, tear-down)."""
        n = 0
        async for key in self._r.scan_iter(match=f"{self.namespace}:agents:*", count=1000):
            n += await self._r.delete(key)
        return n

    async def aclose(self) -> None:
        await self._r.aclose()


@functools.cache
def _shared_memory(namespace: str, ttl: float, max_messages: int) -> MemoryThreadHistory:
    # one per process and settings: Celery tasks open a runtime per task, memory history must outlive it
    return MemoryThreadHistory(ttl=ttl, max_messages=max_messages)


def open_history(
    redis_url: str | None, *, namespace: str = "llmc", ttl: float = 7 * 86400, max_messages: int = 50
) -> ThreadHistory:
    """Redis history when a URL is given, else the process-wide in-memory fallback."""
    if redis_url:
        return RedisThreadHistory(redis_url, namespace=namespace, ttl=ttl, max_messages=max_messages)
    return _shared_memory(namespace, float(ttl), int(max_messages))
