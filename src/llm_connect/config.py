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
    providers   {name: {api_key, api_base, options}}  credentials used by deployments and explicit models
    router      passed to Router.from_config (groups, fallbacks, strategy, retry, cooldown, ...)
    policies    passed to RoutingPolicy.from_config
    models      aliases {name: "provider:model" | group | {model, api_base, api_key, api_key_env, options}}
    default_model
    auth        true | false (default: on when any api key or admin key is configured)
    admin_key / admin_key_sha256
    tenants     {id: {models, budget: {tokens, usd, period}, rpm, tpm}}
    api_keys    [{name, key | key_sha256, tenant, models, budget, rpm, tpm, admin}]
    budgets     max_tokens_per_thread, delegated_max_tokens, delegated_max_usd, delegated_ttl_seconds,
                on_unavailable, thresholds, default_max_tokens
    pricing     overrides {"provider:model" | "model" | "provider:*": {input_per_mtok, output_per_mtok, ...}}
    agents      free-form; validated by the agents module
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import LLMConfigurationError

__all__ = [
    "EMBEDDED_DEFAULT",
    "ApiKeyConfig",
    "BudgetLimit",
    "BudgetsConfig",
    "ConfigError",
    "GatewayConfig",
    "LedgerConfig",
    "ProviderConfig",
    "RedisConfig",
    "ServerConfig",
    "TenantConfig",
    "hash_key",
    "interpolate",
    "load_config",
    "parse_config",
]

#: the config used when none is given: the local model (default) and the fake provider, an SQLite ledger in the
#: data directory, bound to loopback, auth off (the gateway logs that clearly at start)
EMBEDDED_DEFAULT = """\
server:
  host: 127.0.0.1
  port: 9999
auth: false
ledger:
  url: default
models:
  local: local:smollm2-135m
  fake: fake:echo
default_model: local
"""

_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PERIODS = (None, "daily", "monthly")
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
_SYNC = ("FULL", "NORMAL", "EXTRA")
_TOP_KEYS = frozenset(
    {
        "server",
        "redis",
        "ledger",
        "providers",
        "router",
        "policies",
        "models",
        "default_model",
        "auth",
        "admin_key",
        "admin_key_sha256",
        "tenants",
        "api_keys",
        "budgets",
        "pricing",
        "agents",
    }
)


class ConfigError(LLMConfigurationError):
    """A config value is wrong. ``path`` names it (``api_keys[1].budget.usd``); ``source`` is the file."""

    code = "configuration_error"

    def __init__(self, path: str, problem: str, *, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path or '<top>'}: {problem}")
        self.path = path
        self.problem = problem
        self.source = source


