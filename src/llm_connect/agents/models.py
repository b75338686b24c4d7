"""Agent personas and normalised inbound messages, validated with errors that name the offending field.

An :class:`Agent` is defined in the YAML config (``agents.personas``) or in Python. An
:class:`InboundMessage` is what every channel (Slack, WhatsApp, an HTTP API …) is turned into before an
agent sees it; :meth:`InboundMessage.from_dict` accepts the JSON a Celery task receives.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import LLMConfigurationError, LLMInvalidRequestError

__all__ = [
    "MAX_AGENT_NAME",
    "TRUST_LEVELS",
    "Agent",
    "AgentConfigError",
    "InboundMessage",
    "InvalidMessageError",
    "MessageContent",
    "Sender",
    "slug_id",
]

#: how far an agent's output may act on its own: "restricted" (answers only), "supervised" (actions need
#: review; the default), "auto_apply" (acts autonomously — routing policies may forbid it for some tasks)
TRUST_LEVELS = ("restricted", "supervised", "auto_apply")

#: an agent id: a slug that travels in store keys, budget ids, Celery arguments and ``may_delegate_to``
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_ID_RULE = "1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
#: longest display name, in characters
MAX_AGENT_NAME = 100
#: invisible characters that reorder text (bidirectional embeddings, overrides and isolates)
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class InvalidMessageError(LLMInvalidRequestError):
    """An inbound message failed validation. ``field`` is the dotted path of the offending field."""

    code = "invalid_message"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"message.{field}: {problem}")
        self.field = field


class AgentConfigError(LLMConfigurationError):
    """An agent definition (or the ``agents`` config section) is invalid. ``field`` names the key."""

    code = "invalid_agent_config"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


# -- agents ------------------------------------------------------------------------------------------------


def _display_name(value: Any, where: str) -> str:
    """A human name: any script and punctuation, trimmed, 1-100 characters, one line, no control characters."""
    if not isinstance(value, str):
        raise AgentConfigError(where, f"must be a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise AgentConfigError(where, "must not be empty")
    if len(text) > MAX_AGENT_NAME:
        raise AgentConfigError(where, f"must be at most {MAX_AGENT_NAME} characters, got {len(text)}")
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI_CONTROLS:
            raise AgentConfigError(where, f"must not contain control characters (found U+{ord(ch):04X})")
    return text


def slug_id(name: str) -> str:
    """The id derived from a display name: accents folded to ASCII, every run of other characters one '-'.

    A name that already is a valid id is its own id (``"ada"`` → ``"ada"``); ``"Ada Lovelace"`` →
    ``"Ada-Lovelace"``, ``"José Núñez"`` → ``"Jose-Nunez"``, ``"O'Brien"`` → ``"O-Brien"``. Empty when the name
    has no Latin letters or digits at all (then the agent needs an explicit ``id``).
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9_.\-]+", "-", folded).lstrip("_.-")
    return slug[:64].rstrip("-")


def _opt_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise AgentConfigError(where, f"must be a string, got {type(value).__name__}")
    return value.strip() or None


