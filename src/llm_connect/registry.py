"""The explicit provider registry and the factories ``create_adapter`` and ``get_llm``.

HTTP providers are data rows (:class:`ProviderSpec`); the rest (``local``, ``claude_code``, ``fake``) are
named factories imported lazily, so ``import llm_connect`` stays cheap and a missing extra is reported
with the exact ``pip install`` line.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .adapter import LLMAdapter
from .errors import LLMConfigurationError
from .providers.spec import DeploymentURLs, ProviderSpec, VertexPublisher

__all__ = [
    "HTTP_PROVIDERS",
    "OTHER_PROVIDERS",
    "check_spec",
    "create_adapter",
    "default_spec",
    "get_llm",
    "provider_names",
    "provider_prices_id",
]


def _openai_compatible(
    name: str,
    base_url: str,
    key_env: tuple[str, ...] = (),
    *,
    key_required: bool = False,
    headers: Mapping[str, str] | None = None,
    base_env: str | None = None,
    description: str = "",
    prices_id: str | None = "",
    capabilities: frozenset[str] = frozenset(),
    docs_url: str = "",
    **quirks: Any,
) -> ProviderSpec:
    return ProviderSpec(
        name=name,
        wire="openai_chat",
        base_url=base_url,
        key_env=key_env,
        key_required=key_required,
        headers=MappingProxyType(dict(headers or {})),
        base_env=base_env,
        description=description,
        prices_id=prices_id,
        capabilities=capabilities,
        docs_url=docs_url,
        **quirks,
    )


def _caps(*names: str) -> frozenset[str]:
    return frozenset(names)


_CHAT = _caps("tools", "json", "stream_usage")


def _vendor(
    name: str, base_url: str, key_env: str | tuple[str, ...], description: str, docs_url: str, **kw: Any
) -> ProviderSpec:
    """A hosted OpenAI-compatible vendor: a key is required, the base URL is the documented one."""
    keys = (key_env,) if isinstance(key_env, str) else key_env
    kw.setdefault("capabilities", _CHAT)
    return _openai_compatible(name, base_url, keys, key_required=True, description=description, docs_url=docs_url, **kw)


#: the OpenAI-compatible long tail: hosted vendors, each a row (base URL, key variable, capabilities,
#: genai-prices provider id, quirks as data); docs/providers.md has the same table for people
_LONG_TAIL = (
    _vendor(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        "Mistral AI (OpenAI-compatible chat completions)",
        "https://docs.mistral.ai/api/",
        capabilities=_caps("tools", "vision", "json", "stream_usage"),
    ),
    _vendor(
        "deepseek",
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        "DeepSeek (reasoning_content beside content; automatic prompt cache)",
        "https://api-docs.deepseek.com/",
        capabilities=_caps("tools", "json", "stream_usage", "caching", "reasoning"),
    ),
    _vendor(
        "xai",
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        "xAI Grok (reasoning tokens reported beside completion tokens)",
        "https://docs.x.ai/docs/api-reference",
        prices_id="x-ai",
        capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
        reasoning_outside_output=True,
    ),
    _vendor(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        "Fireworks AI",
        "https://docs.fireworks.ai/api-reference/post-chatcompletions",
        capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
    ),
    _vendor(
        "cerebras",
        "https://api.cerebras.ai/v1",
        "CEREBRAS_API_KEY",
        "Cerebras Inference",
        "https://inference-docs.cerebras.ai/api-reference/chat-completions",
        capabilities=_caps("tools", "json", "stream_usage", "reasoning"),
    ),
    _vendor(
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
        "Perplexity Sonar (web-grounded; citations and search_results kept)",
        "https://docs.perplexity.ai/api-reference/chat-completions-post",
        capabilities=_caps("json", "stream_usage", "reasoning", "citations"),
        keep_fields=("citations", "search_results"),
    ),
    _vendor(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        ("DEEPINFRA_API_KEY", "DEEPINFRA_TOKEN"),
        "DeepInfra (OpenAI-compatible endpoint)",
        "https://deepinfra.com/docs/openai_api",
        prices_id=None,
        capabilities=_caps("tools", "vision", "json", "stream_usage"),
    ),
    _vendor(
        "moonshot",
        "https://api.moonshot.ai/v1",
        "MOONSHOT_API_KEY",
        "Moonshot AI Kimi",
        "https://platform.moonshot.ai/docs/api/chat",
        prices_id="moonshotai",
        capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
    ),
    _vendor(
        "zai",
        "https://api.z.ai/api/paas/v4",
        "ZAI_API_KEY",
        "Z.ai GLM (general endpoint)",
        "https://docs.z.ai/api-reference/introduction",
        capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
    ),
    _vendor(
        "nebius",
        "https://api.tokenfactory.nebius.com/v1",
        "NEBIUS_API_KEY",
        "Nebius Token Factory (priced at its Hugging Face router rates)",
        "https://docs.tokenfactory.nebius.com/api-reference/introduction",
        prices_id="huggingface_nebius",
        capabilities=_caps("tools", "vision", "json", "stream_usage"),
    ),
    _vendor(
        "sambanova",
        "https://api.sambanova.ai/v1",
        "SAMBANOVA_API_KEY",
        "SambaNova Cloud (not in genai-prices under its own model ids: price it with overrides)",
        "https://docs.sambanova.ai/cloud/api-reference/endpoints/chat",
        prices_id=None,
        capabilities=_caps("tools", "vision", "json", "stream_usage"),
    ),
    _vendor(
        "hyperbolic",
        "https://api.hyperbolic.xyz/v1",
        "HYPERBOLIC_API_KEY",
        "Hyperbolic (priced at its Hugging Face router rates)",
        "https://docs.hyperbolic.xyz/docs/rest-api",
        prices_id="huggingface_hyperbolic",
        capabilities=_caps("json", "stream_usage", "vision"),
    ),
    _vendor(
        "novita",
        "https://api.novita.ai/openai/v1",
        "NOVITA_API_KEY",
        "Novita AI",
        "https://novita.ai/docs/api-reference/model-apis-llm-create-chat-completion",
        capabilities=_caps("tools", "vision", "json", "stream_usage", "reasoning"),
    ),
    _vendor(
        "cohere",
        "https://api.cohere.ai/compatibility/v1",
        ("COHERE_API_KEY", "CO_API_KEY"),
        "Cohere Compatibility API (rejects stream_options: no stream usage asked for)",
        "https://docs.cohere.com/docs/compatibility-api",
        capabilities=_caps("tools", "vision", "json"),
        drop_fields=("stream_options",),
    ),
)

#: Azure OpenAI: ``azure:<deployment>``; the endpoint comes from api_base / ``endpoint=`` / $AZURE_OPENAI_ENDPOINT
AZURE = ProviderSpec(
    "azure",
    "openai_chat",
    "",
    ("AZURE_OPENAI_API_KEY",),
    auth="api-key",
    base_env="AZURE_OPENAI_ENDPOINT",
    description="Azure OpenAI (deployments; api-key or Entra ID token)",
    capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
    max_tokens_field="max_completion_tokens",
    deployments=DeploymentURLs(
        versioned_path="/openai/deployments/{deployment}",
        v1_path="/openai/v1",
        version_env=("AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION"),
        token_env=("AZURE_OPENAI_AD_TOKEN",),
    ),
    docs_url="https://learn.microsoft.com/en-us/azure/ai-foundry/openai/reference",
)

#: Amazon Bedrock (Converse API): ``bedrock:<model id | inference profile id | ARN>``, SigV4 or a Bedrock API key
BEDROCK = ProviderSpec(
    "bedrock",
    "bedrock_converse",
    "https://bedrock-runtime.{region}.amazonaws.com",
    ("AWS_BEARER_TOKEN_BEDROCK",),
    key_required=False,
    base_env="AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    description="Amazon Bedrock Converse (every model family; SigV4 from the AWS chain or an API key)",
    prices_id="aws",
    capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
    docs_url="https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html",
    adapter="llm_connect.providers.bedrock:BedrockAdapter",
    extra="bedrock",
    credential_env=("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ROLE_ARN"),
)


def _on_vertex(
    name: str, wire: str, publisher: VertexPublisher, description: str, docs_url: str, embeddings: str | None
) -> ProviderSpec:
    """A Vertex AI publisher's row: OAuth from google-auth (the ``vertex`` extra), priced under genai-prices'
    ``google`` (which falls back to ``anthropic``'s models for Claude; "@" versions match)."""
    return ProviderSpec(
        name,
        wire,
        "",
        auth="none",
        key_required=False,
        description=description,
        input_count="endpoint",
        prices_id="google",
        capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
        vertex=publisher,
        embeddings=embeddings,
        adapter="llm_connect.providers.vertex:VertexAdapter",
        extra="vertex",
        docs_url=docs_url,
    )


#: Google Vertex AI, one row per publisher (a row is one wire format): ``vertex:<gemini model>`` and
#: ``vertex_anthropic:<claude model>``; project, location and credentials from options or the environment
_VERTEX = (
    _on_vertex(
        "vertex",
        "gemini",
        VertexPublisher("google"),
        "Gemini on Google Vertex AI (OAuth: service account or application default credentials)",
        "https://cloud.google.com/vertex-ai/generative-ai/docs/reference/rest/v1/projects.locations.publishers.models",
        "vertex_predict",  # Vertex embeds with :predict, not the Gemini API's batchEmbedContents
    ),
    _on_vertex(
        "vertex_anthropic",
        "anthropic_messages",
        VertexPublisher(
            "anthropic",
            project_env=("GOOGLE_CLOUD_PROJECT", "ANTHROPIC_VERTEX_PROJECT_ID"),
            location_env=("GOOGLE_CLOUD_LOCATION", "VERTEX_LOCATION", "CLOUD_ML_REGION"),
        ),
        "Anthropic Claude on Google Vertex AI (rawPredict; OAuth like vertex)",
        "https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude",
        None,
    ),
)


HTTP_PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ProviderSpec(
                "openai",
                "openai_chat",
                "https://api.openai.com/v1",
                ("OPENAI_API_KEY",),
                base_env="OPENAI_BASE_URL",
                description="OpenAI Chat Completions",
                max_tokens_field="max_completion_tokens",
                input_count="tiktoken",
                capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
                docs_url="https://platform.openai.com/docs/api-reference/chat",
            ),
            ProviderSpec(
                "anthropic",
                "anthropic_messages",
                "https://api.anthropic.com",
                ("ANTHROPIC_API_KEY",),
                auth="x-api-key",
                base_env="ANTHROPIC_BASE_URL",
                description="Anthropic Messages",
                input_count="endpoint",
                capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
                docs_url="https://docs.anthropic.com/en/api/messages",
            ),
            ProviderSpec(
                "gemini",
                "gemini",
                "https://generativelanguage.googleapis.com",
                ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
                auth="x-goog-api-key",
                description="Google Gemini API",
                input_count="endpoint",
                prices_id="google",
                capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
                docs_url="https://ai.google.dev/api/generate-content",
            ),
            ProviderSpec(
                "ollama",
                "ollama",
                "http://127.0.0.1:11434",
                (),
                auth="none",
                key_required=False,
                base_env="OLLAMA_HOST",
                description="Ollama /api/chat",
                prices_id=None,
                capabilities=_caps("tools", "vision", "json", "stream_usage", "reasoning"),
                docs_url="https://github.com/ollama/ollama/blob/main/docs/api.md",
            ),
            _openai_compatible(
                "openrouter",
                "https://openrouter.ai/api/v1",
                ("OPENROUTER_API_KEY",),
                key_required=True,
                headers={"HTTP-Referer": "https://github.com/llm-connect/llm-connect", "X-Title": "llm-connect"},
                description="OpenRouter (OpenAI-compatible)",
                capabilities=_caps("tools", "vision", "json", "stream_usage", "caching", "reasoning"),
                docs_url="https://openrouter.ai/docs/api-reference/chat-completion",
            ),
            _openai_compatible(
                "groq",
                "https://api.groq.com/openai/v1",
                ("GROQ_API_KEY",),
                key_required=True,
                description="Groq (OpenAI-compatible)",
                capabilities=_caps("tools", "vision", "json", "stream_usage", "reasoning"),
                docs_url="https://console.groq.com/docs/api-reference",
            ),
            _openai_compatible(
                "together",
                "https://api.together.xyz/v1",
                ("TOGETHER_API_KEY",),
                key_required=True,
                description="Together AI (OpenAI-compatible)",
                capabilities=_caps("tools", "vision", "json", "stream_usage", "reasoning"),
                docs_url="https://docs.together.ai/reference/chat-completions-1",
            ),
            _openai_compatible(
                "vllm",
                "http://127.0.0.1:8000/v1",
                ("VLLM_API_KEY",),
                base_env="VLLM_BASE_URL",
                description="vLLM OpenAI-compatible server",
                prices_id=None,
                capabilities=_caps("tools", "vision", "json", "stream_usage", "reasoning"),
            ),
            _openai_compatible(
                "llamacpp-server",
                "http://127.0.0.1:8080/v1",
                ("LLAMACPP_API_KEY",),
                base_env="LLAMACPP_BASE_URL",
                description="llama.cpp llama-server",
                prices_id=None,
                capabilities=_caps("tools", "json", "stream_usage"),
            ),
            _openai_compatible(
                "lmstudio",
                "http://127.0.0.1:1234/v1",
                ("LMSTUDIO_API_KEY",),
                base_env="LMSTUDIO_BASE_URL",
                description="LM Studio local server",
                prices_id=None,
                capabilities=_caps("tools", "json", "stream_usage"),
            ),
            _openai_compatible(
                "openai-compatible",
                "http://127.0.0.1:8000/v1",
                ("OPENAI_COMPATIBLE_API_KEY",),
                description="any OpenAI-compatible server: pass api_base",
                capabilities=_CHAT,
            ),
            AZURE,
            *_VERTEX,
            BEDROCK,
            *_LONG_TAIL,
        )
    }
)

