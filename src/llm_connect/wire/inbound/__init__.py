"""Inbound codecs: the protocols the gateway serves, as pure functions (no I/O).

``llm_connect.wire``'s modules speak to providers (requests out, responses in); the modules here speak to
clients (requests in, responses and stream events out). Each turns a request body of its protocol into the
core contract (OpenAI-shaped messages, a RunConfig's fields) and the core's results (LLMResponse,
StreamChunk) back into that protocol's bodies and events, so a new protocol is a codec here plus a thin
handler in ``llm_connect.server`` over the same engine.
"""
