"""Deployment-addressed providers (Azure OpenAI): where a call goes, how it authenticates, what it is priced as.

A :class:`~llm_connect.providers.spec.DeploymentURLs` row names the URL shapes; this module turns the row plus
the adapter's options into a :class:`DeploymentRoute`:

* endpoint: ``api_base`` or ``endpoint=`` or the row's ``base_env`` ($AZURE_OPENAI_ENDPOINT), e.g.
  ``https://my-resource.openai.azure.com``;
* ``api_version=`` (or the row's ``version_env``): a dated version routes to
  ``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…``; none, or ``"v1"``, to the v1 API
  ``{endpoint}/openai/v1/chat/completions`` with the deployment as the body's ``model``;
* ``models={deployment: model}``: the model each deployment runs, for pricing before the reply names it
  (reservations, budgets) and when a reply names none;
* credentials: the API key (``api-key`` header), else an Entra ID bearer token: ``azure_ad_token=`` or the row's
  ``token_env`` ($AZURE_OPENAI_AD_TOKEN), or ``azure_ad_token_provider=`` — a callable (sync or async) returning
  a fresh token, asked before every request (azure-identity's ``get_bearer_token_provider`` caches it).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import LLMConfigurationError
from .spec import ProviderSpec

__all__ = ["OPTION_NAMES", "DeploymentRoute", "deployment_route"]

#: the adapter keywords a deployment-addressed row takes (removed from the options before BaseAdapter sees them)
OPTION_NAMES = ("endpoint", "api_version", "models", "azure_ad_token", "azure_ad_token_provider")

TokenProvider = Callable[[], str | Awaitable[str]]


@dataclass(frozen=True, slots=True)
class DeploymentRoute:
    """The resolved URL base (the wire path is appended), query, pricing model and bearer-token source."""

    base: str
    query: Mapping[str, str]
    price_model: str | None
    token: str | None = None
    token_provider: TokenProvider | None = None

    async def bearer_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>`` from the token provider (called per request)."""
        if self.token_provider is None:
            return {}
        token = self.token_provider()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str) or not token.strip() or not token.strip().isprintable():
            raise LLMConfigurationError("azure_ad_token_provider must return a non-empty token string")
        return {"Authorization": f"Bearer {token.strip()}"}


def _first_env(names: tuple[str, ...]) -> str | None:
    for var in names:
        value = os.environ.get(var)
        if value and value.strip():
            return value.strip()
    return None


def deployment_route(
    spec: ProviderSpec, deployment: str, api_base: str | None, key: str | None, options: dict[str, Any]
) -> DeploymentRoute:
    """The route of ``deployment`` on ``spec`` (a row with ``deployments``); pops :data:`OPTION_NAMES` from
    ``options``. Raises LLMConfigurationError naming what is missing or malformed."""
    urls = spec.deployments
    assert urls is not None
    endpoint = options.pop("endpoint", None)
    version = options.pop("api_version", None)
    models = options.pop("models", None)
    token = options.pop("azure_ad_token", None)
    provider = options.pop("azure_ad_token_provider", None)
    where = api_base or endpoint or (os.environ.get(spec.base_env) if spec.base_env else None)
    if not where or not str(where).strip():
        env = f"set {spec.base_env} or " if spec.base_env else ""
        raise LLMConfigurationError(
            f"provider {spec.name!r} needs its endpoint (https://<resource>.openai.azure.com): {env}pass "
            "api_base=... (config: providers.<name>.api_base)",
            provider=spec.name,
            model=deployment,
        )
    version = version if version is not None else _first_env(urls.version_env)
    if version is not None and (not isinstance(version, str) or not version.strip() or not version.isprintable()):
        raise LLMConfigurationError(f"api_version for {spec.name!r} must be a string like '2024-10-21' or 'v1'")
    if models is not None and not (
        isinstance(models, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in models.items())
    ):
        raise LLMConfigurationError(f"models for {spec.name!r} must map deployment names to model names")
    if token is None and key is None:
        token = _first_env(urls.token_env)
    if token is not None and (not isinstance(token, str) or not token.strip().isprintable()):
        raise LLMConfigurationError(f"azure_ad_token for {spec.name!r} must be a printable token string")
    if provider is not None and not callable(provider):
        raise LLMConfigurationError(f"azure_ad_token_provider for {spec.name!r} must be a callable returning a token")
    if key is None and token is None and provider is None:
        names = " or ".join((*spec.key_env, *urls.token_env))
        raise LLMConfigurationError(
            f"no credentials for provider {spec.name!r}: set {names}, or pass api_key=, azure_ad_token= or "
            "azure_ad_token_provider=",
            provider=spec.name,
            model=deployment,
        )
    base = str(where).strip().rstrip("/")
    for suffix in (urls.v1_path, "/openai"):  # an endpoint copied with its path: keep only the resource
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    version = version.strip() if version else None
    if version is None or version == "v1":
        path, query = urls.v1_path, {}
    else:
        path = urls.versioned_path.format(deployment=quote(deployment, safe=""))
        query = {urls.version_param: version}
    return DeploymentRoute(
        base=base + path,
        query=query,
        price_model=(models or {}).get(deployment),
        token=token.strip() if token else None,
        token_provider=provider,
    )