#: non-HTTP providers: name -> (module, factory function, extra that provides it)
OTHER_PROVIDERS: Mapping[str, tuple[str, str, str | None]] = MappingProxyType(
    {
        "local": ("llm_connect.providers.local", "create", "local"),
        "claude_code": ("llm_connect.providers.claude_code", "create", None),
        "fake": ("llm_connect.providers.fake", "create", None),
    }
)

_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "google": "gemini",
        "claude-code": "claude_code",
        "llamacpp": "llamacpp-server",
        "llama.cpp": "llamacpp-server",
        "azure_openai": "azure",
        "azure-openai": "azure",
        "vertex_ai": "vertex",
        "vertex-ai": "vertex",
        "google-vertex": "vertex",
        "vertex-anthropic": "vertex_anthropic",
        "aws": "bedrock",
        "aws_bedrock": "bedrock",
        "amazon-bedrock": "bedrock",
        "grok": "xai",
        "x-ai": "xai",
        "z.ai": "zai",
        "moonshotai": "moonshot",
        "together_ai": "together",
    }
)

#: model used when a key is present but no spec was given, in order of preference
_KEYED_DEFAULTS = (
    ("OPENAI_API_KEY", "openai:gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic:claude-haiku-4-5"),
    ("GEMINI_API_KEY", "gemini:gemini-2.5-flash"),
    ("GOOGLE_API_KEY", "gemini:gemini-2.5-flash"),
    ("OPENROUTER_API_KEY", "openrouter:anthropic/claude-haiku-4.5"),
)


