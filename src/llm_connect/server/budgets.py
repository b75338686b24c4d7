"""The budget chain of one gateway request: tenant -> team -> API key -> delegated budget -> thread.

Each level is a :class:`~llm_connect.budget.BudgetTracker` on the gateway's one store (memory, or Redis so
every worker and replica shares the numbers); a request's tracker is the innermost level, so a reservation
must fit in every level above it. Levels without a cap are left out (no store traffic for them).

* tenant — ``tenants.<id>.budget`` (``budget_id = tenant:<id>``, optionally daily / monthly)
* team — ``teams.<id>.budget`` or a team of the key store (``budget_id = team:<tenant>:<team id>``)
* key — ``api_keys[i].budget`` or a key of the key store (``key:<id>``; a config key's id is its name)
* delegated — ``X-LLM-Budget-Id`` (or ``budget.id`` in /execute): shared by every request naming it within
  the tenant; its cap (``X-LLM-Budget-Tokens`` / ``X-LLM-Budget-USD``) is fixed by the request that creates
  it, and requests naming an unknown id without a cap are refused (422 ``unknown_budget``).
  ``budget_id = delegated:<tenant>:<id>:<created>``.
* thread — ``X-LLM-Thread-Id`` (or ``thread_id``) with ``budgets.max_tokens_per_thread``
  (``thread:<tenant>:<thread id>``, the id scheme of ``ThreadBudgetRegistry(id_prefix="thread:<tenant>:")``).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol

from ..config import BudgetLimit, BudgetsConfig
from .auth import Principal
from .errors import ApiError

if TYPE_CHECKING:
    from ..budget import BudgetState, BudgetStore, BudgetTracker
    from ..keys import Snapshot

__all__ = [
    "BudgetPlanner",
    "BudgetRequest",
    "CapRegistry",
    "ConfiguredBudget",
    "MemoryCapRegistry",
    "RedisCapRegistry",
    "configured_budgets",
]

_MAX_ID = 128


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """What a request asks for: a delegated budget (id and, to create it, caps) and / or a thread."""

    budget_id: str | None = None
    tokens: int | None = None
    usd: Decimal | None = None
    thread_id: str | None = None


@dataclass(frozen=True, slots=True)
class Cap:
    tokens: int | None
    usd: Decimal | None
    created: int

    def encode(self) -> str:
        return f"{'' if self.tokens is None else self.tokens}|{'' if self.usd is None else self.usd}|{self.created}"

    @classmethod
    def decode(cls, raw: str) -> Cap:
        t, u, c = raw.split("|")
        return cls(int(t) if t else None, Decimal(u) if u else None, int(c))


def check_id(value: object, param: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or not value.isprintable():
        raise ApiError(
            422,
            f"{param} must be a non-empty printable string of at most {_MAX_ID} characters",
            "invalid_request_error",
            "invalid_field",
            param,
        )
    return value


#: bounds on a cap a request may set: beyond them a number is a mistake (or an attack), not a budget
MAX_TOKENS_CAP = 10**15
MAX_USD_CAP = Decimal(10**9)


def parse_tokens(value: object, param: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):  # ASCII digits only
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_CAP:
        raise ApiError(
            422, f"{param} must be a positive integer of tokens", "invalid_request_error", "invalid_field", param
        )
    return value


def parse_usd(value: object, param: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidOperation
        d = Decimal(str(value).strip())
    except InvalidOperation:
        d = Decimal(-1)
    if not d.is_finite() or d <= 0 or d > MAX_USD_CAP:
        raise ApiError(
            422,
            f"{param} must be a positive USD amount up to {MAX_USD_CAP}",
            "invalid_request_error",
            "invalid_field",
            param,
        )
    return d


@dataclass(frozen=True, slots=True)
class ConfiguredBudget:
    """A budget set on a tenant, team or API key: ``kind`` tenant | team | key, its ``id`` and ``name``,
    the ``tenant`` it belongs to, its ``limit`` and the ``budget_id`` its level has in the budget store."""

    kind: str
    id: str
    name: str
    tenant: str
    limit: BudgetLimit
    budget_id: str


def configured_budgets(snap: Snapshot) -> list[ConfiguredBudget]:
    """Every budget of the tenants, teams and keys in ``snap`` that are not revoked (the levels
    :meth:`BudgetPlanner.root` builds), tenants first, then teams, then keys."""
    out = [
        ConfiguredBudget("tenant", t.id, t.name, t.id, t.budget, f"tenant:{t.id}")
        for t in snap.tenants
        if t.budget is not None and t.budget.capped and t.revoked_at is None
    ]
    out.extend(
        ConfiguredBudget("team", t.id, t.name, t.tenant, t.budget, f"team:{t.tenant}:{t.id}")
        for t in snap.teams
        if t.budget is not None and t.budget.capped and t.revoked_at is None
    )
    out.extend(
        # a config key's level is named by its name (keys of one name share it), an API key's by its id
        ConfiguredBudget("key", k.id, k.name, k.tenant, k.budget, f"key:{k.name if k.managed_by == 'config' else k.id}")
        for k in snap.keys
        if k.budget is not None and k.budget.capped and k.revoked_at is None
    )
    return out


class CapRegistry(Protocol):
    async def get_or_create(self, key: str, cap: Cap | None, ttl: float) -> Cap | None:
        """The cap of budget ``key``: created with ``cap`` if new (first writer wins); None if unknown."""
        ...

    async def aclose(self) -> None: ...


class MemoryCapRegistry:
    """Caps of delegated budgets in this process."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._caps: OrderedDict[str, tuple[Cap, float]] = OrderedDict()
        self._max = max_entries

    async def get_or_create(self, key: str, cap: Cap | None, ttl: float) -> Cap | None:
        now = time.time()
        entry = self._caps.get(key)
        if entry is not None and entry[1] > now:
            return entry[0]
        if cap is None:
            return None
        self._caps[key] = (cap, now + ttl)
        while len(self._caps) > self._max:
            self._caps.popitem(last=False)
        return cap

    async def aclose(self) -> None:
        self._caps.clear()


