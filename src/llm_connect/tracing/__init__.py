"""OpenTelemetry traces of llm-connect calls (the ``otel`` extra): docs/observability.md.

::

    from llm_connect.tracing import Tracing
    cfg = RunConfig(tracing=Tracing())          # spans on the globally configured tracer provider
    tracing = build_tracing(config.tracing)     # from the config's ``tracing:`` section

What is traced:

- a gateway request: a SERVER span (``POST /v1/chat/completions``), child of the request's ``traceparent``;
- a library call (``execute_prompt``, ``async_execute_prompt``, ``stream``, ``embed`` on an adapter or a router):
  an INTERNAL root span (``chat {model}``);
- each upstream attempt under either: a CLIENT span (``chat {model}``, ``embeddings {model}``) with the GenAI
  semantic-convention attributes (``gen_ai.*``), ours under ``llm_connect.*`` (cost, tenant, attempt, retries,
  fallback, estimated, budget reserved / settled), ``error.type`` and status ERROR when it failed;
- upstream requests carry ``traceparent`` (``propagate_upstream``), and Celery tasks carry the context in their
  headers (:mod:`llm_connect.tracing.celery`).

Nothing here is imported unless tracing is configured: the call pipeline only checks ``RunConfig.tracing``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config.sections import TracingSection
    from .spans import Route, Served, Tracing

__all__ = ["Route", "Served", "Tracing", "build_tracing", "tracer_provider"]

INSTALL_HINT = "tracing needs the otel extra: pip install 'llm-connect[otel]'"


def __getattr__(name: str) -> Any:
    if name in ("Route", "Served", "Tracing"):
        from . import spans

        return getattr(spans, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def tracer_provider(section: TracingSection) -> Any:
    """The tracer provider a ``tracing:`` section describes: the global one for ``exporter: none``, else an SDK
    provider of its own (service name, sampler, exporter) — the application's global provider is left alone."""
    from opentelemetry import trace

    if section.exporter == "none":
        return trace.get_tracer_provider()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": section.service_name}),
        sampler=ParentBased(TraceIdRatioBased(section.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(section)))
    return provider


def _exporter(section: TracingSection) -> Any:
    from ..config import ConfigError

    if section.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=section.service_name)
    kwargs = {"endpoint": section.endpoint} if section.endpoint else {}
    try:
        if section.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[no-redef]
    except ImportError:
        package = f"opentelemetry-exporter-otlp-proto-{section.protocol}"
        raise ConfigError(
            "tracing.exporter", f"the otlp exporter needs {package}: pip install {package} (or exporter: console)"
        ) from None
    return OTLPSpanExporter(**kwargs)


@functools.cache
def build_tracing(section: TracingSection) -> Tracing | None:
    """The :class:`Tracing` of a ``tracing:`` section, None when it is not enabled. One per section and process
    (a gateway and its agents share the provider and its export thread). Raises ConfigError when the otel
    extra or the chosen exporter is not installed."""
    if not section.enabled:
        return None
    try:
        from .spans import Tracing
    except ImportError:
        from ..config import ConfigError

        raise ConfigError("tracing.enabled", INSTALL_HINT) from None
    return Tracing(tracer_provider(section), propagate_upstream=section.propagate_upstream)
