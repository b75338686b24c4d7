"""The shape of ``llm-connect.yaml`` as typed models: the one source of its validation and its JSON Schema.

Each section is a pydantic model with ``extra="forbid"`` (a typo is an error naming the key), field
descriptions (they become the schema's, so editors show them) and the coercions a YAML file with ``${VAR}``
needs (``"8123"`` is a port, ``"yes"`` a boolean). :mod:`llm_connect.config.loader` validates a file with
:class:`ConfigFile` and resolves it into the runtime :class:`~llm_connect.config.GatewayConfig`.

The ``router``, ``policies`` and ``agents`` sections are described here for the schema and checked for shape;
their meaning is validated by their own loaders (``Router.from_config``, ``RoutingPolicy.from_config``,
``AgentSettings.from_config``), whose key sets a test keeps equal to these models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "AgentsSection",
    "ApiKeyEntry",
    "BudgetLimit",
    "BudgetsConfig",
    "ConfigFile",
    "KeysSection",
    "LedgerSection",
    "ModelEntry",
    "PolicySection",
    "PriceEntry",
    "ProviderEntry",
    "RedisConfig",
    "ResponsesSection",
    "RouterSection",
    "ServerConfig",
    "TeamEntry",
    "TenantEntry",
    "TracingSection",
    "json_schema",
]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
SYNC_MODES = ("FULL", "NORMAL", "EXTRA")
#: how a YAML file says "nothing" for an optional choice (``period: none``) or "no ledger" (``url: off``)
NONE_WORDS = frozenset({"none", "null", "off", "false", "no", ""})


def problem(message: str, key: str | None = None) -> PydanticCustomError:
    """A validation error with our own wording; ``key`` names the sub-key it is about (``budget.tokens``)."""
    return PydanticCustomError("config", "{message}", {"message": message, "key": key})


def _to_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _lower(v: Any) -> Any:
    return v.strip().lower() if isinstance(v, str) else v


def _upper(v: Any) -> Any:
    return v.strip().upper() if isinstance(v, str) else v


def _none_word(v: Any) -> Any:
    return None if v is False or (isinstance(v, str) and v.strip().lower() in NONE_WORDS) else v


#: a list of non-empty strings; one string is a list of one
Names = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(_to_list, json_schema_input_type=str | list[str]),
]
#: a USD amount: a number or a decimal string, kept exact
Usd = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, description="USD, a number or a decimal string")]
PositiveInt = Annotated[int, Field(ge=1)]


class Section(BaseModel):
    """Base of every section: unknown keys refused, numbers accepted where a string is asked, nulls = unset."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


# ---------------------------------------------------------------------------------------------- server & stores


def _alone(key: str, data: Any) -> Any:
    """A section given as its one value: a URL / path, or ``false`` for off."""
    if data is False or isinstance(data, str):
        return {key: "off" if data is False else data}
    return data


def _database_url(v: str | None) -> str | None:
    """A database the gateway can open: a file path, ``sqlite:///path`` or ``postgresql://…``."""
    if v is not None and "://" in v and not v.lower().startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise problem(f"must be a file path, sqlite:///path or postgresql://..., got {v!r}")
    return v


class ServerConfig(Section):
    """How the gateway listens and serves."""

    host: str = Field("127.0.0.1", description="address to bind (0.0.0.0 for every interface)")
    port: int = Field(9999, ge=0, le=65535, description="TCP port (0: any free port)")
    workers: int = Field(1, ge=1, description="worker processes; > 1 needs redis when budgets or limits are set")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="larger request bodies are refused with 413")
    request_timeout: float = Field(
        600.0, gt=0, description="wall-clock cap of one request in seconds (also the default call timeout)"
    )
    log_level: Annotated[Literal[LOG_LEVELS], BeforeValidator(_lower)] = Field("info", description="log level")
    access_log: bool = Field(False, description="log one line per request")
    public_metrics: bool = Field(False, description="serve /metrics without the admin key when auth is on")
    docs: bool = Field(True, description="serve /openapi.json and /docs")
    ui: bool = Field(True, description="serve the web dashboard at /ui (admin key login; loopback only without auth)")
    ui_session_hours: float = Field(8.0, gt=0, le=720, description="how long a dashboard login lasts")


