"""Router: model groups of deployments behind one adapter, with strategies, retries, cooldowns and fallbacks.

::

    router = Router(
        groups={"fast": ["ollama:qwen3:8b"],
                "quality": [Deployment("anthropic:claude-sonnet-4", api_key_env="ANTHROPIC_API_KEY", weight=2),
                            Deployment("openai:gpt-4o", api_key_env="OPENAI_API_KEY")]},
        fallbacks={"quality": ["fast"]},
        strategy="latency",
    )
    resp = await router.async_execute_prompt("hi", RunConfig(model_name="quality"))

The router IS an :class:`~llm_connect.adapter.LLMAdapter`: ``RunConfig.model_name`` names the group (None =
the default group) and the RunConfig goes on to the chosen deployment's adapter, so budgets and usage
events happen there, once per attempt (the event's metadata carries ``deployment`` and ``model_group``).
See ``docs/routing.md`` for the failure semantics.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .._batches import flatten
from ..adapter import LLMAdapter
from ..errors import LLMConfigurationError, LLMError, LLMInvalidRequestError, LLMProviderUnavailableError
from ..types import LLMResponse, Message, Prompt, RunConfig, StreamChunk
from .attempts import Call
from .deployment import Deployment, Node, deployment_from
from .health import CooldownPolicy, MemoryRouterState, RetryPolicy, RouterState, Status, current_minute
from .strategies import Strategy, make_strategy

_R = TypeVar("_R", LLMResponse, "EmbeddingResponse")

if TYPE_CHECKING:
    from ..embeddings import EmbeddingInput, EmbeddingResponse

__all__ = ["Router"]

log = logging.getLogger("llm_connect.routing")

GroupSpec = Sequence[Deployment | Mapping[str, Any] | str | LLMAdapter]
FallbackSpec = Mapping[str, Sequence[str] | str] | Sequence[Mapping[str, Sequence[str] | str]] | None

_CONFIG_KEYS = frozenset(
    {
        "groups",
        "fallbacks",
        "context_window_fallbacks",
        "content_policy_fallbacks",
        "default_fallbacks",
        "strategy",
        "latency_buffer",
        "latency_alpha",
        "default_group",
        "num_retries",
        "retry",
        "cooldown",
        "timeout",
        "redis_url",
        "redis_namespace",
        "seed",
    }
)


def _fallback_map(value: FallbackSpec, what: str, groups: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Normalise ``{"a": ["b"]}`` or LiteLLM's ``[{"a": ["b"]}]``; every name must be a group."""
    if value is None:
        return {}
    items: list[tuple[Any, Any]] = []
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for entry in value:
            if not isinstance(entry, Mapping):
                raise LLMConfigurationError(f"{what}: entries must be mappings like {{'quality': ['fast']}}")
            items += list(entry.items())
    else:
        raise LLMConfigurationError(f"{what} must be a mapping group -> [groups], got {type(value).__name__}")
    out: dict[str, tuple[str, ...]] = {}
    known = ", ".join(groups)
    for src, targets in items:
        tlist = [targets] if isinstance(targets, str) else list(targets or [])
        if src not in groups:
            raise LLMConfigurationError(f"{what}[{src!r}]: unknown group {src!r}; groups: {known}")
        for t in tlist:
            if t not in groups:
                raise LLMConfigurationError(f"{what}[{src!r}]: unknown group {t!r}; groups: {known}")
            if t == src:
                raise LLMConfigurationError(f"{what}[{src!r}]: a group cannot fall back to itself")
        out[src] = tuple(dict.fromkeys([*out.get(src, ()), *tlist]))
    return out


