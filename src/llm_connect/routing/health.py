"""Deployment health: retry and cooldown policies, the circuit breaker, rpm/tpm counters.

Circuit breaker per deployment (shared by every router using the same state)::

    closed ──(allowed_fails failures in `window` s, no success between; or one 429 / auth error)──▶ open
    open   ──(cooldown over: Retry-After if the provider sent one, else cooldown_time)──▶ half-open
    half-open: exactly one caller claims a probe; success ──▶ closed, failure ──▶ open again

rpm counts requests and tpm counts tokens per wall-clock minute; a deployment at its cap is skipped
until the minute turns. :class:`MemoryRouterState` keeps all of it in this process;
:class:`~llm_connect.routing.redis_state.RedisRouterState` keeps it in Redis so several replicas agree.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

from ..errors import LLMConfigurationError

__all__ = ["CooldownPolicy", "MemoryRouterState", "RetryPolicy", "RouterState", "Status", "current_minute"]


def current_minute(now: float) -> int:
    return int(now // 60)


def _policy_from(cls: type, value: Any, what: str) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise LLMConfigurationError(f"{what} must be a mapping, got {type(value).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise LLMConfigurationError(f"{what}: unknown key(s) {unknown}; known: {sorted(known)}")
    return cls(**value)


def _check_number(owner: str, name: str, value: Any, *, minimum: float = 0.0, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum
    if integer:
        ok = ok and isinstance(value, int)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise LLMConfigurationError(f"{owner}.{name} must be {kind} >= {minimum:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a router retries.

    A *round* tries every available deployment of the group and its fallback groups once;
    ``num_retries`` more rounds follow, each after an exponential backoff with jitter
    (``backoff_base * 2**round``, capped at ``backoff_max``). When every deployment is cooling down the
    router waits until the first one comes back (a provider's Retry-After is honoured this way) unless
    that is further away than ``max_wait`` seconds, in which case it gives up at once: the error's
    ``retry_after`` (a gateway 503's Retry-After) says when the first deployment is back. The default is
    small so that a group that is down answers at once instead of holding its callers' connections.
    """

    num_retries: int = 2
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_wait: float = 1.0
    jitter: bool = True

    def __post_init__(self) -> None:
        _check_number("retry", "num_retries", self.num_retries, integer=True)
        for name in ("backoff_base", "backoff_max", "max_wait"):
            _check_number("retry", name, getattr(self, name))

    @classmethod
    def from_config(cls, value: Any) -> RetryPolicy:
        return _policy_from(cls, value, "retry")

    def backoff(self, round_no: int, rng: random.Random) -> float:
        d = min(self.backoff_max, self.backoff_base * (2**round_no))
        return d / 2 + rng.random() * d / 2 if self.jitter else d


@dataclass(frozen=True, slots=True)
class CooldownPolicy:
    """When a deployment is taken out and for how long (see the module docstring).

    ``max_cooldown`` caps a provider's Retry-After; ``probe_timeout`` is how long a half-open probe
    may run before another caller may probe; a tripped deployment that nobody probes for ``forget_after``
    seconds after its cooldown is considered closed again.
    """

    allowed_fails: int = 3
    window: float = 60.0
    cooldown_time: float = 10.0
    max_cooldown: float = 300.0
    probe_timeout: float = 60.0
    forget_after: float = 600.0

    def __post_init__(self) -> None:
        _check_number("cooldown", "allowed_fails", self.allowed_fails, minimum=1, integer=True)
        for name in ("window", "cooldown_time", "max_cooldown", "probe_timeout", "forget_after"):
            _check_number("cooldown", name, getattr(self, name))

    @classmethod
    def from_config(cls, value: Any) -> CooldownPolicy:
        return _policy_from(cls, value, "cooldown")

    def cooldown_for(self, retry_after: float | None) -> float:
        if retry_after is None:
            return self.cooldown_time
        return min(max(retry_after, 0.0), self.max_cooldown)