class RedisConfig(Section):
    """Shared state for replicas: budgets, rate limits, delegated-budget caps, router cooldowns."""

    url: str = Field(description="redis://host:port/db, rediss://… or unix://…", pattern=r"^(rediss?|unix)://")
    namespace: str = Field("llmc", pattern=r"^[A-Za-z0-9_.:\-]+$", description="key prefix (letters, digits, _ . : -)")

    @model_validator(mode="before")
    @classmethod
    def _url_alone(cls, data: Any) -> Any:
        return {"url": data} if isinstance(data, str) else data


class LedgerSection(Section):
    """Where every call's usage row is written."""

    url: Annotated[str | None, BeforeValidator(_none_word)] = Field(
        "default",
        description="default (SQLite in the data directory) | /path/usage.sqlite3 | sqlite:///path | "
        "postgresql://… | off (no ledger)",
    )
    synchronous: Annotated[Literal[SYNC_MODES], BeforeValidator(_upper)] = Field(
        "NORMAL", description="SQLite: NORMAL survives any process kill; FULL also an OS crash (slower)"
    )
    table: str = Field("llm_usage", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="table name")

    @model_validator(mode="before")
    @classmethod
    def _url_alone(cls, data: Any) -> Any:
        return _alone("url", data)

    _known_scheme = field_validator("url")(_database_url)


class KeysSection(Section):
    """Where tenants, teams and API keys made through the admin API (and seeded from this file) are kept
    (docs/keys.md). Used when auth is on."""

    url: Annotated[str | None, BeforeValidator(_none_word)] = Field(
        "default",
        description="default (the ledger's PostgreSQL database, else keys.sqlite3 next to the ledger's file) | "
        "/path/keys.sqlite3 | sqlite:///path | postgresql://… | off (keys only from this file)",
    )
    table_prefix: str = Field(
        "llm_", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$", description="prefix of the store's table names"
    )
    poll_seconds: float = Field(
        0.5, gt=0, le=0.5, description="how often each replica looks for changes (Redis pub/sub, when set, is sooner)"
    )

    @model_validator(mode="before")
    @classmethod
    def _url_alone(cls, data: Any) -> Any:
        return _alone("url", data)

    _known_scheme = field_validator("url")(_database_url)


class ResponsesSection(Section):
    """The Responses API (``POST /v1/responses``): where ``store: true`` responses are kept, and the rule for
    built-in tools (docs/responses.md)."""

    store: Annotated[str | None, BeforeValidator(_none_word)] = Field(
        "default",
        description="default (responses.sqlite3 in the data directory) | /path/responses.sqlite3 | sqlite:///path | "
        "postgresql://… | off (nothing stored: previous_response_id and GET /v1/responses/{id} find nothing)",
    )
    table: str = Field("llm_responses", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="table name")
    ttl_days: Annotated[float | None, BeforeValidator(_none_word)] = Field(
        30, gt=0, description="stored responses are kept this many days (OpenAI keeps them 30); none: for ever"
    )
    builtin_tools: Annotated[Literal["drop", "refuse"], BeforeValidator(_lower)] = Field(
        "drop",
        description="tools OpenAI runs itself (web_search, file_search, ...): drop them from what the model sees "
        "and name them in the x-llm-tools-dropped header, or refuse the request (400)",
    )

    @model_validator(mode="before")
    @classmethod
    def _store_alone(cls, data: Any) -> Any:
        return _alone("store", data)

    _known_scheme = field_validator("store")(_database_url)


