"""The ``claude_code`` provider: the ``claude`` CLI as a subprocess (``claude -p --output-format json``).

Natively async (``asyncio.create_subprocess_exec``). The prompt goes in on stdin (no argv length limit),
system messages through ``--system-prompt``. The wall-clock cap kills the child. A missing binary raises
LLMConfigurationError. Usage comes from the CLI's JSON (Anthropic semantics, normalised), cost from its
``total_cost_usd``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from decimal import Decimal
from typing import Any

import orjson

from ..errors import LLMConfigurationError, LLMError, LLMProviderUnavailableError, LLMRateLimitError
from ..types import LLMResponse, Message, RunConfig
from ..wire.anthropic_messages import parse_usage
from .base import BaseAdapter

__all__ = ["ClaudeCodeAdapter", "create"]


def _transcript(messages: list[Message]) -> tuple[str | None, str]:
    system = "\n\n".join(m.text for m in messages if m.role in ("system", "developer")) or None
    turns = [m for m in messages if m.role not in ("system", "developer")]
    if len(turns) == 1:
        return system, turns[0].text
    lines = [f"{m.role.capitalize()}: {m.text}" for m in turns]
    return system, "\n\n".join(lines)


class ClaudeCodeAdapter(BaseAdapter):
    """Runs one ``claude -p`` per call."""

    def __init__(self, model: str = "", *, binary: str = "claude", extra_args: list[str] | None = None, **options: Any):
        super().__init__(provider="claude_code", model=model or "default", **options)
        self.binary = binary
        self.extra_args = list(extra_args or [])
        self._model_flag = model or None

    def _argv(self, system: str | None) -> list[str]:
        path = shutil.which(self.binary)
        if path is None:
            raise LLMConfigurationError(
                f"the Claude Code CLI {self.binary!r} is not on PATH; install it "
                "(npm install -g @anthropic-ai/claude-code) or pass binary='/path/to/claude'",
                provider=self.provider,
                model=self.model,
            )
        argv = [path, "-p", "--output-format", "json"]
        if self._model_flag:
            argv += ["--model", self._model_flag]
        if system:
            argv += ["--system-prompt", system]
        return argv + self.extra_args

    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        system, prompt = _transcript(messages)
        argv = self._argv(system)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=os.environ.copy(),
            start_new_session=True,  # its own process group: a timeout kills whatever it started too
        )
        try:
            out, err = await proc.communicate(prompt.encode())
        except BaseException:
            # timeout or cancellation: neither the child nor anything it spawned may outlive the call
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            raise
        return self._parse(proc.returncode or 0, out, err)

    def _parse(self, code: int, out: bytes, err: bytes) -> LLMResponse:
        try:
            data = orjson.loads(out) if out.strip() else None
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            detail = (err or out).decode("utf-8", "replace").strip()[:500]
            raise LLMProviderUnavailableError(
                f"claude exited with {code} and no JSON result: {detail}", provider=self.provider, model=self.model
            )
        if data.get("is_error") or code != 0:
            text = str(data.get("result") or data.get("subtype") or "error")
            cls: type[LLMError] = LLMRateLimitError if "rate limit" in text.lower() else LLMProviderUnavailableError
            raise cls(f"claude reported an error: {text[:500]}", provider=self.provider, model=self.model, body=data)
        cost = data.get("total_cost_usd")
        model = next(iter(data.get("modelUsage") or {}), None) or self.model
        return LLMResponse(
            text=str(data.get("result") or ""),
            model=model,
            provider=self.provider,
            usage=parse_usage(data.get("usage") or {}),  # the CLI reports the Messages API's usage object
            finish_reason="stop",
            request_id=data.get("session_id"),
            cost_usd=None if cost is None else Decimal(str(cost)),
            raw=data,
        )

    def _price_key(self, model: str | None) -> tuple[str, str]:
        # the CLI reports its own cost; before the call (budget reservation) Anthropic's list prices stand in.
        # The CLI's aliases name the current model of a family; anything unknown is priced as its default.
        name = model or self.model or ""
        name = _ALIASES.get(name.lower(), name)
        if self.pricing.rate("anthropic", name) is None:
            name = _ALIASES["default"]
        return "anthropic", name


#: the CLI's model aliases -> the Anthropic model whose list price a reservation uses
_ALIASES = {
    "": "claude-sonnet-4-5",
    "default": "claude-sonnet-4-5",
    "sonnet": "claude-sonnet-4-5",
    "opus": "claude-opus-4-1",
    "haiku": "claude-haiku-4-5",
}


def create(model: str = "", **options: Any) -> ClaudeCodeAdapter:
    options.pop("api_key", None)
    options.pop("api_base", None)
    try:
        return ClaudeCodeAdapter(model, **options)
    except TypeError as exc:
        raise LLMConfigurationError(f"claude_code provider: {exc}", provider="claude_code") from None
