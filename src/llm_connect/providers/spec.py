"""ProviderSpec: an HTTP provider as data (wire format, base URL, auth, key variables, capabilities, pricing id,
quirks). No I/O imports, so the registry can list providers without loading the HTTP client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["CAPABILITIES", "DeploymentURLs", "ProviderSpec", "VertexPublisher"]

#: what a provider row can claim: tool calls, image input, JSON mode / structured output, usage at the end of a
#: stream, prompt caching (reported as cached tokens), reasoning text (``reasoning_content`` / ``reasoning``)
CAPABILITIES = frozenset({"tools", "vision", "json", "stream_usage", "caching", "reasoning", "citations"})


@dataclass(frozen=True, slots=True)
class DeploymentURLs:
    """A provider addressed by deployment under a per-resource endpoint (Azure OpenAI).

    With an API version (``api_version=`` or the first of ``version_env`` set), calls go to
    ``{endpoint}{versioned_path}`` with ``?{version_param}=<version>`` and the deployment in the path;
    without one (or with ``"v1"``) to ``{endpoint}{v1_path}`` with the deployment as the body's ``model``.
    ``token_env`` holds a bearer token (Entra ID) used when no key is given.
    """

    versioned_path: str
    v1_path: str
    version_param: str = "api-version"
    version_env: tuple[str, ...] = ()
    token_env: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VertexPublisher:
    """A model publisher on Google Vertex AI (``google``: Gemini; ``anthropic``: Claude), served under
    ``https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/publishers/{publisher}``
    with an OAuth access token from google-auth (providers/vertex.py). The environment variables are read in
    order, the first one set wins."""

    publisher: str
    project_env: tuple[str, ...] = ("GOOGLE_CLOUD_PROJECT",)
    location_env: tuple[str, ...] = ("GOOGLE_CLOUD_LOCATION", "VERTEX_LOCATION")
    credentials_env: tuple[str, ...] = ("GOOGLE_APPLICATION_CREDENTIALS",)
    #: the location used when neither the options nor the environment name one
    default_location: str = "global"


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One HTTP provider. ``auth`` is how the key is sent: bearer, x-api-key, x-goog-api-key, api-key or none."""

    name: str
    wire: str
    base_url: str
    key_env: tuple[str, ...] = ()
    auth: str = "bearer"
    key_required: bool = True
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: env var that overrides base_url (e.g. OLLAMA_HOST)
    base_env: str | None = None
    #: the body field that carries max_tokens, where a provider renamed it (OpenAI: max_completion_tokens,
    #: which its reasoning models require; compatible servers keep max_tokens)
    max_tokens_field: str = "max_tokens"
    #: how a budget counts a prompt exactly when the cheap bound no longer fits: "endpoint" (the wire
    #: format's count-tokens request), "tiktoken" (OpenAI's tokenizer, when installed) or None (the bound)
    input_count: str | None = None
    description: str = ""
    #: the genai-prices provider id its calls are priced under ("" : the same as ``name``; None: genai-prices has
    #: no such provider, so calls are priced only by config overrides)
    prices_id: str | None = ""
    #: what the provider supports (see CAPABILITIES); documentation and ``llm-connect models``, not enforced
    capabilities: frozenset[str] = frozenset()
    #: the provider reports reasoning tokens beside completion_tokens instead of inside it (xAI): output is
    #: completion_tokens + reasoning_tokens, as genai-prices counts it
    reasoning_outside_output: bool = False
    #: top-level reply fields kept on the response (``LLMResponse.provider_fields``), e.g. Perplexity's citations
    keep_fields: tuple[str, ...] = ()
    #: request body fields the provider rejects, removed before sending (Cohere: ``stream_options``)
    drop_fields: tuple[str, ...] = ()
    #: deployment-addressed URLs (Azure OpenAI); None: ``base_url`` + the wire format's path
    deployments: DeploymentURLs | None = None
    #: a Vertex AI publisher (the row's URLs and OAuth credentials come from it); None: not on Vertex
    vertex: VertexPublisher | None = None
    #: the embedding format (a key of ``llm_connect.wire.embeddings.CODECS``): "" the chat wire format's own,
    #: None none (the provider does not serve one), or another (Vertex AI's ``vertex_predict``)
    embeddings: str | None = ""
    #: the ``pip install 'llm-connect[extra]'`` the row needs beyond the core install (None: none); named in
    #: the error when its imports are missing
    extra: str | None = None
    #: where the base URL, key variable and shapes are documented
    docs_url: str = ""
    #: ``"module:Class"`` of the HTTPAdapter subclass a row needs code for (Bedrock's SigV4 signing); None: HTTPAdapter
    adapter: str | None = None
    #: other variables that hold credentials the adapter finds itself (AWS_ACCESS_KEY_ID, AWS_PROFILE), shown by
    #: ``llm-connect models`` as set
    credential_env: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = self.capabilities - CAPABILITIES
        if unknown:
            raise ValueError(f"provider {self.name!r}: unknown capabilities {sorted(unknown)}")

    @property
    def embedding_format(self) -> str | None:
        """The key of the embedding codec this row speaks, if any (the codec may not exist: then it cannot)."""
        return self.wire if self.embeddings == "" else self.embeddings

    @property
    def genai_prices_id(self) -> str | None:
        """The genai-prices provider id (None: not in genai-prices)."""
        return self.name if self.prices_id == "" else self.prices_id

    def find_key(self) -> str | None:
        for var in self.key_env:
            value = os.environ.get(var)
            if value:
                return value
        return None

    def key_variable_set(self) -> str | None:
        """The name of the first key (or token) variable that is set, else None."""
        tokens = self.deployments.token_env if self.deployments is not None else ()
        if self.vertex is not None:
            tokens = self.vertex.credentials_env
        for var in (*self.key_env, *tokens, *self.credential_env):
            if os.environ.get(var):
                return var
        return None