def hash_key(key: str) -> str:
    """The sha256 hex digest under which an API key is stored and compared."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- interpolation


def interpolate(value: Any, path: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value`` (recursively); ``$$`` -> ``$``."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        if "$" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name, default = m.group(1), m.group(2)
            got = env.get(name)
            if got is None or (got == "" and default is not None):
                if default is None:
                    raise ConfigError(path, f"environment variable {name} is not set (use ${{{name}:-default}})")
                return default
            return got

        return _ENV_RE.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: interpolate(v, _join(path, str(k)), env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------------- typed reader


class _Reader:
    """Reads one mapping of the config, tracking the key path for error messages and refusing unknown keys."""

    def __init__(self, data: Any, path: str, source: str | None) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a mapping, got {type(data).__name__}", source=source)
        self.data = data
        self.path = path
        self.source = source
        self.seen: set[str] = set()

    def err(self, key: str, problem: str) -> ConfigError:
        return ConfigError(_join(self.path, key), problem, source=self.source)

    def raw(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        v = self.data.get(key, default)
        return default if v is None else v

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def sub(self, key: str) -> _Reader:
        self.seen.add(key)
        return _Reader(self.data.get(key), _join(self.path, key), self.source)

    def str(self, key: str, default: str | None = None, *, choices: tuple[Any, ...] | None = None) -> str | None:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise self.err(key, f"must be a string, got {type(v).__name__}")
        v = str(v)
        if choices is not None and v not in choices:
            raise self.err(key, f"must be one of {[c for c in choices if c is not None]}, got {v!r}")
        return v

    def int(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, str) and re.fullmatch(r"\s*-?\d[\d_]*\s*", v):
            v = int(v.replace("_", ""))
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"must be an integer, got {v!r}")
        if v < minimum:
            raise self.err(key, f"must be >= {minimum}, got {v}")
        return v

    def float(
        self, key: str, default: float | None = None, *, minimum: float = 0.0, positive: bool = False
    ) -> float | None:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                raise self.err(key, f"must be a number, got {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.err(key, f"must be a number, got {v!r}")
        if v < minimum or (positive and v <= 0):
            raise self.err(key, f"must be {'>' if positive else '>='} {minimum:g}, got {v}")
        return float(v)

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, str):
            low = v.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
        if not isinstance(v, bool):
            raise self.err(key, f"must be true or false, got {v!r}")
        return v

    def usd(self, key: str) -> Decimal | None:
        v = self.raw(key)
        if v is None:
            return None
        if isinstance(v, bool):
            raise self.err(key, f"must be a USD amount, got {v!r}")
        try:
            d = Decimal(str(v))
        except InvalidOperation:
            raise self.err(key, f"must be a USD amount, got {v!r}") from None
        if not d.is_finite() or d < 0:
            raise self.err(key, f"must be a non-negative USD amount, got {v!r}")
        return d

    def str_list(self, key: str) -> tuple[str, ...] | None:
        v = self.raw(key)
        if v is None:
            return None
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.err(key, "must be a list of non-empty strings")
        return tuple(v)

    def mapping(self, key: str) -> dict[str, Any]:
        v = self.raw(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise self.err(key, f"must be a mapping, got {type(v).__name__}")
        return dict(v)

    def done(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.seen)
        if unknown:
            raise ConfigError(
                _join(self.path, unknown[0]),
                f"unknown key (known here: {', '.join(sorted(self.seen))})",
                source=self.source,
            )


# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9999
    workers: int = 1
    #: request bodies above this are refused with 413
    max_body_bytes: int = 4 * 1024 * 1024
    #: wall-clock cap of one request in seconds (also the default call timeout)
    request_timeout: float = 600.0
    log_level: str = "info"
    access_log: bool = False
    #: serve /metrics without the admin key even when auth is on
    public_metrics: bool = False
    #: serve /openapi.json and /docs
    docs: bool = True


@dataclass(frozen=True, slots=True)
class RedisConfig:
    url: str
    namespace: str = "llmc"


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    #: a file path, sqlite:///path, postgresql://...; None = no ledger
    url: str | None
    synchronous: str = "NORMAL"
    table: str = "llm_usage"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    api_key: str | None = field(default=None, repr=False)
    api_base: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class BudgetLimit:
    tokens: int | None = None
    usd: Decimal | None = None
    period: str | None = None

    @property
    def capped(self) -> bool:
        return self.tokens is not None or self.usd is not None


@dataclass(frozen=True, slots=True)
class TenantConfig:
    id: str
    #: allowed model names / patterns (fnmatch); None = every configured group and alias
    models: tuple[str, ...] | None = None
    budget: BudgetLimit | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    name: str
    #: sha256 hex digest of the key (the plain key is never kept)
    key_hash: str = field(repr=False)
    tenant: str
    models: tuple[str, ...] | None = None
    budget: BudgetLimit | None = None
    rpm: int | None = None
    tpm: int | None = None
    admin: bool = False


@dataclass(frozen=True, slots=True)
class BudgetsConfig:
    #: cap of each per-thread budget (X-LLM-Thread-Id / "thread_id"); None = no thread budgets
    max_tokens_per_thread: int | None = None
    #: upper bounds a caller may set with X-LLM-Budget-Tokens / X-LLM-Budget-USD (None = no bound)
    delegated_max_tokens: int | None = None
    delegated_max_usd: Decimal | None = None
    #: how long a delegated budget (and its cap) lives after creation
    delegated_ttl_seconds: float = 86400.0
    on_unavailable: str = "fail_closed"
    thresholds: tuple[float, ...] = (0.75, 0.9, 0.95)
    #: max_tokens given to a budgeted call that sets none (its worst case must be reserved up front)
    default_max_tokens: int = 4096


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The validated config. ``router`` / ``policies`` / ``agents`` are raw mappings for their own loaders."""

    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig | None = None
    ledger: LedgerConfig | None = None
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    router: Mapping[str, Any] | None = None
    policies: Any = None
    models: Mapping[str, Any] = field(default_factory=dict)
    default_model: str | None = None
    auth: bool = False
    admin_key_hash: str | None = field(default=None, repr=False)
    tenants: Mapping[str, TenantConfig] = field(default_factory=dict)
    api_keys: tuple[ApiKeyConfig, ...] = ()
    budgets: BudgetsConfig = field(default_factory=BudgetsConfig)
    pricing: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    agents: Mapping[str, Any] = field(default_factory=dict)
    #: where it came from: a file path or "<embedded>"
    source: str = "<embedded>"

    @property
    def router_groups(self) -> tuple[str, ...]:
        groups = (self.router or {}).get("groups") or {}
        return tuple(groups) if isinstance(groups, Mapping) else ()

    def secrets(self) -> tuple[str, ...]:
        """Provider keys known to this config (to scrub from anything the gateway sends or logs)."""
        out = [p.api_key for p in self.providers.values() if p.api_key]
        entries = [m for m in self.models.values() if isinstance(m, Mapping)]
        groups = (self.router or {}).get("groups")
        for group in groups.values() if isinstance(groups, Mapping) else ():
            entries.extend(d for d in (group if isinstance(group, list) else ()) if isinstance(d, Mapping))
        for entry in entries:
            if entry.get("api_key"):
                out.append(str(entry["api_key"]))
            if entry.get("api_key_env") and os.environ.get(str(entry["api_key_env"])):  # a key by reference
                out.append(os.environ[str(entry["api_key_env"])])
        return tuple(s for s in dict.fromkeys(out) if len(s) >= 6)


