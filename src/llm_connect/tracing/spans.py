"""The spans: a gateway request (SERVER), a library call (INTERNAL root) and each upstream attempt (CLIENT).

A :class:`Tracing` travels on ``RunConfig.tracing``; the call pipeline asks it for spans at a handful of points
(see the package docstring). The request or root span of a call is found through one context variable
(:data:`_CALL`), so an attempt deep in a router knows its parent without being handed it; the attempt's own
record travels on the attempt's RunConfig copy (``Tracing`` bound to an :class:`_Attempt`).

While an attempt runs, its span is the current OpenTelemetry span: anything traced inside it (the HTTP client's
own instrumentation, the outgoing ``traceparent``) hangs under it. Streams attach it around each step only, so
a stream that is closed from another context never detaches a token it does not own.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .attributes import NS, provider_name, request_attributes, server_address, usd

if TYPE_CHECKING:
    from ..budget import Reservation
    from ..types import RunConfig

__all__ = ["Route", "Served", "Tracing"]

R = TypeVar("R")
T = TypeVar("T")

#: the traced call (gateway request or library root) the running code belongs to
_CALL: ContextVar[_Call | None] = ContextVar("llm_connect_traced_call", default=None)

#: exceptions that end a span without being the call's failure: the consumer stopped reading
_CLOSED = (GeneratorExit,)

#: a traced stream: the stream, its span, the traced call it sets (None: none), what ends it
_Stream = tuple[AsyncIterator[T], Span, "_Call | None", Callable[[BaseException | None], None]]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a routed attempt stands in its call: the group asked for, the deployment's group and name, the
    attempt's 1-based number and the retry round it belongs to."""

    group: str
    node_group: str
    deployment: str
    attempt: int
    retries: int


class _Call:
    """The request or root span of one call and the outcomes of its attempts, summed onto it at the end."""

    __slots__ = ("attempts", "model", "named", "op", "span", "tenant")

    def __init__(self, span: Span, op: str | None = None, model: str | None = None, *, root: bool = False) -> None:
        self.span = span
        self.op = op
        self.model = model
        #: a root span is named after its model; None: a request span, named after its route
        self.named: bool | None = (model is not None) if root else None
        self.tenant: str | None = None
        self.attempts: list[_Attempt] = []

    def summary(self) -> dict[str, Any]:
        """The call's GenAI attributes: the answering attempt's response, the usage and cost of all of them."""
        out = _call_attributes(self.op, self.model, self.tenant)
        if not self.attempts:
            return out
        last = self.attempts[-1]
        won = next((a for a in reversed(self.attempts) if a.error is None and a.published), None)
        if won is not None:
            out.update(won.response_attributes())
            out["gen_ai.provider.name"] = out["gen_ai.system"] = provider_name(won.provider)
            out[f"{NS}.fallback"] = won.route is not None and won.route.node_group != won.route.group
            if won.route is not None:
                out[f"{NS}.deployment"] = won.route.deployment
        inputs = sum(a.input_tokens for a in self.attempts)
        outputs = sum(a.output_tokens for a in self.attempts)
        if any(a.published for a in self.attempts):
            out["gen_ai.usage.input_tokens"] = inputs
            out["gen_ai.usage.output_tokens"] = outputs
        costs = [a.cost for a in self.attempts if a.cost is not None]
        if costs:
            out[f"{NS}.cost_usd"] = usd(sum(costs, Decimal(0)))
        out[f"{NS}.attempts"] = len(self.attempts)
        out[f"{NS}.retries"] = last.route.retries if last.route is not None else 0
        out[f"{NS}.estimated"] = any(a.estimated for a in self.attempts)
        return out