class Status:
    """One deployment's shared state. ``until``: end of its cooldown (epoch s, 0 = none)."""

    __slots__ = ("fails", "fails_start", "forget_at", "minute", "probe_until", "rpm", "tpm", "tripped", "until")

    def __init__(self) -> None:
        self.until = 0.0
        self.tripped = False
        #: a trip nobody probed is forgotten (closed) from then on (0 = never)
        self.forget_at = 0.0
        self.probe_until = 0.0
        self.fails = 0
        self.fails_start = 0.0
        self.minute = -1
        self.rpm = 0
        self.tpm = 0

    def rpm_used(self, minute: int) -> int:
        return self.rpm if self.minute == minute else 0

    def tpm_used(self, minute: int) -> int:
        return self.tpm if self.minute == minute else 0

    def blocked_until(self, now: float, minute: int, rpm_cap: int | None, tpm_cap: int | None) -> float:
        """0.0 if the deployment can take a call now, else when it may again (epoch s)."""
        if self.until > now:
            return self.until
        if self.probe_until > now and self.half_open(now):
            return self.probe_until
        if self.minute == minute and (
            (rpm_cap is not None and self.rpm >= rpm_cap) or (tpm_cap is not None and self.tpm >= tpm_cap)
        ):
            return (minute + 1) * 60.0
        return 0.0

    def half_open(self, now: float) -> bool:
        """Cooldown over but not yet proven healthy: the next call is a probe."""
        return self.tripped and self.until <= now and not (self.forget_at and now >= self.forget_at)


@runtime_checkable
class RouterState(Protocol):
    """Where cooldowns, probes and rpm/tpm counters live. All times are epoch seconds.

    ``snapshot`` returns one Status per name; rpm/tpm counts are only guaranteed for the names in
    ``counted`` (the router counts only deployments with caps, or all under the usage strategy).
    ``record_success`` adds ``requests`` / ``tokens`` to this minute's counters, closes the circuit after
    a successful ``probe`` and, with ``reset``, forgets the failures counted so far.
    """

    async def snapshot(self, names: Sequence[str], now: float, counted: Sequence[str] = ()) -> list[Status]: ...

    async def claim_probe(self, name: str, now: float, policy: CooldownPolicy) -> bool: ...

    async def release_probe(self, name: str) -> None: ...

    async def record_start(self, name: str, now: float) -> None: ...

    async def record_success(
        self, name: str, now: float, *, requests: int = 0, tokens: int = 0, probe: bool = False, reset: bool = False
    ) -> None: ...

    async def record_failure(
        self, name: str, now: float, policy: CooldownPolicy, *, trip_for: float | None
    ) -> bool: ...

    async def aclose(self) -> None: ...


class MemoryRouterState:
    """Router state in this process (the default). Share one instance between routers to share cooldowns."""

    def __init__(self) -> None:
        self._entries: dict[str, Status] = {}
        self._clean = Status()
        self._lock = threading.Lock()

    def _entry(self, name: str) -> Status:
        e = self._entries.get(name)
        if e is None:
            with self._lock:
                e = self._entries.setdefault(name, Status())
        return e

    async def snapshot(self, names: Sequence[str], now: float, counted: Sequence[str] = ()) -> list[Status]:
        get, clean = self._entries.get, self._clean
        return [get(n, clean) for n in names]

    async def claim_probe(self, name: str, now: float, policy: CooldownPolicy) -> bool:
        e = self._entry(name)
        with self._lock:
            if e.probe_until > now:
                return False
            e.probe_until = now + policy.probe_timeout
            return True

    async def release_probe(self, name: str) -> None:
        e = self._entries.get(name)
        if e is not None:
            e.probe_until = 0.0

    def _count(self, e: Status, now: float, requests: int, tokens: int) -> None:
        m = current_minute(now)
        if e.minute != m:
            e.minute, e.rpm, e.tpm = m, 0, 0
        e.rpm += requests
        e.tpm += tokens

    async def record_start(self, name: str, now: float) -> None:
        self._count(self._entry(name), now, 1, 0)

    async def record_success(
        self, name: str, now: float, *, requests: int = 0, tokens: int = 0, probe: bool = False, reset: bool = False
    ) -> None:
        e = self._entry(name)
        if requests or tokens:
            self._count(e, now, requests, tokens)
        if reset or probe:
            e.fails = 0
        if probe:  # a success that was no probe must not cut a provider's Retry-After short
            e.tripped, e.until, e.probe_until = False, 0.0, 0.0

    async def record_failure(self, name: str, now: float, policy: CooldownPolicy, *, trip_for: float | None) -> bool:
        e = self._entry(name)
        if trip_for is None:
            if e.half_open(now) or e.fails_start + policy.window < now:
                e.fails, e.fails_start = 0, now
            e.fails += 1
            if e.fails < policy.allowed_fails and not e.half_open(now):
                return False
            trip_for = policy.cooldown_time
        e.tripped, e.until, e.probe_until, e.fails = True, now + trip_for, 0.0, 0
        e.forget_at = e.until + policy.forget_after
        return True

    def forget(self) -> None:
        """Drop all state (tests, admin)."""
        with self._lock:
            self._entries.clear()

    async def aclose(self) -> None:
        return None
