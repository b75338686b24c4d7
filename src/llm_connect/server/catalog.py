"""Model names a gateway request may use, and the adapter behind each.

A name is resolved in this order:

1. a router group (``router.groups``) -> the Router, with ``RunConfig.model_name`` = the group;
   ``policy`` (when ``policies`` are configured) -> the RoutingPolicy, which picks by the call's task_type;
   a request without a model but with a task_type also goes to the policy;
2. a model alias (``models.<name>``) -> a group, another alias, or a ``provider:model`` (with its own
   ``api_base`` / ``api_key`` / ``options`` when given as a mapping);
3. an explicit ``provider:model`` (or a bare provider name such as ``fake``), if the caller is allowed it;
   credentials and base URLs come from the ``providers`` section.

No name: the configured ``default_model``. Unknown -> 404 ``model_not_found``; not allowed -> 403.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..adapter import LLMAdapter
from ..config import GatewayConfig
from ..errors import LLMConfigurationError
from .auth import Principal
from .errors import ApiError

if TYPE_CHECKING:
    from ..routing import Router

__all__ = ["ModelCatalog", "Target", "capabilities", "model_not_found", "router_config"]

log = logging.getLogger("llm_connect.server")

_MAX_SPECS = 256
#: the model name of the routing policy
POLICY = "policy"


@dataclass(frozen=True, slots=True)
class Target:
    """What a model name resolved to."""

    #: the name the caller used (or the default model's name)
    public: str
    #: group | alias | spec
    kind: str
    adapter: LLMAdapter
    #: RunConfig.model_name for the adapter (the group, for a router)
    model_name: str | None = None


def model_not_found(name: str) -> ApiError:
    """The 404 of a model name that does not exist (or that the key may not see)."""
    return ApiError(
        404,
        f"the model {name!r} does not exist (see GET /v1/models)",
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def capabilities(provider: str, model: str | None = None) -> dict[str, bool]:
    """What a provider's deployments can do through the gateway: ``chat`` and ``streaming`` (every provider
    but a local embedding model), ``tools`` (function calling: every provider but the echoing ``fake``),
    ``exact_token_count`` (a budget counts a prompt exactly when the cheap bound no longer fits: a count
    endpoint, tiktoken or the local model's own tokenizer), ``embeddings`` (its wire format has an embedding
    codec: OpenAI and every OpenAI-compatible server, Gemini, Ollama; and ``local:minilm``)."""
    from ..registry import HTTP_PROVIDERS
    from ..wire.embeddings import CODECS

    if provider == "local" and model:
        from ..providers.local_embed import embedding_model

        if embedding_model(model) is not None:  # local:minilm only embeds
            return {"chat": False, "streaming": False, "tools": False, "exact_token_count": True, "embeddings": True}
    spec = HTTP_PROVIDERS.get(provider)
    return {
        "chat": True,
        "streaming": True,
        "tools": provider != "fake",
        "exact_token_count": provider == "local" or (spec is not None and spec.input_count is not None),
        "embeddings": spec is not None and spec.embedding_format in CODECS,
    }


def router_config(config: GatewayConfig, pricing: Any) -> dict[str, Any] | None:
    """The ``router`` section with provider credentials and the gateway's pricing filled into deployments."""
    if not config.router:
        return None
    out = dict(config.router)
    groups: dict[str, Any] = {}
    for g, deps in (config.router.get("groups") or {}).items():
        items = deps if isinstance(deps, list) else [deps]
        filled = []
        for d in items:
            entry = {"model": d} if isinstance(d, str) else dict(d) if isinstance(d, Mapping) else d
            if isinstance(entry, dict):
                spec = entry.get("model") or ""
                provider = str(entry.get("provider") or spec.partition(":")[0]).lower()
                pc = config.providers.get(provider)
                if pc is not None:
                    if pc.api_key and not entry.get("api_key") and not entry.get("api_key_env"):
                        entry["api_key"] = pc.api_key
                    if pc.api_base and not entry.get("api_base"):
                        entry["api_base"] = pc.api_base
                options = {**(dict(pc.options) if pc is not None else {}), **dict(entry.get("options") or {})}
                if pricing is not None:
                    options.setdefault("pricing", pricing)
                entry["options"] = options
            filled.append(entry)
        groups[g] = filled
    out["groups"] = groups
    return out


