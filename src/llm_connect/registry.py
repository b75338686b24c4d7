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
from .providers.spec import ProviderSpec

__all__ = [
    "HTTP_PROVIDERS",
    "OTHER_PROVIDERS",
    "check_spec",
    "create_adapter",
    "default_spec",
    "get_llm",
    "provider_names",
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
            ),
            ProviderSpec(
                "gemini",
                "gemini",
                "https://generativelanguage.googleapis.com",
                ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
                auth="x-goog-api-key",
                description="Google Gemini API",
                input_count="endpoint",
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
            ),
            _openai_compatible(
                "openrouter",
                "https://openrouter.ai/api/v1",
                ("OPENROUTER_API_KEY",),
                key_required=True,
                headers={"HTTP-Referer": "https://github.com/llm-connect/llm-connect", "X-Title": "llm-connect"},
                description="OpenRouter (OpenAI-compatible)",
            ),
            _openai_compatible(
                "groq",
                "https://api.groq.com/openai/v1",
                ("GROQ_API_KEY",),
                key_required=True,
                description="Groq (OpenAI-compatible)",
            ),
            _openai_compatible(
                "together",
                "https://api.together.xyz/v1",
                ("TOGETHER_API_KEY",),
                key_required=True,
                description="Together AI (OpenAI-compatible)",
            ),
            _openai_compatible(
                "vllm",
                "http://127.0.0.1:8000/v1",
                ("VLLM_API_KEY",),
                base_env="VLLM_BASE_URL",
                description="vLLM OpenAI-compatible server",
            ),
            _openai_compatible(
                "llamacpp-server",
                "http://127.0.0.1:8080/v1",
                ("LLAMACPP_API_KEY",),
                base_env="LLAMACPP_BASE_URL",
                description="llama.cpp llama-server",
            ),
            _openai_compatible(
                "lmstudio",
                "http://127.0.0.1:1234/v1",
                ("LMSTUDIO_API_KEY",),
                base_env="LMSTUDIO_BASE_URL",
                description="LM Studio local server",
            ),
            _openai_compatible(
                "openai-compatible",
                "http://127.0.0.1:8000/v1",
                ("OPENAI_COMPATIBLE_API_KEY",),
                description="any OpenAI-compatible server: pass api_base",
            ),
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

        return HTTPAdapter(HTTP_PROVIDERS[provider], model, api_key=api_key, api_base=api_base, **options)
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