class RedisCapRegistry:
    """Caps in Redis (``SET NX`` + TTL): every replica sees the cap the first request set."""

    def __init__(self, url: str, namespace: str, cache_entries: int = 10_000) -> None:
        from .._redis import LoopClients

        self.url = url
        self.namespace = namespace
        self._clients = LoopClients(url)
        self._cache: OrderedDict[str, tuple[Cap, float]] = OrderedDict()
        self._max = cache_entries

    def _client(self) -> Any:
        return self._clients.get()

    async def get_or_create(self, key: str, cap: Cap | None, ttl: float) -> Cap | None:
        now = time.time()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        rkey = f"{self.namespace}:dbudget:{key}"
        client = self._client()
        try:
            if cap is not None:
                await client.set(rkey, cap.encode(), nx=True, ex=max(1, int(ttl)))
            raw = await client.get(rkey)
            remaining = await client.ttl(rkey) if raw is not None else -2
        except Exception as exc:
            raise ApiError(
                503,
                "the budget store is unreachable; try again later",
                "api_error",
                "budget_store_unavailable",
                retry_after=1,
            ) from exc
        if raw is None:
            return None
        got = Cap.decode(raw.decode() if isinstance(raw, bytes) else raw)
        self._cache[key] = (got, now + (remaining if remaining and remaining > 0 else 60))
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return got

    async def aclose(self) -> None:
        await self._clients.aclose()