def _budget(r: _Reader, key: str) -> BudgetLimit | None:
    if not r.has(key):
        r.seen.add(key)
        return None
    b = r.sub(key)
    lim = BudgetLimit(
        tokens=b.int("tokens", minimum=1),
        usd=b.usd("usd"),
        period=b.str("period", choices=_PERIODS),
    )
    b.done()
    if not lim.capped:
        raise b.err("tokens", "a budget needs 'tokens' and / or 'usd'")
    return lim


def _key_hash(r: _Reader, plain_key: str, hash_key_name: str) -> str | None:
    plain = r.str(plain_key)
    hashed = r.str(hash_key_name)
    if plain and hashed:
        raise r.err(plain_key, f"give '{plain_key}' or '{hash_key_name}', not both")
    if hashed is not None:
        hashed = hashed.strip().lower()
        if hashed.startswith("sha256:"):
            hashed = hashed[7:]
        if not _HEX64.match(hashed):
            raise r.err(hash_key_name, "must be a sha256 hex digest (64 hex characters)")
        return hashed
    if plain is not None:
        if len(plain) < 16:
            raise r.err(plain_key, "an API key must be at least 16 characters")
        return hash_key(plain)
    return None


def _server(r: _Reader) -> ServerConfig:
    s = r.sub("server")
    cfg = ServerConfig(
        host=s.str("host", "127.0.0.1") or "127.0.0.1",
        port=s.int("port", 9999, minimum=0) or 0,
        workers=s.int("workers", 1, minimum=1) or 1,
        max_body_bytes=s.int("max_body_bytes", 4 * 1024 * 1024, minimum=1024) or 1024,
        request_timeout=s.float("request_timeout", 600.0, positive=True) or 600.0,
        log_level=(s.str("log_level", "info") or "info").lower(),
        access_log=bool(s.bool("access_log", False)),
        public_metrics=bool(s.bool("public_metrics", False)),
        docs=bool(s.bool("docs", True)),
    )
    if cfg.port > 65535:
        raise s.err("port", f"must be <= 65535, got {cfg.port}")
    if cfg.log_level not in _LOG_LEVELS:
        raise s.err("log_level", f"must be one of {list(_LOG_LEVELS)}, got {cfg.log_level!r}")
    s.done()
    return cfg


