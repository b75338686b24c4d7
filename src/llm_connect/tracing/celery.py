"""Trace context across Celery: the sender writes it into a task's headers, the worker continues the trace.

:mod:`llm_connect.agents.tasks` connects three small signal handlers; they come here only when OpenTelemetry
is in use (the sender) or the worker's config turns tracing on:

- ``before_task_publish``: the current context (``traceparent`` / ``tracestate``) into the message headers;
- ``task_prerun``: a CONSUMER span ``process {task name}``, child of the headers' context, current while the
  task runs (what the task calls — the gateway, a provider — carries it on);
- ``task_postrun``: the span ends with the task's state.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from .spans import Tracing

__all__ = ["TaskSpan", "end_task", "inject", "start_task"]

#: where the running task's span is kept on its request (Celery's per-invocation Context)
REQUEST_ATTR = "llm_connect_span"


class _RequestGetter(Getter[Any]):
    """Reads a header from a task's request: Celery puts the message's custom headers on it as attributes."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None and isinstance(getattr(carrier, "headers", None), dict):
            value = carrier.headers.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Any) -> list[str]:
        return list(getattr(carrier, "__dict__", {}))


_GETTER = _RequestGetter()


def inject(headers: dict[str, Any]) -> None:
    """Write the current trace context into a task message's headers."""
    propagate.inject(headers)


class TaskSpan:
    """The span of one task run, current until :meth:`end`."""

    __slots__ = ("_token", "span")

    def __init__(self, span: trace.Span, ctx: Any) -> None:
        self.span = span
        self._token = otel_context.attach(ctx)

    def end(self, state: str | None) -> None:
        otel_context.detach(self._token)
        if state:
            self.span.set_attribute("llm_connect.task.state", state)
            if state == "FAILURE":
                self.span.set_attribute("error.type", "task_failure")
                self.span.set_status(Status(StatusCode.ERROR))
        self.span.end()


def start_task(tracing: Tracing, task: Any) -> TaskSpan:
    """Open the CONSUMER span of ``task`` (its request carries the sender's context, if any)."""
    req = task.request
    parent = propagate.extract(req, getter=_GETTER)
    attrs: dict[str, Any] = {
        "messaging.system": "celery",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": _queue(req) or task.name,
        "celery.task.name": task.name,
    }
    if getattr(req, "id", None):
        attrs["messaging.message.id"] = req.id
    span = tracing.tracer.start_span(f"process {task.name}", context=parent, kind=SpanKind.CONSUMER, attributes=attrs)
    handle = TaskSpan(span, trace.set_span_in_context(span, parent))
    setattr(req, REQUEST_ATTR, handle)
    return handle


def end_task(task: Any, state: str | None) -> None:
    """End the span :func:`start_task` opened for ``task`` (nothing if it opened none)."""
    req = getattr(task, "request", None)
    handle = getattr(req, REQUEST_ATTR, None)
    if isinstance(handle, TaskSpan):
        setattr(req, REQUEST_ATTR, None)
        handle.end(state)


def _queue(req: Any) -> str | None:
    info = getattr(req, "delivery_info", None)
    if isinstance(info, dict):
        return info.get("routing_key") or info.get("exchange") or None
    return None
