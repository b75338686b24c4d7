"""How an agent reaches a model: through the gateway over HTTP, or in process (a Router / adapter).

Both backends take an OpenAI-format message list and a model group (the agent's ``model_preference``) and
return a :class:`ModelReply` with the upstream-reported usage. Failures are LLMError subclasses.
"""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ..errors import (
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMConfigurationError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
)
from ..transport import Transport
from ..types import RunConfig

if TYPE_CHECKING:
    from ..adapter import LLMAdapter
    from ..config import GatewayConfig
    from ..tracing import Tracing

__all__ = ["GatewayBackend", "InProcessBackend", "ModelBackend", "ModelReply"]


@dataclass(frozen=True, slots=True)
class ModelReply:
    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelBackend(ABC):
    """Calls one model group with a message list."""

    name = "backend"

    @abstractmethod
    async def complete(
        self,
        group: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tenant_id: str | None = None,
        agent: str | None = None,
        thread_id: str | None = None,
        timeout: float | None = None,
    ) -> ModelReply:
        """One completion; raises an LLMError on failure."""

    async def count_tokens(self, group: str, messages: Sequence[Mapping[str, Any]]) -> int | None:
        """The prompt's exact input tokens for ``group``'s model, or None where the backend cannot tell (the
        caller then keeps its upper bound). Asked only near a budget's cap."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend opened in the running loop."""


# -- gateway ------------------------------------------------------------------------------------------------