class TracingSection(Section):
    """OpenTelemetry traces (docs/observability.md): a span per gateway request and per upstream attempt with
    the GenAI semantic-convention attributes. Needs the ``otel`` extra; off by default (then nothing of
    OpenTelemetry is imported)."""

    enabled: bool = Field(False, description="make spans (needs: pip install 'llm-connect[otel]')")
    service_name: str = Field("llm-connect", min_length=1, description="the service.name resource attribute")
    exporter: Annotated[Literal["otlp", "console", "none"], BeforeValidator(_lower)] = Field(
        "otlp",
        description="otlp (OTLP/HTTP, or gRPC with protocol: grpc; needs an opentelemetry-exporter-otlp package) | "
        "console (spans printed as JSON on stdout) | none (use the tracer provider the application set globally)",
    )
    endpoint: str | None = Field(
        None,
        description="OTLP endpoint (default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / $OTEL_EXPORTER_OTLP_ENDPOINT, "
        "else the exporter's own: http://localhost:4318/v1/traces, or localhost:4317 for gRPC)",
    )
    protocol: Annotated[Literal["http", "grpc"], BeforeValidator(_lower)] = Field(
        "http", description="the OTLP transport: http (protobuf over HTTP) or grpc"
    )
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of new traces recorded (a request with a traceparent follows its parent)"
    )
    propagate_upstream: bool = Field(
        True, description="send traceparent / tracestate on every upstream provider request"
    )


class ProviderEntry(Section):
    """Credentials and base URL of one provider, used by deployments and explicit ``provider:model`` names."""

    api_key: str | None = Field(None, description="the provider's API key, usually ${ENV_VAR}")
    api_base: str | None = Field(None, description="base URL (a proxy, a self-hosted server)")
    options: dict[str, Any] = Field(default_factory=dict, description="other create_adapter keywords")


# ---------------------------------------------------------------------------------------------- models & routing


class ModelEntry(Section):
    """An alias that is a full deployment of its own."""

    model: str = Field(description="'provider:model'", pattern=r":")
    api_base: str | None = None
    api_key: str | None = None
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    options: dict[str, Any] = Field(default_factory=dict, description="other create_adapter keywords")


def _alias_text(v: Any) -> Any:
    if isinstance(v, str):
        if not v.strip():
            raise problem("must name a group, another alias or a 'provider:model'")
        return v.strip()
    if not isinstance(v, Mapping):
        raise problem("must be a string or a mapping with 'model'")
    return v


ModelAlias = Annotated[str | ModelEntry, BeforeValidator(_alias_text)]


class DeploymentEntry(Section):
    """One deployment of a router group (``Deployment.from_dict``)."""

    model: str | None = Field(None, description="'provider:model' (or the model, with 'provider')")
    provider: str | None = None
    name: str | None = Field(None, description="unique name (default provider:model)")
    weight: float | None = Field(None, gt=0, description="share of traffic under simple-shuffle")
    rpm: PositiveInt | None = Field(None, description="requests per minute this deployment may take")
    tpm: PositiveInt | None = Field(None, description="tokens per minute this deployment may take")
    context_window: PositiveInt | None = None
    api_base: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    price_per_1k: Usd | None = Field(None, description="blended USD per 1000 tokens, for cost-based routing")
    timeout: float | None = Field(None, gt=0, description="seconds per attempt on this deployment")
    headers: dict[str, str] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="other create_adapter keywords")


class RetrySection(Section):
    """``RetryPolicy``: retries over a group's deployments, exponential backoff."""

    num_retries: int | None = Field(None, ge=0)
    backoff_base: float | None = Field(None, ge=0)
    backoff_max: float | None = Field(None, ge=0)
    max_wait: float | None = Field(None, ge=0, description="longest wait for a cooling-down deployment")
    jitter: bool | None = None


class CooldownSection(Section):
    """``CooldownPolicy``: when a failing deployment is taken out and for how long."""

    allowed_fails: int | None = Field(None, ge=1)
    window: float | None = Field(None, ge=0)
    cooldown_time: float | None = Field(None, ge=0)
    max_cooldown: float | None = Field(None, ge=0)
    probe_timeout: float | None = Field(None, ge=0)
    forget_after: float | None = Field(None, ge=0)


