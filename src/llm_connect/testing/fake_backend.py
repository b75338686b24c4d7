"""``FakeBackend``: seed 004's canned-output backend, so tests inject a backend instead of patching one.

::

    from llm_connect import LLMTimeout
    from llm_connect.testing import FakeBackend

    fake = FakeBackend(outputs=["Subject: Hi\\n\\nSee you at 3.", LLMTimeout, ""])
    await fake.generate("write the email")   # LLMResult(success=True, text="Subject: Hi…", model="fake-model")
    await fake.generate("again")             # raises LLMTimeout
    await fake.generate("once more")         # LLMResult(success=False, text="")  (empty output: a soft failure)
    fake.prompts                             # ["write the email", "again", "once more"]

One script serves two contracts:

* seed 004's :class:`~llm_connect.adapter.LLMBackend` — ``model``, ``timeout``, ``async generate(prompt) ->
  LLMResult`` — for code that takes "an LLM" (``get_llm()`` in production, a FakeBackend in tests);
* the agent runtime's :class:`~llm_connect.agents.backend.ModelBackend` — ``async complete(group, messages,
  …)`` — so ``AgentRuntime(settings, backend=FakeBackend(...))`` runs agents with no model and no network.

Outputs are used in order, one per call. An output is a text, an :class:`~llm_connect.adapter.LLMResult`
(returned by ``generate`` as it is; ``complete`` answers its text), or an exception — an instance or a class
— raised by that call. After the last one, ``output`` answers every further call; without ``output`` a
further call raises :class:`~llm_connect.errors.LLMUsageError` (a test made more calls than it scripted).
With neither, every call answers a fixed canned text. ``success=False`` makes every call a soft failure (no
text), ``latency`` delays every call, and a call slower than its cap (``timeout``) raises ``LLMTimeout``.
Every call is recorded in :attr:`FakeBackend.calls`. For a fake *provider* (an adapter, with usage, budgets,
streaming and routing), use :class:`~llm_connect.providers.fake.FakeAdapter` instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..adapter import LLMResult
from ..agents.backend import ModelBackend, ModelReply
from ..errors import LLMError, LLMTimeout, LLMUsageError

__all__ = ["DEFAULT_OUTPUT", "FakeBackend", "FakeCall", "FakeOutput"]

#: what a FakeBackend with no script answers
DEFAULT_OUTPUT = "This is a canned reply from FakeBackend."

#: one scripted outcome: a text, a whole LLMResult, or an exception (instance or class) to raise
FakeOutput: TypeAlias = str | LLMResult | BaseException | type[BaseException]


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One call a FakeBackend received.

    ``prompt`` is ``generate``'s prompt, or the last user message of a ``complete`` call; ``messages`` the
    whole message list (``generate``: the prompt as one user message); ``group`` the model group of a
    ``complete`` call; ``options`` its keyword arguments (``max_tokens``, ``temperature``, ``tenant_id``,
    ``agent``, ``thread_id``, ``timeout``).
    """

    method: Literal["generate", "complete"]
    prompt: str
    messages: tuple[dict[str, Any], ...]
    group: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def system_prompt(self) -> str | None:
        """The first system message's content, if any."""
        for m in self.messages:
            if m.get("role") == "system":
                content = m.get("content")
                return content if isinstance(content, str) else None
        return None


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # content parts: keep their text
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def _words(text: str) -> int:
    return len(text.split())


