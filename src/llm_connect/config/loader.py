"""Load ``llm-connect.yaml``: read it as YAML 1.2, interpolate ``${ENV}``, validate it with the typed models of
:mod:`llm_connect.config.sections`, and resolve it into the runtime :class:`GatewayConfig`.

Errors are :class:`ConfigError` naming the key path (``api_keys[1].budget.usd``) and the file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import LLMConfigurationError
from .sections import ApiKeyEntry, BudgetLimit, BudgetsConfig, ConfigFile, RedisConfig, ServerConfig

__all__ = [
    "EMBEDDED_DEFAULT",
    "ApiKeyConfig",
    "ConfigError",
    "GatewayConfig",
    "KeysConfig",
    "LedgerConfig",
    "ProviderConfig",
    "ResponsesConfig",
    "TeamConfig",
    "TenantConfig",
    "hash_key",
    "interpolate",
    "load_config",
    "parse_config",
    "read_yaml",
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


# ---------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    #: a file path, sqlite:///path, postgresql://...; None = no ledger
    url: str | None
    synchronous: str = "NORMAL"
    table: str = "llm_usage"


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    #: a file path, sqlite:///path, postgresql://...; None = nothing is stored
    store: str | None
    table: str = "llm_responses"
    ttl_days: float | None = 30
    #: "drop" or "refuse" (the tools OpenAI runs itself)
    builtin_tools: str = "drop"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    api_key: str | None = field(default=None, repr=False)
    api_base: str | None = None
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class TenantConfig:
    id: str
    #: allowed model names / patterns (fnmatch); None = every configured group and alias
    models: tuple[str, ...] | None = None
    budget: BudgetLimit | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class TeamConfig:
    id: str
    tenant: str
    name: str | None = None
    models: tuple[str, ...] | None = None
    budget: BudgetLimit | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class KeysConfig:
    #: a file path, sqlite:///path, postgresql://...; None = keys only from the config file
    url: str | None
    table_prefix: str = "llm_"
    poll_seconds: float = 0.5


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
    team: str | None = None
    tenant_admin: bool = False


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The validated config. ``router`` / ``policies`` / ``agents`` are raw mappings for their own loaders."""

    server: ServerConfig = field(default_factory=ServerConfig)
    redis: RedisConfig | None = None
    ledger: LedgerConfig | None = None
    responses: ResponsesConfig = field(default_factory=lambda: ResponsesConfig(None))
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    router: Mapping[str, Any] | None = None
    policies: Any = None
    models: Mapping[str, Any] = field(default_factory=dict)
    default_model: str | None = None
    auth: bool = False
    admin_key_hash: str | None = field(default=None, repr=False)
    tenants: Mapping[str, TenantConfig] = field(default_factory=dict)
    teams: Mapping[str, TeamConfig] = field(default_factory=dict)
    api_keys: tuple[ApiKeyConfig, ...] = ()
    #: the key store (docs/keys.md); its url is None when keys come only from this file
    keys: KeysConfig = field(default_factory=lambda: KeysConfig(None))
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


def _is_provider(name: str) -> bool:
    from ..registry import HTTP_PROVIDERS, OTHER_PROVIDERS

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


# ---------------------------------------------------------------------------------------------- YAML 1.2


def _yaml_loader() -> type:
    """A safe loader with YAML 1.2's core schema: only true/false are booleans and only null/~ is null, so
    ``url: off``, ``country: NO`` and ``period: none`` stay the strings they look like, and ``1:30`` is no
    base-60 integer (YAML 1.1's traps)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
    )
    Loader.add_constructor("tag:yaml.org,2002:int", _int_constructor)
    return Loader


def _int_constructor(loader: Any, node: Any) -> int:
    text = str(loader.construct_scalar(node)).replace("_", "")
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text)  # decimal, leading zeros and all (YAML 1.2: 010 is ten, not eight)


def read_yaml(text: str) -> Any:
    """Parse YAML text with the YAML 1.2 core schema (see :func:`_yaml_loader`)."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass


# ---------------------------------------------------------------------------------------------- validation


def _error_path(data: Any, loc: tuple[Any, ...], kind: str, extra_key: str | None) -> str:
    """``api_keys[1].budget.usd`` from a pydantic error location, walking the input: location parts that are
    not keys of the data (union members, validator names) are dropped."""
    path, node = "", data
    for i, part in enumerate(loc):
        if isinstance(node, Mapping) and part in node:
            path, node = _join(path, str(part)), node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path, node = f"{path}[{part}]", node[part]
        elif kind == "missing" and i == len(loc) - 1:
            path = _join(path, str(part))
    return _join(path, extra_key) if extra_key else path


