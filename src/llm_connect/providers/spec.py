"""ProviderSpec: an HTTP provider as data (wire format, base URL, auth, key variables). No I/O imports,
so the registry can list providers without loading the HTTP client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["ProviderSpec"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One HTTP provider. ``auth`` is how the key is sent: bearer, x-api-key, x-goog-api-key or none."""

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

    def find_key(self) -> str | None:
        for var in self.key_env:
            value = os.environ.get(var)
            if value:
                return value
        return None