class _Attempt:
    """One upstream attempt's span and what the pipeline reported of it (reservation, settlement, usage)."""

    __slots__ = (
        "cost",
        "error",
        "estimated",
        "finish_reason",
        "input_tokens",
        "max_tokens",
        "output_tokens",
        "provider",
        "published",
        "reservation",
        "response_id",
        "response_model",
        "route",
        "span",
        "streamed",
    )

    def __init__(self, span: Span, provider: str, route: Route | None) -> None:
        self.span = span
        self.provider = provider
        self.route = route
        self.reservation: Reservation | None = None
        self.max_tokens: int | None = None
        self.published = False
        self.error: BaseException | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost: Decimal | None = None
        self.estimated = False
        self.streamed = False
        self.finish_reason: str | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None

    def response_attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.response_model:
            out["gen_ai.response.model"] = self.response_model
        if self.response_id:
            out["gen_ai.response.id"] = self.response_id
        if self.finish_reason:
            out["gen_ai.response.finish_reasons"] = [self.finish_reason]
        return out

    def attributes(self) -> dict[str, Any]:
        out = self.response_attributes()
        if self.max_tokens is not None:
            out["gen_ai.request.max_tokens"] = self.max_tokens
        if self.published:
            out["gen_ai.usage.input_tokens"] = self.input_tokens
            out["gen_ai.usage.output_tokens"] = self.output_tokens
            out[f"{NS}.estimated"] = self.estimated
            out[f"{NS}.streamed"] = self.streamed
            if self.cost is not None:
                out[f"{NS}.cost_usd"] = usd(self.cost)
        res = self.reservation
        if res is not None:
            out[f"{NS}.budget.reserved_tokens"] = res.tokens
            if res.usd is not None:
                out[f"{NS}.budget.reserved_usd"] = usd(res.usd)
            out[f"{NS}.budget.state"] = res.state
            if res.state == "settled":
                out[f"{NS}.budget.settled_tokens"] = res.charged_tokens
                if res.priced:
                    from ..budget.stores import units_to_usd

                    out[f"{NS}.budget.settled_usd"] = usd(units_to_usd(res.charged_usd_units))
        return out

    def end(self, exc: BaseException | None) -> None:
        span = self.span
        if exc is not None and not isinstance(exc, _CLOSED):
            self.error = self.error or exc
        if span.is_recording():
            span.set_attributes(self.attributes())
            if self.error is not None:
                _failed(span, self.error)
            elif exc is not None:
                span.set_attribute(f"{NS}.stream.closed_early", True)
        span.end()


def _call_attributes(op: str | None, model: str | None, tenant: str | None) -> dict[str, Any]:
    """What a call's span says of the call itself: its operation, the model asked for, the tenant."""
    out: dict[str, Any] = {}
    if op:
        out["gen_ai.operation.name"] = op
    if model:
        out["gen_ai.request.model"] = model
    if tenant:
        out[f"{NS}.tenant"] = tenant
    return out


def _failed(span: Span, exc: BaseException) -> None:
    kind = "cancelled" if type(exc).__name__ == "CancelledError" else type(exc).__name__
    span.set_attribute("error.type", kind)
    text = str(exc)
    span.set_status(Status(StatusCode.ERROR, text[:300] if text else kind))