Fallbacks = dict[str, Names] | list[dict[str, Names]]


class RouterSection(Section):
    """``Router.from_config`` (docs/routing.md): model groups of deployments, strategies, retries, fallbacks."""

    groups: dict[str, list[str | DeploymentEntry]] = Field(
        description="group name -> its deployments ('provider:model' or a mapping)"
    )
    fallbacks: Fallbacks | None = Field(None, description="group -> groups tried next (transitive)")
    context_window_fallbacks: Fallbacks | None = None
    content_policy_fallbacks: Fallbacks | None = None
    default_fallbacks: Names | None = Field(None, description="groups tried after any group without fallbacks")
    strategy: str | None = Field(
        None,
        description="simple-shuffle | least-busy | latency-based-routing | usage-based-routing | cost-based-routing",
    )
    latency_buffer: float | None = Field(None, ge=0)
    latency_alpha: float | None = Field(None, gt=0, le=1)
    default_group: str | None = None
    num_retries: int | None = Field(None, ge=0)
    retry: RetrySection | None = None
    cooldown: CooldownSection | None = None
    timeout: float | None = Field(None, gt=0, description="seconds per attempt unless a deployment sets its own")
    redis_url: str | None = Field(None, description="share cooldowns and counters (the redis section also does)")
    redis_namespace: str | None = None
    seed: int | None = None

    @field_validator("groups", mode="before")
    @classmethod
    def _groups_mapping(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise problem("must be a mapping of group name -> deployments")
        return v


Candidate = str | dict[str, Any]


class RuleEntry(Section):
    """One routing-policy rule (``RoutingPolicy``)."""

    task_type: Names | None = None
    when: dict[str, Any] | None = Field(None, description="match on the call's context (key: value or [values])")
    prefer: Candidate | list[Candidate] | None = Field(None, description="candidates in order: {group: …} or a model")
    fallback: Candidate | list[Candidate] | None = None
    max_cost_per_1k: Usd | None = Field(None, description="skip candidates priced above this (USD per 1000 tokens)")
    deny_trust: Names | None = None
    allow_trust: Names | None = None
    strategy: str | None = None
    name: str | None = None
    description: str | None = None
    message: str | None = None


class ConstraintEntry(Section):
    """A policy-wide trust constraint."""

    task_type: Names | None = None
    when: dict[str, Any] | None = None
    deny_trust: Names | None = None
    allow_trust: Names | None = None
    message: str | None = None
    name: str | None = None


class PolicySection(Section):
    """``RoutingPolicy.from_config``; served as the model named ``policy``."""

    rules: list[RuleEntry] = Field(default_factory=list)
    default: Candidate | list[Candidate] | RuleEntry | None = None
    constraints: list[ConstraintEntry] = Field(default_factory=list)
    unknown_price: Literal["allow", "skip"] | None = None
    num_retries: int | None = Field(None, ge=0)
    retry: RetrySection | None = None
    cooldown: CooldownSection | None = None
    timeout: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _bare_rules(cls, data: Any) -> Any:
        return {"rules": data} if isinstance(data, list) else data


# ---------------------------------------------------------------------------------------------- tenancy & budgets


class BudgetLimit(Section):
    """A budget: a token and / or a USD cap, optionally reset every period."""

    tokens: PositiveInt | None = Field(None, description="token cap")
    usd: Usd | None = Field(None, description="USD cap")
    period: Annotated[
        Literal["daily", "monthly"] | None,
        BeforeValidator(_none_word, json_schema_input_type=Literal["daily", "monthly", "none"] | None),
    ] = Field(None, description="daily | monthly | none (never resets)")

    @model_validator(mode="after")
    def _capped(self) -> BudgetLimit:
        if not self.capped:
            raise problem("a budget needs 'tokens' and / or 'usd'", key="tokens")
        return self

    @property
    def capped(self) -> bool:
        return self.tokens is not None or self.usd is not None


class TenantEntry(Section):
    """A tenant: what its keys may use and spend."""

    models: Names | None = Field(None, description="allowed model names / fnmatch patterns (default: all)")
    budget: BudgetLimit | None = None
    rpm: PositiveInt | None = Field(None, description="requests per minute")
    tpm: PositiveInt | None = Field(None, description="tokens per minute")


class TeamEntry(Section):
    """A team of a tenant: its keys' own level between the tenant and the key (budgets, limits, models)."""

    tenant: str = Field(min_length=1, description="the tenant the team belongs to")
    name: str | None = Field(None, description="display name (default: the id)")
    models: Names | None = Field(None, description="allowed model names / fnmatch patterns (default: all)")
    budget: BudgetLimit | None = None
    rpm: PositiveInt | None = Field(None, description="requests per minute")
    tpm: PositiveInt | None = Field(None, description="tokens per minute")


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _sha256(v: Any) -> Any:
    if isinstance(v, str):
        v = v.strip().lower()
        v = v[7:] if v.startswith("sha256:") else v
        if not _HEX64.match(v):
            raise problem("must be a sha256 hex digest (64 hex characters)")
    return v


Sha256 = Annotated[str, BeforeValidator(_sha256), Field(description="sha256 hex digest of the key")]
PlainKey = Annotated[
    str, Field(min_length=16, description="the key itself, usually ${ENV_VAR} (stored only as its sha256)")
]


class ApiKeyEntry(Section):
    """An API key of the gateway (``Authorization: Bearer …``)."""

    name: str | None = Field(None, description="shown in the ledger (default key<N>)")
    key: PlainKey | None = None
    key_sha256: Sha256 | None = None
    tenant: str | None = Field(None, description="the tenant it belongs to (required unless admin)")
    team: str | None = Field(None, description="the team (of that tenant) it belongs to")
    models: Names | None = None
    budget: BudgetLimit | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    admin: bool = Field(False, description="may use admin routes and see every tenant")
    tenant_admin: bool = Field(False, description="may manage its own tenant's keys and teams, and read its usage")

    @model_validator(mode="after")
    def _one_key(self) -> ApiKeyEntry:
        if self.key is not None and self.key_sha256 is not None:
            raise problem("give 'key' or 'key_sha256', not both", key="key")
        if self.key is None and self.key_sha256 is None:
            raise problem("each API key needs 'key' (e.g. ${MY_KEY}) or 'key_sha256'", key="key")
        if not self.tenant and not self.admin:
            raise problem("each API key needs a 'tenant'", key="tenant")
        return self


def _fraction_list(v: Any) -> Any:
    ok = isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 1 for x in v)
    if not ok:
        raise problem("must be a list of fractions in (0, 1]")
    return tuple(float(x) for x in v)


