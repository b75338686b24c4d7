"""Deployment: one concrete model endpoint a router can send a call to, and its per-router node.

A deployment is either a spec for :func:`llm_connect.create_adapter` (``model="anthropic:claude-sonnet-4"``
plus ``api_base`` / ``api_key`` / ``api_key_env`` / options) or a ready adapter (``adapter=...``). The
adapter is built lazily, once per deployment per router, on the first call that picks it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ..adapter import LLMAdapter
from ..errors import LLMConfigurationError

__all__ = ["Deployment", "Node", "deployment_from"]

#: keys a deployment mapping may carry besides ``options`` (which takes any create_adapter keyword)
_KEYS = frozenset(
    {
        "model",
        "provider",
        "name",
        "weight",
        "rpm",
        "tpm",
        "context_window",
        "api_base",
        "api_key",
        "api_key_env",
        "price_per_1k",
        "options",
        "timeout",
        "headers",
    }
)
#: keys copied into ``options`` as create_adapter keywords
_OPTION_KEYS = ("timeout", "headers")


@dataclass(slots=True)
class Deployment:
    """One model behind one endpoint, as a member of a router group.

    ``model`` is a ``"provider:model"`` spec; ``adapter`` injects a ready adapter instead (tests, custom
    adapters). ``weight`` drives the weighted strategy; ``rpm`` / ``tpm`` are caps per minute (the
    deployment is skipped while at a cap); ``context_window`` (tokens) drives context-window fallbacks;
    ``price_per_1k`` (USD) overrides the price the cost strategy and policies see.
    """

    model: str | None = None
    name: str | None = None
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    context_window: int | None = None
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    price_per_1k: Decimal | None = None
    #: more create_adapter keywords (timeout, headers, provider-specific ones). ``timeout`` also caps each
    #: routed attempt on this deployment, the request's own timeout included (see :attr:`timeout`)
    options: dict[str, Any] = field(default_factory=dict)
    adapter: LLMAdapter | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        where = f"deployment {self.name or self.model or '?'}"
        if self.model is None and self.adapter is None:
            raise LLMConfigurationError(f"{where}: give 'model' (a 'provider:model' spec) or 'adapter'")
        if self.model is not None and (not isinstance(self.model, str) or ":" not in self.model):
            raise LLMConfigurationError(f"{where}: model must be a 'provider:model' spec, got {self.model!r}")
        if self.model is not None and self.adapter is None:
            from ..registry import check_spec

            try:
                check_spec(self.model)  # a typo in a provider name fails at load, not on every call
            except LLMConfigurationError as exc:
                raise LLMConfigurationError(f"{exc.message} ({where})") from None
        if not isinstance(self.weight, (int, float)) or isinstance(self.weight, bool) or self.weight <= 0:
            raise LLMConfigurationError(f"{where}: weight must be a positive number, got {self.weight!r}")
        for attr in ("rpm", "tpm", "context_window"):
            v = getattr(self, attr)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise LLMConfigurationError(f"{where}: {attr} must be a positive integer, got {v!r}")
        if self.price_per_1k is not None and not isinstance(self.price_per_1k, Decimal):
            try:
                self.price_per_1k = Decimal(str(self.price_per_1k))
            except (InvalidOperation, ValueError) as exc:
                raise LLMConfigurationError(f"{where}: price_per_1k must be a number") from exc
        if not isinstance(self.options, dict):
            raise LLMConfigurationError(f"{where}: options must be a mapping of create_adapter keywords")
        t = self.options.get("timeout")
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or t <= 0):
            raise LLMConfigurationError(f"{where}: timeout must be a positive number of seconds, got {t!r}")

    @property
    def timeout(self) -> float | None:
        """This deployment's own cap on one attempt in seconds (``timeout``, kept in ``options``), or None."""
        t = self.options.get("timeout")
        return None if t is None else float(t)

    @property
    def provider(self) -> str:
        if self.model is not None:
            return self.model.partition(":")[0].lower()
        return getattr(self.adapter, "provider", "custom")

    @property
    def model_name(self) -> str:
        if self.model is not None:
            return self.model.partition(":")[2]
        return getattr(self.adapter, "model", "")

    @property
    def label(self) -> str:
        """``provider:model`` (the default deployment name)."""
        return self.model or f"{self.provider}:{self.model_name}"

    def build_adapter(self) -> LLMAdapter:
        """The injected adapter, or a new one from :func:`llm_connect.create_adapter`."""
        if self.adapter is not None:
            return self.adapter
        from ..registry import create_adapter

        key = self.api_key
        if key is None and self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise LLMConfigurationError(
                    f"deployment {self.name or self.label}: environment variable {self.api_key_env} is not set",
                    provider=self.provider,
                    model=self.model_name,
                )
        return create_adapter(self.model, api_key=key, api_base=self.api_base, **self.options)

    def describe(self) -> dict[str, Any]:
        """Public facts for model listings (never the key)."""
        d: dict[str, Any] = {
            "name": self.name,
            "provider": self.provider,
            "model": self.model_name,
            "weight": self.weight,
        }
        for attr in ("rpm", "tpm", "context_window", "api_base"):
            v = getattr(self, attr)
            if v is not None:
                d[attr] = v
        if self.price_per_1k is not None:
            d["price_per_1k"] = str(self.price_per_1k)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "deployment") -> Deployment:
        """Build from a config mapping. ``provider`` + ``model`` may be given separately.

        Only known keys are accepted (typos fail loudly); provider-specific create_adapter keywords go
        under ``options``.
        """
        if not isinstance(d, Mapping):
            raise LLMConfigurationError(f"{where}: expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - _KEYS)
        if unknown:
            raise LLMConfigurationError(
                f"{where}: unknown key(s) {unknown}; known: {sorted(_KEYS)} "
                "(put other create_adapter keywords under 'options')"
            )
        model = d.get("model")
        provider = d.get("provider")
        if provider is not None:
            if not model:
                raise LLMConfigurationError(f"{where}: 'provider' {provider!r} needs a 'model'")
            model = f"{provider}:{model}"
        options = dict(d.get("options") or {})
        for k in _OPTION_KEYS:
            if k in d:
                options[k] = d[k]
        kwargs = {
            k: d[k]
            for k in (
                "name",
                "weight",
                "rpm",
                "tpm",
                "context_window",
                "api_base",
                "api_key",
                "api_key_env",
                "price_per_1k",
            )
            if d.get(k) is not None
        }
        try:
            return cls(model=model, options=options, **kwargs)
        except LLMConfigurationError as exc:
            raise LLMConfigurationError(f"{where}: {exc.message}") from exc


def deployment_from(item: Deployment | Mapping[str, Any] | str | LLMAdapter, *, where: str) -> Deployment:
    """Accept a Deployment, a config mapping, a ``"provider:model"`` string or a ready adapter."""
    if isinstance(item, Deployment):
        return item
    if isinstance(item, LLMAdapter):
        return Deployment(adapter=item)
    if isinstance(item, str):
        try:
            return Deployment(model=item)
        except LLMConfigurationError as exc:
            raise LLMConfigurationError(f"{where}: {exc.message}") from exc
    return Deployment.from_dict(item, where=where)


class Node:
    """A deployment as one router sees it: unique name, lazily built adapter, local latency / load stats.

    Latency and in-flight numbers are local to this process (they describe what this replica sees);
    cooldowns and rpm/tpm counters live in the router's shared state.
    """

    __slots__ = (
        "_adapter",
        "_lock",
        "_price",
        "_priced",
        "counted",
        "deployment",
        "group",
        "in_flight",
        "latency",
        "latency_at",
        "latency_n",
        "name",
        "owned",
        "rpm",
        "timeout",
        "tpm",
        "ttft",
        "ttft_at",
        "ttft_n",
        "weight",
        "window",
    )

    def __init__(self, deployment: Deployment, name: str, group: str) -> None:
        self.deployment = deployment
        self.name = name
        self.group = group
        self.weight = float(deployment.weight)
        self.rpm = deployment.rpm
        self.tpm = deployment.tpm
        self.window = deployment.context_window
        #: the deployment's own cap on one attempt (s), or None
        self.timeout = deployment.timeout
        #: whether rpm/tpm are counted in the shared state (caps, or the usage strategy)
        self.counted = self.rpm is not None or self.tpm is not None
        self.in_flight = 0
        #: EWMA of full-call latency (s) and of stream time-to-first-token (s); None until measured
        self.latency: float | None = None
        self.ttft: float | None = None
        #: samples taken and when the last was taken (monotonic s)
        self.latency_n = self.ttft_n = 0
        self.latency_at = self.ttft_at = 0.0
        self._adapter: LLMAdapter | None = deployment.adapter
        #: True when the router built the adapter (and so closes it)
        self.owned = False
        self._lock = threading.Lock()
        self._price: Decimal | None = None
        self._priced = False

    def adapter(self) -> LLMAdapter:
        a = self._adapter
        if a is not None:
            return a
        with self._lock:
            if self._adapter is None:
                self._adapter = self.deployment.build_adapter()
                self.owned = True
            return self._adapter

    def price(self, pricing: Any) -> Decimal | None:
        """USD per 1000 tokens (override, else ``pricing.price_per_1k``), looked up once."""
        if not self._priced:
            p = self.deployment.price_per_1k
            if p is None and pricing is not None:
                try:
                    p = pricing.price_per_1k(self.deployment.provider, self.deployment.model_name)
                except Exception:  # an unknown model must not break routing
                    p = None
            self._price = p
            self._priced = True
        return self._price

    def observe(self, seconds: float, alpha: float, *, first_token: bool) -> None:
        """Fold a sample into the EWMA. The first sample of a deployment (cold connection, lazy imports)
        is replaced by the second instead of averaged in."""
        now = time.monotonic()
        if first_token:
            ttft = self.ttft
            self.ttft = seconds if self.ttft_n < 2 or ttft is None else ttft + alpha * (seconds - ttft)
            self.ttft_n += 1
            self.ttft_at = now
        else:
            lat = self.latency
            self.latency = seconds if self.latency_n < 2 or lat is None else lat + alpha * (seconds - lat)
            self.latency_n += 1
            self.latency_at = now

    def __repr__(self) -> str:
        return f"<Node {self.name}>"
