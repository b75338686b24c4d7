"""The engine behind every surface of the gateway (and the bridge): one config -> one call pipeline.

For each call: principal (tenant) -> model target -> rate limits -> budget chain -> RunConfig -> adapter.
Every upstream attempt emits a UsageEvent to the engine's UsageTracker, whose subscribers write the ledger
(awaited: a call returns only once its event is committed) and update the Prometheus metrics; whatever the
ledger does not store the normal way is counted in ``llm_gateway_ledger_failures_total{kind}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._timeout import Timeout
from ..config import GatewayConfig
from ..errors import LLMBudgetExceededError, LLMError, LLMTimeoutError
from ..types import LLMResponse, NativeRequest, RunConfig, StreamChunk
from ..usage.events import ENDPOINT_KEY
from .auth import Authenticator, Principal
from .budgets import BudgetPlanner, BudgetRequest
from .catalog import ModelCatalog, Target, router_config
from .errors import ApiError, Redactor, from_exception

if TYPE_CHECKING:
    from ..budget import BudgetTracker
    from ..embeddings import EmbeddingResponse
    from ..keys import KeyStore
    from ..tracing import Tracing
    from ..usage import Ledger, UsageTracker
    from .keyring import KeyRing
    from .limits import RateLimiter
    from .metrics import Metrics

__all__ = ["CallSpec", "Engine", "Prepared"]

log = logging.getLogger("llm_connect.server")


@dataclass(slots=True)
class CallSpec:
    """One call as any API shape asks for it (already validated field by field)."""

    prompt: Any
    model: str | None = None
    system_prompt: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    timeout: float | None = None
    stop: Any = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    json_mode: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    tenant_id: str | None = None
    agent: str | None = None
    thread_id: str | None = None
    task_type: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    budget: BudgetRequest | None = None
    #: the API surface the call came in through, as the ledger's ``endpoint`` column records it
    endpoint: str | None = None
    reasoning_effort: str | None = None
    #: the client's own request, passed through to an upstream that speaks its wire format
    native: NativeRequest | None = None


@dataclass(slots=True)
class Prepared:
    """A call ready to run: who, where, with which limits and budget."""

    principal: Principal
    target: Target
    config: RunConfig
    tracker: BudgetTracker | None
    request_id: str
    prompt: Any


def _secrets(config: GatewayConfig) -> list[str]:
    import os

    from ..registry import HTTP_PROVIDERS

    out = list(config.secrets())
    for spec in HTTP_PROVIDERS.values():
        for var in spec.key_env:
            v = os.environ.get(var)
            if v:
                out.append(v)
    return out


def _settle_heap() -> None:
    """A long-lived server: move what start-up built (config, price tables, metrics) out of the cyclic
    collector's way and collect the young generation less often. Measured: +15 % requests/s, since every
    full collection otherwise walks the price database again."""
    import gc

    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, gen2)


#: metadata keys a client may not set: the gateway and the router write them and metrics label by them
RESERVED_METADATA = frozenset(
    {"deployment", "model_group", "api_key", "team", "gateway_request_id", "upstream_request_id", ENDPOINT_KEY}
)


class Engine:
    """Holds everything built from the config; :meth:`prepare` + :meth:`complete` / :meth:`stream` /
    :meth:`embed` run calls."""

    def __init__(self, config: GatewayConfig, *, metrics: bool = True, ledger: bool = True, keys: bool = True) -> None:
        self.config = config
        self.redact = Redactor(lambda: _secrets(config))
        self.auth = Authenticator(config)
        self._want_metrics = metrics
        self._want_ledger = ledger and config.ledger is not None
        self._want_keys = keys and config.auth and config.keys.url is not None
        #: the key store (tenants, teams, API keys; docs/keys.md): None when auth is off or keys.url is off
        self.keys: KeyStore | None = None
        #: keeps ``auth``'s key table in step with ``keys`` on every replica
        self.keyring: KeyRing | None = None
        self.metrics: Metrics | None = None
        self.ledger: Ledger | None = None
        self.usage: UsageTracker | None = None
        self.limiter: RateLimiter | None = None
        self.budgets: BudgetPlanner | None = None
        self.catalog: ModelCatalog | None = None
        #: spans of requests and upstream attempts (the ``tracing:`` section; None: off, nothing imported)
        self.tracing: Tracing | None = None
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._policy_state: Any = None
        self._router_state: Any = None
        self.request_timeout = config.server.request_timeout
        #: the body of GET /openapi.json, built on its first request
        self.openapi_json: bytes | None = None
        #: the web dashboard's state (templates, sessions), made on its first request (llm_connect.server.ui)
        self.dashboard: Any = None
        from .response_store import ResponseStoreHolder

        rc = config.responses
        #: the Responses API's stored responses (opened on first use)
        self.responses = ResponseStoreHolder(rc.store, table=rc.table, ttl_days=rc.ttl_days)

    # -- lifecycle ----------------------------------------------------------------------------------
    def build(self) -> None:
        """Build stores, router, policy, ledger and metrics (no network; models load on first use).
        Raises ConfigError for a bad router / policies section."""
        if not self._started:
            self._build()
            self._started = True

    def warm_up(self) -> None:
        """Import, in a background thread, what the first call will need (the HTTP client, the provider
        registry, the budget stores), so start-up stays short and the first request does not pay for it."""
        import threading

        def work() -> None:
            try:
                import llm_connect.budget
                import llm_connect.registry
                import llm_connect.transport  # noqa: F401

                self.redact.active  # noqa: B018 - resolves the provider keys to scrub
                self._warm_prices()
            except Exception as exc:  # a missing optional extra shows up on the call that needs it
                log.debug("warm-up import failed: %s", exc)
            _settle_heap()

        threading.Thread(target=work, name="llm-connect-warm-up", daemon=True).start()

    def _warm_prices(self) -> None:
        """Resolve the price of every configured deployment now, not on its first request."""
        router = self.catalog.router if self.catalog is not None else None
        pricing = self.catalog.pricing if self.catalog is not None else None
        if router is None or pricing is None:
            return
        for group in router.describe():
            for d in group["deployments"]:
                if d.get("provider") and d.get("model"):
                    pricing.price_per_1k(d["provider"], d["model"])

    async def start(self) -> None:
        """:meth:`build`, from a running event loop (idempotent); starts following the key store."""
        if not self._started:
            if self._start_lock is None:
                self._start_lock = asyncio.Lock()
            async with self._start_lock:
                self.build()
        if self.keyring is not None and not self.keyring.running:
            self.keyring.start()

    def _build(self) -> None:
        cfg = self.config
        if cfg.agents:  # the gateway serves the agents: a broken section is a start-up error here, not later
            from ..agents.settings import AgentSettings

            try:
                AgentSettings.from_config(cfg)
            except LLMError as exc:
                from ..config import ConfigError

                raise ConfigError("agents", exc.message, source=cfg.source) from None
        if cfg.tracing.enabled:
            from ..tracing import build_tracing

            self.tracing = build_tracing(cfg.tracing)
        from ..usage import Pricing, UsageTracker

        pricing = Pricing(cfg.pricing) if cfg.pricing else None
        self.usage = UsageTracker()
        if self._want_metrics:
            from .metrics import Metrics

            self.metrics = Metrics()
            self.usage.subscribe(self.metrics)
        if self._want_ledger and cfg.ledger is not None:
            self.ledger = self._open_ledger()
            self.ledger.subscriber(self.usage)  # awaited: a call returns once its event is committed
        if self._want_keys:
            self._open_keys()
        redis = cfg.redis
        router = None
        rcfg = router_config(cfg, pricing)
        if rcfg is not None:
            from ..routing import Router

            state = None
            if redis is not None and not rcfg.get("redis_url"):  # cooldowns shared by every replica
                from ..routing.redis_state import RedisRouterState

                # snapshots read at most every cache_seconds (a replica's own changes are seen at once)
                state = RedisRouterState(redis.url, f"{redis.namespace}:router", cache_seconds=0.1)
                self._router_state = state
            try:
                router = Router.from_config(rcfg, pricing=pricing, state=state)
            except LLMError as exc:
                from ..config import ConfigError

                raise ConfigError("router", exc.message, source=cfg.source) from exc
        policy = None
        if cfg.policies:
            from ..routing import RoutingPolicy

            if redis is not None:
                from ..routing.redis_state import RedisRouterState

                self._policy_state = RedisRouterState(redis.url, f"{redis.namespace}:policy", cache_seconds=0.1)
            try:
                policy = RoutingPolicy.from_config(
                    cfg.policies, router=router, pricing=pricing, state=self._policy_state
                )
            except LLMError as exc:
                from ..config import ConfigError

                raise ConfigError("policies", exc.message, source=cfg.source) from exc
        self.catalog = ModelCatalog(cfg, router, pricing, policy)
        store: Any
        if redis is not None:
            from ..budget import RedisBudgetStore
            from ..budget.leases import LeasedBudgetStore
            from .budgets import RedisCapRegistry
            from .limits import RedisRateLimiter

            # big budgets are spent from per-worker slices (no round trip per call); small ones directly
            store = LeasedBudgetStore(RedisBudgetStore(redis.url, namespace=redis.namespace))
            caps: Any = RedisCapRegistry(redis.url, redis.namespace)
            self.limiter = RedisRateLimiter(redis.url, redis.namespace)
        else:
            from .budgets import MemoryCapRegistry
            from .limits import MemoryRateLimiter

            store = _memory_store
            caps = MemoryCapRegistry()
            self.limiter = MemoryRateLimiter()
        self.budgets = BudgetPlanner(cfg.budgets, store, caps)

    def _open_ledger(self) -> Ledger:
        from ..usage.ledger import Ledger

        lc = self.config.ledger
        assert lc is not None
        kwargs: dict[str, Any] = {"table": lc.table}
        if self.metrics is not None:  # every event the ledger does not store the normal way is counted
            kwargs["on_failure"] = self.metrics.ledger_failed
        low = lc.url.lower()
        if not low.startswith(("postgresql://", "postgres://")):
            kwargs["synchronous"] = lc.synchronous
        try:
            return Ledger.open(lc.url, **kwargs)
        except Exception as exc:  # a path that cannot be written, a database that cannot be reached
            from ..config import ConfigError

            raise ConfigError("ledger.url", f"cannot open the ledger: {exc}", source=self.config.source) from None

    def _open_keys(self) -> None:
        from ..config import ConfigError
        from ..keys import KeyStore
        from ..keys.merge import config_snapshot
        from .keyring import KeyRing

        cfg = self.config
        kc = cfg.keys
        assert kc.url is not None
        store = None
        try:
            store = KeyStore.open(kc.url, table_prefix=kc.table_prefix)
            store.seed(cfg)
            ring = KeyRing(store, self.auth, config_snapshot(cfg), poll_seconds=kc.poll_seconds, redis=cfg.redis)
            ring.load()
        except Exception as exc:  # a path that cannot be written, a database that cannot be reached
            if store is not None:
                store.close()
            why = (
                exc.message if isinstance(exc, LLMError) else f"cannot open the key store: {type(exc).__name__}: {exc}"
            )
            raise ConfigError("keys.url", " ".join(why.split()), source=cfg.source) from None
        self.keys, self.keyring = store, ring

    async def aclose(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.keyring is not None:
            try:
                await self.keyring.aclose()
            except Exception as exc:
                log.debug("close failed: %s", exc)
            self.keyring = self.keys = None
        closers = (self.catalog, self.budgets, self.limiter, self._policy_state, self._router_state, self.dashboard)
        for closer in closers:
            if closer is not None:
                try:
                    await closer.aclose()
                except Exception as exc:
                    log.debug("close failed: %s", exc)
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)
        if self.tracing is not None:  # the spans still in the exporter's batch, before the process ends
            try:
                await asyncio.to_thread(self.tracing.flush)
            except Exception as exc:
                log.debug("flushing spans failed: %s", exc)
        await asyncio.to_thread(self.responses.close)
        import sys

        if "llm_connect.transport" in sys.modules:  # close the HTTP pool only if something opened it
            from ..transport import Transport

            await Transport.default().aclose()

    # -- calls --------------------------------------------------------------------------------------
    async def prepare(self, principal: Principal, spec: CallSpec, request_id: str) -> Prepared:
        """Resolve the model, admit the call under rate limits, build its budget chain and RunConfig."""
        await self.start()
        assert self.catalog is not None and self.budgets is not None and self.limiter is not None
        principal = self.auth.for_tenant(principal, spec.tenant_id)
        target = self.catalog.resolve(spec.model, principal, spec.task_type)
        if principal.scopes:
            try:
                await self.limiter.acquire(principal.scopes)
            except ApiError:
                if self.metrics is not None:
                    self.metrics.rate_limited.labels(principal.tenant).inc()
                raise
        tracker = await self.budgets.tracker(principal, spec.budget)
        max_tokens = spec.max_tokens
        if max_tokens is None and tracker is not None:
            # a budgeted call reserves its worst case; without max_tokens the adapter would reserve all that is
            # left, serialising the budget's callers. Large budgets get a default cap instead; small ones (a
            # thread, a delegation) keep the adapter's behaviour: the call may use what remains.
            default = self.config.budgets.default_max_tokens
            smallest = _smallest_token_cap(tracker)
            if smallest is None or smallest >= 4 * default:
                max_tokens = default
        # the client's metadata, minus the keys the gateway itself sets and reads (metric labels, the ledger)
        md = {k: v for k, v in (spec.metadata or {}).items() if k not in RESERVED_METADATA}
        md["gateway_request_id"] = request_id
        if spec.endpoint is not None:
            md[ENDPOINT_KEY] = spec.endpoint
        if principal.key_name:
            md["api_key"] = principal.key_name
        if principal.team:
            md["team"] = principal.team
        try:
            cfg = RunConfig(
                model_name=target.model_name,
                temperature=spec.temperature,
                max_tokens=max_tokens,
                timeout=spec.timeout,
                stop=spec.stop,
                seed=spec.seed,
                top_p=spec.top_p,
                system_prompt=spec.system_prompt,
                response_format=spec.response_format,
                json_mode=spec.json_mode,
                tools=spec.tools,
                tool_choice=spec.tool_choice,
                tenant_id=principal.tenant,
                agent=spec.agent,
                thread_id=spec.thread_id,
                task_type=spec.task_type,
                budget_tracker=tracker,
                usage_tracker=self.usage,
                reasoning_effort=spec.reasoning_effort,
                native=spec.native,
                tracing=self.tracing,
            )
        except LLMError as exc:
            raise ApiError(422, exc.message, "invalid_request_error", "invalid_field") from exc
        # set after the checks: the client's part was bounded at the door (a 422 naming ``metadata``); the keys
        # the gateway adds are not the client's to pay for
        cfg.metadata = md
        return Prepared(principal, target, cfg, tracker, request_id, spec.prompt)

    def _failed(self, prep: Prepared, exc: BaseException) -> ApiError:
        if isinstance(exc, LLMBudgetExceededError) and self.metrics is not None:
            self.metrics.budget_rejections.labels(prep.principal.tenant).inc()
        return from_exception(exc, self.redact)

    def _guard(self, prep: Prepared) -> float:
        # the caller's timeout is enforced by the adapter (and the router, across attempts); this guard only
        # makes sure no request outlives server.request_timeout
        t = prep.config.timeout
        return min(t + 5.0, self.request_timeout) if t else self.request_timeout

    async def complete(self, prep: Prepared) -> LLMResponse:
        """Run a prepared call to completion. Errors come out as ApiError."""
        assert self.limiter is not None
        try:
            with Timeout(self._guard(prep)):
                resp = await prep.target.adapter.async_execute_prompt(prep.prompt, prep.config)
        except TimeoutError as exc:
            raise self._failed(prep, LLMTimeoutError(f"no answer within {self._guard(prep):g} s")) from exc
        except (LLMError, ValueError, TypeError) as exc:
            raise self._failed(prep, exc) from exc
        if prep.principal.scopes:
            await self.limiter.add_tokens(prep.principal.scopes, resp.usage.total_tokens)
        return resp

    async def embed(self, prep: Prepared, dimensions: int | None = None) -> EmbeddingResponse:
        """Run a prepared embedding call (``prep.prompt``: the texts). Errors come out as ApiError."""
        assert self.limiter is not None
        try:
            with Timeout(self._guard(prep)):
                resp = await prep.target.adapter.aembed(prep.prompt, prep.config, dimensions=dimensions)
        except TimeoutError as exc:
            raise self._failed(prep, LLMTimeoutError(f"no answer within {self._guard(prep):g} s")) from exc
        except (LLMError, ValueError, TypeError) as exc:
            raise self._failed(prep, exc) from exc
        if prep.principal.scopes:
            await self.limiter.add_tokens(prep.principal.scopes, resp.usage.total_tokens)
        return resp

    async def stream(self, prep: Prepared) -> AsyncIterator[list[StreamChunk]]:
        """Stream a prepared call, a list of chunks per upstream read (``LLMAdapter.astream_batches``). Errors
        come out as ApiError; closing the iterator closes the upstream stream and settles the budget on what was
        produced."""
        assert self.limiter is not None
        agen = prep.target.adapter.astream_batches(prep.prompt, prep.config)
        tokens = 0
        try:
            with Timeout(self._guard(prep)):
                async for batch in agen:
                    usage = batch[-1].usage  # the final chunk, the one with usage, ends its batch
                    if usage is not None:
                        tokens = usage.total_tokens
                    yield batch
        except TimeoutError as exc:
            raise self._failed(prep, LLMTimeoutError(f"no answer within {self._guard(prep):g} s")) from exc
        except (LLMError, ValueError, TypeError) as exc:
            raise self._failed(prep, exc) from exc
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
            if prep.principal.scopes and tokens:
                await self.limiter.add_tokens(prep.principal.scopes, tokens)

    async def budget_remaining(self, prep: Prepared) -> dict[str, Any] | None:
        """Remaining tokens / USD of the request's innermost budget (for delegated budgets)."""
        t = prep.tracker
        if t is None:
            return None
        try:
            tokens = await t.aremaining()
            usd = await t.aremaining_usd() if t.needs_usd else None
        except LLMError:
            return None
        return {"remaining_tokens": tokens, "remaining_usd": None if usd is None else str(usd)}


def _smallest_token_cap(tracker: BudgetTracker) -> int | None:
    smallest = None
    t: BudgetTracker | None = tracker
    while t is not None:
        if t.total is not None:
            smallest = t.total if smallest is None else min(smallest, t.total)
        t = t.parent
    return smallest


def _memory_store() -> Any:
    from ..budget import MemoryBudgetStore

    return MemoryBudgetStore()
