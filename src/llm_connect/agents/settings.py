"""AgentSettings: the ``agents`` section of the YAML config, validated, plus what it borrows from the rest.

::

    agents:
      mode: gateway                       # or in_process (a Router built from this same config)
      gateway_url: http://127.0.0.1:9999  # POST {gateway_url}/complete
      gateway_api_key: ${LLM_CONNECT_GATEWAY_KEY:-}
      timeout: 120                        # seconds per model call
      broker_url: redis://127.0.0.1:6379/0    # default: $LLM_CONNECT_BROKER_URL, else redis.url, else this
      result_backend: redis://127.0.0.1:6379/0 # default: the broker when it is Redis, else rpc://
      queue: llm-connect-agents
      result_expires_seconds: 86400       # how long task results stay in the result backend
      history_ttl_seconds: 604800
      history_max_messages: 50
      max_output_tokens: 1024             # per reply, unless the persona sets its own
      default_agent: assistant
      personas:
        assistant:                        # the agent's id (a slug: letters, digits, '_', '-', '.')
          name: Ada Lovelace              # display name the model is told; free text, default: the id
          role: a helpful assistant for ACME's customers
          persona: patient, concise
          model_preference: quality
          trust_level: supervised
          max_tokens_per_thread: 20000
          may_delegate_to: [researcher]

Thread budgets take ``budgets.max_tokens_per_thread`` (default 100 000), ``budgets.thresholds`` and
``budgets.on_unavailable``; history and budgets live in ``redis.url`` / ``redis.namespace`` (default: the
broker when it is Redis; no Redis at all → in-memory, one process).

Environment overrides: ``LLM_CONNECT_BROKER_URL``, ``LLM_CONNECT_RESULT_BACKEND``, ``LLM_CONNECT_AGENT_QUEUE``,
``LLM_CONNECT_GATEWAY_URL``, ``LLM_CONNECT_AGENT_MODE``, ``LLM_CONNECT_REDIS_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..budget.warnings import DEFAULT_THRESHOLDS
from .models import Agent, AgentConfigError

if TYPE_CHECKING:
    from ..config import GatewayConfig

__all__ = ["DEFAULT_REDIS_URL", "MODES", "AgentSettings", "load_settings"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MODES = ("gateway", "in_process")
DEFAULT_QUEUE = "llm-connect-agents"

_KEYS = frozenset(
    {
        "mode",
        "gateway_url",
        "gateway_api_key",
        "timeout",
        "broker_url",
        "result_backend",
        "queue",
        "result_expires_seconds",
        "history_ttl_seconds",
        "history_max_messages",
        "max_output_tokens",
        "default_agent",
        "personas",
    }
)


def _num(section: Mapping[str, Any], key: str, default: float, *, integer: bool = False, minimum: float = 0) -> Any:
    v = section.get(key)
    if v is None:
        return default
    if isinstance(v, str):
        try:
            v = int(v) if integer else float(v)
        except ValueError:
            raise AgentConfigError(f"agents.{key}", f"must be a number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise AgentConfigError(f"agents.{key}", f"must be {'an integer' if integer else 'a number'}, got {v!r}")
    if v < minimum:
        raise AgentConfigError(f"agents.{key}", f"must be >= {minimum}, got {v!r}")
    return v


def _text(section: Mapping[str, Any], key: str) -> str | None:
    v = section.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise AgentConfigError(f"agents.{key}", f"must be a string, got {type(v).__name__}")
    return v.strip() or None


def _personas(raw: Any) -> dict[str, Agent]:
    if raw is None:
        return {}
    out: dict[str, Agent] = {}
    if isinstance(raw, Mapping):
        items: Iterable[Agent] = (Agent.from_dict(v or {}, key=str(k)) for k, v in raw.items())
    elif isinstance(raw, list):
        items = (Agent.from_dict(v) for v in raw)
    else:
        raise AgentConfigError("agents.personas", "must be a mapping id -> fields (or a list with 'name' / 'id')")
    for a in items:
        if a.id in out:
            raise AgentConfigError(f"agents.personas.{a.id}", "is defined twice")
        out[a.id] = a
    return out


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """Everything the agent runtime and the Celery app need. Build with :meth:`from_config` or directly."""

    personas: Mapping[str, Agent] = field(default_factory=dict)
    mode: str = "gateway"
    gateway_url: str = "http://127.0.0.1:9999"
    gateway_api_key: str | None = field(default=None, repr=False)
    #: wall-clock cap of one model call, in seconds
    call_timeout: float = 120.0
    broker_url: str = DEFAULT_REDIS_URL
    result_backend: str | None = None
    queue: str = DEFAULT_QUEUE
    result_expires_seconds: float = 86400.0
    #: thread history and budgets; None = in-memory (one process only)
    redis_url: str | None = DEFAULT_REDIS_URL
    namespace: str = "llmc"
    history_ttl_seconds: float = 7 * 86400.0
    history_max_messages: int = 50
    max_tokens_per_thread: int = 100_000
    max_output_tokens: int = 1024
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    on_unavailable: str = "fail_closed"
    default_agent: str | None = None
    #: the whole config (in-process mode builds its Router from it)
    config: GatewayConfig | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        personas = (
            dict(self.personas) if not isinstance(self.personas, (list, tuple)) else {a.id: a for a in self.personas}
        )
        for k, a in personas.items():
            if not isinstance(a, Agent):
                raise AgentConfigError(f"agents.personas.{k}", f"must be an Agent, got {type(a).__name__}")
            if k != a.id:
                raise AgentConfigError(f"agents.personas.{k}", f"is keyed by a different id than {a.id!r}")
        object.__setattr__(self, "personas", MappingProxyType(personas))
        if self.mode not in MODES:
            raise AgentConfigError("agents.mode", f"must be one of {list(MODES)}, got {self.mode!r}")
        if self.mode == "gateway" and not str(self.gateway_url).startswith(("http://", "https://")):
            raise AgentConfigError("agents.gateway_url", f"must be an http(s) URL, got {self.gateway_url!r}")
        object.__setattr__(self, "gateway_url", str(self.gateway_url).rstrip("/"))
        if not self.call_timeout > 0:
            raise AgentConfigError("agents.timeout", "must be positive seconds")
        if self.on_unavailable not in ("fail_closed", "fail_open"):
            raise AgentConfigError("budgets.on_unavailable", "must be 'fail_closed' or 'fail_open'")
        for key in ("max_tokens_per_thread", "max_output_tokens"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise AgentConfigError(f"agents.{key}", f"must be a positive integer, got {v!r}")
        if not self.queue or any(c.isspace() for c in self.queue):
            raise AgentConfigError("agents.queue", f"must be a queue name without spaces, got {self.queue!r}")
        if self.default_agent is not None and self.default_agent not in personas:
            raise AgentConfigError("agents.default_agent", f"{self.default_agent!r} is not a defined persona")
        for a in personas.values():
            for target in a.may_delegate_to:
                if target not in personas:
                    raise AgentConfigError(
                        f"agents.personas.{a.id}.may_delegate_to", f"{target!r} is not a defined persona"
                    )

    # -- lookups -----------------------------------------------------------------------------------
    def agent(self, agent_id: str | None = None) -> Agent:
        """The persona with id ``agent_id`` (None: the default agent, or the only one)."""
        if agent_id is None:
            if self.default_agent is not None:
                agent_id = self.default_agent
            elif len(self.personas) == 1:
                agent_id = next(iter(self.personas))
            else:
                raise AgentConfigError(
                    "agents.default_agent", "the message names no agent and no default agent is configured"
                )
        a = self.personas.get(agent_id)
        if a is None:
            known = ", ".join(sorted(self.personas)) or "none"
            raise AgentConfigError(f"agents.personas.{agent_id}", f"no such agent id (defined: {known})")
        return a

    def thread_cap(self, agent: Agent) -> int:
        return agent.max_tokens_per_thread or self.max_tokens_per_thread

    def output_cap(self, agent: Agent) -> int:
        return agent.max_output_tokens or self.max_output_tokens

    @property
    def effective_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return self.broker_url
        return "rpc://"

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: GatewayConfig | Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        personas: Iterable[Agent] = (),
    ) -> AgentSettings:
        """Validate ``config.agents`` (a GatewayConfig, or a raw mapping of the whole file) with errors naming
        the key. ``personas`` adds agents defined in Python."""
        from ..config import ConfigError, GatewayConfig, parse_config

        env = os.environ if environ is None else environ
        if config is None:
            config = parse_config({})
        elif not isinstance(config, GatewayConfig):
            try:
                config = parse_config(config, environ=env)
            except ConfigError as exc:  # the file's schema refused a key of this section: say it as ours
                if exc.path == "agents" or exc.path.startswith(("agents.", "agents[")):
                    raise AgentConfigError(exc.path, exc.problem) from exc
                raise
        section = dict(config.agents or {})
        unknown = sorted(set(section) - _KEYS)
        if unknown:
            raise AgentConfigError(f"agents.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_KEYS))})")
        found = _personas(section.get("personas"))
        for a in personas:
            if a.id in found:
                raise AgentConfigError(f"agents.personas.{a.id}", "is defined both in the config and in Python")
            found[a.id] = a

        redis_cfg = config.redis
        broker = (
            env.get("LLM_CONNECT_BROKER_URL")
            or _text(section, "broker_url")
            or (redis_cfg.url if redis_cfg is not None else DEFAULT_REDIS_URL)
        )
        redis_url = env.get("LLM_CONNECT_REDIS_URL") or (redis_cfg.url if redis_cfg is not None else None)
        if redis_url is None and broker.startswith(("redis://", "rediss://", "unix://")):
            redis_url = broker
        budgets = config.budgets
        mode = env.get("LLM_CONNECT_AGENT_MODE") or _text(section, "mode") or "gateway"
        return cls(
            personas=found,
            mode=mode,
            gateway_url=env.get("LLM_CONNECT_GATEWAY_URL") or _text(section, "gateway_url") or "http://127.0.0.1:9999",
            gateway_api_key=_text(section, "gateway_api_key"),
            call_timeout=float(_num(section, "timeout", 120.0, minimum=0.001)),
            broker_url=broker,
            result_backend=env.get("LLM_CONNECT_RESULT_BACKEND") or _text(section, "result_backend"),
            queue=env.get("LLM_CONNECT_AGENT_QUEUE") or _text(section, "queue") or DEFAULT_QUEUE,
            result_expires_seconds=float(_num(section, "result_expires_seconds", 86400.0, minimum=1)),
            redis_url=redis_url,
            namespace=redis_cfg.namespace if redis_cfg is not None else "llmc",
            history_ttl_seconds=float(_num(section, "history_ttl_seconds", 7 * 86400.0, minimum=1)),
            history_max_messages=int(_num(section, "history_max_messages", 50, integer=True)),
            max_tokens_per_thread=budgets.max_tokens_per_thread or 100_000,
            max_output_tokens=int(_num(section, "max_output_tokens", 1024, integer=True, minimum=1)),
            thresholds=tuple(budgets.thresholds),
            on_unavailable=budgets.on_unavailable,
            default_agent=_text(section, "default_agent"),
            config=config,
        )


def load_settings(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> AgentSettings:
    """Load the YAML config (``path``, else ``$LLM_CONNECT_CONFIG``, else the embedded default) → AgentSettings."""
    from ..config import load_config

    return AgentSettings.from_config(load_config(path, environ=environ), environ=environ)
