"""UsageEvent: one record per LLM call (success or failure), the unit of accounting.

Token fields follow :class:`llm_connect.types.Usage`: ``input_tokens`` includes cache reads and writes,
``output_tokens`` includes reasoning tokens, ``total_tokens = input_tokens + output_tokens``.

``estimated`` marks an event whose usage is not the provider's final count: a stream that ended early (the
client hung up, the stream was cut) or a reply without usage, billed on an upper-bound estimate.

The detail kinds of a Usage (1-hour cache writes, audio / image / video tokens) that are not zero travel in
``metadata["token_kinds"]``, and the service tier the provider served the call at in
``metadata["service_tier"]``, so every store that keeps the metadata (the ledger) keeps them too;
:attr:`UsageEvent.usage` puts the kinds back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .._ids import time_ordered_hex
from ..types import USAGE_DETAIL_KINDS, LLMResponse, RunConfig, Usage

if TYPE_CHECKING:
    from .pricing import Pricing

__all__ = ["ENDPOINT_KEY", "SERVICE_TIER_KEY", "TOKEN_KINDS_KEY", "UsageEvent", "new_request_id"]

_UTC = UTC
#: the event metadata key holding the usage's detail kinds that are not zero (``Usage.details()``)
TOKEN_KINDS_KEY = "token_kinds"
#: the event metadata key holding the service tier the provider served the call at
SERVICE_TIER_KEY = "service_tier"
#: the config metadata key naming the API surface a call came in through (``/v1/messages``, ...); it becomes
#: the event's ``endpoint`` (a ledger column), not a metadata entry
ENDPOINT_KEY = "endpoint"


def new_request_id() -> str:
    """A fresh id for a usage event: a UUIDv7 in 32 hex digits (time-ordered, so the ledger's index on it grows
    at its end; 74 random bits per millisecond keep it unique)."""
    return time_ordered_hex()


def _utc(ts: datetime | None) -> datetime:
    if ts is None:
        return datetime.now(_UTC)
    if ts.tzinfo is None:
        return ts.replace(tzinfo=_UTC)
    return ts.astimezone(_UTC)


def _error_type(error: BaseException | str | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, str):
        return error
    return type(error).__name__


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """What one call consumed and cost, and who made it. Immutable; ``metadata`` is not hashed."""

    request_id: str
    timestamp: datetime
    provider: str
    model: str
    tenant_id: str | None = None
    agent: str | None = None
    thread_id: str | None = None
    task_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost_usd: Decimal | None = None
    latency_ms: float = 0.0
    success: bool = True
    error_type: str | None = None
    streamed: bool = False
    deployment: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    #: the usage is an upper-bound estimate, not the provider's final count (see the module docstring)
    estimated: bool = False
    #: the API surface the call came in through (``/v1/chat/completions``, ``/v1/messages``, ``/v1/embeddings``,
    #: ...); None for a library call
    endpoint: str | None = None

    @property
    def usage(self) -> Usage:
        kinds = self.metadata.get(TOKEN_KINDS_KEY)
        details = (
            {k: int(v) for k, v in kinds.items() if k in USAGE_DETAIL_KINDS and isinstance(v, int)}
            if isinstance(kinds, Mapping)
            else {}
        )
        return Usage(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
            **details,
        )

    @property
    def service_tier(self) -> str | None:
        """The service tier the provider served the call at, if it said (``metadata["service_tier"]``)."""
        tier = self.metadata.get(SERVICE_TIER_KEY)
        return tier if isinstance(tier, str) else None

    @classmethod
    def build(
        cls,
        *,
        provider: str,
        model: str,
        usage: Usage | None = None,
        config: RunConfig | None = None,
        request_id: str | None = None,
        timestamp: datetime | None = None,
        cost_usd: Decimal | None = None,
        latency_ms: float = 0.0,
        success: bool = True,
        error: BaseException | str | None = None,
        streamed: bool = False,
        deployment: str | None = None,
        pricing: Pricing | None = None,
        metadata: Mapping[str, Any] | None = None,
        service_tier: str | None = None,
        estimated: bool = False,
    ) -> UsageEvent:
        """The general constructor: fills caller identity from ``config`` and prices with ``pricing``
        when ``cost_usd`` is not given (at ``service_tier``, the tier the provider served the call at)."""
        u = usage or Usage()
        if cost_usd is None and pricing is not None and usage is not None:
            cost_usd = pricing.price(provider, model, u, service_tier=service_tier)
        meta: dict[str, Any] = dict(config.metadata) if config is not None and config.metadata else {}
        if metadata:
            meta.update(metadata)
        details = u.details()
        if details:
            meta[TOKEN_KINDS_KEY] = details
        if service_tier is not None:
            meta[SERVICE_TIER_KEY] = service_tier
        endpoint = meta.pop(ENDPOINT_KEY, None)
        return cls(
            request_id=request_id or new_request_id(),
            timestamp=_utc(timestamp),
            provider=provider,
            model=model,
            tenant_id=config.tenant_id if config is not None else None,
            agent=config.agent if config is not None else None,
            thread_id=config.thread_id if config is not None else None,
            task_type=config.task_type if config is not None else None,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            reasoning_tokens=u.reasoning_tokens,
            total_tokens=u.total_tokens,
            cost_usd=cost_usd,
            latency_ms=float(latency_ms),
            success=success and error is None,
            error_type=_error_type(error),
            streamed=streamed,
            deployment=deployment,
            metadata=meta,
            estimated=estimated,
            endpoint=endpoint if isinstance(endpoint, str) else None,
        )

    @classmethod
    def from_response(
        cls,
        resp: LLMResponse,
        config: RunConfig | None,
        *,
        success: bool = True,
        error: BaseException | str | None = None,
        streamed: bool = False,
        deployment: str | None = None,
        pricing: Pricing | None = None,
        timestamp: datetime | None = None,
        estimated: bool = False,
    ) -> UsageEvent:
        """The event of a completed call. Cost is ``resp.cost_usd``, else priced with ``pricing`` if given.

        The event gets its own unique ``request_id``: providers (and OpenAI-compatible servers) may repeat
        their response ids, and the ledger must never fold two calls into one. The provider's id is kept
        as ``metadata["upstream_request_id"]``.
        """
        return cls.build(
            provider=resp.provider,
            model=resp.model,
            usage=resp.usage,
            config=config,
            metadata={"upstream_request_id": resp.request_id} if resp.request_id else None,
            timestamp=timestamp,
            cost_usd=resp.cost_usd,
            latency_ms=resp.latency_ms,
            success=success,
            error=error,
            streamed=streamed,
            deployment=deployment,
            pricing=pricing,
            service_tier=resp.service_tier,
            estimated=estimated,
        )

    @classmethod
    def from_error(
        cls,
        error: BaseException | str,
        config: RunConfig | None,
        *,
        provider: str | None = None,
        model: str | None = None,
        latency_ms: float = 0.0,
        usage: Usage | None = None,
        streamed: bool = False,
        deployment: str | None = None,
        request_id: str | None = None,
        pricing: Pricing | None = None,
    ) -> UsageEvent:
        """The event of a failed call (no response). Provider and model default to the error's own.

        ``request_id`` is the event's own id (a fresh one when not given); the provider's, if the error
        carries one, is kept as ``metadata["upstream_request_id"]``.
        """
        prov = provider or getattr(error, "provider", None) or "unknown"
        mdl = model or getattr(error, "model", None) or (config.model_name if config is not None else None)
        return cls.build(
            provider=prov,
            model=mdl or "unknown",
            usage=usage,
            config=config,
            request_id=request_id,
            metadata={"upstream_request_id": upstream} if (upstream := getattr(error, "request_id", None)) else None,
            latency_ms=latency_ms,
            success=False,
            error=error,
            streamed=streamed,
            deployment=deployment,
            pricing=pricing,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: ISO-8601 UTC timestamp, cost as a decimal string (or None)."""
        d = asdict(self)
        d["timestamp"] = self.timestamp.isoformat()
        d["cost_usd"] = None if self.cost_usd is None else str(self.cost_usd)
        d["metadata"] = dict(self.metadata)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UsageEvent:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing token fields default to 0."""
        ts = d.get("timestamp")
        timestamp = _utc(datetime.fromisoformat(ts) if isinstance(ts, str) else ts)
        cost = d.get("cost_usd")
        inp = int(d.get("input_tokens") or 0)
        out = int(d.get("output_tokens") or 0)
        total = d.get("total_tokens")
        return cls(
            request_id=str(d["request_id"]),
            timestamp=timestamp,
            provider=str(d.get("provider") or "unknown"),
            model=str(d.get("model") or "unknown"),
            tenant_id=d.get("tenant_id"),
            agent=d.get("agent"),
            thread_id=d.get("thread_id"),
            task_type=d.get("task_type"),
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=int(d.get("cache_read_tokens") or 0),
            cache_write_tokens=int(d.get("cache_write_tokens") or 0),
            reasoning_tokens=int(d.get("reasoning_tokens") or 0),
            total_tokens=int(total) if total is not None else inp + out,
            cost_usd=None if cost is None else Decimal(str(cost)),
            latency_ms=float(d.get("latency_ms") or 0.0),
            success=bool(d.get("success", True)),
            error_type=d.get("error_type"),
            streamed=bool(d.get("streamed", False)),
            deployment=d.get("deployment"),
            metadata=dict(d.get("metadata") or {}),
            estimated=bool(d.get("estimated", False)),
            endpoint=d.get("endpoint"),
        )