class _SafeState:
    """Wraps the shared state so that an outage of it (Redis down) degrades routing instead of failing calls:
    every deployment then looks healthy and counters are skipped. Failures are logged at most every 30 s."""

    __slots__ = ("_last_log", "inner")

    def __init__(self, inner: RouterState) -> None:
        self.inner = inner
        self._last_log = 0.0

    def _warn(self, op: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_log > 30:
            self._last_log = now
            log.warning(
                "router state %r failed in %s (%s: %s); routing without shared state",
                self.inner,
                op,
                type(exc).__name__,
                exc,
            )

    async def snapshot(self, names: Sequence[str], now: float, counted: Sequence[str] = ()) -> list[Status]:
        try:
            return await self.inner.snapshot(names, now, counted)
        except Exception as exc:
            self._warn("snapshot", exc)
            return [Status() for _ in names]

    async def claim_probe(self, name: str, now: float, policy: CooldownPolicy) -> bool:
        try:
            return await self.inner.claim_probe(name, now, policy)
        except Exception as exc:
            self._warn("claim_probe", exc)
            return True

    async def release_probe(self, name: str) -> None:
        try:
            await self.inner.release_probe(name)
        except Exception as exc:
            self._warn("release_probe", exc)

    async def record_start(self, name: str, now: float) -> None:
        try:
            await self.inner.record_start(name, now)
        except Exception as exc:
            self._warn("record_start", exc)

    async def record_success(
        self, name: str, now: float, *, requests: int = 0, tokens: int = 0, probe: bool = False, reset: bool = False
    ) -> None:
        try:
            await self.inner.record_success(name, now, requests=requests, tokens=tokens, probe=probe, reset=reset)
        except Exception as exc:
            self._warn("record_success", exc)

    async def record_failure(self, name: str, now: float, policy: CooldownPolicy, *, trip_for: float | None) -> bool:
        try:
            return await self.inner.record_failure(name, now, policy, trip_for=trip_for)
        except Exception as exc:
            self._warn("record_failure", exc)
            return False


class _GroupView(LLMAdapter):
    """One group of a router as a plain adapter (``router.for_group("fast")``)."""

    provider = "router"
    supports_embeddings = True

    def __init__(self, router: Router, group: str) -> None:
        self.router = router
        self.model = group
        self.timeout = router.timeout

    # The group is handed to the router as is (no copy of the caller's config to rename its model), and the
    # router's coroutine / stream is returned itself: no extra frame to pass through on every resume.

    def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> Coroutine[Any, Any, LLMResponse]:
        return self.router._execute(prompt, config, self.model)

    def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        return flatten(self.router._stream(prompt, config, self.model))

    def astream_batches(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[list[StreamChunk]]:
        return self.router._stream(prompt, config, self.model)

    def aembed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> Coroutine[Any, Any, EmbeddingResponse]:
        return self.router._embed(texts, config, self.model, dimensions)


class Router(LLMAdapter):
    """Model groups of deployments behind the adapter contract. See the module docstring and docs/routing.md.

    ``groups``: group name -> deployments (:class:`Deployment`, config mappings, ``"provider:model"`` strings
    or ready adapters). ``fallbacks``: group -> groups tried when the whole group failed (followed
    transitively, each group once). ``context_window_fallbacks`` / ``content_policy_fallbacks``: groups tried
    after a context overflow / a safety refusal. ``default_fallbacks``: for groups without their own.
    ``strategy``: weighted (default), latency, least_busy, cost, usage, ordered, or a Strategy.
    ``state``: :class:`MemoryRouterState` (default) or
    :class:`~llm_connect.routing.redis_state.RedisRouterState` to share cooldowns and counters.
    ``timeout``: default wall-clock cap for a whole routed call (RunConfig.timeout wins).
    """

    provider = "router"
    #: the group's deployments decide: one that cannot embed is passed over for the next
    supports_embeddings = True

    def __init__(
        self,
        groups: Mapping[str, GroupSpec],
        *,
        fallbacks: FallbackSpec = None,
        context_window_fallbacks: FallbackSpec = None,
        content_policy_fallbacks: FallbackSpec = None,
        default_fallbacks: Sequence[str] | None = None,
        strategy: str | Strategy | None = "weighted",
        num_retries: int | None = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        cooldown: CooldownPolicy | Mapping[str, Any] | None = None,
        state: RouterState | None = None,
        default_group: str | None = None,
        timeout: float | None = None,
        pricing: Any = None,
        latency_alpha: float = 0.3,
        latency_buffer: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not isinstance(groups, Mapping) or not groups:
            raise LLMConfigurationError("a Router needs at least one group: groups={'name': [deployments...]}")
        self.retry = RetryPolicy.from_config(retry)
        if num_retries is not None:
            self.retry = dataclasses.replace(self.retry, num_retries=num_retries)
        self.cooldown = CooldownPolicy.from_config(cooldown)
        self._strategy = make_strategy(strategy, **({"latency_buffer": latency_buffer} if latency_buffer else {}))
        if not 0 < latency_alpha <= 1:
            raise LLMConfigurationError(f"latency_alpha must be in (0, 1], got {latency_alpha!r}")
        self._alpha = latency_alpha
        self._rng = random.Random(seed)
        self._pricing = pricing
        self._pricing_loaded = pricing is not None
        self._state = state if state is not None else MemoryRouterState()
        # in-process state cannot become unreachable: only a shared one needs the degrade-on-outage wrapper
        self._state_proxy: RouterState | _SafeState = (
            self._state if type(self._state) is MemoryRouterState else _SafeState(self._state)
        )
        self._owns_state = False
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise LLMConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._call_timeout = timeout
        if timeout is not None:
            self.timeout = float(timeout)

        self._groups: dict[str, tuple[Node, ...]] = {}
        self._names: dict[str, tuple[str, ...]] = {}
        self._cum: dict[str, tuple[float, ...]] = {}
        self._counted: dict[str, tuple[str, ...]] = {}
        taken: set[str] = set()
        for g, deps in groups.items():
            if not isinstance(g, str) or not g:
                raise LLMConfigurationError(f"group names must be non-empty strings, got {g!r}")
            if isinstance(deps, (str, Mapping, Deployment, LLMAdapter)):
                deps = [deps]
            if not deps:
                raise LLMConfigurationError(f"group {g!r} has no deployments")
            nodes = []
            for i, item in enumerate(deps):
                d = deployment_from(item, where=f"groups[{g!r}][{i}]")
                name = d.name or f"{g}/{d.label}"
                if name in taken:
                    if d.name:
                        raise LLMConfigurationError(f"groups[{g!r}][{i}]: deployment name {name!r} is used twice")
                    name = f"{name}#{i}"
                taken.add(name)
                nodes.append(Node(d, name, g))
            if self._strategy.name == "usage":
                for n in nodes:
                    n.counted = True
            self._groups[g] = tuple(nodes)
            self._names[g] = tuple(n.name for n in nodes)
            self._counted[g] = tuple(n.name for n in nodes if n.counted)
            self._cum[g] = tuple(itertools.accumulate(n.weight for n in nodes))

        self._fallbacks = _fallback_map(fallbacks, "fallbacks", self._groups)
        self._cw = _fallback_map(context_window_fallbacks, "context_window_fallbacks", self._groups)
        self._cp = _fallback_map(content_policy_fallbacks, "content_policy_fallbacks", self._groups)
        self._default_fallbacks = tuple(default_fallbacks or ())
        for t in self._default_fallbacks:
            if t not in self._groups:
                known = ", ".join(self._groups)
                raise LLMConfigurationError(f"default_fallbacks: unknown group {t!r}; groups: {known}")
        self._chains = {g: self._expand(g) for g in self._groups}
        if default_group is not None and default_group not in self._groups:
            known = ", ".join(self._groups)
            raise LLMConfigurationError(f"default_group {default_group!r} is not a group; groups: {known}")
        self.default_group = default_group or next(iter(self._groups))
        self.model = self.default_group
        self._views: dict[str, _GroupView] = {}

    def _expand(self, g: str) -> tuple[str, ...]:
        order, seen, queue = [g], {g}, deque([g])
        while queue:
            x = queue.popleft()
            for t in self._fallbacks.get(x, self._default_fallbacks):
                if t not in seen:
                    seen.add(t)
                    order.append(t)
                    queue.append(t)
        return tuple(order)

    # -- construction from config ------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, state: RouterState | None = None, pricing: Any = None) -> Router:
        """Build from the gateway config's ``router`` section (a mapping; see docs/routing.md)."""
        if not isinstance(config, Mapping):
            raise LLMConfigurationError(f"router config must be a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise LLMConfigurationError(f"router config: unknown key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}")
        groups = config.get("groups")
        if not isinstance(groups, Mapping) or not groups:
            raise LLMConfigurationError("router config: 'groups' must map group names to lists of deployments")
        owns = False
        if state is None and config.get("redis_url"):
            from .redis_state import RedisRouterState

            state = RedisRouterState(config["redis_url"], config.get("redis_namespace") or "llm_connect:router")
            owns = True
        kwargs = {
            k: config[k]
            for k in (
                "fallbacks",
                "context_window_fallbacks",
                "content_policy_fallbacks",
                "default_fallbacks",
                "strategy",
                "num_retries",
                "retry",
                "cooldown",
                "default_group",
                "timeout",
                "latency_alpha",
                "latency_buffer",
                "seed",
            )
            if config.get(k) is not None
        }
        router = cls(groups, state=state, pricing=pricing, **kwargs)
        router._owns_state = owns
        return router

    # -- introspection -----------------------------------------------------------------------------
    @property
    def groups(self) -> dict[str, list[Deployment]]:
        """Group name -> its deployments (a copy)."""
        return {g: [n.deployment for n in nodes] for g, nodes in self._groups.items()}

    @property
    def state(self) -> RouterState:
        return self._state

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    def has_group(self, name: str | None) -> bool:
        return name in self._groups

    def resolve_group(self, name: str | None) -> str:
        """The group a call with ``RunConfig.model_name == name`` goes to (None: the default group)."""
        if not name:
            return self.default_group
        if name in self._groups:
            return name
        raise LLMInvalidRequestError(
            f"unknown model group {name!r}; this router serves: {', '.join(self._groups)}",
            provider="router",
            model=name,
            status_code=404,
        )

    def deployment_names(self, group: str | None = None) -> list[str]:
        if group is None:
            return [n for names in self._names.values() for n in names]
        return list(self._names[self.resolve_group(group)])

    def fallback_chain(self, group: str | None = None) -> list[str]:
        """The groups a call to ``group`` may visit, in order."""
        return list(self._chains[self.resolve_group(group)])

    async def acount_exact_input_tokens(self, messages: list[Message], config: RunConfig) -> int | None:
        """The prompt's exact input tokens on every deployment a call to the group may reach (fallbacks
        included): the largest, or None when one of them has no exact count. Budgets use it near a cap."""
        counts = []
        for g in self._chains[self.resolve_group(config.model_name)]:
            for node in self._groups[g]:
                count = getattr(node.adapter(), "acount_exact_input_tokens", None)
                n = None if count is None else await count(messages, config)
                if n is None:
                    return None
                counts.append(n)
        return max(counts, default=None)

    def describe(self) -> list[dict[str, Any]]:
        """One entry per group in OpenAI /v1/models shape, with deployment facts (never keys)."""
        out = []
        for g, nodes in self._groups.items():
            out.append(
                {
                    "id": g,
                    "object": "model",
                    "owned_by": "llm-connect",
                    "strategy": self._strategy.name,
                    "fallbacks": list(self._fallbacks.get(g, self._default_fallbacks)),
                    "deployments": [{**n.deployment.describe(), "name": n.name} for n in nodes],
                }
            )
        return out

    async def ahealth(self) -> dict[str, list[dict[str, Any]]]:
        """Per group and deployment: available now?, cooldown left, local latency / load, this minute's use."""
        now = time.time()
        minute = current_minute(now)
        out: dict[str, list[dict[str, Any]]] = {}
        for g, nodes in self._groups.items():
            statuses = await self._state_proxy.snapshot(self._names[g], now, self._counted[g])
            rows = []
            for n, st in zip(nodes, statuses, strict=True):
                blocked = st.blocked_until(now, minute, n.rpm, n.tpm)
                rows.append(
                    {
                        "name": n.name,
                        "available": not blocked,
                        "cooldown_remaining": round(max(0.0, st.until - now), 3),
                        "half_open": st.half_open(now),
                        "in_flight": n.in_flight,
                        "latency_ms": None if n.latency is None else round(n.latency * 1000, 3),
                        "ttft_ms": None if n.ttft is None else round(n.ttft * 1000, 3),
                        "rpm_used": st.rpm_used(minute),
                        "tpm_used": st.tpm_used(minute),
                    }
                )
            out[g] = rows
        return out

    async def _blocked_reasons(self, groups: Iterable[str]) -> str:
        now = time.time()
        minute = current_minute(now)
        reasons = []
        for g in groups:
            statuses = await self._state_proxy.snapshot(self._names[g], now, self._counted[g])
            for n, st in zip(self._groups[g], statuses, strict=True):
                if st.until > now:
                    reasons.append(f"{n.name} cooling down for {st.until - now:.1f} s")
                elif st.tripped and st.probe_until > now:
                    reasons.append(f"{n.name} being probed")
                elif st.blocked_until(now, minute, n.rpm, n.tpm):
                    reasons.append(f"{n.name} at its rpm/tpm cap")
        return "; ".join(reasons)

    async def _earliest_back(self, groups: Iterable[str]) -> float | None:
        """Seconds until the first blocked deployment of ``groups`` may take a call again (None: none is)."""
        now = time.time()
        minute = current_minute(now)
        earliest: float | None = None
        for g in groups:
            statuses = await self._state_proxy.snapshot(self._names[g], now, self._counted[g])
            for n, st in zip(self._groups[g], statuses, strict=True):
                b = st.blocked_until(now, minute, n.rpm, n.tpm)
                if b and b > now:
                    earliest = b if earliest is None else min(earliest, b)
        return None if earliest is None else earliest - now

    def for_group(self, group: str) -> LLMAdapter:
        """An adapter that always routes to ``group`` (cached)."""
        g = self.resolve_group(group)
        view = self._views.get(g)
        if view is None:
            view = self._views[g] = _GroupView(self, g)
        return view

    def _load_pricing(self) -> None:
        if not self._pricing_loaded:
            self._pricing_loaded = True
            try:
                from ..providers.base import default_pricing

                self._pricing = default_pricing()
            except Exception as exc:  # pricing data unavailable: cost routing sees every price as unknown
                log.warning("no pricing for the cost strategy (%s: %s)", type(exc).__name__, exc)

    # -- calls -------------------------------------------------------------------------------------
    def _call(self, config: RunConfig | None, stream: bool, group: str | None) -> Call:
        cfg = config if config is not None else RunConfig()
        if not self._pricing_loaded and self._strategy.name == "cost":
            self._load_pricing()
        return Call(self, group if group is not None else self.resolve_group(cfg.model_name), cfg, stream=stream)

    def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> Coroutine[Any, Any, LLMResponse]:
        """A routed call (a coroutine, like any adapter's): the router's own, without a frame around it."""
        return self._execute(prompt, config, None)

    def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        """Stream from the first deployment that produces text. Before the first text chunk a failure moves
        on to the next deployment (nothing has reached the caller); after it, the stream ends with
        LLMProviderUnavailableError ("stream failed after N chunks")."""
        return flatten(self._stream(prompt, config, None))

    def astream_batches(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[list[StreamChunk]]:
        """:meth:`astream` a batch per upstream read (see LLMAdapter.astream_batches). Returns the stream itself
        (an async generator): no extra generator layer on every batch."""
        return self._stream(prompt, config, None)

    def _execute(self, prompt: Prompt, config: RunConfig | None, group: str | None) -> Coroutine[Any, Any, LLMResponse]:
        """A routed call on ``group`` (None: the group config.model_name names, or the default)."""
        work = self._routed(config, group, lambda adapter, cfg: adapter.async_execute_prompt(prompt, cfg))
        if config is not None and config.tracing is not None:
            return config.tracing.call("chat", group or config.model_name, config, work)  # type: ignore[return-value]
        return work

    async def _routed(
        self,
        config: RunConfig | None,
        group: str | None,
        attempt: Callable[[LLMAdapter, RunConfig], Awaitable[_R]],
    ) -> _R:
        """Run ``attempt`` (one call on one deployment's adapter) on the deployments of ``group`` and its
        fallbacks in the plan's order, with retries and cooldowns, until one answers."""
        call = self._call(config, stream=False, group=group)
        while (picked := await call.next_attempt()) is not None:
            node, st, probe = picked
            t0 = time.perf_counter()
            node.in_flight += 1
            try:
                resp = await attempt(node.adapter(), call.config_for(node))
            except LLMError as exc:
                if await call.failed(node, exc, t0, probe):
                    raise
                log.debug("routing: %s failed (%s), trying the next deployment", node.name, type(exc).__name__)
                continue
            except BaseException:
                if probe:
                    await self._state_proxy.release_probe(node.name)
                raise
            finally:
                node.in_flight -= 1
            node.observe(time.perf_counter() - t0, self._alpha, first_token=False)
            await call.succeeded(node, st, resp.usage.total_tokens, probe)  # type: ignore[attr-defined]
            return resp
        raise await call.exhausted()

    def aembed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> Coroutine[Any, Any, EmbeddingResponse]:
        """A routed embedding call on the group ``config.model_name`` names, with the chat calls' retries,
        cooldowns and fallbacks. A deployment that cannot embed (LLMCapabilityError, raised before any
        provider call) is passed over without counting against it."""
        return self._embed(texts, config, None, dimensions)

    def embedding_deployments(self, group: str | None = None) -> list[str]:
        """The deployments of ``group`` and its fallbacks that can embed (builds their adapters)."""
        return [
            n.name
            for g in self._chains[self.resolve_group(group)]
            for n in self._groups[g]
            if n.adapter().supports_embeddings
        ]

    def _embed(
        self, texts: EmbeddingInput, config: RunConfig | None, group: str | None, dimensions: int | None
    ) -> Coroutine[Any, Any, EmbeddingResponse]:
        work = self._routed(config, group, lambda adapter, cfg: adapter.aembed(texts, cfg, dimensions=dimensions))
        if config is not None and config.tracing is not None:
            return config.tracing.call("embeddings", group or config.model_name, config, work)  # type: ignore[return-value]
        return work

    def _stream(self, prompt: Prompt, config: RunConfig | None, group: str | None) -> AsyncIterator[list[StreamChunk]]:
        agen = self._routed_stream(prompt, config, group)
        if config is not None and config.tracing is not None:
            return config.tracing.call_stream(group or config.model_name, config, agen)
        return agen

    async def _routed_stream(
        self, prompt: Prompt, config: RunConfig | None, group: str | None
    ) -> AsyncIterator[list[StreamChunk]]:
        """The routed stream in batches: the batches before the first text or tool-call chunk are held (a failure
        there moves on to the next deployment, nothing has reached the caller) and go out with the batch that
        brings it."""
        call = self._call(config, stream=True, group=group)
        while (picked := await call.next_attempt()) is not None:
            node, st, probe = picked
            t0 = time.perf_counter()
            node.in_flight += 1
            held: list[StreamChunk] = []
            started = False
            sent = 0
            tokens = 0
            agen = None
            try:
                agen = node.adapter().astream_batches(prompt, call.config_for(node))
                async for batch in agen:
                    last = batch[-1]
                    if last.usage is not None:
                        tokens = last.usage.total_tokens
                    if not started:
                        if not any(c.text or c.tool_calls for c in batch):
                            held += batch
                            continue
                        started = True
                        node.observe(time.perf_counter() - t0, self._alpha, first_token=True)
                        if held:
                            batch, held = held + batch, []
                    sent += len(batch)
                    yield batch
                if held:  # an answer without text: only the final chunk(s)
                    yield held
            except LLMError as exc:
                if not started:
                    if await call.failed(node, exc, t0, probe):
                        raise
                    continue
                await call.broken(node, exc, t0)
                raise LLMProviderUnavailableError(
                    f"stream from {node.name} failed after {sent} chunks: {type(exc).__name__}: {exc}",
                    attempts=call.attempts,
                    provider="router",
                    model=call.group,
                ) from exc
            except BaseException:
                if probe:
                    await self._state_proxy.release_probe(node.name)
                raise
            finally:
                node.in_flight -= 1
                if agen is not None:
                    await agen.aclose()  # type: ignore[attr-defined]
            await call.succeeded(node, st, tokens, probe)
            return
        raise await call.exhausted()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the adapters this router built (injected ones belong to the caller) and its own state."""
        for nodes in self._groups.values():
            for n in nodes:
                if n.owned and n._adapter is not None:
                    await n._adapter.aclose()
        if self._owns_state:
            await self._state.aclose()

    def __repr__(self) -> str:
        return f"<Router groups={list(self._groups)} strategy={self._strategy.name}>"