def _redis(r: _Reader) -> RedisConfig | None:
    if not r.has("redis"):
        r.seen.add("redis")
        return None
    raw = r.data.get("redis")
    if isinstance(raw, str):
        r.seen.add("redis")
        raw = {"url": raw}
    s = _Reader(raw, "redis", r.source)
    r.seen.add("redis")
    url = s.str("url")
    ns = s.str("namespace", "llmc") or "llmc"
    s.done()
    if not url:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise s.err("url", f"must be a redis:// URL, got {url!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", ns):
        raise s.err("namespace", f"must be a plain word (letters, digits, _ . : -), got {ns!r}")
    return RedisConfig(url, ns)


def _ledger(r: _Reader) -> LedgerConfig | None:
    raw = r.data.get("ledger", "default")
    r.seen.add("ledger")
    if raw is False or (isinstance(raw, str) and raw.lower() in ("off", "none", "false", "")):
        return None
    if isinstance(raw, str):
        raw = {"url": raw}
    s = _Reader(raw, "ledger", r.source)
    url = s.str("url", "default") or "default"
    sync = (s.str("synchronous", "NORMAL") or "NORMAL").upper()
    table = s.str("table", "llm_usage") or "llm_usage"
    s.done()
    if url.lower() in ("off", "none", "false"):
        return None
    if sync not in _SYNC:
        raise s.err("synchronous", f"must be one of {list(_SYNC)}, got {sync!r}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", table):
        raise s.err("table", f"must be a plain SQL identifier, got {table!r}")
    if url == "default":
        from .paths import default_ledger_url

        url = default_ledger_url()
    elif "://" in url and not url.lower().startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise s.err("url", f"must be a file path, sqlite:///path or postgresql://..., got {url!r}")
    return LedgerConfig(url, sync, table)


def _providers(r: _Reader) -> dict[str, ProviderConfig]:
    p = r.sub("providers")
    out: dict[str, ProviderConfig] = {}
    for name in list(p.data):
        e = p.sub(str(name))
        options = e.mapping("options")
        out[str(name).lower()] = ProviderConfig(
            name=str(name).lower(),
            api_key=e.str("api_key") or None,
            api_base=e.str("api_base") or None,
            options=MappingProxyType(options),
        )
        e.done()
    return out


def _models(r: _Reader) -> dict[str, Any]:
    m = r.sub("models")
    out: dict[str, Any] = {}
    for name in list(m.data):
        path = _join("models", str(name))
        v = m.raw(str(name))
        if isinstance(v, str):
            if not v.strip():
                raise ConfigError(path, "must name a group, another alias or a 'provider:model'", source=r.source)
            out[str(name)] = v.strip()
        elif isinstance(v, Mapping):
            e = _Reader(v, path, r.source)
            spec = e.str("model")
            if not spec or ":" not in spec:
                raise e.err("model", "must be a 'provider:model' spec")
            entry = {
                "model": spec,
                "api_base": e.str("api_base"),
                "api_key": e.str("api_key"),
                "api_key_env": e.str("api_key_env"),
                "options": e.mapping("options"),
            }
            e.done()
            out[str(name)] = {k: v for k, v in entry.items() if v not in (None, {})}
        else:
            raise ConfigError(path, "must be a string or a mapping with 'model'", source=r.source)
    return out