class BudgetsConfig(Section):
    """Gateway-wide budget settings: thread budgets, delegation bounds, warnings."""

    max_tokens_per_thread: PositiveInt | None = Field(
        None, description="cap of each per-thread budget (X-LLM-Thread-Id); unset: no thread budgets"
    )
    delegated_max_tokens: PositiveInt | None = Field(None, description="upper bound of X-LLM-Budget-Tokens")
    delegated_max_usd: Usd | None = Field(None, description="upper bound of X-LLM-Budget-USD")
    delegated_ttl_seconds: float = Field(86400.0, gt=0, description="lifetime of a delegated budget")
    on_unavailable: Literal["fail_closed", "fail_open"] = Field(
        "fail_closed", description="when the budget store is down"
    )
    thresholds: Annotated[tuple[float, ...], BeforeValidator(_fraction_list)] = Field(
        (0.75, 0.9, 0.95), description="warning levels, fractions of a cap"
    )
    default_max_tokens: PositiveInt = Field(
        4096, description="max_tokens of a budgeted call that sets none (its worst case is reserved)"
    )


class PriceEntry(Section):
    """A price override, USD per million tokens (``per_request``: USD per call)."""

    input_per_mtok: Usd | None = None
    output_per_mtok: Usd | None = None
    cache_read_per_mtok: Usd | None = Field(None, description="default: the input price")
    cache_write_per_mtok: Usd | None = Field(None, description="default: the input price")
    reasoning_per_mtok: Usd | None = Field(None, description="default: the output price")
    per_request: Usd | None = Field(None, description="USD per call, on top of the token prices")
    # the detail token kinds (docs/usage-normalisation.md)
    cache_write_1h_per_mtok: Usd | None = Field(None, description="1-hour cache writes; default: 2x the input price")
    input_audio_per_mtok: Usd | None = Field(None, description="default: the input price")
    input_image_per_mtok: Usd | None = Field(None, description="default: the input price")
    input_video_per_mtok: Usd | None = Field(None, description="default: the input price")
    cache_audio_read_per_mtok: Usd | None = Field(None, description="needed with input_audio and cache_read prices")
    cache_image_read_per_mtok: Usd | None = Field(None, description="needed with input_image and cache_read prices")
    cache_video_read_per_mtok: Usd | None = Field(None, description="needed with input_video and cache_read prices")
    output_audio_per_mtok: Usd | None = Field(None, description="default: the output price")
    output_image_per_mtok: Usd | None = Field(None, description="default: the output price")
    output_video_per_mtok: Usd | None = Field(None, description="default: the output price")
    # genai-prices' own names for the same prices
    input_mtok: Usd | None = Field(None, description="= input_per_mtok")
    output_mtok: Usd | None = Field(None, description="= output_per_mtok")
    cache_read_mtok: Usd | None = Field(None, description="= cache_read_per_mtok")
    cache_write_mtok: Usd | None = Field(None, description="= cache_write_per_mtok")
    output_reasoning_mtok: Usd | None = Field(None, description="= reasoning_per_mtok")
    cache_write_1h_mtok: Usd | None = Field(None, description="= cache_write_1h_per_mtok")
    input_audio_mtok: Usd | None = Field(None, description="= input_audio_per_mtok")
    input_image_mtok: Usd | None = Field(None, description="= input_image_per_mtok")
    input_video_mtok: Usd | None = Field(None, description="= input_video_per_mtok")
    cache_audio_read_mtok: Usd | None = Field(None, description="= cache_audio_read_per_mtok")
    cache_image_read_mtok: Usd | None = Field(None, description="= cache_image_read_per_mtok")
    cache_video_read_mtok: Usd | None = Field(None, description="= cache_video_read_per_mtok")
    output_audio_mtok: Usd | None = Field(None, description="= output_audio_per_mtok")
    output_image_mtok: Usd | None = Field(None, description="= output_image_per_mtok")
    output_video_mtok: Usd | None = Field(None, description="= output_video_per_mtok")