def provider_names() -> list[str]:
    return sorted([*HTTP_PROVIDERS, *OTHER_PROVIDERS])


def provider_prices_id(provider: str) -> str | None:
    """The genai-prices provider id of an HTTP provider row ("" when ``provider`` is no row: use its name)."""
    spec = HTTP_PROVIDERS.get(provider)
    return "" if spec is None else spec.genai_prices_id


def default_spec(environ: Mapping[str, str] | None = None) -> str:
    """The spec used when none is given: $LLM_CONNECT_MODEL, else the first keyed provider, else ``local``."""
    env = os.environ if environ is None else environ
    if env.get("LLM_CONNECT_MODEL"):
        return env["LLM_CONNECT_MODEL"]
    for var, spec in _KEYED_DEFAULTS:
        if env.get(var):
            return spec
    return "local"


def _split(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec.strip():
        raise LLMConfigurationError(f"model spec must be a non-empty string like 'openai:gpt-4o-mini', got {spec!r}")
    provider, _, model = spec.strip().partition(":")
    provider = provider.lower()
    return _ALIASES.get(provider, provider), model


def check_spec(spec: str) -> str:
    """Validate ``"provider:model"`` without building anything; returns the canonical provider name.
    Raises LLMConfigurationError naming the known providers (config validation uses this at load)."""
    provider, _ = _split(spec)
    if provider not in HTTP_PROVIDERS and provider not in OTHER_PROVIDERS:
        raise LLMConfigurationError(
            f"unknown provider {provider!r} in {spec!r}; known: {', '.join(provider_names())}", provider=provider
        )
    return provider


def _load_factory(name: str) -> Callable[..., LLMAdapter]:
    module_name, attr, extra = OTHER_PROVIDERS[name]
    return _load(name, module_name, attr, extra)


def _load(name: str, module_name: str, attr: str, extra: str | None) -> Callable[..., LLMAdapter]:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" — install it with: pip install 'llm-connect[{extra}]'" if extra else ""
        raise LLMConfigurationError(
            f"provider {name!r} needs a package that is not installed ({exc.name}){hint}", provider=name
        ) from exc
    return getattr(module, attr)


def create_adapter(
    spec: str | None = None, *, api_key: str | None = None, api_base: str | None = None, **options: Any
) -> LLMAdapter:
    """Build an adapter from ``"provider:model"``. With no spec: see :func:`default_spec`.

    ``api_base`` follows each provider's SDK convention (``…/v1`` for OpenAI-compatible providers, the
    host for Anthropic, Gemini and Ollama). Other keyword options go to the adapter (``timeout``,
    ``transport``, ``headers``, ``pricing``, ``usage_tracker``, provider-specific ones).
    """
    provider, model = _split(spec if spec is not None else default_spec())
    if provider in HTTP_PROVIDERS:
        from .providers.http import HTTPAdapter  # the HTTP client loads only when an HTTP provider is used

        row = HTTP_PROVIDERS[provider]
        cls: Callable[..., LLMAdapter] = HTTPAdapter
        if row.adapter is not None:  # a row that needs code of its own (Bedrock's signing, Vertex's tokens)
            module_name, _, attr = row.adapter.partition(":")
            cls = _load(provider, module_name, attr, row.extra)
        return cls(row, model, api_key=api_key, api_base=api_base, **options)
    if provider in OTHER_PROVIDERS:
        factory = _load_factory(provider)
        kwargs = dict(options)
        if api_key is not None:
            kwargs["api_key"] = api_key
        if api_base is not None:
            kwargs["api_base"] = api_base
        return factory(model, **kwargs)
    raise LLMConfigurationError(
        f"unknown provider {provider!r} in {spec!r}; known: {', '.join(provider_names())}", provider=provider
    )


def get_llm(**options: Any) -> LLMAdapter:
    """Seed 004's factory: the adapter named by $LLM_CONNECT_MODEL (or the default), ready as an LLMBackend.

    ``$LLM_CONNECT_TIMEOUT`` sets its wall-clock cap for ``generate``.
    """
    timeout = os.environ.get("LLM_CONNECT_TIMEOUT")
    if timeout and "timeout" not in options:
        try:
            options["timeout"] = float(timeout)
        except ValueError:
            options["timeout"] = -1.0
        if not options["timeout"] > 0:
            raise LLMConfigurationError(f"LLM_CONNECT_TIMEOUT must be a positive number of seconds, got {timeout!r}")
    return create_adapter(None, **options)