class FakeBackend(ModelBackend):
    """Canned outputs in order, every call recorded (see the module docstring)."""

    name = "fake"

    def __init__(
        self,
        outputs: Iterable[FakeOutput] = (),
        *,
        output: str | None = None,
        model: str = "fake-model",
        timeout: float = 1.0,
        success: bool = True,
        latency: float = 0.0,
    ) -> None:
        if isinstance(outputs, (str, bytes)):
            raise TypeError("outputs is a list of outputs; for one output answering every call, pass output=")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
        self.model = model
        self.timeout = float(timeout)
        self.success = success
        self.latency = float(latency)
        self._outputs: deque[FakeOutput] = deque(outputs)
        #: the answer once the script is used up (None: a further call is an error)
        self._output = output if output is not None or self._outputs else DEFAULT_OUTPUT
        self._lock = threading.Lock()
        #: every call received, in order
        self.calls: list[FakeCall] = []

    # -- the script ------------------------------------------------------------------------------------
    @property
    def prompts(self) -> list[str]:
        """The prompt of every call, in order."""
        return [c.prompt for c in self.calls]

    @property
    def remaining(self) -> int:
        """Scripted outputs not used yet."""
        with self._lock:
            return len(self._outputs)

    def add_outputs(self, *outputs: FakeOutput) -> None:
        """Append outputs to the script."""
        with self._lock:
            self._outputs.extend(outputs)

    def _take(self, call: FakeCall) -> tuple[int, FakeOutput]:
        with self._lock:
            self.calls.append(call)
            n = len(self.calls)
            if self._outputs:
                return n, self._outputs.popleft()
        if self._output is None:
            raise LLMUsageError(
                f"FakeBackend has no canned output left for call {n} (prompt {call.prompt[:60]!r}); "
                "script more outputs or pass output= to answer every further call",
                provider="fake",
                model=self.model,
            )
        return n, self._output

    async def _play(self, item: FakeOutput, cap: float) -> FakeOutput:
        """Wait the latency (raising LLMTimeout past ``cap``), then raise a scripted error or return the output."""
        if self.latency > cap:
            await asyncio.sleep(cap)
            raise LLMTimeout(f"no answer within {cap} s", provider="fake", model=self.model)
        if self.latency:
            await asyncio.sleep(self.latency)
        if isinstance(item, type) and issubclass(item, BaseException):
            if issubclass(item, LLMError):
                raise item(f"scripted {item.__name__}", provider="fake", model=self.model)
            raise item()
        if isinstance(item, BaseException):
            if isinstance(item, LLMError):
                item.provider = item.provider or "fake"
                item.model = item.model or self.model
            raise item
        return item

    def _text(self, item: FakeOutput) -> str:
        if isinstance(item, LLMResult):
            return item.text if item.success else ""
        return str(item) if self.success else ""

    # -- seed 004: LLMBackend ----------------------------------------------------------------------------
    async def generate(self, prompt: str) -> LLMResult:
        """The next output as an LLMResult; empty output (or ``success=False``) is ``success=False``."""
        start = time.perf_counter()
        n, item = self._take(FakeCall("generate", prompt, ({"role": "user", "content": prompt},)))
        item = await self._play(item, self.timeout)
        if isinstance(item, LLMResult):
            return item
        text = self._text(item)
        return LLMResult(
            success=bool(text.strip()),
            text=text,
            model=self.model,
            latency_ms=int((time.perf_counter() - start) * 1000),
            extra={"call": n},
        )

    # -- the agent runtime's ModelBackend -------------------------------------------------------------------
    async def complete(
        self,
        group: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tenant_id: str | None = None,
        agent: str | None = None,
        thread_id: str | None = None,
        timeout: float | None = None,
    ) -> ModelReply:
        """The next output as a ModelReply; tokens are counted in words (one more per message)."""
        msgs = tuple(dict(m) for m in messages)
        last_user = next((m.get("content") for m in reversed(msgs) if m.get("role") == "user"), "")
        options = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "tenant_id": tenant_id,
            "agent": agent,
            "thread_id": thread_id,
            "timeout": timeout,
        }
        _, item = self._take(FakeCall("complete", _text_of(last_user), msgs, group, options))
        item = await self._play(item, timeout or self.timeout)
        text = self._text(item)
        return ModelReply(
            content=text,
            model=item.model if isinstance(item, LLMResult) and item.model else self.model,
            prompt_tokens=sum(_words(_text_of(m.get("content"))) + 1 for m in msgs),
            completion_tokens=_words(text),
        )

    async def count_tokens(self, group: str, messages: Sequence[Mapping[str, Any]]) -> int | None:
        """Exact: the words of every message plus one per message, as :meth:`complete` reports them."""
        return sum(_words(_text_of(m.get("content"))) + 1 for m in messages)

    def __repr__(self) -> str:
        return f"<FakeBackend {self.model}: {len(self.calls)} calls, {self.remaining} outputs left>"
