"""Prometheus metrics of the gateway (prometheus-client, on a private registry: no module globals).

=====================================================  ===================================================
llm_gateway_requests_total{route,status}               HTTP requests answered
llm_gateway_request_duration_seconds{route}            latency histogram (whole request; streams included)
llm_gateway_in_flight_requests                         requests being served
llm_gateway_tokens_total{tenant,model,kind}            input / output tokens of upstream calls
llm_gateway_cost_usd_total{tenant,model}               USD of upstream calls (priced ones)
llm_gateway_upstream_calls_total{deployment,outcome}   each attempt (a router may make several per request)
llm_gateway_upstream_errors_total{deployment,error}    failed attempts by error type
llm_gateway_budget_rejections_total{tenant}            requests refused by a budget
llm_gateway_rate_limited_total{tenant}                 requests refused by an rpm / tpm limit
llm_gateway_ledger_failures_total{kind}                usage events the ledger did not store the normal way:
                                                       unstorable_metadata, refused, spooled, replay, lost
=====================================================  ===================================================

With several workers (``serve(workers=N)``) the gateway sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start, so ``/metrics`` of any worker reports the sum over all of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..usage import UsageEvent

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The gateway's metric families and the usage-event subscriber that feeds them."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("llm_gateway_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.duration = Histogram(
            "llm_gateway_request_duration_seconds", "Request latency", ["route"], buckets=_BUCKETS, registry=r
        )
        gauge_kw: dict[str, Any] = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
        self.in_flight = Gauge("llm_gateway_in_flight_requests", "Requests being served", registry=r, **gauge_kw)
        #: requests being served, counted in a plain int and read when scraped (one process; with several the
        #: gauge is a shared livesum, changed on every request)
        self._serving = 0
        if not self.multiprocess:
            self.in_flight.set_function(lambda: self._serving)
        self.tokens = Counter("llm_gateway_tokens", "Tokens of upstream calls", ["tenant", "model", "kind"], registry=r)
        self.cost = Counter("llm_gateway_cost_usd", "USD cost of upstream calls", ["tenant", "model"], registry=r)
        self.upstream = Counter(
            "llm_gateway_upstream_calls", "Upstream call attempts", ["deployment", "outcome"], registry=r
        )
        self.upstream_errors = Counter(
            "llm_gateway_upstream_errors", "Failed upstream attempts", ["deployment", "error"], registry=r
        )
        self.budget_rejections = Counter(
            "llm_gateway_budget_rejections", "Requests refused by a budget", ["tenant"], registry=r
        )
        self.rate_limited = Counter(
            "llm_gateway_rate_limited", "Requests refused by an rpm / tpm limit", ["tenant"], registry=r
        )
        self.ledger_failures = Counter(
            "llm_gateway_ledger_failures",
            "Usage events the ledger did not store the normal way, by kind",
            ["kind"],
            registry=r,
        )
        self._req_children: dict[tuple[str, int], Any] = {}
        self._dur_children: dict[str, Any] = {}
        self._event_children: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    # -- HTTP ---------------------------------------------------------------------------------------
    def request_started(self) -> None:
        if self.multiprocess:
            self.in_flight.inc()
        else:
            self._serving += 1

    def request_ended(self) -> None:
        if self.multiprocess:
            self.in_flight.dec()
        else:
            self._serving -= 1

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        c = self._req_children.get((route, status))
        if c is None:
            c = self._req_children[(route, status)] = self.requests.labels(route, str(status))
        c.inc()
        h = self._dur_children.get(route)
        if h is None:
            h = self._dur_children[route] = self.duration.labels(route)
        h.observe(seconds)

    # -- usage events (a UsageTracker subscriber) ----------------------------------------------------
    def __call__(self, e: UsageEvent) -> None:
        tenant = e.tenant_id or "-"
        deployment = (e.metadata or {}).get("deployment") or e.deployment
        key = (tenant, e.provider, e.model, deployment, e.success)
        kids = self._event_children.get(key)
        if kids is None:
            model = f"{e.provider}:{e.model}"
            dep = deployment or model
            kids = self._event_children[key] = (
                self.upstream.labels(dep, "success" if e.success else "error"),
                self.tokens.labels(tenant, model, "input"),
                self.tokens.labels(tenant, model, "output"),
                self.cost.labels(tenant, model),
            )
        calls, tin, tout, cost = kids
        calls.inc()
        if not e.success:
            self.upstream_errors.labels(deployment or f"{e.provider}:{e.model}", e.error_type or "error").inc()
        if e.input_tokens:
            tin.inc(e.input_tokens)
        if e.output_tokens:
            tout.inc(e.output_tokens)
        if e.cost_usd:
            cost.inc(float(e.cost_usd))

    def ledger_failed(self, kind: str, events: int, error: BaseException | None) -> None:
        """The ledger's ``on_failure`` hook."""
        self.ledger_failures.labels(kind).inc(events)

    # -- exposition -----------------------------------------------------------------------------------
    def render(self) -> tuple[bytes, bytes]:
        """(body, content type) of the Prometheus text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.multiprocess:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            agg = CollectorRegistry()
            MultiProcessCollector(agg)
            return generate_latest(agg), CONTENT_TYPE_LATEST.encode()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()