# ---------------------------------------------------------------------------------------------- agents


class PersonaEntry(BaseModel):
    """An agent persona (docs/agents.md); validated in full by the agents module (``Agent.from_dict``)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True, defer_build=True)

    id: str | None = Field(None, description="strict id (letters, digits, - _); default: the key, or from the name")
    name: str | None = Field(None, description="display name, any human name (default: the id)")
    role: str | None = Field(None, description="what the agent does")
    persona: str | None = Field(None, description="who the agent is, in its own words")
    system_prompt: str | None = Field(None, description="replaces the prompt built from role and persona")
    model_preference: str | None = Field(None, description="group, alias or provider:model (default quality)")
    trust_level: str | None = Field(None, description="supervised (default), autonomous, ...")
    max_tokens_per_thread: PositiveInt | None = None
    may_delegate_to: Names | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: float | None = Field(None, ge=0, le=2)


class AgentsSection(Section):
    """Celery agent workers (``AgentSettings.from_config``)."""

    mode: str | None = Field(None, description="gateway (call it over HTTP) or in_process (a Router from this file)")
    gateway_url: str | None = None
    gateway_api_key: str | None = None
    timeout: float | None = Field(None, gt=0, description="seconds per LLM call")
    broker_url: str | None = None
    result_backend: str | None = None
    queue: str | None = None
    result_expires_seconds: float | None = Field(None, ge=1)
    history_ttl_seconds: float | None = Field(None, ge=1)
    history_max_messages: int | None = Field(None, ge=0)
    max_output_tokens: PositiveInt | None = None
    default_agent: str | None = None
    personas: dict[str, PersonaEntry | None] | list[PersonaEntry] | None = None


# ---------------------------------------------------------------------------------------------- the file


def _input(kind: Any) -> BeforeValidator:
    """The schema shows every shape a section's own before-validator accepts (a URL alone, ...)."""
    return BeforeValidator(lambda v: v, json_schema_input_type=kind)