class Tracing:
    """Spans for llm-connect calls, from a tracer provider (default: the one OpenTelemetry has globally).

    Put one on ``RunConfig(tracing=...)`` for library calls; the gateway builds one from its ``tracing:``
    section (:func:`llm_connect.tracing.build_tracing`). ``propagate_upstream``: send ``traceparent`` /
    ``tracestate`` (the global propagator's headers) on every upstream provider request."""

    __slots__ = ("_attempt", "_provider", "_route", "propagate_upstream", "tracer")

    def __init__(self, tracer_provider: trace.TracerProvider | None = None, *, propagate_upstream: bool = True) -> None:
        from .. import __version__

        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._provider = provider
        self.tracer = provider.get_tracer("llm_connect", __version__)
        self.propagate_upstream = propagate_upstream
        self._route: Route | None = None
        self._attempt: _Attempt | None = None

    def __repr__(self) -> str:
        return f"<Tracing propagate_upstream={self.propagate_upstream}>"

    def flush(self, timeout_millis: int = 5000) -> bool:
        """Export the spans still waiting in the provider's batch (blocking, at most ``timeout_millis``); a
        gateway calls it when it stops, so the last seconds of spans are not lost. False if the export did not
        finish in time; True when the provider has nothing to flush (the API's no-op provider)."""
        force_flush = getattr(self._provider, "force_flush", None)
        return True if force_flush is None else bool(force_flush(timeout_millis))

    def _with(self, **slots: Any) -> Tracing:
        out = copy.copy(self)
        for k, v in slots.items():
            setattr(out, k, v)
        return out

    # -- hooks of the call pipeline ---------------------------------------------------------------------
    def routed(self, route: Route) -> Tracing:
        """This tracing for one routed attempt (the router's plan says which)."""
        return self._with(_route=route)

    def reserved(self, max_tokens: int | None, reservation: Reservation | None) -> None:
        """The pipeline reserved the attempt's worst case (``max_tokens``: what is sent upstream)."""
        a = self._attempt
        if a is not None:
            a.max_tokens = max_tokens
            a.reservation = reservation

    def settled(
        self, resp: Any, *, error: BaseException | None = None, estimated: bool = False, streamed: bool = False
    ) -> None:
        """The attempt's outcome as the ledger records it (``resp``: its LLMResponse)."""
        a = self._attempt
        if a is None:
            return
        a.published = True
        a.error = error
        a.streamed = streamed
        a.estimated = estimated
        usage = resp.usage
        a.input_tokens = usage.input_tokens
        a.output_tokens = usage.output_tokens
        a.cost = resp.cost_usd
        a.finish_reason = getattr(resp, "finish_reason", None)
        a.response_id = resp.request_id
        a.response_model = resp.model

    def outgoing(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` of an upstream request, with the current trace context when propagation is on."""
        if not self.propagate_upstream:
            return headers
        out = dict(headers)
        propagate.inject(out)
        return out

    def inject(self, carrier: MutableMapping[str, Any]) -> None:
        """Write the current trace context into ``carrier`` (a task's headers, a request's headers)."""
        propagate.inject(carrier)

    # -- attempts ---------------------------------------------------------------------------------------
    def _start_attempt(
        self, adapter: Any, op: str, cfg: RunConfig, call: _Call | None, parent: Any
    ) -> tuple[_Attempt, _Call | None, RunConfig]:
        root = None
        model = adapter.model
        if call is None:  # a library call straight on an adapter: its root span first
            root = call = self._root(op, cfg.model_name or model, cfg, parent)
        attrs = request_attributes(op, adapter.provider, model, cfg)
        where = server_address(getattr(adapter, "api_base", None))
        attrs.update(where)
        route = self._route
        if route is not None:
            attrs[f"{NS}.attempt"] = route.attempt
            attrs[f"{NS}.retries"] = route.retries
            attrs[f"{NS}.fallback"] = route.node_group != route.group
            attrs[f"{NS}.deployment"] = route.deployment
            attrs[f"{NS}.model_group"] = route.node_group
        else:
            attrs[f"{NS}.attempt"] = len(call.attempts) + 1
            attrs[f"{NS}.retries"] = 0
            attrs[f"{NS}.fallback"] = False
        if call.op is None:
            call.op = op
        if call.model is None:
            call.model = route.group if route is not None else (cfg.model_name or model)
            if call.named is False:  # a root opened before its model was known: named after it now
                call.span.update_name(f"{call.op} {call.model}")
                call.named = True
        if call.tenant is None:
            call.tenant = cfg.tenant_id
        kind = SpanKind.CLIENT if where else SpanKind.INTERNAL  # an in-process model: INTERNAL, per the conventions
        span = self.tracer.start_span(
            f"{op} {model}" if model else op,
            context=trace.set_span_in_context(call.span),
            kind=kind,
            attributes=attrs,
        )
        att = _Attempt(span, adapter.provider, route)
        call.attempts.append(att)
        bound = cfg.copy()
        bound.tracing = self._with(_attempt=att, _route=None)
        return att, root, bound

    def attempt(self, adapter: Any, op: str, cfg: RunConfig, run: Callable[[RunConfig], Awaitable[R]]) -> Awaitable[R]:
        """One upstream attempt (``run`` with the attempt's config) under its span. The traced call and the
        current context are taken here, where the call is made: a sync caller's span is the parent even though
        the coroutine runs on the sync facade's event loop thread."""
        return self._run_attempt(adapter, op, cfg, run, _CALL.get(), otel_context.get_current())

    async def _run_attempt(
        self,
        adapter: Any,
        op: str,
        cfg: RunConfig,
        run: Callable[[RunConfig], Awaitable[R]],
        call: _Call | None,
        parent: Any,
    ) -> R:
        att, root, bound = self._start_attempt(adapter, op, cfg, call, parent)
        return await _awaited(lambda: run(bound), att.span, None, lambda failure: _end_attempt(att, root, failure))

    def attempt_stream(
        self, adapter: Any, cfg: RunConfig, run: Callable[[RunConfig], AsyncIterator[T]]
    ) -> AsyncIterator[T]:
        """Stream one upstream attempt under its span; the span ends when the stream settles (its end, an error,
        the consumer closing it). The traced call and the context are taken here, as for :meth:`attempt`."""
        call, parent = _CALL.get(), otel_context.get_current()

        def start() -> _Stream[T]:  # at the first step, as an async generator's body would
            att, root, bound = self._start_attempt(adapter, "chat", cfg, call, parent)
            return run(bound), att.span, None, lambda failure: _end_attempt(att, root, failure)

        return _streamed(start)

    # -- library roots --------------------------------------------------------------------------------
    def _root(self, op: str, model: str | None, cfg: RunConfig, parent: Any) -> _Call:
        attrs = _call_attributes(op, model, cfg.tenant_id)
        span = self.tracer.start_span(
            f"{op} {model}" if model else op, context=parent, kind=SpanKind.INTERNAL, attributes=attrs
        )
        return _Call(span, op, model, root=True)

    def call(self, op: str, model: str | None, cfg: RunConfig, work: Awaitable[R]) -> Awaitable[R]:
        """``work`` (a router's call) under a root span, unless it already runs inside a traced call; the
        root's parent is the caller's current span."""
        if _CALL.get() is not None:
            return work
        return self._rooted(self._root(op, model, cfg, otel_context.get_current()), work)

    async def _rooted(self, root: _Call, work: Awaitable[R]) -> R:
        return await _awaited(lambda: work, root.span, root, lambda failure: _end_root(root, failure))

    def call_stream(self, model: str | None, cfg: RunConfig, agen: AsyncIterator[T]) -> AsyncIterator[T]:
        """A router's stream under a root span, unless it already runs inside a traced call."""
        if _CALL.get() is not None:
            return agen
        root = self._root("chat", model, cfg, otel_context.get_current())
        return _streamed(lambda: (agen, root.span, root, lambda failure: _end_root(root, failure)))

    # -- the gateway --------------------------------------------------------------------------------------
    def server(self, req: Any, route: str | None) -> Served:
        """The SERVER span of one gateway request, child of the request's ``traceparent`` if it has one; it is
        the current span (and the traced call) until :meth:`Served.end`."""
        parent = propagate.extract(req.headers)
        method = req.method
        scope = req.scope
        attrs: dict[str, Any] = {
            "http.request.method": method,
            "url.path": req.path,
            "url.scheme": scope.get("scheme", "http"),
        }
        if route:
            attrs["http.route"] = route
        server = scope.get("server")
        if server:
            attrs["server.address"], attrs["server.port"] = server[0], server[1]
        client = scope.get("client")
        if client:
            attrs["client.address"] = client[0]
        agent = req.headers.get("user-agent")
        if agent:
            attrs["user_agent.original"] = agent
        span = self.tracer.start_span(
            f"{method} {route}" if route else method, context=parent, kind=SpanKind.SERVER, attributes=attrs
        )
        return Served(_Call(span), trace.set_span_in_context(span, parent))


class Served:
    """A gateway request's span while the request runs (see :meth:`Tracing.server`)."""

    __slots__ = ("_call", "_call_token", "_token")

    def __init__(self, call: _Call, ctx: Any) -> None:
        self._call = call
        self._token = otel_context.attach(ctx)
        self._call_token = _CALL.set(call)

    @property
    def trace_id(self) -> str:
        return format(self._call.span.get_span_context().trace_id, "032x")

    def end(self, status: int) -> None:
        """End the span with the response's status (499: the client went away first)."""
        _CALL.reset(self._call_token)
        otel_context.detach(self._token)
        span = self._call.span
        if span.is_recording():
            span.set_attributes(self._call.summary())
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_attribute("error.type", str(status))
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        span.end()


def _end_root(root: _Call, failure: BaseException | None) -> None:
    span = root.span
    if span.is_recording():
        span.set_attributes(root.summary())
        if failure is not None and not isinstance(failure, _CLOSED):
            _failed(span, failure)
    span.end()


def _end_attempt(att: _Attempt, root: _Call | None, failure: BaseException | None) -> None:
    att.end(failure)
    if root is not None:  # the attempt's own root (a library call straight on an adapter)
        _end_root(root, failure)


@contextlib.contextmanager
def _current(span: Span, call: _Call | None = None) -> Iterator[None]:
    """``span`` as the current span (and ``call``, if given, as the traced call) for the block, attached and
    detached in the same context."""
    call_token = _CALL.set(call) if call is not None else None
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    finally:
        otel_context.detach(token)
        if call_token is not None:
            _CALL.reset(call_token)


async def _awaited(
    work: Callable[[], Awaitable[R]], span: Span, call: _Call | None, end: Callable[[BaseException | None], None]
) -> R:
    """``work()`` awaited under ``span`` (and ``call``); ``end`` is told how it finished (None: it returned)."""
    failure: BaseException | None = None
    try:
        with _current(span, call):
            return await work()
    except BaseException as exc:
        failure = exc
        raise
    finally:
        end(failure)


async def _streamed(start: Callable[[], _Stream[T]]) -> AsyncIterator[T]:
    """The stream ``start()`` opens (at the first step) driven under its span (and traced call) during each step
    only and closed under them; its ``end`` is told how the stream finished (None: it ran out; ``GeneratorExit``:
    the consumer closed it)."""
    agen, span, call, end = start()
    failure: BaseException | None = None
    steps = _stepped(agen, span, call)
    try:
        async for chunk in steps:
            yield chunk
    except BaseException as exc:
        failure = exc
        raise
    finally:
        await steps.aclose()
        with _current(span, call):
            await agen.aclose()  # type: ignore[attr-defined]
        end(failure)


async def _stepped(agen: AsyncIterator[T], span: Span, call: _Call | None = None) -> AsyncIterator[T]:
    """Drive ``agen`` with ``span`` current (and ``call`` the traced call) during each step only."""
    it = aiter(agen)
    while True:
        with _current(span, call):
            try:
                item = await anext(it)
            except StopAsyncIteration:
                return
        yield item
