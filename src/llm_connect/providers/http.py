"""HTTPAdapter: a provider = a wire codec + auth + base URL. OpenAI-compatible vendors are data rows.

``ProviderSpec`` describes a provider that speaks one of the wire formats in ``llm_connect.wire``;
``HTTPAdapter`` drives any of them over the shared aiohttp transport. Network failures are mapped to
the error tree here, once. A provider whose wire format has an embedding API (``llm_connect.wire.embeddings``:
OpenAI and every OpenAI-compatible row, Gemini, Ollama) embeds too.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from types import ModuleType
from typing import Any

import aiohttp
import orjson
from yarl import URL

from .._batches import visible
from .._timeout import Timeout
from ..embeddings import EmbeddingResponse
from ..errors import LLMConfigurationError, LLMError, LLMProviderUnavailableError, LLMTimeoutError
from ..transport import Transport
from ..types import LLMResponse, Message, RunConfig, StreamChunk, Usage
from ..wire import WireRequest
from ..wire.embeddings import CODECS as EMBEDDING_CODECS
from ..wire.embeddings import gemini_count_request, parse_gemini_count
from ._deployment import deployment_route
from .base import BaseAdapter
from .spec import ProviderSpec
from .tokens import OPENAI_FRAME_PER_MESSAGE, OPENAI_FRAME_PER_PROMPT, framed_count, tiktoken_encoder

__all__ = ["HTTPAdapter", "ProviderSpec"]  # ProviderSpec re-exported from .spec

log = logging.getLogger("llm_connect")


#: everything the HTTP client can raise about the exchange itself (connection, protocol, bad URL)
_NETWORK_ERRORS = (aiohttp.ClientError, ConnectionError, OSError)


def _checked_base(base: str, provider: str) -> str:
    """``http(s)://host[:port][/path]`` without a trailing slash. A bare ``host:port`` (how OLLAMA_HOST is
    often written) gets ``http://``; anything else is a configuration error, not a failed request."""
    base = base.strip().rstrip("/")
    if "://" not in base:
        base = "http://" + base
    scheme, _, rest = base.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise LLMConfigurationError(f"api_base for {provider!r} must be an http(s) URL, got {base!r}")
    return base