def _best(errors: list[Any]) -> Any:
    """Of the errors of one value (every member of a union reports), the most specific: the deepest, and a
    problem with a value before a wrong type (a mapping is no string: that is not news)."""
    return max(errors, key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a section at ``loc`` takes (for "unknown key" errors)."""
    from pydantic import BaseModel

    model: Any = ConfigFile
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:  # a dict key, a list index or a union member's name
            continue
        ann = fields[part].annotation
        model = next((a for a in _walk(ann) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return sorted(getattr(model, "model_fields", {}))


def _walk(ann: Any) -> list[Any]:
    import typing

    out = [ann]
    for a in typing.get_args(ann):
        out.extend(_walk(a))
    return out


def _config_error(exc: Any, data: Any, source: str) -> ConfigError:
    err = _best(exc.errors(include_url=False))
    loc, kind = tuple(err["loc"]), err["type"]
    ctx = err.get("ctx") or {}
    path = _error_path(data, loc, kind, ctx.get("key") if kind == "config" else None)
    if kind == "config":
        return ConfigError(path, ctx["message"], source=source)
    if kind == "extra_forbidden":
        known = _known_keys(loc)
        if len(loc) == 1:
            return ConfigError(path, f"unknown section (known: {', '.join(known)})", source=source)
        return ConfigError(path, f"unknown key (known here: {', '.join(known)})", source=source)
    got = err.get("input")
    msg = err["msg"]
    msg = msg[0].lower() + msg[1:]
    if kind != "missing" and not isinstance(got, (Mapping, list)):
        msg = f"{msg}, got {got!r}"
    return ConfigError(path, msg, source=source)


def _validate(data: Mapping[str, Any], source: str) -> ConfigFile:
    from pydantic import ValidationError

    try:
        return ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, data, source) from None


# ---------------------------------------------------------------------------------------------- resolution


def _ledger(cfg: ConfigFile) -> LedgerConfig | None:
    url = cfg.ledger.url
    if url is None:
        return None
    if url == "default":
        from ..paths import default_ledger_url

        url = default_ledger_url()
    return LedgerConfig(url, cfg.ledger.synchronous, cfg.ledger.table)


def _responses(cfg: ConfigFile) -> ResponsesConfig:
    r = cfg.responses
    url = r.store
    if url == "default":  # next to the ledger's default file
        from ..paths import data_dir

        url = str(data_dir() / "responses.sqlite3")
    return ResponsesConfig(url, r.table, r.ttl_days, r.builtin_tools)


def _keys(cfg: ConfigFile, ledger: LedgerConfig | None) -> KeysConfig:
    k = cfg.keys
    url = k.url
    if url == "default":  # the ledger's PostgreSQL database, else a file next to the ledger's
        lurl = ledger.url if ledger is not None else None
        if lurl is not None and lurl.lower().startswith(("postgresql://", "postgres://")):
            url = lurl
        elif lurl is not None:
            path = lurl[len("sqlite:///") :] if lurl.lower().startswith("sqlite:///") else lurl
            url = str(Path(path).with_name("keys.sqlite3"))
        else:
            from ..paths import data_dir

            url = str(data_dir() / "keys.sqlite3")
    return KeysConfig(url, k.table_prefix, k.poll_seconds)


def _teams(cfg: ConfigFile, tenants: Mapping[str, TenantConfig], source: str) -> dict[str, TeamConfig]:
    out = {}
    for tid, t in cfg.teams.items():
        if tenants and t.tenant not in tenants:
            raise ConfigError(
                f"teams.{tid}.tenant", f"unknown tenant {t.tenant!r}; known: {sorted(tenants)}", source=source
            )
        models = tuple(t.models) if t.models is not None else None
        out[str(tid)] = TeamConfig(str(tid), t.tenant, t.name, models, t.budget, t.rpm, t.tpm)
    return out


def _key_hash(plain: str | None, hashed: str | None) -> str | None:
    return hashed if hashed is not None else (hash_key(plain) if plain is not None else None)


def _api_keys(
    entries: list[ApiKeyEntry], tenants: Mapping[str, TenantConfig], teams: Mapping[str, TeamConfig], source: str
) -> tuple[ApiKeyConfig, ...]:
    out: list[ApiKeyConfig] = []
    hashes: set[str] = set()
    for i, e in enumerate(entries):
        h = _key_hash(e.key, e.key_sha256)
        assert h is not None  # ApiKeyEntry requires one of them
        if h in hashes:
            raise ConfigError(f"api_keys[{i}].key", "the same key is configured twice", source=source)
        hashes.add(h)
        tenant = e.tenant or "admin"
        if tenants and tenant not in tenants and not e.admin:
            raise ConfigError(
                f"api_keys[{i}].tenant", f"unknown tenant {tenant!r}; known: {sorted(tenants)}", source=source
            )
        if e.team is not None and (e.team not in teams or teams[e.team].tenant != tenant):
            raise ConfigError(
                f"api_keys[{i}].team",
                f"no team {e.team!r} in tenant {tenant!r} (declare it under teams)",
                source=source,
            )
        name = e.name or f"key{i}"
        models = tuple(e.models) if e.models is not None else None
        out.append(
            ApiKeyConfig(
                name, h, tenant, models, e.budget, e.rpm, e.tpm, e.admin, e.team, e.tenant_admin and not e.admin
            )
        )
    return tuple(out)


def _pricing(raw: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    out = {str(k): dict(v) for k, v in raw.items()}
    if out:
        try:  # the pricing module's own checks (both input and output missing, ...), with the path
            from ..usage.pricing import Pricing

            Pricing(out)
        except LLMConfigurationError as exc:
            raise ConfigError("pricing", exc.message, source=source) from exc
    return out


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
    cfg = _validate(data, source)
    tenants = {
        str(tid): TenantConfig(str(tid), tuple(t.models) if t.models is not None else None, t.budget, t.rpm, t.tpm)
        for tid, t in cfg.tenants.items()
    }
    teams = _teams(cfg, tenants, source)
    api_keys = _api_keys(cfg.api_keys, tenants, teams, source)
    admin_hash = _key_hash(cfg.admin_key, cfg.admin_key_sha256)
    auth = bool(api_keys or admin_hash) if cfg.auth is None else cfg.auth
    ledger = _ledger(cfg)
    keys = _keys(cfg, ledger) if auth else KeysConfig(None)
    if auth and not (api_keys or admin_hash or keys.url):
        raise ConfigError(
            "auth", "auth is on but no api_keys, no admin_key and no key store are configured", source=source
        )
    router = data.get("router") or None
    models = {
        str(name): (entry if isinstance(entry, str) else entry.model_dump(exclude_defaults=True))
        for name, entry in cfg.models.items()
    }
    default_model = cfg.default_model
    if default_model is None:
        groups = list((router or {}).get("groups") or {})
        default_model = (router or {}).get("default") or (groups[0] if groups else None) or next(iter(models), None)
    out = GatewayConfig(
        server=cfg.server,
        redis=cfg.redis,
        ledger=ledger,
        responses=_responses(cfg),
        providers=MappingProxyType(
            {
                str(n).lower(): ProviderConfig(
                    str(n).lower(), p.api_key or None, p.api_base or None, MappingProxyType(p.options)
                )
                for n, p in cfg.providers.items()
            }
        ),
        router=router,
        policies=data.get("policies"),
        models=MappingProxyType(models),
        default_model=default_model,
        auth=auth,
        admin_key_hash=admin_hash,
        tenants=MappingProxyType(tenants),
        teams=MappingProxyType(teams),
        api_keys=api_keys,
        keys=keys,
        budgets=cfg.budgets,
        pricing=MappingProxyType(_pricing(data.get("pricing") or {}, source)),
        agents=MappingProxyType(dict(data.get("agents") or {})),
        source=source,
    )
    _check_names(out)
    return out


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Load and validate a YAML config file; ``None`` -> ``$LLM_CONNECT_CONFIG`` if set, else the embedded default."""
    env = os.environ if environ is None else environ
    if path is None and env.get("LLM_CONNECT_CONFIG"):
        path = env["LLM_CONNECT_CONFIG"]
    if path is None:
        return parse_config(read_yaml(EMBEDDED_DEFAULT), source="<embedded>", environ=env)
    p = Path(path)
    return parse_config(read_file(p), source=str(p), environ=env)


def read_file(p: Path) -> Any:
    """The parsed YAML of a config file; unreadable files and YAML syntax errors are ConfigErrors."""
    import yaml

    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read the config file: {exc.strerror or exc}", source=str(p)) from exc
    try:
        return read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"invalid YAML{where}: {problem}", source=str(p)) from exc
