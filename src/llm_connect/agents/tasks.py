"""The Celery app of the agent workers: ``celery -A llm_connect.agents.tasks worker``.

CELERY TASKS MUST BE PLAIN ``def`` — an ``async def`` task returns an un-awaited coroutine (or hangs the
worker). Each task runs its async work with ``asyncio.run`` inside a fresh :class:`AgentRuntime`, so every
task gets its own event loop and closes what it opened. ``_sync_task`` refuses coroutine functions.

Broker and result backend: Redis by default (``$LLM_CONNECT_BROKER_URL``, else ``agents.broker_url`` /
``redis.url`` of the config named by ``$LLM_CONNECT_CONFIG``, else ``redis://127.0.0.1:6379/0``). An
``amqp://`` broker (RabbitMQ) works too; its result backend then defaults to ``rpc://``.

Tasks (names are stable; send them from any process with the same broker)::

    llm_connect.agents.handle_message(message_dict, agent=None) -> reply dict   (never raises)
    llm_connect.agents.delegate(parent_reply, to_agent, content=None, max_tokens=None) -> reply dict
    llm_connect.agents.cleanup_thread(thread_id, tenant_id=None) -> final usage dict
    llm_connect.agents.gather_replies(replies) -> {"replies", "count", "ok"}   (chord callback)
    llm_connect.agents.ping() -> worker info

Client helpers: :func:`collective_proposal` (one message to N agents in parallel, a chord gathering the
replies) and :func:`delegation_chain` (A → B → C with sub-budgets, as a Celery chain).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from celery import Celery, chain, chord, signals
from celery.result import AsyncResult

from .models import InboundMessage
from .runner import FALLBACK_REPLY, AgentRuntime
from .settings import AgentSettings, load_settings

__all__ = [
    "app",
    "celery_config",
    "cleanup_thread",
    "collective_proposal",
    "current_settings",
    "delegate",
    "delegation_chain",
    "gather_replies",
    "handle_message",
    "make_app",
    "ping",
]

log = logging.getLogger("llm_connect.agents")

F = TypeVar("F", bound=Callable[..., Any])


@functools.lru_cache(maxsize=4)
def _load(path: str | None, mtime: int | None) -> AgentSettings:
    return load_settings(path)


def current_settings() -> AgentSettings:
    """The settings of this process: the config named by ``$LLM_CONNECT_CONFIG`` (reloaded when it changes)."""
    path = os.environ.get("LLM_CONNECT_CONFIG") or None
    try:
        mtime = os.stat(path).st_mtime_ns if path else None
    except OSError:
        mtime = None
    return _load(path, mtime)


def celery_config(settings: AgentSettings) -> dict[str, Any]:
    """Celery settings for ``settings``: JSON only, fair dispatch (prefetch 1), results kept a day."""
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.effective_result_backend,
        "task_default_queue": settings.queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_expires": settings.result_expires_seconds,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "task_ignore_result": False,
    }


def make_app(settings: AgentSettings | None = None) -> Celery:
    s = settings if settings is not None else current_settings()
    celery = Celery("llm_connect.agents")
    celery.conf.update(celery_config(s))
    return celery


#: the worker app (``-A llm_connect.agents.tasks``)
app = make_app()


# -- trace context (llm_connect.tracing.celery does the work, loaded only when tracing is in use) ---------------


#: the tasks whose messages carry the trace context (other apps' tasks keep their own instrumentation)
_TRACED_PREFIX = "llm_connect."


def _publish_context(sender: Any = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """A task of ours being sent carries the sender's trace context, when this process uses OpenTelemetry."""
    name = sender if isinstance(sender, str) else getattr(sender, "name", None)
    if (
        headers is not None
        and "opentelemetry.trace" in sys.modules
        and isinstance(name, str)
        and name.startswith(_TRACED_PREFIX)
    ):
        from ..tracing.celery import inject

        inject(headers)


def _worker_tracing() -> Any:
    config = current_settings().config
    if config is None or not config.tracing.enabled:
        return None
    from ..tracing import build_tracing

    return build_tracing(config.tracing)


def _task_started(task: Any = None, **_: Any) -> None:
    ours = task is not None and str(getattr(task, "name", "")).startswith(_TRACED_PREFIX)
    tracing = _worker_tracing() if ours else None
    if tracing is not None:
        from ..tracing.celery import start_task

        start_task(tracing, task)


def _task_done(task: Any = None, state: str | None = None, **_: Any) -> None:
    if task is not None and "llm_connect.tracing.celery" in sys.modules:
        from ..tracing.celery import end_task

        end_task(task, state)


def _flush_spans(**_: Any) -> None:
    """A worker (or a pool's child process) stopping: export the spans still in the exporter's batch (a prefork
    child ends with os._exit, which skips the SDK's own exit hook)."""
    if "llm_connect.tracing.spans" in sys.modules:
        tracing = _worker_tracing()
        if tracing is not None:
            tracing.flush()


signals.before_task_publish.connect(_publish_context, weak=False, dispatch_uid="llm_connect.trace.publish")
signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="llm_connect.trace.prerun")
signals.task_postrun.connect(_task_done, weak=False, dispatch_uid="llm_connect.trace.postrun")
signals.worker_process_shutdown.connect(_flush_spans, weak=False, dispatch_uid="llm_connect.trace.flush_child")
signals.worker_shutdown.connect(_flush_spans, weak=False, dispatch_uid="llm_connect.trace.flush")


