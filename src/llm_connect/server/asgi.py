"""Raw ASGI plumbing: the request object, bounded body reading, JSON / SSE responses, disconnect watching.

No framework: one dict lookup routes a request, orjson encodes, and a response is two ``send`` calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import orjson

from .._ids import random_hex
from .._timeout import Timeout
from .errors import ApiError

T = TypeVar("T")

__all__ = ["JSON", "ClientGone", "Receive", "Request", "Response", "Scope", "Send", "json_response", "new_request_id"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

JSON = b"application/json"
_CT = b"content-type"


class ClientGone(Exception):
    """The client disconnected before its request was read: there is nobody to answer."""


def new_request_id() -> str:
    return random_hex(12)


class Response:
    """A complete (non-streamed) answer."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []


def json_response(obj: Any, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return Response(status, orjson.dumps(obj), JSON, headers)


class Request:
    """One HTTP request. ``headers`` maps lower-case names to latin-1 values (last one wins)."""

    __slots__ = (
        "_body",
        "_gone",
        "_task",
        "_watcher",
        "body_timeout",
        "headers",
        "method",
        "params",
        "path",
        "query",
        "receive",
        "request_id",
        "route",
        "scope",
        "send",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, body_timeout: float = 60.0) -> None:
        self.scope = scope
        #: a client that does not finish sending its body within this many seconds gets a 408
        self.body_timeout = body_timeout
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        rid = self.headers.get("x-request-id")
        self.request_id = rid if rid and len(rid) <= 128 and rid.isprintable() else new_request_id()
        self._body: bytes | None = None
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._gone = False
        #: set by streaming handlers that send the response themselves
        self.status = 0
        self.started = False
        self.route = ""
        #: the values of a templated route's path parameters (``/v1/models/{model}`` -> {"model": ...})
        self.params: dict[str, str] = {}

    def query_params(self) -> dict[str, str]:
        if not self.query:
            return {}
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.query.decode("latin-1"), keep_blank_values=True))

    async def body(self, limit: int) -> bytes:
        """The whole body; 413 as soon as it is known to exceed ``limit`` bytes."""
        if self._body is not None:
            return self._body
        cl = self.headers.get("content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                raise ApiError(
                    400, "invalid Content-Length header", "invalid_request_error", "invalid_header", "Content-Length"
                ) from None
            if n > limit:
                raise ApiError(
                    413,
                    f"request body of {n} bytes is over the limit of {limit} bytes",
                    "invalid_request_error",
                    "request_too_large",
                )
        try:
            with Timeout(self.body_timeout):
                return await self._read_body(limit)
        except TimeoutError:
            raise ApiError(
                408,
                f"the request body did not arrive within {self.body_timeout:g} s",
                "invalid_request_error",
                "request_timeout",
            ) from None

    async def _read_body(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone()
            part = msg.get("body", b"")
            if part:
                size += len(part)
                if size > limit:
                    raise ApiError(
                        413,
                        f"request body is over the limit of {limit} bytes",
                        "invalid_request_error",
                        "request_too_large",
                    )
                chunks.append(part)
            if not msg.get("more_body", False):
                break
        self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self, limit: int) -> Any:
        raw = await self.body(limit)
        if not raw.strip():
            raise ApiError(
                400, "the request body is empty; send a JSON object", "invalid_request_error", "invalid_json"
            )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"malformed JSON: {exc}", "invalid_request_error", "invalid_json") from None

    async def json_object(self, limit: int) -> dict[str, Any]:
        data = await self.json(limit)
        if not isinstance(data, dict):
            raise ApiError(
                422,
                f"the body must be a JSON object, got {type(data).__name__}",
                "invalid_request_error",
                "invalid_field",
                None,
            )
        return data

    async def respond(self, resp: Response) -> None:
        headers = [(_CT, resp.content_type), (b"x-request-id", self.request_id.encode()), *resp.headers]
        self.status = resp.status
        self.started = True
        await self.send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": resp.body})

    async def start_stream(self, status: int, content_type: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.started = True
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (_CT, content_type),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    (b"x-request-id", self.request_id.encode()),
                    *headers,
                ],
            }
        )

    async def write(self, data: bytes, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def unless_gone(self, work: Awaitable[T], *, watch_after: float = 0.25) -> T:
        """Await ``work`` (the body must have been read), but cancel it and raise ClientGone if the client
        disconnects first: an abandoned call stops spending, and the local model is freed for the next.

        Most calls end in milliseconds, so the disconnect watcher (a task reading the ASGI channel) is only
        started once a call has run ``watch_after`` seconds: a timer costs far less than a task per call."""
        self._task = asyncio.current_task()
        self._gone = False
        timer = asyncio.get_running_loop().call_later(watch_after, self._start_watching)
        try:
            return await work
        except asyncio.CancelledError:
            if self._gone:
                if self._task is not None:
                    self._task.uncancel()  # our own cancel, now a ClientGone: nothing else is cancelling this task
                raise ClientGone() from None
            raise
        finally:
            timer.cancel()
            if self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

    def _start_watching(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        await self.wait_disconnect()
        self._gone = True
        if self._task is not None:
            self._task.cancel()

    async def wait_disconnect(self) -> None:
        """Return when the client goes away (the body must have been read already)."""
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                return
