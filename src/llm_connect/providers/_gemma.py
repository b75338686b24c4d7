"""Prompt formats for the ``local`` provider: the Gemma turn format and a plain-text format.

Gemma (the default model is a base Gemma 3 whose GGUF has no chat template)::

    <start_of_turn>user
    {system}\n\n{user}<end_of_turn>
    <start_of_turn>model
    {assistant}<end_of_turn>
    <start_of_turn>model

System (and developer) messages are folded into the next user turn, as Gemma's own template does; tool
results become user turns (Gemma has no tool role). BOS is *not* written here: llama.cpp's tokenizer adds
it (the GGUF sets ``tokenizer.ggml.add_bos_token``), so the rendered text is tokenized with ``add_bos=True``.
"""

from __future__ import annotations

from ..types import Message

__all__ = ["END_OF_TURN", "GEMMA_STOPS", "START_OF_TURN", "render_gemma", "render_raw"]

START_OF_TURN = "<start_of_turn>"
END_OF_TURN = "<end_of_turn>"
#: generation stops at either marker (a base model may also open a new turn on its own)
GEMMA_STOPS = (END_OF_TURN, START_OF_TURN)


def _turn(role: str, text: str) -> str:
    return f"{START_OF_TURN}{role}\n{text}{END_OF_TURN}\n"


def render_gemma(messages: list[Message]) -> str:
    """The Gemma turn format for ``messages``, ending with an open model turn."""
    parts: list[str] = []
    pending_system: list[str] = []
    for m in messages:
        if m.role in ("system", "developer"):
            pending_system.append(m.text)
            continue
        if m.role == "assistant":
            if pending_system:  # a system message with no user turn after it still reaches the model
                parts.append(_turn("user", "\n\n".join(pending_system)))
                pending_system.clear()
            parts.append(_turn("model", m.text))
            continue
        text = m.text  # user, or a tool result shown to the model as a user turn
        if pending_system:
            text = "\n\n".join(pending_system) + "\n\n" + text
            pending_system.clear()
        parts.append(_turn("user", text))
    if pending_system:
        parts.append(_turn("user", "\n\n".join(pending_system)))
    parts.append(f"{START_OF_TURN}model\n")
    return "".join(parts)


def render_raw(messages: list[Message]) -> str:
    """Plain completion text: the messages' texts joined by blank lines (for base models used as such)."""
    return "\n\n".join(m.text for m in messages if m.text)
