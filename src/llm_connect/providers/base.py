"""BaseAdapter: what every built-in adapter shares around the provider call.

For each call (sync, async, streaming): normalise the prompt → reserve the worst case on the budget
(prompt tokens + max_tokens; priced for USD budgets) → call the provider under the wall-clock cap →
price the usage → settle the budget to what the provider reported → publish a UsageEvent.
Errors release the reservation; a stream settles on what it actually produced, also when the consumer
stops early or is cancelled.

Subclasses implement ``_complete`` and ``_stream`` and may override ``count_input_tokens`` with a real
tokenizer. The default estimate is a safe upper bound (UTF-8 bytes), so reservations never undershoot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from ..adapter import LLMAdapter
from ..errors import LLMError, LLMTimeoutError
from ..types import LLMResponse, Message, Prompt, RunConfig, StreamChunk, Usage, normalize_messages

if TYPE_CHECKING:
    from ..budget import Reservation
    from ..usage import Pricing, UsageTracker

__all__ = ["BaseAdapter", "default_pricing", "estimate_tokens"]

log = logging.getLogger("llm_connect")

#: output ceiling reserved when only a USD cap applies and the caller set no max_tokens
USD_ONLY_DEFAULT_MAX_TOKENS = 4096


def estimate_tokens(text: str) -> int:
    """Upper bound on tokens for ``text`` with any BPE tokenizer: one per UTF-8 byte."""
    return len(text.encode("utf-8"))


@functools.cache
def default_pricing() -> Pricing:
    from ..usage import Pricing

    return Pricing()


class BaseAdapter(LLMAdapter):
    """Shared call pipeline for native adapters. See the module docstring."""

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        timeout: float | None = None,
        pricing: Pricing | None = None,
        usage_tracker: UsageTracker | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        if timeout is not None:
            self.timeout = timeout
        self._pricing = pricing
        self.usage_tracker = usage_tracker

    # -- to implement ------------------------------------------------------------------------------
    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        raise NotImplementedError

    def _stream(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> AsyncIterator[StreamChunk]:
        raise NotImplementedError

    def count_input_tokens(self, messages: list[Message], config: RunConfig) -> int:
        """Tokens the prompt will cost at most. Override with an exact tokenizer where there is one."""
        n = 3
        for m in messages:
            n += 4 + estimate_tokens(m.text)
            if m.tool_calls:
                n += len(orjson.dumps(m.tool_calls))
        if config.tools:
            n += len(orjson.dumps(config.tools))
        return n

    # -- pricing -----------------------------------------------------------------------------------
    @property
    def pricing(self) -> Pricing:
        return self._pricing if self._pricing is not None else default_pricing()

    def price(self, usage: Usage, model: str | None = None, *, estimate: bool = False) -> Decimal | None:
        return self.pricing.price(self.provider, model or self.model, usage, estimate=estimate)

    # -- pipeline ----------------------------------------------------------------------------------
    async def _begin(self, messages: list[Message], config: RunConfig) -> tuple[int | None, Reservation | None, int]:
        """Reserve on the budget. Returns (max_tokens to send, reservation, input estimate)."""
        tracker = config.budget_tracker
        max_tokens = config.max_tokens
        if tracker is None:
            return max_tokens, None, 0
        est_in = self.count_input_tokens(messages, config)
        if max_tokens is None:
            max_tokens = await tracker.amax_output_tokens(est_in)
            if max_tokens is None and tracker.needs_usd:
                max_tokens = USD_ONLY_DEFAULT_MAX_TOKENS
            if max_tokens is not None and max_tokens < 1:
                max_tokens = 1  # reserve() below refuses with a clear budget error
        usd = None
        if tracker.needs_usd:  # a USD cap here or on any ancestor
            usd = self.price(Usage(input_tokens=est_in, output_tokens=max_tokens or 0), estimate=True)
        worst = est_in + (max_tokens or 0)
        res = await tracker.areserve(worst, usd, label=f"{self.provider}:{self.model}")
        return max_tokens, res, est_in

    def _cap(self, config: RunConfig) -> float | None:
        return config.timeout or self.timeout

    def _error(self, exc: BaseException, cap: float | None) -> BaseException:
        if isinstance(exc, TimeoutError) and not isinstance(exc, LLMError):
            return LLMTimeoutError(f"no answer within {cap} s", provider=self.provider, model=self.model)
        if isinstance(exc, LLMError):
            exc.provider = exc.provider or self.provider
            exc.model = exc.model or self.model
        return exc

    async def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> LLMResponse:
        cfg = config if config is not None else RunConfig()
        messages = normalize_messages(prompt, cfg.system_prompt)
        max_tokens, res, _ = await self._begin(messages, cfg)
        cap = self._cap(cfg)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(cap):
                resp = await self._complete(messages, cfg, max_tokens)
        except BaseException as exc:
            if res is not None:
                await res.arelease()
            err = self._error(exc, cap)
            if isinstance(err, Exception):
                await self._publish_failure(cfg, err, start, streamed=False)
            if err is exc:
                raise
            raise err from exc
        resp.latency_ms = (time.perf_counter() - start) * 1000
        resp.provider = resp.provider or self.provider
        resp.model = resp.model or self.model
        if resp.cost_usd is None:  # an adapter may report the provider's own billed cost
            resp.cost_usd = self.price(resp.usage, resp.model)
        if res is not None:
            await res.asettle(resp.usage.total_tokens, resp.cost_usd)
        await self._publish(cfg, resp, streamed=False)
        return resp

    async def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        cfg = config if config is not None else RunConfig()
        messages = normalize_messages(prompt, cfg.system_prompt)
        max_tokens, res, est_in = await self._begin(messages, cfg)
        cap = self._cap(cfg)
        start = time.perf_counter()
        produced: list[str] = []
        finished = False
        deadline = None if cap is None else asyncio.get_running_loop().time() + cap
        agen = self._stream(messages, cfg, max_tokens)
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(agen)
                except StopAsyncIteration:
                    break
                if chunk.text:
                    produced.append(chunk.text)
                if chunk.usage is not None:
                    # the final chunk: settle and record it BEFORE the caller sees it, so a stream whose
                    # end reached the caller is always accounted
                    chunk.model = chunk.model or self.model
                    if chunk.cost_usd is None:
                        chunk.cost_usd = self.price(chunk.usage, chunk.model)
                    finished = True
                    await self._finish_stream(cfg, res, chunk, produced, est_in, start, None)
                yield chunk
        except BaseException as exc:
            err = self._error(exc, cap)
            if not finished:
                finished = True
                await self._finish_stream(cfg, res, None, produced, est_in, start, err)
            if err is not exc:
                raise err from exc
            raise
        finally:
            await agen.aclose()
            if not finished:  # the source ended without a usage chunk
                await self._finish_stream(cfg, res, None, produced, est_in, start, None)

    async def _finish_stream(
        self,
        cfg: RunConfig,
        res: Reservation | None,
        final: StreamChunk | None,
        produced: list[str],
        est_in: int,
        start: float,
        failure: BaseException | None,
    ) -> None:
        """Settle the budget on what the stream produced and publish its usage, however it ended.

        Without the provider's final usage (the consumer stopped early, was cancelled, or the stream was
        cut) the prompt and the text produced so far are billed, estimated from above.
        """
        text = "".join(produced)
        if final is not None and final.usage is not None:
            usage, cost = final.usage, final.cost_usd
        elif text:
            usage = Usage(input_tokens=est_in, output_tokens=estimate_tokens(text))
            cost = self.price(usage, estimate=True)
        else:
            usage, cost = None, None
        if res is not None:
            if usage is None:
                await res.arelease()
            else:
                await res.asettle(usage.total_tokens, cost)
        resp = LLMResponse(
            text=text,
            model=(final.model if final and final.model else self.model),
            provider=self.provider,
            usage=usage or Usage(),
            finish_reason=final.finish_reason if final else None,
            latency_ms=(time.perf_counter() - start) * 1000,
            cost_usd=cost,
            request_id=final.request_id if final else None,
        )
        error = failure if isinstance(failure, Exception) else None
        await self._publish(cfg, resp, streamed=True, error=error)

    async def _publish(
        self, cfg: RunConfig, resp: LLMResponse, *, streamed: bool, error: BaseException | None = None
    ) -> None:
        trackers = [t for t in (cfg.usage_tracker, self.usage_tracker) if t is not None]
        if not trackers:
            return
        from ..usage import UsageEvent

        event = UsageEvent.from_response(
            resp, cfg, success=error is None, error=error, streamed=streamed, deployment=cfg.metadata.get("deployment")
        )
        for t in dict.fromkeys(trackers):
            await t.aemit(event)

    async def _publish_failure(self, cfg: RunConfig, err: BaseException, start: float, *, streamed: bool) -> None:
        if cfg.usage_tracker is None and self.usage_tracker is None:
            return
        resp = LLMResponse(
            text="",
            model=self.model,
            provider=self.provider,
            latency_ms=(time.perf_counter() - start) * 1000,
            request_id=getattr(err, "request_id", None),
        )
        await self._publish(cfg, resp, streamed=streamed, error=err)

    def describe(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model}
