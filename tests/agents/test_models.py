"""Agent personas, inbound messages, system prompts and message lists: validation and exact text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llm_connect.agents import (
    AI_TRANSPARENCY_CLAUSE,
    Agent,
    AgentConfigError,
    InboundMessage,
    InvalidMessageError,
    build_messages,
    build_system_prompt,
)
from llm_connect.errors import LLMConfigurationError, LLMInvalidRequestError

# -- prompts ------------------------------------------------------------------------------------------------


def test_system_prompt_full_agent_exact_text() -> None:
    agent = Agent(
        "Mara",
        "billing specialist",
        persona="calm, exact, a little dry",
        system_prompt="You work for ACME Corp. Never promise refunds.",
    )
    assert build_system_prompt(agent) == (
        "You work for ACME Corp. Never promise refunds.\n\n"
        "Your name is Mara. Your role is billing specialist.\n\n"
        "Persona: calm, exact, a little dry\n\n"
        "If asked directly whether you are an AI, always respond honestly that you are an AI assistant."
    )


def test_system_prompt_defaults_to_a_professional_warm_tone() -> None:
    text = build_system_prompt(Agent("ada", "support agent"))
    assert text == (
        "Your name is ada. Your role is support agent.\n\n"
        "Your tone is professional and warm.\n\n" + AI_TRANSPARENCY_CLAUSE
    )
    assert "Persona:" not in text


def test_build_messages_openai_format_with_history() -> None:
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]
    assert build_messages("SYS", "how are you?", history) == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "how are you?"},
    ]
    assert build_messages("SYS", "q") == [{"role": "system", "content": "SYS"}, {"role": "user", "content": "q"}]
    assert build_messages("SYS", "q", None) == build_messages("SYS", "q", [])


# -- agents -------------------------------------------------------------------------------------------------


def test_agent_from_config_mapping() -> None:
    a = Agent.from_dict(
        {
            "role": "researcher",
            "trust": "auto_apply",
            "may_delegate_to": ["writer"],
            "model_preference": "fast",
            "max_tokens_per_thread": 2000,
        },
        key="rex",
    )
    assert (a.name, a.trust_level, a.may_delegate_to, a.model_preference) == ("rex", "auto_apply", ("writer",), "fast")
    assert a.can_delegate_to("writer") and not a.can_delegate_to("rex")
    assert Agent.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"role": ""}, "agents.personas.x.role"),
        ({"role": "r", "trust_level": "god"}, "agents.personas.x.trust_level"),
        ({"role": "r", "max_tokens_per_thread": 0}, "agents.personas.x.max_tokens_per_thread"),
        ({"role": "r", "may_delegate_to": "y"}, "agents.personas.x.may_delegate_to"),
        ({"role": "r", "may_delegate_to": ["x"]}, "agents.personas.x.may_delegate_to"),
        ({"role": "r", "temperature": 3}, "agents.personas.x.temperature"),
        ({"role": "r", "colour": "red"}, "agents.personas.x"),
        ({}, "agents.personas.x.role"),
    ],
)
def test_agent_errors_name_the_field(fields: dict, where: str) -> None:
    with pytest.raises(AgentConfigError) as ei:
        Agent.from_dict(fields, key="x")
    assert ei.value.field == where
    assert str(ei.value).startswith(where)
    assert isinstance(ei.value, LLMConfigurationError)


# -- ids and display names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "derived_id"),
    [
        ("Ada Lovelace", "Ada-Lovelace"),
        ("José Núñez", "Jose-Nunez"),
        ("O'Brien", "O-Brien"),
        ("  Mara  ", "Mara"),
        ("ada", "ada"),
        ("Dr. Jekyll & Mr. Hyde", "Dr.-Jekyll-Mr.-Hyde"),
    ],
)
def test_any_human_name_is_a_display_name_and_an_id_is_derived(name: str, derived_id: str) -> None:
    a = Agent(name, "historian")
    assert a.name == name.strip() and a.id == derived_id
    assert f"Your name is {name.strip()}. Your role is historian." in build_system_prompt(a)


def test_display_name_and_explicit_id_are_separate() -> None:
    a = Agent("Ada Lovelace", "analyst", id="ada", may_delegate_to=("rex",))
    assert (a.id, a.name) == ("ada", "Ada Lovelace")
    prompt = build_system_prompt(a)
    assert "Your name is Ada Lovelace. Your role is analyst." in prompt and "Your name is ada" not in prompt
    assert a.to_dict()["id"] == "ada" and Agent.from_dict(a.to_dict()) == a
    # personas keyed by id carry the display name inside
    b = Agent.from_dict({"name": "José Núñez", "role": "support"}, key="jose")
    assert (b.id, b.name) == ("jose", "José Núñez")
    assert Agent.from_dict({"role": "support"}, key="jose").name == "jose"
    assert Agent.from_dict({"name": None, "role": "support"}, key="jose").name == "jose"
    with pytest.raises(AgentConfigError, match="differs from its key") as ei:
        Agent.from_dict({"id": "other", "role": "r"}, key="jose")
    assert ei.value.field == "agents.personas.jose.id"


@pytest.mark.parametrize("bad_id", ["has space", "-lead", "a/b", "x" * 65, "Ada Lovelace", "é", "a\nb"])
def test_invalid_ids_are_refused_with_a_typed_error(bad_id: str) -> None:
    with pytest.raises(AgentConfigError) as ei:
        Agent("Ada Lovelace", "r", id=bad_id)
    assert isinstance(ei.value, LLMConfigurationError)
    assert ei.value.field == f"agents.personas.{bad_id}.id" and "letters, digits" in str(ei.value)
    with pytest.raises(AgentConfigError, match="is not an agent id"):
        Agent("Ada Lovelace", "r", may_delegate_to=(bad_id,))


@pytest.mark.parametrize(
    "name",
    [
        "Ada\nLovelace",
        "Ada\tLovelace",
        "Ada\x00",
        "Ada\x1b[31m",
        "Ada\x7f",
        "Ada\u0085x",
        "Ada\u2028x",
        "Ada\u202eecalevol",
    ],
)
def test_control_characters_in_names_are_refused(name: str) -> None:
    with pytest.raises(AgentConfigError, match="control characters") as ei:
        Agent(name, "r", id="ada")
    assert ei.value.field == "agents.personas.ada.name"


@pytest.mark.parametrize(("name", "problem"), [("   ", "must not be empty"), ("x" * 101, "at most 100"), (7, "string")])
def test_names_must_be_non_empty_bounded_text(name: object, problem: str) -> None:
    with pytest.raises(AgentConfigError, match=problem):
        Agent(name, "r", id="ada")  # type: ignore[arg-type]
    assert Agent("x" * 100, "r", id="ada").name == "x" * 100


def test_a_name_with_no_latin_letters_needs_an_explicit_id() -> None:
    with pytest.raises(AgentConfigError, match="give the agent an id") as ei:
        Agent("李雷", "r")
    assert ei.value.field == "agents.personas.id"
    assert Agent("李雷", "r", id="li-lei").name == "李雷"
    zwj = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # Persian, with a zero-width non-joiner
    assert Agent(zwj, "r", id="fa").name == zwj


# -- messages -----------------------------------------------------------------------------------------------


def test_message_normalised_from_channel_dict() -> None:
    m = InboundMessage.from_dict(
        {
            "id": "m1",
            "tenant_id": "acme",
            "channel": "Slack",
            "channel_metadata": {"team": "T1"},
            "sender": {"user_id": "U42", "display_name": "Jo"},
            "content": {"text": "hello", "attachments": [{"a": 1}]},
            "timestamp": "2026-01-02T03:04:05Z",
            "thread_id": "th-9",
            "reply_to": "m0",
            "context": {"agent": "ada"},
        }
    )
    assert m.channel == "slack" and m.sender.id == "U42" and m.sender.name == "Jo"
    assert m.text == "hello" and m.content.attachments == ({"a": 1},)
    assert m.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert m.conversation_id == "th-9"
    assert InboundMessage.from_dict(m.to_dict()) == m


def test_message_defaults() -> None:
    m = InboundMessage.from_dict({"sender": "u1", "content": "hi"})
    assert m.channel == "api" and len(m.id) == 32 and m.thread_id is None and m.conversation_id == m.id
    assert m.timestamp.tzinfo is not None
    assert InboundMessage.from_dict({"sender": {"id": 7}, "content": "x", "timestamp": 0}).timestamp.year == 1970


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"content": "x"}, "sender"),
        ({"sender": "u"}, "content"),
        ({"sender": {"name": "n"}, "content": "x"}, "sender.id"),
        ({"sender": "u", "content": "   "}, "content"),
        ({"sender": "u", "content": {"attachments": []}}, "content.text"),
        ({"sender": "u", "content": 5}, "content"),
        ({"sender": "u", "content": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"sender": "u", "content": "x", "context": []}, "context"),
        ({"sender": "u", "content": "x", "channel_metadata": "no"}, "channel_metadata"),
        ({"sender": "u", "content": "x", "thread_id": 1.5}, "thread_id"),
        ({"sender": "u", "content": "x", "body": "?"}, "body"),
        ({"sender": {"id": "u", "is_bot": "yes"}, "content": "x"}, "sender.is_bot"),
    ],
)
def test_message_errors_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(InvalidMessageError) as ei:
        InboundMessage.from_dict(data)
    assert ei.value.field == field
    assert f"message.{field}" in str(ei.value)
    assert isinstance(ei.value, LLMInvalidRequestError)


def test_message_must_be_a_mapping() -> None:
    with pytest.raises(InvalidMessageError, match="must be an object"):
        InboundMessage.from_dict(["not", "a", "dict"])


@pytest.mark.parametrize("tenant", ["t" * 500, "bad\nid"])
def test_ids_the_gateway_would_refuse_are_invalid_messages(tenant):
    from llm_connect.agents.models import InboundMessage, InvalidMessageError

    with pytest.raises(InvalidMessageError, match="tenant_id"):
        InboundMessage.from_dict({"sender": "u", "content": "x", "tenant_id": tenant})