def _tenants(r: _Reader) -> dict[str, TenantConfig]:
    t = r.sub("tenants")
    out: dict[str, TenantConfig] = {}
    for tid in list(t.data):
        e = t.sub(str(tid))
        out[str(tid)] = TenantConfig(
            id=str(tid),
            models=e.str_list("models"),
            budget=_budget(e, "budget"),
            rpm=e.int("rpm", minimum=1),
            tpm=e.int("tpm", minimum=1),
        )
        e.done()
    return out


def _api_keys(r: _Reader, tenants: dict[str, TenantConfig]) -> tuple[ApiKeyConfig, ...]:
    raw = r.raw("api_keys")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise r.err("api_keys", "must be a list of keys")
    out: list[ApiKeyConfig] = []
    hashes: set[str] = set()
    for i, item in enumerate(raw):
        e = _Reader(item, f"api_keys[{i}]", r.source)
        h = _key_hash(e, "key", "key_sha256")
        if h is None:
            raise e.err("key", "each API key needs 'key' (e.g. ${MY_KEY}) or 'key_sha256'")
        if h in hashes:
            raise e.err("key", "the same key is configured twice")
        hashes.add(h)
        tenant = e.str("tenant")
        admin = bool(e.bool("admin", False))
        if not tenant and not admin:
            raise e.err("tenant", "each API key needs a 'tenant'")
        tenant = tenant or "admin"
        if tenants and tenant not in tenants and not admin:
            raise e.err("tenant", f"unknown tenant {tenant!r}; known: {sorted(tenants)}")
        out.append(
            ApiKeyConfig(
                name=e.str("name", f"key{i}") or f"key{i}",
                key_hash=h,
                tenant=tenant,
                models=e.str_list("models"),
                budget=_budget(e, "budget"),
                rpm=e.int("rpm", minimum=1),
                tpm=e.int("tpm", minimum=1),
                admin=admin,
            )
        )
        e.done()
    return tuple(out)


def _budgets(r: _Reader) -> BudgetsConfig:
    b = r.sub("budgets")
    thresholds = b.raw("thresholds", [0.75, 0.9, 0.95])
    if not isinstance(thresholds, list) or not all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 1 for x in thresholds
    ):
        raise b.err("thresholds", "must be a list of fractions in (0, 1]")
    cfg = BudgetsConfig(
        max_tokens_per_thread=b.int("max_tokens_per_thread", minimum=1),
        delegated_max_tokens=b.int("delegated_max_tokens", minimum=1),
        delegated_max_usd=b.usd("delegated_max_usd"),
        delegated_ttl_seconds=b.float("delegated_ttl_seconds", 86400.0, positive=True) or 86400.0,
        on_unavailable=b.str("on_unavailable", "fail_closed", choices=("fail_closed", "fail_open")) or "fail_closed",
        thresholds=tuple(float(x) for x in thresholds),
        default_max_tokens=b.int("default_max_tokens", 4096, minimum=1) or 4096,
    )
    b.done()
    return cfg


def _pricing(r: _Reader) -> dict[str, dict[str, Any]]:
    p = r.sub("pricing")
    out: dict[str, dict[str, Any]] = {}
    for name in list(p.data):
        v = p.raw(str(name))
        if not isinstance(v, Mapping):
            raise p.err(str(name), "must be a mapping like {input_per_mtok: 0.5, output_per_mtok: 1.5}")
        out[str(name)] = dict(v)
    if out:
        try:  # validate now, with the path in the message
            from .usage.pricing import Pricing

            Pricing(out)
        except LLMConfigurationError as exc:
            raise ConfigError("pricing", exc.message, source=r.source) from exc
    return out


