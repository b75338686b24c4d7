"""Span attribute names and values: the OpenTelemetry GenAI and HTTP semantic conventions, and ours.

Pure functions, no OpenTelemetry import: they turn what a call asked for and what it got into the attribute
mappings the spans carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..types import RunConfig

__all__ = [
    "NS",
    "provider_name",
    "request_attributes",
    "server_address",
    "usd",
]

#: the namespace of the attributes that are ours, not the conventions'
NS = "llm_connect"

#: our provider names -> the ``gen_ai.provider.name`` well-known values; any other name is passed as it is
_PROVIDER_NAMES: Mapping[str, str] = {
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "vertex_ai": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}


def provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` of one of our provider names (``gemini`` -> ``gcp.gemini``)."""
    return _PROVIDER_NAMES.get(provider, provider)


def server_address(base: str | None) -> dict[str, Any]:
    """``server.address`` / ``server.port`` of an upstream base URL (nothing for an in-process model)."""
    if not base:
        return {}
    try:
        parts = urlsplit(base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return {}
    if not parts.hostname:
        return {}
    return {"server.address": parts.hostname, "server.port": port}


def request_attributes(op: str, provider: str, model: str, cfg: RunConfig) -> dict[str, Any]:
    """The request side of a GenAI span: operation, provider (with the older ``gen_ai.system``), model and the
    sampling settings the call asked for."""
    name = provider_name(provider)
    out: dict[str, Any] = {
        "gen_ai.operation.name": op,
        "gen_ai.provider.name": name,
        "gen_ai.system": name,
    }
    if model:
        out["gen_ai.request.model"] = model
    if cfg.max_tokens is not None:
        out["gen_ai.request.max_tokens"] = cfg.max_tokens
    if cfg.temperature is not None:
        out["gen_ai.request.temperature"] = float(cfg.temperature)
    if cfg.top_p is not None:
        out["gen_ai.request.top_p"] = float(cfg.top_p)
    if cfg.seed is not None:
        out["gen_ai.request.seed"] = cfg.seed
    stops = cfg.stop_list
    if stops:
        out["gen_ai.request.stop_sequences"] = stops
    if cfg.tenant_id:
        out[f"{NS}.tenant"] = cfg.tenant_id
    if cfg.agent:
        out[f"{NS}.agent"] = cfg.agent
    if cfg.thread_id:
        out[f"{NS}.thread_id"] = cfg.thread_id
    return out


def usd(value: Decimal | None) -> float | None:
    """A cost as a span attribute (attributes carry no decimals: a float, enough for a trace view)."""
    return None if value is None else float(value)