class ModelCatalog:
    """Resolves model names to adapters (see the module docstring)."""

    def __init__(
        self, config: GatewayConfig, router: Router | None, pricing: Any = None, policy: LLMAdapter | None = None
    ) -> None:
        self.config = config
        self.router = router
        self.policy = policy
        self.pricing = pricing
        self._groups = frozenset(router.groups) if router is not None else frozenset()
        #: "policy" names the routing policy unless a group or alias has that name
        self._policy_served = policy is not None and POLICY not in self._groups and POLICY not in config.models
        self._aliases: dict[str, Target] = {}
        self._specs: OrderedDict[str, LLMAdapter] = OrderedDict()
        self.default = config.default_model or (router.default_group if router is not None else None)

    # -- building adapters ------------------------------------------------------------------------
    def _build(
        self,
        spec: str,
        api_key: str | None = None,
        api_base: str | None = None,
        api_key_env: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> LLMAdapter:
        import os

        from ..registry import create_adapter

        provider = spec.partition(":")[0].lower()
        pc = self.config.providers.get(provider)
        opts: dict[str, Any] = {**(dict(pc.options) if pc is not None else {}), **dict(options or {})}
        if self.pricing is not None:
            opts.setdefault("pricing", self.pricing)
        if api_key is None and api_key_env:
            api_key = os.environ.get(api_key_env)
        if api_key is None and pc is not None:
            api_key = pc.api_key
        if api_base is None and pc is not None:
            api_base = pc.api_base
        return create_adapter(spec, api_key=api_key, api_base=api_base, **opts)

    def _spec_adapter(self, spec: str) -> LLMAdapter:
        a = self._specs.get(spec)
        if a is None:
            try:
                a = self._build(spec)
            except LLMConfigurationError as exc:
                raise ApiError(
                    404,
                    f"model {spec!r} is not available: {exc.message}",
                    "invalid_request_error",
                    "model_not_found",
                    "model",
                ) from exc
            self._specs[spec] = a
            while len(self._specs) > _MAX_SPECS:
                self._specs.popitem(last=False)
        return a

    def _alias(self, name: str, depth: int = 0) -> Target:
        hit = self._aliases.get(name)
        if hit is not None:
            return hit
        if depth > 8:
            raise ApiError(
                404,
                f"model alias {name!r} does not resolve (a loop?)",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        target = self.config.models[name]
        if isinstance(target, Mapping):
            try:
                adapter = self._build(
                    target["model"],
                    target.get("api_key"),
                    target.get("api_base"),
                    target.get("api_key_env"),
                    target.get("options"),
                )
            except LLMConfigurationError as exc:
                raise ApiError(
                    404,
                    f"model {name!r} is not available: {exc.message}",
                    "invalid_request_error",
                    "model_not_found",
                    "model",
                ) from exc
            if hasattr(adapter, "price_alias"):  # an adapter of its own: `pricing: {<alias>: ...}` prices it
                adapter.price_alias = name
            t = Target(name, "alias", adapter)
        elif target in self._groups:
            t = Target(name, "alias", self.router, target)  # type: ignore[arg-type]
        elif target in self.config.models and target != name:
            inner = self._alias(target, depth + 1)
            t = Target(name, "alias", inner.adapter, inner.model_name)
        else:
            t = Target(name, "alias", self._spec_adapter(target))
        self._aliases[name] = t
        return t

    # -- resolving --------------------------------------------------------------------------------
    def resolve(self, name: str | None, principal: Principal, task_type: str | None = None) -> Target:
        """The target of ``name`` for ``principal`` (ApiError 404 / 403 / 422)."""
        if not name and task_type and self._policy_served:
            name = POLICY
        if name == POLICY and self._policy_served:
            if not principal.may_use(POLICY, "group"):
                raise ApiError(
                    403, "this API key may not use the routing policy", "permission_error", "model_not_allowed", "model"
                )
            return Target(POLICY, "policy", self.policy)
        if name is None or name == "":
            name = self.default
            if name is None:
                raise ApiError(
                    422,
                    "model: no model given and no default_model configured",
                    "invalid_request_error",
                    "invalid_field",
                    "model",
                )
        if not isinstance(name, str) or len(name) > 256:
            raise ApiError(422, "model must be a string", "invalid_request_error", "invalid_field", "model")
        kind = self._kind(name)
        if kind is None:
            raise model_not_found(name)
        if not principal.may_use(name, kind):
            why = (
                " (a model named directly needs a matching pattern in the key's, team's or tenant's models, e.g. '*')"
                if kind == "spec" and not principal.patterns
                else ""
            )
            msg = f"this API key may not use the model {name!r}{why}"
            raise ApiError(403, msg, "permission_error", "model_not_allowed", "model")
        if kind == "group":
            return Target(name, "group", self.router, name)  # type: ignore[arg-type]
        if kind == "alias":
            return self._alias(name)
        return Target(name, "spec", self._spec_adapter(name))

    def _kind(self, name: str) -> str | None:
        """group, alias or spec (a ``provider:model`` or a bare provider name); None: no such model."""
        if name in self._groups:
            return "group"
        if name in self.config.models:
            return "alias"
        if ":" in name or self._is_provider(name):
            return "spec"
        return None

    @staticmethod
    def _is_provider(name: str) -> bool:
        from ..registry import HTTP_PROVIDERS, OTHER_PROVIDERS

        return name.lower() in OTHER_PROVIDERS or name.lower() in HTTP_PROVIDERS

    def listing(self, principal: Principal) -> list[dict[str, Any]]:
        """OpenAI /v1/models entries of the policy, every group and every alias the principal may use."""
        names = [POLICY] if self._policy_served else []
        names += [*self._groups, *self.config.models]
        out = []
        for name in names:
            entry = self.describe(name, principal)
            if entry is not None:
                out.append(entry)
        return out

    def describe(self, name: str, principal: Principal) -> dict[str, Any] | None:
        """The OpenAI model object of ``name`` with the gateway's facts (kind, default, what it can do, the
        smallest context window it may reach; for the admin key, its deployments), or None when the
        principal may not see it. A ``provider:model`` the caller may use is described too."""
        kind = "group" if name == POLICY and self._policy_served else self._kind(name)
        if kind is None or not principal.may_use(name, kind):
            return None
        deployments = self._deployments(name)
        entry: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "llm-connect",
            "kind": "policy" if name == POLICY and self._policy_served else kind,
        }
        if name == self.default:
            entry["default"] = True
        if deployments:
            caps = [capabilities(d["provider"], d.get("model")) for d in deployments]
            entry["capabilities"] = {k: any(c[k] for c in caps) for k in caps[0]}
            windows = [d["context_window"] for d in deployments if d.get("context_window")]
            if windows:
                entry["context_window"] = min(windows)
            if principal.admin:
                entry["deployments"] = deployments
        return entry

    def _deployments(self, name: str, depth: int = 0) -> list[dict[str, Any]]:
        """The deployments a name may reach (provider, model and the router's facts; never a key)."""
        if name == POLICY and self._policy_served:
            return [d for g in self._groups for d in self._deployments(g, depth + 1)]
        if name in self._groups and self.router is not None:
            return next((g["deployments"] for g in self.router.describe() if g["id"] == name), [])
        target = self.config.models.get(name)
        if target is not None and depth < 8:
            if isinstance(target, Mapping):
                target = target["model"]
            elif target in self._groups or (target in self.config.models and target != name):
                return self._deployments(target, depth + 1)
        spec = target if target is not None else name
        provider, _, model = spec.partition(":")
        return [{"provider": provider.lower(), "model": model or None}]

    async def aclose(self) -> None:
        adapters = {id(a): a for a in [*self._specs.values(), *(t.adapter for t in self._aliases.values())]}
        for a in adapters.values():
            if a is self.router:
                continue
            try:
                await a.aclose()
            except Exception as exc:
                log.debug("closing %r failed: %s", a, exc)
        if self.policy is not None:
            await self.policy.aclose()
        if self.router is not None:
            await self.router.aclose()