def _sync_task(name: str, **options: Any) -> Callable[[F], F]:
    """``app.task`` that refuses ``async def`` functions (see the module docstring)."""

    def deco(fn: F) -> F:
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"Celery task {name} must be a plain def that uses asyncio.run(), not async def")
        return app.task(name=name, **options)(fn)  # type: ignore[no-any-return]

    return deco


def _worker(task: Any) -> dict[str, Any]:
    return {"hostname": getattr(task.request, "hostname", None), "pid": os.getpid()}


async def _with_runtime(op: str, *args: Any) -> Any:
    async with AgentRuntime(current_settings()) as rt:
        return await getattr(rt, op)(*args)


@_sync_task("llm_connect.agents.handle_message", bind=True)
def handle_message(self: Any, message_dict: Mapping[str, Any], agent: str | None = None) -> dict[str, Any]:
    """Answer one inbound message; returns the reply dict. Never raises: failures give the polite fallback."""
    try:
        reply = asyncio.run(_with_runtime("handle_message", message_dict, agent))
    except Exception as exc:  # e.g. a bad config: still a reply, never a task failure
        log.exception("handle_message failed before the agent ran; sent the fallback reply")
        mid = message_dict.get("id") if isinstance(message_dict, Mapping) else None
        reply = {
            "content": FALLBACK_REPLY,
            "agent": agent,
            "agent_name": None,
            "status": "fallback",
            "reply_to": mid,
            "error": f"{type(exc).__name__}: {exc}",
        }
    reply["worker"] = _worker(self)
    return reply


@_sync_task("llm_connect.agents.delegate", bind=True)
def delegate(
    self: Any,
    parent: Mapping[str, Any],
    to_agent: str,
    content: str | None = None,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """Run ``to_agent`` on a sub-task of ``parent`` (a reply dict) under a sub-budget of ``max_tokens``.

    Chains: ``handle_message.s(msg, agent="a") | delegate.s("b", max_tokens=2000) | delegate.s("c")``.
    Never raises: a refused delegation or a failed call is a reply with that status."""
    try:
        reply = asyncio.run(_with_runtime("delegate", parent, to_agent, content, max_tokens))
    except Exception as exc:
        log.exception("delegate to %s failed before the agent ran", to_agent)
        reply = {
            "content": FALLBACK_REPLY,
            "agent": to_agent,
            "agent_name": None,
            "status": "fallback",
            "error": f"{type(exc).__name__}: {exc}",
        }
    reply["worker"] = _worker(self)
    return reply


@_sync_task("llm_connect.agents.cleanup_thread")
def cleanup_thread(thread_id: str, tenant_id: str | None = None) -> dict[str, Any]:
    """End a thread: free its budgets and history, record and return its final usage."""
    return asyncio.run(_with_runtime("cleanup_thread", thread_id, tenant_id))  # type: ignore[no-any-return]


@_sync_task("llm_connect.agents.gather_replies")
def gather_replies(replies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Chord callback of a collective proposal: the replies in the order the agents were given."""
    items = [dict(r) for r in replies]
    return {"replies": items, "count": len(items), "ok": sum(1 for r in items if r.get("status") == "ok")}


@_sync_task("llm_connect.agents.ping", bind=True)
def ping(self: Any) -> dict[str, Any]:
    """Worker liveness and identity."""
    s = current_settings()
    return {**_worker(self), "mode": s.mode, "queue": s.queue, "agents": sorted(s.personas)}


# -- client helpers -------------------------------------------------------------------------------------------


def _sig(celery: Celery, name: str, queue: str | None, *args: Any, **kwargs: Any) -> Any:
    options = {"queue": queue} if queue else {}
    return celery.signature(name, args=args, kwargs=kwargs, **options)


def collective_proposal(
    message: Mapping[str, Any], agents: Sequence[str], *, queue: str | None = None, celery: Celery | None = None
) -> AsyncResult:
    """Send one message to every agent in parallel (a Celery chord); ``.get()`` gives gather_replies' dict.

    Wall time is about the slowest agent's, given enough worker concurrency (``-c`` ≥ len(agents)).
    ``queue``: where to send (default: the app's default queue)."""
    if not agents:
        raise ValueError("a collective proposal needs at least one agent")
    msg = InboundMessage.from_dict(message).to_dict()  # validate here; one id for every agent
    a = celery or app
    header = [_sig(a, "llm_connect.agents.handle_message", queue, msg, agent=n) for n in agents]
    return chord(header)(_sig(a, "llm_connect.agents.gather_replies", queue))


def delegation_chain(
    message: Mapping[str, Any],
    agents: Sequence[str],
    max_tokens: Sequence[int | None] | None = None,
    *,
    queue: str | None = None,
    celery: Celery | None = None,
) -> AsyncResult:
    """A → B → C …: the first agent answers ``message``; each next one gets the previous reply as its task,
    under a sub-budget (``max_tokens[i]`` for ``agents[i + 1]``) of the chain above it."""
    if len(agents) < 1:
        raise ValueError("a delegation chain needs at least one agent")
    caps = list(max_tokens or [None] * (len(agents) - 1))
    if len(caps) != len(agents) - 1:
        raise ValueError("max_tokens needs one entry per delegated agent (len(agents) - 1)")
    a = celery or app
    msg = InboundMessage.from_dict(message).to_dict()
    steps = [_sig(a, "llm_connect.agents.handle_message", queue, msg, agent=agents[0])]
    for name, cap in zip(agents[1:], caps, strict=True):
        steps.append(_sig(a, "llm_connect.agents.delegate", queue, name, max_tokens=cap))
    return chain(*steps).apply_async()
