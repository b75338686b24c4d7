"""The one YAML config of llm-connect: load, interpolate ``${ENV}``, validate with errors naming the key path.

::

    cfg = load_config("llm-connect.yaml")      # or load_config(None) -> the embedded default
    cfg = parse_config({"router": {...}})      # from a mapping (tests, programmatic use)

Every string value may use ``${VAR}`` (required: an unset variable is an error naming the key) or
``${VAR:-default}``; ``$$`` is a literal ``$``. Numbers and booleans may be given as interpolated strings.

Sections (all optional; see docs/gateway.md for the full reference)::

    server      host, port, workers, max_body_bytes, request_timeout, log_level, access_log, public_metrics, docs
    redis       url, namespace                   -> shared budgets, rate limits, router cooldowns
    ledger      url ("default" | path | sqlite:///path | postgresql://... | "off"), synchronous, table
    responses   store ("default" | path | sqlite:///path | postgresql://... | "off"), table, ttl_days, builtin_tools
    providers   {name: {api_key, api_base, options}}  credentials used by deployments and explicit models
    router      passed to Router.from_config (groups, fallbacks, strategy, retry, cooldown, ...)
    policies    passed to RoutingPolicy.from_config
    models      aliases {name: "provider:model" | group | {model, api_base, api_key, api_key_env, options}}
    default_model
    auth        true | false (default: on when any api key or admin key is configured)
    admin_key / admin_key_sha256
    tenants     {id: {models, budget: {tokens, usd, period}, rpm, tpm}}
    teams       {id: {tenant, name, models, budget, rpm, tpm}}
    keys        url ("default" | path | sqlite:///path | postgresql://... | "off"), table_prefix, poll_seconds
    api_keys    [{name, key | key_sha256, tenant, team, models, budget, rpm, tpm, admin, tenant_admin}]
    budgets     max_tokens_per_thread, delegated_max_tokens, delegated_max_usd, delegated_ttl_seconds,
                on_unavailable, thresholds, default_max_tokens
    pricing     overrides {"provider:model" | "model" | "provider:*": {input_per_mtok, output_per_mtok, ...}}
    agents      the Celery agents (mode, gateway_url, personas, ...); validated in full by the agents module

The file's shape is the typed models of :mod:`llm_connect.config.sections` (pydantic): they validate it and
give its JSON Schema (``llm-connect config schema``). YAML is read with the 1.2 core schema, so ``off``,
``no`` and ``none`` are strings, not booleans or nulls (``ledger: {url: off}`` turns the ledger off).
"""

from .loader import (
    EMBEDDED_DEFAULT,
    ApiKeyConfig,
    ConfigError,
    GatewayConfig,
    KeysConfig,
    LedgerConfig,
    ProviderConfig,
    ResponsesConfig,
    TeamConfig,
    TenantConfig,
    hash_key,
    interpolate,
    load_config,
    parse_config,
    read_yaml,
)
from .sections import BudgetLimit, BudgetsConfig, RedisConfig, ServerConfig, json_schema

__all__ = [
    "EMBEDDED_DEFAULT",
    "ApiKeyConfig",
    "BudgetLimit",
    "BudgetsConfig",
    "ConfigError",
    "GatewayConfig",
    "KeysConfig",
    "LedgerConfig",
    "ProviderConfig",
    "RedisConfig",
    "ResponsesConfig",
    "ServerConfig",
    "TeamConfig",
    "TenantConfig",
    "hash_key",
    "interpolate",
    "json_schema",
    "load_config",
    "parse_config",
    "read_yaml",
]
