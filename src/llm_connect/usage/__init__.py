"""Usage accounting: events, live aggregates, prices and the persistent ledger.

* :class:`UsageEvent` — one record per call (who, what model, tokens, USD, latency, outcome).
* :class:`UsageTracker` — subscribers + thread-safe aggregates by agent, model and tenant.
* :class:`Pricing` — USD prices from ``genai-prices`` (+ config overrides), cached for the hot path.
* :class:`Ledger` — durable store (SQLite file or PostgreSQL), idempotent on ``request_id``; its reads take a
  :class:`CallFilter` (tenant, time, model, status, estimated, API key, request id).
* :func:`render_table`, :func:`write_chart`, :func:`usage_command` — reports (``llm-connect usage``).

The ledger and report modules are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .events import UsageEvent, new_request_id
from .pricing import ModelRate, Pricing
from .tracker import NONE_KEY, UsageStats, UsageTracker

if TYPE_CHECKING:
    from ._queries import CallFilter
    from .ledger import (
        FAILURE_KINDS,
        GROUP_BYS,
        Ledger,
        LedgerSubscriber,
        PostgresLedger,
        SqliteLedger,
        default_db_path,
    )
    from .report import render_table, usage_command, write_chart

__all__ = [
    "FAILURE_KINDS",
    "GROUP_BYS",
    "NONE_KEY",
    "CallFilter",
    "Ledger",
    "LedgerSubscriber",
    "ModelRate",
    "PostgresLedger",
    "Pricing",
    "SqliteLedger",
    "UsageEvent",
    "UsageStats",
    "UsageTracker",
    "default_db_path",
    "new_request_id",
    "render_table",
    "usage_command",
    "write_chart",
]

_LAZY = {
    "CallFilter": "_queries",
    "FAILURE_KINDS": "ledger",
    "GROUP_BYS": "ledger",
    "Ledger": "ledger",
    "LedgerSubscriber": "ledger",
    "PostgresLedger": "ledger",
    "SqliteLedger": "ledger",
    "default_db_path": "ledger",
    "render_table": "report",
    "usage_command": "report",
    "write_chart": "report",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
