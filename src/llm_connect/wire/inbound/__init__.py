"""Inbound codecs: the protocols the gateway serves, as pure functions (no I/O).

``llm_connect.wire``'s modules speak to providers (requests out, responses in); the modules here speak to
clients (requests in, responses and stream events out). Each turns a request body of its protocol into the
core contract (OpenAI-shaped messages, a RunConfig's fields) and the core's results (LLMResponse,
StreamChunk) back into that protocol's bodies and events, so a new protocol is a codec here plus a thin
handler in ``llm_connect.server`` over the same engine.
"""

from __future__ import annotations

__all__ = ["RequestProblem"]


class RequestProblem(ValueError):
    """A request a codec cannot translate: ``status`` (422 a malformed field, 400 an unsupported feature),
    ``param`` (the field's path, e.g. ``input[2].content[0].type``), ``code``; ``message`` names the field."""

    def __init__(self, param: str | None, message: str, *, status: int = 422, code: str = "invalid_field") -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param
        self.message = str(self)
        self.status = status
        self.code = code
