"""What a request may be billed for beyond plain text input, read from the request before it is sent.

A budget reservation prices the worst case of a call (:meth:`Pricing.worst_cost`): every input token at the
dearest input price the request can incur. Plain input and 5-minute cache writes are always possible; the
kinds here only when the request asks for them:

* ``input_audio`` / ``input_image`` / ``input_video`` — a content part of that modality (an OpenAI
  ``input_audio`` or ``image_url`` part, a Gemini ``inlineData`` / ``fileData`` part by its MIME type); a part
  whose modality cannot be told (a ``file``, a ``document``, …) counts as all three;
* ``cache_write_1h`` — a ``cache_control`` with ``"ttl": "1h"`` anywhere in the messages, tools or extra body
  (Anthropic's 1-hour prompt cache).

The service tier a request asks for is OpenAI's ``service_tier`` body field (``RunConfig.extra_body``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..types import Message, RunConfig

__all__ = ["request_kinds", "requested_service_tier"]

_MEDIA = ("input_audio", "input_image", "input_video")
#: OpenAI-shaped (and Anthropic) content part types -> the kinds they bill
_PART_KINDS: Mapping[str, tuple[str, ...]] = {
    "text": (),
    "image_url": ("input_image",),
    "image": ("input_image",),
    "input_audio": ("input_audio",),
}
#: MIME type prefixes of provider-native parts -> kinds (a PDF is billed as images by Gemini)
_MIME_KINDS = (
    ("audio/", ("input_audio",)),
    ("image/", ("input_image",)),
    ("video/", ("input_video",)),
    ("application/pdf", ("input_image",)),
    ("text/", ()),
)
#: how deep the cache_control search looks (content parts, tools and request bodies are shallow)
_MAX_DEPTH = 12


def request_kinds(messages: Sequence[Message], config: RunConfig | None) -> frozenset[str]:
    """The input kinds (``llm_connect.usage.pricing.INPUT_KINDS``) this request may be billed for."""
    kinds: set[str] = set()
    one_hour = False
    for m in messages:
        if isinstance(m.content, list):
            for part in m.content:
                kinds.update(_part_kinds(part))
            one_hour = one_hour or _asks_one_hour(m.content, 0)
    if config is not None and not one_hour and (config.tools or config.extra_body):
        one_hour = _asks_one_hour(config.tools, 0) or _asks_one_hour(config.extra_body, 0)
    if one_hour:
        kinds.add("cache_write_1h")
    return frozenset(kinds) if kinds else _NONE


_NONE: frozenset[str] = frozenset()


def requested_service_tier(config: RunConfig | None) -> str | None:
    """The ``service_tier`` the request asks for (``extra_body``), or None."""
    body = config.extra_body if config is not None else None
    tier = body.get("service_tier") if body else None
    return tier if isinstance(tier, str) and tier else None


def _part_kinds(part: Any) -> tuple[str, ...]:
    if not isinstance(part, Mapping):
        return _MEDIA
    ptype = part.get("type")
    if isinstance(ptype, str) and ptype in _PART_KINDS:
        return _PART_KINDS[ptype]
    if ptype is None:  # a provider-native part: Gemini text, inlineData, fileData
        if isinstance(part.get("text"), str):
            return ()
        blob = next((part[k] for k in ("inlineData", "inline_data", "fileData", "file_data") if k in part), None)
        mime = (blob.get("mimeType") or blob.get("mime_type")) if isinstance(blob, Mapping) else None
        if isinstance(mime, str):
            for prefix, kinds in _MIME_KINDS:
                if mime.startswith(prefix):
                    return kinds
    return _MEDIA  # a part we cannot tell the modality of


def _asks_one_hour(obj: Any, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return False
    if isinstance(obj, Mapping):
        cc = obj.get("cache_control")
        if isinstance(cc, Mapping) and cc.get("ttl") == "1h":
            return True
        return any(_asks_one_hour(v, depth + 1) for v in obj.values() if isinstance(v, (Mapping, list)))
    if isinstance(obj, list):
        return any(_asks_one_hour(v, depth + 1) for v in obj if isinstance(v, (Mapping, list)))
    return False