def _opt_positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AgentConfigError(where, f"must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Agent:
    """One agent persona.

    ``id`` is what code, config keys, thread budgets, Celery tasks and ``may_delegate_to`` use: a strict slug
    (1-64 letters, digits, ``_``, ``-``, ``.``). ``name`` is the display name the model is told ("Your name is
    …"): free text in any script — "Ada Lovelace", "José Núñez", "O'Brien" — trimmed, at most 100 characters,
    no control characters. Without an ``id`` the id is derived from the name (:func:`slug_id`); a name that
    is already a valid id is its own id, so ``Agent("ada", "support")`` has id and name ``"ada"``.

    ``model_preference`` is a router group ("quality", "fast", …) — or, in in-process mode, a
    ``provider:model`` spec. ``max_tokens_per_thread`` (None: the runtime default) caps every conversation
    thread this agent serves; ``max_output_tokens`` (None: the runtime default) caps each reply.
    ``may_delegate_to`` lists the agents it may hand sub-tasks to.
    """

    name: str
    role: str
    persona: str | None = None
    system_prompt: str | None = None
    model_preference: str = "quality"
    trust_level: str = "supervised"
    max_tokens_per_thread: int | None = None
    may_delegate_to: tuple[str, ...] = ()
    max_output_tokens: int | None = None
    temperature: float | None = None
    #: the strict id ("" → derived from ``name``)
    id: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise AgentConfigError("agents.personas.id", f"must be a string, got {type(self.id).__name__}")
        if self.id:
            if not _ID.match(self.id):
                raise AgentConfigError(f"agents.personas.{self.id}.id", f"must be {_ID_RULE}, got {self.id!r}")
            where = f"agents.personas.{self.id}"
            name = _display_name(self.name, where + ".name")
        else:
            name = _display_name(self.name, "agents.personas.name")
            derived = slug_id(name)
            if not derived:
                raise AgentConfigError(
                    "agents.personas.id", f"cannot be derived from the name {name!r}; give the agent an id ({_ID_RULE})"
                )
            object.__setattr__(self, "id", derived)
            where = f"agents.personas.{derived}"
        object.__setattr__(self, "name", name)
        if not isinstance(self.role, str) or not self.role.strip():
            raise AgentConfigError(where + ".role", "is required (a short description of the agent's job)")
        object.__setattr__(self, "role", self.role.strip())
        object.__setattr__(self, "persona", _opt_text(self.persona, where + ".persona"))
        object.__setattr__(self, "system_prompt", _opt_text(self.system_prompt, where + ".system_prompt"))
        if not isinstance(self.model_preference, str) or not self.model_preference.strip():
            raise AgentConfigError(where + ".model_preference", "must name a router group such as 'quality'")
        object.__setattr__(self, "model_preference", self.model_preference.strip())
        if self.trust_level not in TRUST_LEVELS:
            raise AgentConfigError(
                where + ".trust_level", f"must be one of {list(TRUST_LEVELS)}, got {self.trust_level!r}"
            )
        _opt_positive_int(self.max_tokens_per_thread, where + ".max_tokens_per_thread")
        _opt_positive_int(self.max_output_tokens, where + ".max_output_tokens")
        if self.temperature is not None and (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or not 0 <= self.temperature <= 2
        ):
            raise AgentConfigError(where + ".temperature", f"must be between 0 and 2, got {self.temperature!r}")
        targets = self.may_delegate_to
        if isinstance(targets, str) or not isinstance(targets, Iterable):
            raise AgentConfigError(where + ".may_delegate_to", "must be a list of agent ids")
        names = tuple(targets)
        for t in names:
            if not isinstance(t, str) or not _ID.match(t):
                raise AgentConfigError(where + ".may_delegate_to", f"{t!r} is not an agent id")
        if self.id in names:
            raise AgentConfigError(where + ".may_delegate_to", "an agent cannot delegate to itself")
        object.__setattr__(self, "may_delegate_to", names)

    def can_delegate_to(self, other: str) -> bool:
        """Whether the agent with id ``other`` is in ``may_delegate_to``."""
        return other in self.may_delegate_to

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, key: str | None = None) -> Agent:
        """Build from a config mapping. Personas keyed by id pass the mapping ``key``: it is the id, and the
        display ``name`` defaults to it. In a list, each entry has a ``name`` and/or an ``id``."""
        where = f"agents.personas.{key}" if key is not None else "agents.personas[]"
        if not isinstance(data, Mapping):
            raise AgentConfigError(where, "must be a mapping of agent fields")
        fields = dict(data)
        if key is not None:
            inner = fields.pop("id", key)
            if inner != key:
                raise AgentConfigError(where + ".id", f"differs from its key ({inner!r})")
            fields["id"] = key
            if fields.get("name") is None:
                fields["name"] = key
        else:
            if fields.get("name") is None and fields.get("id") is None:
                raise AgentConfigError(where, "every agent needs a 'name' (or an 'id')")
            if fields.get("name") is None:
                fields["name"] = fields["id"]
            if isinstance(fields.get("id"), str):
                where = f"agents.personas.{fields['id']}"
        if "trust" in fields and "trust_level" not in fields:
            fields["trust_level"] = fields.pop("trust")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(fields) - known)
        if unknown:
            raise AgentConfigError(where, f"unknown field(s) {unknown}; known: {sorted(known)}")
        if "may_delegate_to" in fields and fields["may_delegate_to"] is None:
            fields["may_delegate_to"] = ()
        if "role" not in fields:
            raise AgentConfigError(where + ".role", "is required")
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "persona": self.persona,
            "system_prompt": self.system_prompt,
            "model_preference": self.model_preference,
            "trust_level": self.trust_level,
            "max_tokens_per_thread": self.max_tokens_per_thread,
            "may_delegate_to": list(self.may_delegate_to),
            "max_output_tokens": self.max_output_tokens,
            "temperature": self.temperature,
        }


# -- inbound messages ---------------------------------------------------------------------------------------