class BudgetPlanner:
    """Builds the tracker chain of each request (see the module docstring). Trackers of tenants and keys
    are built once and reused; delegated and thread levels are children made per request."""

    def __init__(
        self, config: BudgetsConfig, store: BudgetStore | Callable[[], BudgetStore], caps: CapRegistry
    ) -> None:
        self.config = config
        #: the store, or a factory called on first use (so a call without budgets never imports the stores)
        self._store: Any = store
        self.caps = caps
        self._roots: dict[tuple[str, str | None], BudgetTracker | None] = {}
        #: trackers that only read one level's numbers (the dashboard's), by budget id and limit
        self._readers: dict[tuple[str, BudgetLimit], BudgetTracker] = {}

    @property
    def store(self) -> BudgetStore:
        if callable(self._store) and not hasattr(self._store, "areserve"):
            self._store = self._store()
        return self._store

    def _tracker(self, parent: BudgetTracker | None, budget_id: str, lim: BudgetLimit) -> BudgetTracker:
        if parent is not None:
            return parent.child(lim.tokens, lim.usd, budget_id, period=lim.period)  # type: ignore[arg-type]
        from ..budget import BudgetTracker

        return BudgetTracker(
            lim.tokens,
            total_usd=lim.usd,
            store=self.store,
            budget_id=budget_id,
            period=lim.period,  # type: ignore[arg-type]
            on_unavailable=self.config.on_unavailable,  # type: ignore[arg-type]
            thresholds=self.config.thresholds,
        )

    def root(self, p: Principal) -> BudgetTracker | None:
        """The tenant, team and key levels of a principal (cached by the chain and its caps, so a cap changed
        through the admin API gets a new chain on the same budget ids: what was spent stays spent)."""
        key = p.budget_key
        try:
            return self._roots[key]
        except KeyError:
            pass
        tracker = None
        if p.tenant_budget is not None and p.tenant_budget.capped:
            tracker = self._tracker(None, f"tenant:{p.tenant}", p.tenant_budget)
        if p.team_budget is not None and p.team_budget.capped:
            tracker = self._tracker(tracker, f"team:{p.tenant}:{p.team}", p.team_budget)
        if p.key_budget is not None and p.key_budget.capped:
            tracker = self._tracker(tracker, f"key:{p.key_name}", p.key_budget)
        self._roots[key] = tracker
        return tracker

    async def astate(self, budget_id: str, limit: BudgetLimit) -> BudgetState:
        """The live numbers of one budget level in the shared store (this period's): what every process and
        replica charging ``budget_id`` has spent and holds reserved."""
        key = (budget_id, limit)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = self._tracker(None, budget_id, limit)
        return await reader.astate()

    async def tracker(self, p: Principal, req: BudgetRequest | None) -> BudgetTracker | None:
        """The tracker to put on the request's RunConfig (None: no budget applies)."""
        tracker = self.root(p)
        if req is None:
            return tracker
        cfg = self.config
        if req.budget_id is not None:
            bid = check_id(req.budget_id, "X-LLM-Budget-Id")
            max_tok = cfg.delegated_max_tokens
            if max_tok is not None and req.tokens is not None and req.tokens > max_tok:
                raise ApiError(
                    422,
                    f"X-LLM-Budget-Tokens: at most {max_tok} tokens may be delegated",
                    "invalid_request_error",
                    "invalid_field",
                    "X-LLM-Budget-Tokens",
                )
            if cfg.delegated_max_usd is not None and req.usd is not None and req.usd > cfg.delegated_max_usd:
                raise ApiError(
                    422,
                    f"X-LLM-Budget-USD: at most ${cfg.delegated_max_usd} may be delegated",
                    "invalid_request_error",
                    "invalid_field",
                    "X-LLM-Budget-USD",
                )
            want = None
            if req.tokens is not None or req.usd is not None:
                want = Cap(req.tokens, req.usd, int(time.time() * 1000))
            cap = await self.caps.get_or_create(f"{p.tenant}:{bid}", want, cfg.delegated_ttl_seconds)
            if cap is None:
                raise ApiError(
                    422,
                    f"budget {bid!r} does not exist; the request creating it must set "
                    "X-LLM-Budget-Tokens and / or X-LLM-Budget-USD",
                    "invalid_request_error",
                    "unknown_budget",
                    "X-LLM-Budget-Id",
                )
            tracker = self._tracker(
                tracker, f"delegated:{p.tenant}:{bid}:{cap.created}", BudgetLimit(tokens=cap.tokens, usd=cap.usd)
            )
        if req.thread_id is not None and cfg.max_tokens_per_thread is not None:
            tid = check_id(req.thread_id, "X-LLM-Thread-Id")
            tracker = self._tracker(tracker, f"thread:{p.tenant}:{tid}", BudgetLimit(tokens=cfg.max_tokens_per_thread))
        return tracker

    async def aclose(self) -> None:
        await self.caps.aclose()
        if hasattr(self._store, "areserve"):
            await self._store.aclose()