def _is_provider(name: str) -> bool:
    from .registry import HTTP_PROVIDERS, OTHER_PROVIDERS

    return name.lower() in HTTP_PROVIDERS or name.lower() in OTHER_PROVIDERS


def _check_names(cfg: GatewayConfig) -> None:
    groups = set(cfg.router_groups)
    for name, target in cfg.models.items():
        if name in groups:
            raise ConfigError(f"models.{name}", "an alias cannot have the name of a router group", source=cfg.source)
        if isinstance(target, str) and ":" not in target and target not in groups:
            if (target not in cfg.models or target == name) and not _is_provider(target):
                raise ConfigError(
                    f"models.{name}",
                    f"{target!r} is neither a router group, an alias, a provider nor a 'provider:model' spec",
                    source=cfg.source,
                )
    dm = cfg.default_model
    if dm is not None and ":" not in dm and dm not in groups and dm not in cfg.models and dm != "policy":
        if not _is_provider(dm):
            raise ConfigError("default_model", f"{dm!r} is not a router group or a model alias", source=cfg.source)


def parse_config(
    data: Mapping[str, Any] | None, *, source: str = "<dict>", environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Validate a parsed YAML mapping (``${ENV}`` is interpolated first) into a :class:`GatewayConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("", f"the config must be a mapping at the top, got {type(data).__name__}", source=source)
    try:
        data = interpolate(dict(data), "", environ)
    except ConfigError as exc:
        if exc.source is None and source is not None:  # name the file, as every other config error does
            raise ConfigError(exc.path, exc.problem, source=source) from None
        raise
    r = _Reader(data, "", source)
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown section (known: {', '.join(sorted(_TOP_KEYS))})", source=source)
    server = _server(r)
    redis = _redis(r)
    ledger = _ledger(r)
    providers = _providers(r)
    router = r.mapping("router") or None
    policies = r.raw("policies")
    models = _models(r)
    default_model = r.str("default_model")
    tenants = _tenants(r)
    api_keys = _api_keys(r, tenants)
    admin_hash = _key_hash(r, "admin_key", "admin_key_sha256")
    auth_flag = r.bool("auth")
    budgets = _budgets(r)
    pricing = _pricing(r)
    agents = r.mapping("agents")
    r.done()
    auth = bool(api_keys or admin_hash) if auth_flag is None else auth_flag
    if auth and not (api_keys or admin_hash):
        raise ConfigError("auth", "auth is on but no api_keys and no admin_key are configured", source=source)
    if router is not None and not isinstance(router.get("groups", {}), Mapping):
        raise ConfigError("router.groups", "must be a mapping of group name -> deployments", source=source)
    if default_model is None:
        groups = list((router or {}).get("groups") or {})
        default_model = (router or {}).get("default") or (groups[0] if groups else None) or next(iter(models), None)
    cfg = GatewayConfig(
        server=server,
        redis=redis,
        ledger=ledger,
        providers=MappingProxyType(providers),
        router=router,
        policies=policies,
        models=MappingProxyType(models),
        default_model=default_model,
        auth=auth,
        admin_key_hash=admin_hash,
        tenants=MappingProxyType(tenants),
        api_keys=api_keys,
        budgets=budgets,
        pricing=MappingProxyType(pricing),
        agents=MappingProxyType(agents),
        source=source,
    )
    _check_names(cfg)
    return cfg


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Load and validate a YAML config file; ``None`` -> ``$LLM_CONNECT_CONFIG`` if set, else the embedded default."""
    import yaml

    env = os.environ if environ is None else environ
    if path is None and env.get("LLM_CONNECT_CONFIG"):
        path = env["LLM_CONNECT_CONFIG"]
    if path is None:
        data = yaml.safe_load(EMBEDDED_DEFAULT)
        return parse_config(data, source="<embedded>", environ=env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read the config file: {exc.strerror or exc}", source=str(p)) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"invalid YAML{where}: {problem}", source=str(p)) from exc
    return parse_config(data, source=str(p), environ=env)
