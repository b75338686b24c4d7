"""A mock LLM provider server that speaks the real wire formats over loopback HTTP.

Paths (each answers in its provider's own shapes, streaming included)::

    POST {any prefix}/chat/completions               OpenAI chat completions (SSE when "stream": true)
    POST /openai/deployments/{d}/chat/completions     Azure OpenAI (?api-version=; /openai/v1/... with an api-key)
    POST /v1/messages                                 Anthropic Messages (SSE when "stream": true)
    POST /v1beta/models/{model}:generateContent       Gemini
    POST /v1beta/models/{model}:streamGenerateContent Gemini stream (SSE with ?alt=sse, else a JSON array)
    POST /api/chat                                    Ollama (NDJSON unless "stream": false)
    POST /model/{modelId}/converse[-stream]           Bedrock Converse (SigV4 verified; AWS event stream)
    POST /v1/messages/count_tokens                    Anthropic token count: {"input_tokens": N}
    POST /v1beta/models/{model}:countTokens           Gemini token count: {"totalTokens": N}
    POST {any prefix}/embeddings                      OpenAI embeddings (float or base64)
    POST /v1beta/models/{model}:batchEmbedContents    Gemini embeddings
    POST /api/embed                                   Ollama embeddings
    POST /v1/projects/{p}/locations/{l}/publishers/{google|anthropic}/models/{model}:{method}   Vertex AI
    POST /token                                       Google OAuth token endpoint (testing/_vertex.py)
    POST /__mock__/google/service-account             a service-account JSON the token endpoint trusts
    GET  /v1/models, /v1beta/models, /api/tags, /health

With nothing scripted it answers instantly with a deterministic reply derived from the request
("mock reply to: <last user words>"), or deterministic unit vectors for an embedding request
(testing/_embeddings.py), and realistic usage: input tokens = whitespace words of every
message + 1 per message (what the count endpoints answer too), output tokens = words of the reply;
``max_tokens`` truncates the reply with finish reason "length". Scripted replies and faults
(:class:`MockReply`) are queued from Python (:meth:`MockServer.script`) or over HTTP
(``POST /__mock__/script``); every request is recorded (``GET /__mock__/requests``,
:attr:`MockServer.requests`) with auth header values redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from .._net import listen_error, startup_errors
from . import _azure as A
from . import _bedrock as B
from . import _embeddings as E
from . import _formats as F
from . import _vertex as V
from ._admin import add_admin_routes, json_response
from ._script import FAULTS, MockReply, Script, ScriptState, as_reply

__all__ = ["FAULTS", "MockReply", "MockServer", "Script", "main", "run_mock_server", "serve"]

_AUTH_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key")
_CACHE_LIMIT = 4096
#: request key: the credential a dispatch verified itself (a Vertex token), standing for ``require_key``
_VERIFIED: Any = getattr(web, "RequestKey", lambda name, _t: name)("llm_connect.verified_key", object)


def _redacted_headers(request: web.Request) -> tuple[dict[str, str], str | None]:
    headers: dict[str, str] = {}
    auth = None
    for k, v in request.headers.items():
        if k.lower() in _AUTH_HEADERS:
            headers[str(k)] = "<redacted>"
            auth = auth or k.lower()
        else:
            headers[str(k)] = v
    return headers, auth


def _api_key(request: web.Request, fmt: str) -> str | None:
    if _VERIFIED in request:
        return request[_VERIFIED]
    h = request.headers
    bearer = h.get("Authorization", "")
    bearer_key = bearer[7:].strip() if bearer[:7].lower() == "bearer " else None
    if fmt == "anthropic":
        return h.get("x-api-key") or bearer_key
    if fmt == "gemini":
        return h.get("x-goog-api-key") or request.query.get("key")
    return bearer_key or h.get("api-key")


def _tool_calls(fmt: str, raw: list[dict[str, Any]] | None, rid: str) -> list[F.ToolCall]:
    out = []
    for i, tc in enumerate(raw or []):
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else tc
        args = fn.get("arguments", fn.get("args", fn.get("input", {})))
        if isinstance(args, str):
            text, parsed = args, (orjson.loads(args) if args.strip() else {})
        else:
            text, parsed = orjson.dumps(args).decode(), args
        prefix = "toolu_" if fmt == "anthropic" else "call_"
        out.append(F.ToolCall(tc.get("id") or f"{prefix}{rid}_{i}", fn["name"], text, parsed))
    return out


def _retry_after(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _abort(request: web.Request) -> None:
    """Drop the connection at once with a TCP reset, no response."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class MockServer:
    """The mock provider server. ``async with MockServer() as srv:`` or ``with MockServer.run_in_thread() as srv:``.

    ``require_key`` makes every provider path answer its real auth error unless that key is sent;
    ``model_latency`` maps model names to a default delay before headers (routing tests);
    ``models`` is what the model-list endpoints report.
    """

    def __init__(
        self,
        *,
        require_key: str | None = None,
        model_latency: Mapping[str, float] | None = None,
        models: Sequence[str] | None = None,
        chunk_delay: float = 0.0,
        log_limit: int = 10_000,
    ) -> None:
        self._state = ScriptState(require_key, model_latency, models, chunk_delay, log_limit)
        #: Vertex AI's OAuth: trusted service-account keys, minted tokens (``google.service_account(...)``)
        self.google = V.GoogleAuth(record=self._record)
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> MockServer:
        if self._runner is not None:
            raise RuntimeError("mock server already started")
        runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:  # e.g. the port is taken: leave nothing set up behind
            await runner.cleanup()
            raise
        self._runner = runner
        self.host = host
        self.port = runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockServer:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def run_in_thread(cls, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> Iterator[MockServer]:
        """A started server running its own event loop in a daemon thread (for sync tests)."""
        server = cls(**kwargs)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="llm-connect-mock-server", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(server.start(host, port), loop).result(timeout=30)
            yield server
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    @property
    def gemini_base(self) -> str:
        return self.url + "/v1beta"

    @property
    def ollama_base(self) -> str:
        return self.url

    # ------------------------------------------------------------------ scripting

    def script(self, *items: MockReply | Mapping[str, Any], **fields: Any) -> MockServer:
        """Queue replies / faults (MockReply objects, dicts, or one built from keyword fields)."""
        replies = [as_reply(i) for i in items]
        if fields:
            replies.append(MockReply(**fields))
        self._state.add(replies)
        return self

    def clear_scripts(self) -> None:
        with self._state.lock:
            self._state.scripts.clear()

    def reset(self) -> None:
        """Drop every queued script and the request log (configuration stays)."""
        self._state.clear()

    @property
    def pending(self) -> list[dict[str, Any]]:
        return self._state.pending()

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The recorded request log, oldest first."""
        return list(self._state.log)

    @property
    def last_request(self) -> dict[str, Any] | None:
        return self._state.log[-1] if self._state.log else None

    def clear_requests(self) -> None:
        self._state.log.clear()

    def set_model_latency(self, model: str, seconds: float | None) -> None:
        if seconds:
            self._state.model_latency[model] = float(seconds)
        else:
            self._state.model_latency.pop(model, None)

    @property
    def require_key(self) -> str | None:
        return self._state.require_key

    @require_key.setter
    def require_key(self, key: str | None) -> None:
        self._state.require_key = key

    # ------------------------------------------------------------------ app

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        r = app.router
        r.add_post("/v1/messages/count_tokens", self._anthropic_count)
        r.add_post(r"/{prefix:.+}/v1/messages/count_tokens", self._anthropic_count)
        r.add_post("/v1/messages", self._anthropic)
        r.add_post(r"/{prefix:.+}/v1/messages", self._anthropic)
        r.add_post("/openai/deployments/{deployment}/chat/completions", self._azure)
        r.add_post("/openai/v1/chat/completions", self._azure)
        r.add_post("/chat/completions", self._openai)
        r.add_post(r"/{prefix:.+}/chat/completions", self._openai)
        r.add_post(r"/{version:v1beta|v1}/models/{target:[^/]+}", self._gemini)
        r.add_post("/api/chat", self._ollama)
        r.add_post("/embeddings", self._openai_embed)
        r.add_post(r"/{prefix:.+}/embeddings", self._openai_embed)
        r.add_post("/api/embed", self._ollama_embed)
        r.add_post(r"/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{target}", self._vertex)
        r.add_post("/token", self.google.token_endpoint)
        r.add_post("/__mock__/google/service-account", self.google.account_endpoint)
        r.add_get("/health", self._health)
        r.add_get("/v1/models", self._list_models)
        r.add_get("/models", self._list_models)
        r.add_get("/v1beta/models", self._gemini_models)
        r.add_get("/api/tags", self._ollama_tags)
        r.add_post("/model/{model_id}/converse", self._bedrock)
        r.add_post("/model/{model_id}/converse-stream", self._bedrock)
        add_admin_routes(r, self)
        return app

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "openai")

    async def _azure(self, request: web.Request) -> web.StreamResponse:
        """Azure OpenAI: credentials and api-version checked the way Azure does, then chat completions."""
        deployment = request.match_info.get("deployment")
        if deployment is None and "api-key" not in request.headers:
            return await self._openai(request)  # /openai/v1 with a bearer key: an OpenAI-compatible prefix
        problem = A.request_problem(deployment, request.headers, request.query, self._state.require_key)
        if problem is not None:
            self._record(request, "azure", deployment, None, b"", None)
            return web.Response(status=problem[0], body=problem[1], content_type="application/json")
        return await self._serve(request, "azure", model=deployment)

    async def _bedrock(self, request: web.Request) -> web.StreamResponse:
        """Bedrock Converse / ConverseStream: the SigV4 signature (or API key) verified, then the chat path."""
        model, raw = request.match_info["model_id"], await request.read()
        problem = B.request_problem(request.method, request.raw_path, request.headers, raw, self._state.require_key)
        if problem is not None:
            self._record(request, "bedrock", model, None, b"", None)
            return web.Response(status=problem[0], headers=problem[1], body=problem[2], content_type="application/json")
        return await self._serve(request, "bedrock", model=model, stream=request.path.endswith("/converse-stream"))

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "anthropic")

    async def _ollama(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "ollama")

    async def _anthropic_count(self, request: web.Request) -> web.StreamResponse:
        return await self._count(request, "anthropic")

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["target"].partition(":")
        if method == "countTokens":
            return await self._count(request, "gemini", model)
        if method == "batchEmbedContents":
            return await self._embed(request, "gemini", model)
        if method not in ("generateContent", "streamGenerateContent"):
            body = F.render_error("gemini", 404, message=f"Method {method or '(none)'} not found.")
            return web.Response(status=404, body=body, content_type="application/json")
        sse = request.query.get("alt") == "sse"
        return await self._serve(request, "gemini", model=model, stream=method == "streamGenerateContent", sse=sse)

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        """Vertex AI (testing/_vertex.py): a token the mock minted, then the publisher's own format."""
        model, _, method = request.match_info["target"].partition(":")
        refused = self.google.refusal(request.path, request.match_info["publisher"], method, request.headers)
        refused = refused or V.body_problem(request.path, await request.read())
        if refused is not None:
            self._record(request, "vertex", model, None, b"", None)
            return web.Response(status=refused[0], body=refused[1], content_type="application/json")
        request[_VERIFIED] = self._state.require_key
        if method == "predict":  # Vertex's text embeddings (testing/_embeddings.py)
            return await self._embed(request, "vertex", model)
        if request.match_info["publisher"] == "google":
            return await self._gemini(request)
        if model == "count-tokens":
            return await self._count(request, "anthropic")
        return await self._serve(request, "anthropic", model=model, stream=method == "streamRawPredict")

    async def _openai_embed(self, request: web.Request) -> web.StreamResponse:
        return await self._embed(request, "openai")

    async def _ollama_embed(self, request: web.Request) -> web.StreamResponse:
        return await self._embed(request, "ollama")

    async def _embed(self, request: web.Request, fmt: str, model: str = "") -> web.StreamResponse:
        """An embedding request: recorded (``"kind": "embeddings"``), scripted replies and faults applied as
        on the chat path (errors, latency, reset, malformed, reported model, input tokens)."""
        st = self._state
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        req_model = model or (body.get("model") if isinstance(body, dict) else None)
        self._record(request, fmt, req_model, body, raw, False)["kind"] = "embeddings"
        rid = st.next_id()
        if st.require_key is not None and _api_key(request, fmt) != st.require_key:
            return self._auth_error(fmt, _api_key(request, fmt) is None, rid)
        try:
            parsed = E.parse_request(fmt, body, model=model)
        except F.BadRequest as exc:
            return self._error(fmt, 400, rid, kind="bad_request", message=str(exc), model=req_model or "")
        script = st.take(fmt, parsed.model)
        latency = script.latency if script is not None and script.latency is not None else None
        latency = latency if latency is not None else st.model_latency.get(parsed.model)
        if latency:
            await asyncio.sleep(latency)
        tokens = E.count_tokens(parsed.texts)
        if script is not None and script.fault == "reset":
            _abort(request)
            raise asyncio.CancelledError
        if script is not None and script.is_error:
            return self._scripted_error(fmt, script, rid, parsed.model, tokens)
        if script is not None and script.input_tokens is not None:
            tokens = script.input_tokens
        out = orjson.dumps(E.render_body(parsed, tokens, script.reported_model if script else None))
        headers = self._headers(fmt, rid, script.headers if script else None)
        if script is not None and script.fault in ("malformed", "cut_stream"):
            return web.Response(status=200, body=out[: max(1, len(out) // 2)], headers=headers)
        return web.Response(status=200, body=out, headers=headers)

    # ------------------------------------------------------------------ the chat path

    async def _serve(
        self,
        request: web.Request,
        fmt: str,
        *,
        model: str | None = None,
        stream: bool | None = None,
        sse: bool = True,
    ) -> web.StreamResponse:
        st = self._state
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        req_model = model if model is not None else (body.get("model") if isinstance(body, dict) else None)
        entry = self._record(request, fmt, req_model, body, raw, stream)
        rid = st.next_id()

        if st.require_key is not None and fmt not in ("azure", "bedrock"):  # checked in _azure, _bedrock
            key = _api_key(request, fmt)
            if key != st.require_key:
                return self._auth_error(fmt, key is None, rid)
        try:
            parsed = F.parse_request(fmt, body, model=model, sse=sse, betas=request.headers.get("anthropic-beta", ""))
        except F.BadRequest as exc:
            return self._error(fmt, 400, rid, kind="bad_request", message=str(exc), model=req_model or "")
        if stream is not None:
            parsed.stream = stream
        entry["stream"] = parsed.stream

        script = st.take(fmt, parsed.model)
        latency = script.latency if script is not None and script.latency is not None else None
        if latency is None:
            latency = st.model_latency.get(parsed.model)
        if latency:
            await asyncio.sleep(latency)
        input_tokens = F.count_input_tokens(parsed)

        if script is None:
            if parsed.stream:
                return await self._stream(request, parsed, self._reply(parsed, None, input_tokens, rid), rid, None)
            return self._fast_body(parsed, input_tokens, rid)

        if script.fault == "reset":
            _abort(request)
            raise asyncio.CancelledError
        if script.is_error and script.fault != "stream_error":
            return self._scripted_error(fmt, script, rid, parsed.model, input_tokens)
        reply = self._reply(parsed, script, input_tokens, rid)
        if parsed.stream:
            return await self._stream(request, parsed, reply, rid, script)
        body_bytes = orjson.dumps(F.render_body(fmt, reply, int(time.time()))).replace(
            F.ID_MARK.encode(), self._public_id(fmt, rid).encode()
        )
        headers = self._headers(fmt, rid, script.headers)
        if script.fault == "malformed":
            return web.Response(status=200, body=body_bytes[: max(1, len(body_bytes) // 2)], headers=headers)
        if script.fault == "cut_stream":
            return await self._cut_body(request, body_bytes, headers)
        return web.Response(status=200, body=body_bytes, headers=headers)

    async def _count(self, request: web.Request, fmt: str, model: str = "") -> web.StreamResponse:
        """A count-tokens request: the prompt's input tokens as a chat request would report them. Recorded;
        never takes a scripted reply."""
        st = self._state
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        req_model = model or (body.get("model") if isinstance(body, dict) else None)
        self._record(request, fmt, req_model, body, raw, False)
        rid = st.next_id()
        if st.require_key is not None:
            key = _api_key(request, fmt)
            if key != st.require_key:
                return self._auth_error(fmt, key is None, rid)
        try:
            parsed = F.parse_count_request(fmt, body, model=model, betas=request.headers.get("anthropic-beta", ""))
        except F.BadRequest as exc:
            return self._error(fmt, 400, rid, kind="bad_request", message=str(exc), model=req_model or "")
        n = F.count_input_tokens(parsed)
        out = {"input_tokens": n} if fmt == "anthropic" else {"totalTokens": n, "promptTokensDetails": []}
        return web.Response(status=200, body=orjson.dumps(out), headers=self._headers(fmt, rid))

    def _record(
        self, request: web.Request, fmt: str, model: Any, body: Any, raw: bytes, stream: bool | None
    ) -> dict[str, Any]:
        headers, auth = _redacted_headers(request)
        query = {k: v for k, v in request.query.items() if k != "key"}
        if "key" in request.query:
            auth = auth or "query:key"
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "query": query,
            "format": fmt,
            "model": model,
            "stream": stream,
            "headers": headers,
            "auth": auth is not None,
            "auth_header": auth,
            "body": body,
        }
        if body is None and raw:
            entry["raw"] = raw.decode("utf-8", "replace")
        self._state.log.append(entry)
        return entry

    @staticmethod
    def _public_id(fmt: str, rid: str) -> str:
        if fmt in ("openai", "azure"):
            return "chatcmpl-" + rid
        if fmt == "anthropic":
            return "msg_" + rid
        return rid

    @staticmethod
    def _headers(fmt: str, rid: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if fmt in ("openai", "azure"):
            h["x-request-id"] = "req_" + rid
        elif fmt == "anthropic":
            h["request-id"] = "req_" + rid
        elif fmt == "bedrock":
            h["x-amzn-RequestId"] = rid
        if extra:
            h.update(extra)
        return h

    def _reply(self, parsed: F.Parsed, script: MockReply | None, input_tokens: int, rid: str) -> F.Reply:
        s = script
        if s is not None and s.text is not None:
            text = s.text
        else:
            text = "" if s is not None and s.tool_calls else F.default_reply_text(parsed)
        pieces = F.split_pieces(text)
        tools = _tool_calls(parsed.fmt, s.tool_calls if s else None, rid)
        finish = "tool_calls" if tools else "stop"
        if parsed.max_tokens is not None and len(pieces) > parsed.max_tokens:
            pieces = pieces[: max(parsed.max_tokens, 0)]
            finish = "length"
        if s is not None and s.finish_reason:
            finish = s.finish_reason
        reasoning = (s.reasoning_tokens if s else None) or 0
        out = s.output_tokens if s is not None and s.output_tokens is not None else len(pieces) + reasoning
        inp = s.input_tokens if s is not None and s.input_tokens is not None else input_tokens
        tier = s.service_tier if s is not None and s.service_tier else None
        if tier is None and parsed.service_tier in ("flex", "priority"):
            tier = parsed.service_tier  # OpenAI answers with the tier it served the request at
        return F.Reply(
            model=(s.reported_model if s is not None and s.reported_model else parsed.model),
            pieces=pieces,
            finish=finish,
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=(s.cache_read_tokens if s else None) or 0,
            cache_write_tokens=(s.cache_write_tokens if s else None) or 0,
            reasoning_tokens=reasoning,
            tool_calls=tools,
            cache_write_1h_tokens=(s.cache_write_1h_tokens if s else None) or 0,
            input_audio_tokens=(s.input_audio_tokens if s else None) or 0,
            service_tier=tier,
            thinking=(s.thinking if s else None) or "",
            extra_fields=(s.extra_fields if s else None) or {},
        )

    def _fast_body(self, parsed: F.Parsed, input_tokens: int, rid: str) -> web.Response:
        """The default non-streaming answer, from a cache of pre-serialised bodies."""
        st = self._state
        fmt = parsed.fmt
        now = int(time.time())
        text = F.default_reply_text(parsed)
        key = (fmt, parsed.model, text, input_tokens, parsed.max_tokens, parsed.service_tier, now // 60)
        parts = st.cache.get(key)
        if parts is None:
            reply = self._reply(parsed, None, input_tokens, rid)
            parts = orjson.dumps(F.render_body(fmt, reply, now)).split(F.ID_MARK.encode())
            if len(st.cache) >= _CACHE_LIMIT:
                st.cache.clear()
            st.cache[key] = parts
        body = self._public_id(fmt, rid).encode().join(parts)
        return web.Response(status=200, body=body, headers=self._headers(fmt, rid))

    async def _stream(
        self, request: web.Request, parsed: F.Parsed, reply: F.Reply, rid: str, script: MockReply | None
    ) -> web.StreamResponse:
        fmt = parsed.fmt
        frames, tail = F.render_stream(fmt, reply, self._public_id(fmt, rid), int(time.time()), parsed)
        headers = self._headers(fmt, rid, script.headers if script else None)
        headers["Content-Type"] = F.stream_media_type(fmt, parsed.sse)
        headers["Cache-Control"] = "no-cache"
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        fault = script.fault if script else None
        delay = script.chunk_delay if script is not None and script.chunk_delay is not None else self._state.chunk_delay
        content = len(frames) - tail
        if fault in ("cut_stream", "stream_error", "malformed"):
            n = script.cut_after if script is not None and script.cut_after is not None else max(1, content // 2)
            if fault == "malformed":
                n = 1
            await self._write_frames(resp, frames[: min(n, content)], delay)
            if fault == "cut_stream":
                transport = request.transport
                if transport is not None:
                    transport.close()
                return resp
            if fault == "malformed":
                await resp.write(b"{not json\n" if fmt == "ollama" else b"data: {not json\n\n")
            else:
                assert script is not None
                await resp.write(
                    F.stream_error_frame(
                        fmt,
                        script.status or 529,
                        kind=script.error or ("overloaded" if script.status is None else None),
                        error_type=script.error_type,
                        message=script.error_message,
                        code=script.error_code,
                        model=parsed.model,
                    )
                )
            await resp.write_eof()
            return resp
        await self._write_frames(resp, frames, delay)
        await resp.write_eof()
        return resp

    @staticmethod
    async def _write_frames(resp: web.StreamResponse, frames: list[bytes], delay: float) -> None:
        if not delay:
            if frames:
                await resp.write(b"".join(frames))
            return
        for i, frame in enumerate(frames):
            if i:
                await asyncio.sleep(delay)
            await resp.write(frame)

    @staticmethod
    async def _cut_body(request: web.Request, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
        """Announce the full Content-Length, send half the body, then close the connection."""
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        transport = request.transport
        if transport is not None:
            transport.close()
        return resp

    def _scripted_error(self, fmt: str, script: MockReply, rid: str, model: str, input_tokens: int) -> web.Response:
        """The error a script asks for, in ``fmt``'s own body and headers."""
        assert script.status is not None
        return self._error(
            fmt,
            script.status,
            rid,
            kind=script.error,
            error_type=script.error_type,
            message=script.error_message,
            code=script.error_code,
            model=model,
            input_tokens=input_tokens,
            retry_after=script.retry_after,
            headers=script.headers,
        )

    def _error(
        self,
        fmt: str,
        status: int,
        rid: str,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> web.Response:
        body = F.render_error(fmt, status, request_id="req_" + rid, retry_after=retry_after, **kw)
        h = self._headers(fmt, rid, headers)
        if retry_after is not None:
            h["Retry-After"] = _retry_after(retry_after)
            if fmt == "azure":
                h.update(A.retry_headers(retry_after))
        if fmt == "bedrock":
            h.update(B.error_headers(kw.get("kind") or F.kind_for_status(status), kw.get("error_type")))
        return web.Response(status=status, body=body, headers=h)

    def _auth_error(self, fmt: str, missing: bool, rid: str) -> web.Response:
        if fmt == "gemini":
            status, body = F.gemini_key_error(missing)
            return web.Response(status=status, body=body, headers=self._headers(fmt, rid))
        message = None
        if missing and fmt == "openai":
            message = (
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        elif missing and fmt == "anthropic":
            message = "x-api-key header is required"
        code = None if missing else "invalid_api_key"
        return self._error(fmt, 401, rid, kind="auth", message=message, code=code)

    # ------------------------------------------------------------------ listing + admin

    async def _health(self, request: web.Request) -> web.Response:
        return self._json({"status": "ok"})

    def _json(self, obj: Any, status: int = 200) -> web.Response:
        return json_response(obj, status)

    async def _list_models(self, request: web.Request) -> web.Response:
        models = list(dict.fromkeys([*self._state.models, *self._state.model_latency]))
        if "anthropic-version" in request.headers or "x-api-key" in request.headers:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
            first, last = (models[0], models[-1]) if models else (None, None)
            return self._json({"data": data, "has_more": False, "first_id": first, "last_id": last})
        data = [{"id": m, "object": "model", "created": 1735689600, "owned_by": "llm-connect-mock"} for m in models]
        return self._json({"object": "list", "data": data})

    async def _gemini_models(self, request: web.Request) -> web.Response:
        methods = ["generateContent", "streamGenerateContent", "countTokens"]
        data = [
            {
                "name": f"models/{m}",
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": methods,
            }
            for m in self._state.models
        ]
        return self._json({"models": data})

    async def _ollama_tags(self, request: web.Request) -> web.Response:
        data = [
            {
                "name": m,
                "model": m,
                "modified_at": "2025-01-01T00:00:00Z",
                "size": 1,
                "digest": "0" * 64,
                "details": {"format": "gguf", "family": "mock", "parameter_size": "0B", "quantization_level": "Q4_K_M"},
            }
            for m in self._state.models
        ]
        return self._json({"models": data})


# ---------------------------------------------------------------------- CLI


async def serve(host: str = "127.0.0.1", port: int = 8765, **kwargs: Any) -> None:
    """Run a mock server until cancelled. A port that cannot be listened on raises LLMConfigurationError
    naming the address and the problem."""
    server = MockServer(**kwargs)
    try:
        await server.start(host, port)
    except OSError as exc:
        raise listen_error(host, port, exc) from exc
    print(f"llm-connect mock server listening on {server.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def run_mock_server(host: str = "127.0.0.1", port: int = 8765, **kwargs: Any) -> None:
    """Block serving the mock until interrupted (the ``llm-connect mock-server`` command). A port that cannot
    be listened on is one line on stderr and exit code 2, as for ``llm-connect serve``."""
    with startup_errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, **kwargs))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="llm-connect mock-server", description="Mock LLM provider server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--require-key", default=None, help="answer the provider's auth error unless this key is sent")
    p.add_argument("--latency", action="append", default=[], metavar="MODEL=SECONDS", help="per-model latency")
    p.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between stream frames")
    p.add_argument("--model", action="append", default=[], help="model name listed by /v1/models")
    args = p.parse_args(argv)
    latency = {}
    for item in args.latency:
        name, sep, secs = item.rpartition("=")
        if not sep or not name:
            p.error(f"--latency expects MODEL=SECONDS, got {item!r}")
        latency[name] = float(secs)
    run_mock_server(
        args.host,
        args.port,
        require_key=args.require_key,
        model_latency=latency,
        models=args.model or None,
        chunk_delay=args.chunk_delay,
    )
    return 0