def _error_text(body: bytes) -> tuple[str, str | None]:
    """(message, code) from a gateway error body: {"error": "..."} or {"error": {"message", "code"}}."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:200].decode("utf-8", "replace"), None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err), (err.get("code") or err.get("type"))
    return str(err if err is not None else data)[:200], None


class GatewayBackend(ModelBackend):
    """``POST {url}/complete`` with ``{model: <group>, messages, tenant_id, max_tokens}`` (seed 002).

    Reply: ``{content, model, usage: {prompt_tokens, completion_tokens}}``. A refused connection, a 5xx or
    the gateway's 503 ``{"error": "All providers unavailable"}`` raise LLMProviderUnavailableError.
    """

    name = "gateway"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        transport: Transport | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        #: when set, each call carries the current trace context (``traceparent``) to the gateway
        self.tracing = tracing
        self.timeout = timeout
        self._transport = transport
        self._owns_transport = transport is None

    @property
    def transport(self) -> Transport:
        return self._transport if self._transport is not None else Transport.default()

    async def complete(
        self,
        group: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tenant_id: str | None = None,
        agent: str | None = None,
        thread_id: str | None = None,
        timeout: float | None = None,
    ) -> ModelReply:
        body: dict[str, Any] = {"model": group, "messages": list(messages), "tenant_id": tenant_id}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if agent is not None:
            body["agent"] = agent
            body["task_type"] = "agent"
        cap = timeout or self.timeout
        body["timeout"] = cap
        url = self.url + "/complete"
        where = {"provider": "gateway", "model": group}
        try:
            async with asyncio.timeout(cap):
                headers = self._headers if self.tracing is None else self.tracing.outgoing(self._headers)
                reply = await self.transport.post(url, body, headers=headers)
        except TimeoutError as exc:
            raise LLMTimeoutError(f"the gateway at {self.url} gave no answer within {cap} s", **where) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise LLMProviderUnavailableError(
                f"the gateway at {self.url} is unreachable ({type(exc).__name__}: {exc})", **where
            ) from exc
        if reply.status != 200:
            raise self._error(reply.status, reply.body, reply.headers, where)
        try:
            data = orjson.loads(reply.body)
            usage = data.get("usage") or {}
            return ModelReply(
                content=str(data.get("content") or ""),
                model=str(data.get("model") or group),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
            )
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            raise LLMProviderUnavailableError(f"the gateway sent a malformed reply: {exc}", **where) from exc

    async def count_tokens(self, group: str, messages: Sequence[Mapping[str, Any]]) -> int | None:
        """``POST {url}/count_tokens`` ``{model, messages}`` -> ``{"input_tokens": N, "exact": bool}``; None when
        the count is not exact or the gateway has no such route (an older gateway)."""
        body = {"model": group, "messages": list(messages)}
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self.transport.post(self.url + "/count_tokens", body, headers=self._headers)
            if reply.status != 200:
                return None
            data = orjson.loads(reply.body)
            n = data.get("input_tokens")
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError, AttributeError):
            return None
        return n if data.get("exact") is True and isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None

    @staticmethod
    def _error(status: int, body: bytes, headers: Mapping[str, str], where: dict[str, Any]) -> LLMError:
        message, code = _error_text(body)
        text = f"gateway answered {status}: {message}"
        kw = {**where, "status_code": status, "body": message}
        if status in (401, 403):
            return LLMAuthenticationError(text, **kw)
        if status == 429 or code in ("budget_exceeded", "thread_budget_exhausted"):
            if code in ("budget_exceeded", "thread_budget_exhausted"):
                return LLMBudgetExceededError(text, **kw)
            retry = headers.get("Retry-After")
            try:
                after = float(retry) if retry else None
            except ValueError:
                after = None
            return LLMRateLimitError(text, retry_after=after, **kw)
        if status == 504:
            return LLMTimeoutError(text, **kw)
        if status in (400, 404, 413, 422):
            return LLMInvalidRequestError(text, **kw)
        return LLMProviderUnavailableError(text, **kw)

    async def aclose(self) -> None:
        if self._owns_transport:
            await Transport.default().aclose()


# -- in process ---------------------------------------------------------------------------------------------


class InProcessBackend(ModelBackend):
    """Calls models in this process. A group resolves, in order, to: an injected adapter (``adapters``), a
    group of the Router built from ``config.router``, a model alias of ``config.models``, or a
    ``provider:model`` spec (credentials from ``config.providers``)."""

    name = "in_process"

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        adapters: Mapping[str, LLMAdapter] | None = None,
        router: LLMAdapter | None = None,
    ) -> None:
        self._config = config
        self._adapters = dict(adapters or {})
        self._router = router
        self._router_owned = False
        self._built: dict[str, LLMAdapter] = {}

    def _get_router(self) -> Any:
        if self._router is None and self._config is not None and self._config.router:
            from ..routing.router import Router
            from ..server.catalog import router_config  # the gateway's own filling-in of credentials

            self._router = Router.from_config(router_config(self._config, None) or self._config.router)
            self._router_owned = True
        return self._router

    def _spec(self, spec: str, extra: Mapping[str, Any] | None = None) -> LLMAdapter:
        from ..registry import create_adapter

        key = spec + (orjson.dumps(dict(extra), default=str).decode() if extra else "")
        adapter = self._built.get(key)
        if adapter is None:
            kwargs: dict[str, Any] = {}
            provider = spec.partition(":")[0].lower()
            pc = self._config.providers.get(provider) if self._config is not None else None
            if pc is not None:
                if pc.api_key:
                    kwargs["api_key"] = pc.api_key
                if pc.api_base:
                    kwargs["api_base"] = pc.api_base
                kwargs.update(pc.options or {})
            kwargs.update(extra or {})
            adapter = self._built[key] = create_adapter(spec, **kwargs)
        return adapter

    def resolve(self, group: str, _depth: int = 0) -> tuple[LLMAdapter, str | None]:
        """(adapter, model_name to put on RunConfig) for a model group."""
        if group in self._adapters:
            return self._adapters[group], None
        router = self._get_router()
        if router is not None and router.has_group(group):
            return router, group
        aliases = self._config.models if self._config is not None else {}
        if group in aliases and _depth < 4:
            target = aliases[group]
            if isinstance(target, str):
                if target != group:
                    return self.resolve(target, _depth + 1)
                return self._spec(target), None
            if isinstance(target, Mapping) and target.get("model"):
                extra = dict(target.get("options") or {})
                for k in ("api_base", "api_key"):
                    if target.get(k):
                        extra[k] = target[k]
                if target.get("api_key_env") and os.environ.get(str(target["api_key_env"])):
                    extra["api_key"] = os.environ[str(target["api_key_env"])]
                return self._spec(str(target["model"]), extra), None
        if ":" in group or group in ("local", "fake"):
            return self._spec(group), None
        raise LLMConfigurationError(
            f"model group {group!r} is not a router group, a model alias or a 'provider:model' spec", model=group
        )

    async def complete(
        self,
        group: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tenant_id: str | None = None,
        agent: str | None = None,
        thread_id: str | None = None,
        timeout: float | None = None,
    ) -> ModelReply:
        adapter, model_name = self.resolve(group)
        cfg = RunConfig(
            model_name=model_name,
            max_tokens=max_tokens,
            temperature=temperature,
            timeout=timeout,
            tenant_id=tenant_id,
            agent=agent,
            thread_id=thread_id,
            task_type="agent",
            tracing=self._tracing(),
        )
        resp = await adapter.async_execute_prompt([dict(m) for m in messages], cfg)
        return ModelReply(resp.text, resp.model, resp.usage.input_tokens, resp.usage.output_tokens)

    def _tracing(self) -> Tracing | None:
        if self._config is None or not self._config.tracing.enabled:
            return None
        from ..tracing import build_tracing

        return build_tracing(self._config.tracing)

    async def count_tokens(self, group: str, messages: Sequence[Mapping[str, Any]]) -> int | None:
        """The resolved adapter's exact count (its tokenizer or its provider's count endpoint), else None."""
        from ..providers.reserve import count_prompt

        adapter, model_name = self.resolve(group)
        n, exact = await count_prompt(adapter, [dict(m) for m in messages], RunConfig(model_name=model_name))
        return n if exact else None

    async def aclose(self) -> None:
        for a in self._built.values():
            await a.aclose()
        self._built.clear()
        if self._router_owned and self._router is not None:
            await self._router.aclose()
            self._router = None
        await Transport.default().aclose()