class ConfigFile(Section):
    """``llm-connect.yaml``: every section is optional (docs/gateway.md)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        coerce_numbers_to_str=True,
        defer_build=True,
        title="llm-connect configuration",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    redis: Annotated[RedisConfig | None, _input(RedisConfig | str | None)] = Field(
        None, description="a redis:// URL, or {url, namespace}"
    )
    ledger: Annotated[LedgerSection, _input(LedgerSection | str | bool)] = Field(
        default_factory=LedgerSection, description="a URL / path / off, or {url, synchronous, table}"
    )
    responses: Annotated[ResponsesSection, _input(ResponsesSection | str | bool)] = Field(
        default_factory=ResponsesSection, description="the Responses API's store (a URL / path / off) and tool rule"
    )
    providers: dict[str, ProviderEntry] = Field(default_factory=dict)
    router: RouterSection | None = None
    policies: Annotated[PolicySection | None, _input(PolicySection | list[RuleEntry] | None)] = Field(
        None, description="the policy, or just its list of rules"
    )
    models: dict[str, ModelAlias] = Field(default_factory=dict, description="aliases: group, alias or provider:model")
    default_model: str | None = Field(None, description="model of requests that name none")
    auth: bool | None = Field(None, description="default: on when any api key or admin key is configured")
    admin_key: PlainKey | None = None
    admin_key_sha256: Sha256 | None = None
    tenants: dict[str, TenantEntry] = Field(default_factory=dict)
    teams: dict[str, TeamEntry] = Field(default_factory=dict, description="team id -> its tenant, budget, limits")
    keys: Annotated[KeysSection, _input(KeysSection | str | bool)] = Field(
        default_factory=KeysSection, description="the key store: a URL / path / off, or {url, table_prefix}"
    )
    api_keys: list[ApiKeyEntry] = Field(default_factory=list)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    pricing: dict[str, PriceEntry] = Field(
        default_factory=dict, description="price overrides: 'provider:model' | 'model' | 'provider:*'"
    )
    agents: AgentsSection = Field(default_factory=AgentsSection)
    tracing: TracingSection = Field(default_factory=TracingSection)

    @model_validator(mode="after")
    def _one_admin_key(self) -> ConfigFile:
        if self.admin_key is not None and self.admin_key_sha256 is not None:
            raise problem("give 'admin_key' or 'admin_key_sha256', not both", key="admin_key")
        return self


#: a string that interpolates a variable: allowed wherever a number or a boolean is (``port: ${PORT:-9999}``)
ENV_STRING = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``llm-connect.yaml``, for editors and ``llm-connect config schema``.

    Numbers and booleans may also be ``${VAR}`` strings, as the loader interpolates before it validates."""
    schema = ConfigFile.model_json_schema(mode="validation")
    return _allow_env(schema)


def _allow_env(node: Any) -> Any:
    if isinstance(node, list):
        return [_allow_env(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_env(v) for k, v in node.items()}
    constrained = out.get("type") == "string" and ({"minLength", "pattern"} & set(out))
    if out.get("type") in ("integer", "number", "boolean") or constrained or "enum" in out or "const" in out:
        keep = {k: out.pop(k) for k in ("title", "description", "default") if k in out}
        return {"anyOf": [out, ENV_STRING], **keep}
    return out
