"""System prompt assembly from an agent's persona fields, and OpenAI-format message lists."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .models import Agent

__all__ = ["AI_TRANSPARENCY_CLAUSE", "DEFAULT_TONE", "build_messages", "build_system_prompt", "with_system_notes"]

#: always part of the system prompt
AI_TRANSPARENCY_CLAUSE = (
    "If asked directly whether you are an AI, always respond honestly that you are an AI assistant."
)
#: the default persona: used when the agent sets none
DEFAULT_TONE = "Your tone is professional and warm."


def build_system_prompt(agent: Agent) -> str:
    """The agent's system prompt (if any) first, then name and role, persona (or the default professional,
    warm tone), and the AI-transparency clause; paragraphs separated by blank lines."""
    parts: list[str] = []
    if agent.system_prompt:
        parts.append(agent.system_prompt)
    parts.append(f"Your name is {agent.name}. Your role is {agent.role}.")
    parts.append(f"Persona: {agent.persona}" if agent.persona else DEFAULT_TONE)
    parts.append(AI_TRANSPARENCY_CLAUSE)
    return "\n\n".join(parts)


def build_messages(
    system_prompt: str, user_message: str, history: Sequence[Mapping[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """OpenAI-format messages: the system prompt, the earlier turns (``history``, oldest first), the user message."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    for turn in history or ():
        messages.append({"role": turn["role"], "content": turn.get("content")})
    messages.append({"role": "user", "content": user_message})
    return messages


def with_system_notes(messages: list[dict[str, Any]], notes: Iterable[str]) -> list[dict[str, Any]]:
    """Insert each note as a system message just before the last (user) message — e.g. budget warnings."""
    extra = [{"role": "system", "content": n} for n in notes]
    if not extra:
        return messages
    return [*messages[:-1], *extra, messages[-1]]