def _req_text(value: Any, where: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidMessageError(where, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InvalidMessageError(where, "must not be empty")
    return value


#: ids travel as HTTP header values and store keys: what the gateway accepts, no more
_MAX_ID = 128


def _opt_msg_text(value: Any, where: str) -> str | None:
    """An optional id (``id``, ``tenant_id``, ``thread_id``, ``reply_to``): printable, at most 128 characters."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = _req_text(value, where)
    if len(text) > _MAX_ID or not text.isprintable():
        raise InvalidMessageError(where, f"must be a printable id of at most {_MAX_ID} characters")
    return text


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidMessageError(where, f"must be an object, got {type(value).__name__}")
    return dict(value)


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sent the message: a channel-specific user id, and optionally a display name."""

    id: str
    name: str | None = None
    is_bot: bool = False

    @classmethod
    def parse(cls, value: Any) -> Sender:
        if isinstance(value, Sender):
            return value
        if isinstance(value, str):
            return cls(_req_text(value, "sender"))
        if not isinstance(value, Mapping):
            raise InvalidMessageError("sender", f"must be an object with an 'id', got {type(value).__name__}")
        sid = value.get("id", value.get("user_id"))
        if sid is None:
            raise InvalidMessageError("sender.id", "is required")
        if isinstance(sid, int) and not isinstance(sid, bool):
            sid = str(sid)
        name = value.get("name", value.get("display_name"))
        is_bot = value.get("is_bot", False)
        if not isinstance(is_bot, bool):
            raise InvalidMessageError("sender.is_bot", f"must be true or false, got {is_bot!r}")
        return cls(_req_text(sid, "sender.id"), _opt_msg_text(name, "sender.name"), is_bot)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "is_bot": self.is_bot}


@dataclass(frozen=True, slots=True)
class MessageContent:
    """The message body: its text and any attachments (passed through as channel-specific objects)."""

    text: str
    attachments: tuple[dict[str, Any], ...] = ()

    @classmethod
    def parse(cls, value: Any) -> MessageContent:
        if isinstance(value, MessageContent):
            return value
        if isinstance(value, str):
            return cls(_req_text(value, "content"))
        if not isinstance(value, Mapping):
            raise InvalidMessageError(
                "content", f"must be a string or an object with 'text', got {type(value).__name__}"
            )
        text = value.get("text")
        if text is None:
            raise InvalidMessageError("content.text", "is required")
        attachments = value.get("attachments") or []
        if not isinstance(attachments, list) or not all(isinstance(a, Mapping) for a in attachments):
            raise InvalidMessageError("content.attachments", "must be a list of objects")
        return cls(_req_text(text, "content.text"), tuple(dict(a) for a in attachments))

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "attachments": [dict(a) for a in self.attachments]}


def _timestamp(value: Any) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidMessageError("timestamp", f"{value!r} is not a valid unix time") from None
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise InvalidMessageError("timestamp", f"{value!r} is not an ISO 8601 date-time") from None
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)
    raise InvalidMessageError("timestamp", f"must be an ISO 8601 string or unix time, got {type(value).__name__}")


_MESSAGE_FIELDS = frozenset(
    {
        "id",
        "tenant_id",
        "channel",
        "channel_metadata",
        "sender",
        "content",
        "timestamp",
        "thread_id",
        "reply_to",
        "context",
    }
)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A normalised inbound message (any channel).

    ``thread_id`` groups messages into one conversation (history and thread budget); a message without
    one starts its own thread (its ``id``). ``context`` is free-form; ``context["agent"]`` may name the
    agent that should answer.
    """

    id: str
    channel: str
    sender: Sender
    content: MessageContent
    timestamp: datetime
    tenant_id: str | None = None
    channel_metadata: dict[str, Any] = field(default_factory=dict)
    thread_id: str | None = None
    reply_to: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.text

    @property
    def conversation_id(self) -> str:
        """The thread this message belongs to (its own id when it starts one)."""
        return self.thread_id or self.id

    @classmethod
    def from_dict(cls, data: Any) -> InboundMessage:
        """Validate and normalise a message dict. ``id`` (a new uuid), ``channel`` ("api") and ``timestamp``
        (now) have defaults; ``sender`` and ``content`` are required. Raises InvalidMessageError."""
        if isinstance(data, InboundMessage):
            return data
        if not isinstance(data, Mapping):
            raise InvalidMessageError("(root)", f"must be an object, got {type(data).__name__}")
        unknown = sorted(set(data) - _MESSAGE_FIELDS)
        if unknown:
            raise InvalidMessageError(unknown[0], f"is not a message field (known: {sorted(_MESSAGE_FIELDS)})")
        if "sender" not in data:
            raise InvalidMessageError("sender", "is required")
        if "content" not in data:
            raise InvalidMessageError("content", "is required")
        mid = _opt_msg_text(data.get("id"), "id") or uuid.uuid4().hex
        channel = _req_text(data.get("channel", "api"), "channel").strip().lower()
        return cls(
            id=mid,
            channel=channel,
            sender=Sender.parse(data["sender"]),
            content=MessageContent.parse(data["content"]),
            timestamp=_timestamp(data.get("timestamp")),
            tenant_id=_opt_msg_text(data.get("tenant_id"), "tenant_id"),
            channel_metadata=_mapping(data.get("channel_metadata"), "channel_metadata"),
            thread_id=_opt_msg_text(data.get("thread_id"), "thread_id"),
            reply_to=_opt_msg_text(data.get("reply_to"), "reply_to"),
            context=_mapping(data.get("context"), "context"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the timestamp as ISO 8601); ``from_dict(to_dict())`` round-trips."""
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "channel": self.channel,
            "channel_metadata": dict(self.channel_metadata),
            "sender": self.sender.to_dict(),
            "content": self.content.to_dict(),
            "timestamp": self.timestamp.isoformat(),
            "thread_id": self.thread_id,
            "reply_to": self.reply_to,
            "context": dict(self.context),
        }