class HTTPAdapter(BaseAdapter):
    """Adapter for any provider described by a :class:`ProviderSpec`."""

    def __init__(
        self,
        spec: ProviderSpec,
        model: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        transport: Transport | None = None,
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        # a deployment-addressed row (Azure) takes its endpoint, api_version, models and token options here
        route = None
        if spec.deployments is not None and model:
            route = deployment_route(spec, model, api_base, api_key or spec.find_key(), options)
        super().__init__(provider=spec.name, model=model, **options)
        if not model:
            raise LLMConfigurationError(f"provider {spec.name!r} needs a model name, e.g. '{spec.name}:<model>'")
        self.spec = spec
        env_base = os.environ.get(spec.base_env) if spec.base_env else None
        self._route = route
        self.api_base = _checked_base(route.base if route else (api_base or env_base or spec.base_url), spec.name)
        key = api_key or spec.find_key()
        if key is not None:
            key = key.strip()  # a key read from a file often ends in a newline
            if not key.isprintable():
                raise LLMConfigurationError(f"the API key for {spec.name!r} contains control characters")
        if key is None and spec.key_required and api_base is None and env_base is None and route is None:
            names = " or ".join(spec.key_env) or "an api_key"
            raise LLMConfigurationError(
                f"no API key for provider {spec.name!r}: set {names} or pass api_key=...",
                provider=spec.name,
                model=model,
            )
        self._wire: ModuleType = importlib.import_module(f"llm_connect.wire.{spec.wire}")
        self.supports_embeddings = spec.embedding_format in EMBEDDING_CODECS
        #: the tiktoken text counter once looked up (None: there is none); unset until the first exact count
        self._text_counter: Callable[[str], int] | None = None
        self._text_counter_known = False
        auth = self._auth_headers(key)
        if not auth and route is not None and route.token:  # Entra ID: a bearer token instead of the key
            auth = {"Authorization": f"Bearer {route.token}"}
        self._headers = auth | dict(spec.headers) | dict(headers or {})
        self._transport = transport or Transport.default()

    def _auth_headers(self, key: str | None) -> dict[str, str]:
        if not key or self.spec.auth == "none":
            return {}
        if self.spec.auth == "bearer":
            return {"Authorization": f"Bearer {key}"}
        return {self.spec.auth: key}

    def _price_key(self, model: str | None) -> tuple[str, str]:
        """The reported model, else the model the deployment is mapped to (Azure ``models=``: before the reply, or
        when the reply names only the deployment), else the name."""
        mapped = self._route.price_model if self._route is not None else None
        if mapped and (not model or model == self.model):
            return self.provider, mapped
        return self.provider, model or self.model

    def _usage(self, usage: Usage) -> Usage:
        """Usage in our convention: a row whose provider reports reasoning beside completion tokens (xAI) gets
        them added to output."""
        if self.spec.reasoning_outside_output and usage.reasoning_tokens:
            return usage + Usage(output_tokens=usage.reasoning_tokens)
        return usage

    def _kept(self, data: Any) -> dict[str, Any]:
        """The top-level reply fields the row keeps (Perplexity citations, search_results)."""
        if not self.spec.keep_fields or not isinstance(data, Mapping):
            return {}
        return {k: data[k] for k in self.spec.keep_fields if data.get(k) is not None}

    async def _outgoing(
        self, url: str, body: Any, headers: dict[str, str], query: dict[str, str] | None, config: RunConfig
    ) -> tuple[str | URL, Any, dict[str, str], dict[str, str] | None]:
        """The request as it is sent: (URL, body, headers, query), with the trace context when the call is traced
        and per-request credentials (an Entra ID token provider's) on top of the prepared headers. A signing
        provider (Bedrock's SigV4) or one with its own tokens (Vertex AI) extends this."""
        if config.tracing is not None:
            headers = config.tracing.outgoing(headers)
        if self._route is None or self._route.token_provider is None:
            return url, body, headers, query
        return url, body, headers | await self._route.bearer_headers(), query

    def __repr__(self) -> str:  # never show the key
        return f"<HTTPAdapter {self.provider}:{self.model} at {self.api_base}>"

    # -- plumbing ----------------------------------------------------------------------------------
    def _speaks(self, config: RunConfig) -> bool:
        """Whether the call's native request (``RunConfig.native``) is in this adapter's wire format: it is then
        sent as it is (passthrough) instead of being built from the messages."""
        native = config.native
        return native is not None and native.wire == self.spec.wire and hasattr(self._wire, "build_native_request")

    def _prepare(
        self, messages: list[Message], config: RunConfig, max_tokens: int | None, stream: bool
    ) -> tuple[str, dict[str, Any], dict[str, str], dict[str, str] | None]:
        if config.native is not None and self._speaks(config):
            mt = max_tokens if max_tokens is not None else config.max_tokens
            req = self._wire.build_native_request(self.model, config.native, stream=stream, max_tokens=mt)
        else:
            req = self._wire.build_request(self.model, messages, config, stream=stream, max_tokens=max_tokens)
        field = self.spec.max_tokens_field
        if field != "max_tokens" and "max_tokens" in req.body and field not in req.body:
            req.body[field] = req.body.pop("max_tokens")
        for name in self.spec.drop_fields:
            req.body.pop(name, None)
        req = self._located(req, stream)
        headers = self._headers | req.headers
        if config.extra_headers:
            headers = headers | config.extra_headers
        return self.api_base + req.path, req.body, headers, self._query(req.query)

    def _located(self, req: WireRequest, stream: bool) -> WireRequest:
        """The codec's request as this provider addresses it (its path under ``api_base``): as built here; a
        provider that routes the same wire format under other paths (Vertex AI) overrides it."""
        return req

    def _query(self, query: dict[str, str] | None) -> dict[str, str] | None:
        """The request's query with the route's (Azure ``api-version``) under it."""
        if self._route is not None and self._route.query:
            return {**self._route.query, **(query or {})}
        return query

    def _upstream_error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> LLMError:
        body: Any
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")[:2000]
        try:
            err = self._wire.classify_error(status, body, headers)
        except Exception:  # an error body in no shape the codec knows: classify by status alone
            err = self._wire.classify_error(status, None, headers)
        err.provider, err.model = self.provider, self.model
        err.request_id = err.request_id or _request_id(headers)
        return err

    def _network_error(self, exc: BaseException) -> LLMError:
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return LLMTimeoutError(f"upstream timed out: {exc}", provider=self.provider, model=self.model)
        return LLMProviderUnavailableError(
            f"cannot reach {self.api_base}: {type(exc).__name__}: {exc}", provider=self.provider, model=self.model
        )

    # -- exact input counts (budgets) ---------------------------------------------------------------
    async def acount_exact_input_tokens(self, messages: list[Message], config: RunConfig) -> int | None:
        """OpenAI models: tiktoken (when installed and its encoding loads). Anthropic and Gemini: the
        count-tokens endpoint (one request, no tokens billed). Others: None (the budget keeps the bound)."""
        how = self.spec.input_count
        if how == "tiktoken":
            if not self._text_counter_known:
                try:  # a download that hangs must not hold the call: the bound serves meanwhile
                    counter = await asyncio.wait_for(asyncio.to_thread(tiktoken_encoder, self.model), 10)
                except TimeoutError:
                    return None
                self._text_counter, self._text_counter_known = counter, True
            if self._text_counter is None:
                return None
            return framed_count(
                messages,
                config,
                self._text_counter,
                per_message=OPENAI_FRAME_PER_MESSAGE,
                per_prompt=OPENAI_FRAME_PER_PROMPT,
            )
        if how == "endpoint" and hasattr(self._wire, "build_count_request"):
            return await self._count_endpoint(messages, config)
        return None

    async def _count_endpoint(self, messages: list[Message], config: RunConfig) -> int:
        if config.native is not None and self._speaks(config) and hasattr(self._wire, "build_native_count_request"):
            req = self._wire.build_native_count_request(self.model, config.native)
        else:
            req = self._wire.build_count_request(self.model, messages, config)
        req = self._located(req, False)
        headers = self._headers | req.headers
        if config.extra_headers:
            headers = headers | config.extra_headers
        cap = self._cap(config)
        url = self.api_base + req.path
        try:
            async with Timeout(cap):
                # a token provider's fetch (and a signature) is under the cap too
                target, data, headers, query = await self._outgoing(url, req.body, headers, req.query, config)
                reply = await self._transport.post(target, data, headers=headers, params=query)
        except TimeoutError:
            raise LLMTimeoutError(f"no token count within {cap} s", provider=self.provider, model=self.model) from None
        except _NETWORK_ERRORS as exc:
            raise self._network_error(exc) from None
        if reply.status >= 400:
            raise self._upstream_error(reply.status, reply.body, reply.headers)
        try:
            return int(self._wire.parse_count_response(orjson.loads(reply.body)))
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
            raise LLMProviderUnavailableError(
                f"unexpected token count reply: {exc}", provider=self.provider, model=self.model
            ) from exc

    # -- calls -------------------------------------------------------------------------------------
    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        url, body, headers, query = self._prepare(messages, config, max_tokens, stream=False)
        target, data, headers, query = await self._outgoing(url, body, headers, query, config)
        try:
            reply = await self._transport.post(target, data, headers=headers, params=query)
        except _NETWORK_ERRORS as exc:
            # "from None": aiohttp errors may carry the request's headers (the key) in their repr
            raise self._network_error(exc) from None
        if reply.status >= 400:
            raise self._upstream_error(reply.status, reply.body, reply.headers)
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError as exc:
            raise LLMProviderUnavailableError(
                f"malformed JSON in the reply (HTTP {reply.status})",
                provider=self.provider,
                model=self.model,
                status_code=reply.status,
            ) from exc
        try:
            parsed = self._wire.parse_response(data)
        except LLMError as err:
            err.provider, err.model = self.provider, self.model
            raise
        except Exception as exc:  # any reply shape the codec cannot read
            raise LLMProviderUnavailableError(
                f"unexpected reply shape: {type(exc).__name__}: {exc}", provider=self.provider, model=self.model
            ) from exc
        return LLMResponse(
            text=parsed.text,
            model=parsed.model or self.model,
            provider=self.provider,
            usage=self._usage(parsed.usage),
            finish_reason=parsed.finish_reason,
            request_id=parsed.request_id or _request_id(reply.headers),
            tool_calls=parsed.tool_calls,
            raw=data,
            service_tier=parsed.service_tier,
            native=config.native is not None and self._speaks(config),
            reasoning=parsed.reasoning,
            provider_fields=self._kept(data) or None,
        )

    async def _stream_batches(
        self, messages: list[Message], config: RunConfig, max_tokens: int | None
    ) -> AsyncIterator[list[StreamChunk]]:
        """The upstream's stream, the chunks of one read per list. The list in which the codec reaches its
        terminal event (OpenAI's finish_reason or ``[DONE]``, Anthropic's ``message_stop``) is held until the
        body ends, and the final chunk (usage, finish reason) joins it: a stream that arrives in one read is one
        list. Only what follows the terminal event (the usage chunk, ``[DONE]``) can be waited for."""
        url, body, headers, query = self._prepare(messages, config, max_tokens, stream=True)
        decoder = self._wire.StreamDecoder()
        #: passthrough: the upstream's events not yet handed on (see StreamChunk.raw_events)
        raw: list[tuple[str | None, dict[str, Any]]] | None = [] if self._speaks(config) else None
        #: reply fields the provider row keeps (Perplexity citations), gathered over the events
        kept: dict[str, Any] | None = {} if self.spec.keep_fields else None
        feed = decoder.feed
        held: list[StreamChunk] = []
        try:
            target, data, headers, query = await self._outgoing(url, body, headers, query, config)
            async with self._transport.stream(
                target, data, framing=self._wire.FRAMING, headers=headers, params=query
            ) as reply:
                if reply.status >= 400:
                    raise self._upstream_error(reply.status, await reply.read_body(), reply.headers)
                #: nothing to do per event but decode it (no kept fields, no passthrough, usage as reported)
                plain = kept is None and raw is None and not self.spec.reasoning_outside_output
                async for events in reply.batches():
                    if plain:
                        for event, data in events:
                            held += feed(event, data)
                    else:
                        for event, data in events:
                            if kept is not None:
                                kept.update(self._kept(data))
                            if raw is not None:
                                raw.append((event, data))
                            for chunk in feed(event, data):
                                if chunk.usage_so_far is not None:
                                    chunk.usage_so_far = self._usage(chunk.usage_so_far)
                                if raw and visible(chunk):
                                    chunk.raw_events, raw = raw, []
                                held.append(chunk)
                    if held and not decoder.done:
                        out, held = held, []
                        yield out
            final = decoder.finish()
            if final.usage is not None:
                final.usage = self._usage(final.usage)
            if raw:
                final.raw_events = raw
            final.provider_fields = kept or None
            held.append(final)
            out, held = held, []
            yield out
        except Exception as exc:
            err = self._stream_error(exc)
            if held:  # what was read before the failure reaches the caller (and the stream's accounting) first
                out, held = held, []
                yield out
            if err is exc:
                raise
            # "from None" for network errors: aiohttp errors may carry the request's headers (the key) in their repr
            raise err from (None if isinstance(exc, _NETWORK_ERRORS) else exc)

    def _stream_error(self, exc: Exception) -> LLMError:
        """A failure of a stream as an LLMError of this provider: the codec's (an error event), the network's,
        or malformed event data."""
        if isinstance(exc, LLMError):
            exc.provider, exc.model = self.provider, self.model
            return exc
        if isinstance(exc, _NETWORK_ERRORS):
            return self._network_error(exc)
        return LLMProviderUnavailableError(
            f"malformed stream event: {type(exc).__name__}: {exc}", provider=self.provider, model=self.model
        )

    # -- embeddings ----------------------------------------------------------------------------------
    async def _post_json(self, req: WireRequest, config: RunConfig) -> tuple[Any, Mapping[str, str]]:
        """POST one request of this provider's; the reply's JSON and headers, or the mapped LLMError."""
        req = self._located(req, False)
        headers = self._headers | req.headers
        if config.extra_headers:
            headers = headers | config.extra_headers
        target, data, headers, query = await self._outgoing(
            self.api_base + req.path, req.body, headers, self._query(req.query), config
        )
        try:
            reply = await self._transport.post(target, data, headers=headers, params=query)
        except _NETWORK_ERRORS as exc:
            raise self._network_error(exc) from None  # aiohttp errors may carry the key in their repr
        if reply.status >= 400:
            raise self._upstream_error(reply.status, reply.body, reply.headers)
        try:
            return orjson.loads(reply.body), reply.headers
        except orjson.JSONDecodeError as exc:
            raise LLMProviderUnavailableError(
                f"malformed JSON in the reply (HTTP {reply.status})",
                provider=self.provider,
                model=self.model,
                status_code=reply.status,
            ) from exc

    async def _embed(self, texts: list[str], config: RunConfig, dimensions: int | None) -> EmbeddingResponse:
        codec = EMBEDDING_CODECS[str(self.spec.embedding_format)]
        vectors: list[list[float]] = []
        tokens: int | None = 0
        model: str | None = None
        request_id: str | None = None
        data: Any = None
        for req in codec.build(self.model, texts, dimensions, config):
            data, headers = await self._post_json(req, config)
            try:
                parsed = codec.parse(data)
            except Exception as exc:  # any reply shape the codec cannot read
                raise LLMProviderUnavailableError(
                    f"unexpected embedding reply shape: {type(exc).__name__}: {exc}",
                    provider=self.provider,
                    model=self.model,
                ) from exc
            vectors += parsed.vectors
            tokens = None if tokens is None or parsed.input_tokens is None else tokens + parsed.input_tokens
            model = model or parsed.model
            request_id = request_id or _request_id(headers)
        if len(vectors) != len(texts):
            raise LLMProviderUnavailableError(
                f"the provider returned {len(vectors)} vectors for {len(texts)} inputs",
                provider=self.provider,
                model=self.model,
            )
        if tokens is None and codec.name == "gemini":
            tokens = await self._gemini_count(texts, config)
        return EmbeddingResponse(
            vectors=vectors,
            model=model or self.model,
            provider=self.provider,
            usage=Usage() if tokens is None else Usage(input_tokens=tokens),
            request_id=request_id,
            raw=data if isinstance(data, dict) else None,
        )

    async def _gemini_count(self, texts: list[str], config: RunConfig) -> int | None:
        """Gemini's embedding replies carry no token count: its count endpoint's, or None if it fails."""
        try:
            data, _ = await self._post_json(gemini_count_request(self.model, texts), config)
            return parse_gemini_count(data)
        except (LLMError, ValueError) as exc:
            log.info("%s:%s: no token count for an embedding call (%s)", self.provider, self.model, exc)
            return None

    async def acount_exact_embedding_tokens(self, texts: list[str]) -> int | None:
        """OpenAI models: tiktoken's count of the texts (when installed and its encoding loads); else None."""
        if self.spec.input_count != "tiktoken":
            return None
        if not self._text_counter_known:
            try:
                counter = await asyncio.wait_for(asyncio.to_thread(tiktoken_encoder, self.model), 10)
            except TimeoutError:
                return None
            self._text_counter, self._text_counter_known = counter, True
        count = self._text_counter
        return None if count is None else sum(count(t) for t in texts)


def _request_id(headers: Mapping[str, str]) -> str | None:
    """The upstream's request id header: ``x-request-id`` (OpenAI), ``request-id`` (Anthropic) or
    ``x-amzn-RequestId`` (AWS)."""
    return headers.get("x-request-id") or headers.get("request-id") or headers.get("x-amzn-requestid")
