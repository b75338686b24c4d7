"""BaseAdapter: what every built-in adapter shares around the provider call.

For each call (sync, async, streaming): normalise the prompt → reserve the worst case on the budget
(prompt tokens + max_tokens; priced for USD budgets) → call the provider under the wall-clock cap →
price the usage → settle the budget to what the provider reported → publish a UsageEvent.
Errors release the reservation; a stream settles on what it actually produced, also when the consumer
stops early or is cancelled.

Settling and publishing run to their end once begun, once per call, even if the caller's task is cancelled
in the middle (the cancellation is raised after them): a client that hangs up between the provider's last
chunk and the settle cannot leave a charged budget without its usage event. A stream that ends without the
provider's final usage is billed, per token kind, the larger of the usage the provider reported so far
(``StreamChunk.usage_so_far``) and an upper-bound estimate of what was seen (prompt, text, tool-call and
reasoning deltas); its event is marked ``estimated``.

Streams travel in batches, one list of chunks per upstream read (llm_connect/_batches.py): ``astream_batches``
is the accounted stream, ``astream`` the same chunks one by one; the per-stream deadline is awaited once per batch.

Subclasses implement ``_complete`` and ``_stream`` (or ``_stream_batches``, a list per read) and may override
``count_input_tokens`` with a real tokenizer. The default estimate is a safe upper bound (UTF-8 bytes), so
reservations never undershoot.

Embeddings (``aembed``) run the same accounting with no output side (providers/embed.py); a subclass that
can embed sets ``supports_embeddings`` and implements ``_embed``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from decimal import Decimal
from types import ModuleType
from typing import TYPE_CHECKING, Any

import orjson

from .._batches import answer_chunks, flatten, singles
from .._timeout import Deadline, Timeout
from ..adapter import LLMAdapter
from ..embeddings import embedding_bound
from ..errors import LLMCapabilityError, LLMError, LLMTimeoutError
from ..types import USAGE_DETAIL_KINDS, LLMResponse, Message, Prompt, RunConfig, StreamChunk, Usage, normalize_messages
from .reserve import BUDGETED_DEFAULT_MAX_TOKENS, reserve_call
from .tokens import IMAGE_PART_TOKENS, estimate_tokens, prompt_bound

if TYPE_CHECKING:
    from ..budget import Reservation
    from ..embeddings import EmbeddingInput, EmbeddingResponse
    from ..usage import Pricing, UsageTracker

__all__ = ["BUDGETED_DEFAULT_MAX_TOKENS", "IMAGE_PART_TOKENS", "BaseAdapter", "default_pricing", "estimate_tokens"]

log = logging.getLogger("llm_connect")


@functools.cache
def default_pricing() -> Pricing:
    from ..usage import Pricing

    return Pricing()


@functools.cache
def _usage_modules() -> tuple[ModuleType, ModuleType]:
    """(llm_connect.usage.events, llm_connect.usage.kinds), imported by the first call that needs them: an
    import statement in a function costs a module look-up and a package resolution on every call."""
    from ..usage import events, kinds

    return events, kinds


class BaseAdapter(LLMAdapter):
    """Shared call pipeline for native adapters. See the module docstring."""

    #: the config's name for this adapter's deployment (a ``models:`` alias), priced after the model ids
    price_alias: str | None = None
    #: near a budget's cap, count the prompt exactly and clamp max_tokens to what is left instead of
    #: refusing (False: reserve the bound and max_tokens as asked, or refuse); see providers/reserve.py
    fit_to_budget: bool = True

    def __init__(
        self,
        *,
        provider: str,
        model: str,
        timeout: float | None = None,
        pricing: Pricing | None = None,
        usage_tracker: UsageTracker | None = None,
        fit_to_budget: bool | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        if fit_to_budget is not None:
            self.fit_to_budget = bool(fit_to_budget)
        if timeout is not None:
            self.timeout = timeout
        self._pricing = pricing
        self.usage_tracker = usage_tracker

    # -- to implement ------------------------------------------------------------------------------
    async def _complete(self, messages: list[Message], config: RunConfig, max_tokens: int | None) -> LLMResponse:
        raise NotImplementedError

    async def _stream(
        self, messages: list[Message], config: RunConfig, max_tokens: int | None
    ) -> AsyncIterator[StreamChunk]:
        """Default for providers that cannot stream: the whole answer as one delta, then the usage chunk."""
        for chunk in answer_chunks(await self._complete(messages, config, max_tokens)):
            yield chunk

    def _stream_batches(
        self, messages: list[Message], config: RunConfig, max_tokens: int | None
    ) -> AsyncIterator[list[StreamChunk]]:
        """The provider's stream a batch per upstream read (never an empty list). Default: :meth:`_stream`'s
        chunks one per list; an adapter that reads a provider's stream in blocks (HTTPAdapter) overrides this."""
        return singles(self._stream(messages, config, max_tokens))

    def count_input_tokens(self, messages: list[Message], config: RunConfig) -> int:
        """Tokens the prompt will cost at most, cheaply. Override with an exact tokenizer where there is one."""
        return prompt_bound(messages, config)

    async def acount_exact_input_tokens(self, messages: list[Message], config: RunConfig) -> int | None:
        """The prompt's exact input tokens (a tokenizer, a count endpoint), or None where none is known.
        Asked only when the cheap bound no longer fits the budget (see providers/reserve.py)."""
        return None

    # -- embeddings (see providers/embed.py) -------------------------------------------------------
    async def _embed(self, texts: list[str], config: RunConfig, dimensions: int | None) -> EmbeddingResponse:
        """The provider call of one embedding request (texts checked, budget reserved)."""
        raise NotImplementedError

    def check_embedding_request(self, dimensions: int | None) -> None:
        """Raise LLMCapabilityError, before anything is reserved, if this adapter cannot serve the request."""
        if not self.supports_embeddings:
            raise LLMCapabilityError(
                f"{self.provider}:{self.model} cannot embed text (the provider has no embedding API)",
                provider=self.provider,
                model=self.model,
            )

    def count_embedding_tokens(self, texts: list[str]) -> int:
        """Input tokens ``texts`` cost at most, cheaply (the budget's reservation)."""
        return embedding_bound(texts)

    async def acount_exact_embedding_tokens(self, texts: list[str]) -> int | None:
        """The exact input tokens of ``texts``, or None where no tokenizer is known; asked only when the
        bound no longer fits the budget."""
        return None

    def aembed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> Coroutine[Any, Any, EmbeddingResponse]:
        """One accounted embedding call (a coroutine); under its span when the config carries a Tracing."""
        from .embed import run_embedding  # loaded on the first embedding call

        if config is not None and config.tracing is not None:
            return config.tracing.attempt(  # type: ignore[return-value]
                self, "embeddings", config, lambda cfg: run_embedding(self, texts, cfg, dimensions)
            )
        return run_embedding(self, texts, config, dimensions)

    def _estimated_usage(
        self, messages: list[Message], config: RunConfig, est_in: int, produced: str, max_tokens: int | None
    ) -> Usage:
        """Usage to bill when the provider reported none: the prompt and what was produced, from above,
        never more output than max_tokens allowed."""
        out = estimate_tokens(produced)
        if max_tokens is not None:
            out = min(out, max_tokens)
        return Usage(input_tokens=est_in or self.count_input_tokens(messages, config), output_tokens=out)

    # -- pricing -----------------------------------------------------------------------------------
    @property
    def pricing(self) -> Pricing:
        return self._pricing if self._pricing is not None else default_pricing()

    def _price_key(self, model: str | None) -> tuple[str, str]:
        """(provider, model) under which this adapter's calls are priced."""
        return self.provider, model or self.model

    def price(
        self, usage: Usage, model: str | None = None, *, estimate: bool = False, service_tier: str | None = None
    ) -> Decimal | None:
        """USD cost of ``usage``; ``model`` is the id the provider reported, ``service_tier`` the tier it
        served the call at. Looked up under the model, then under the id this adapter asked for and its config
        alias (``Pricing.price``'s order), so reserve, settle, the ledger and the response all use the same rate."""
        provider, name = self._price_key(model)
        return self.pricing.price(
            provider,
            name,
            usage,
            estimate=estimate,
            requested=self.model,
            alias=self.price_alias,
            service_tier=service_tier,
        )

    # -- pipeline ----------------------------------------------------------------------------------
    async def _begin(self, messages: list[Message], config: RunConfig) -> tuple[int | None, Reservation | None, int]:
        """Reserve on the budget. Returns (max_tokens to send, reservation, input count)."""
        began = await reserve_call(self, messages, config)
        if config.tracing is not None:
            config.tracing.reserved(began[0], began[1])
        return began

    def _worst_cost(
        self,
        input_tokens: int,
        output_tokens: int,
        messages: list[Message] | None = None,
        config: RunConfig | None = None,
    ) -> Decimal | None:
        """The most this call can cost (see :meth:`Pricing.worst_cost`): with the input kinds its prompt may
        bill (audio, images, 1-hour cache writes) and at the service tier it asks for; None when unpriced."""
        kinds = _usage_modules()[1]
        provider, name = self._price_key(None)
        return self.pricing.worst_cost(
            provider,
            name,
            input_tokens,
            output_tokens,
            kinds=kinds.request_kinds(messages or (), config),
            service_tier=kinds.requested_service_tier(config),
            alias=self.price_alias,
        )

    def _estimate_cost(self, usage: Usage, config: RunConfig) -> Decimal | None:
        """The cost of an estimated usage (no final count from the provider), from above: at the larger of the
        standard price and the price of the service tier the request asked for."""
        from ..usage.kinds import requested_service_tier

        cost = self.price(usage, estimate=True)
        tier = requested_service_tier(config)
        if cost is not None and tier is not None:
            cost = max(cost, self.price(usage, estimate=True, service_tier=tier) or cost)
        return cost

    def _cap(self, config: RunConfig) -> float | None:
        return config.timeout or self.timeout

    def _error(self, exc: BaseException, cap: float | None) -> BaseException:
        if isinstance(exc, TimeoutError) and not isinstance(exc, LLMError):
            return LLMTimeoutError(f"no answer within {cap} s", provider=self.provider, model=self.model)
        if isinstance(exc, LLMError):
            exc.provider = exc.provider or self.provider
            exc.model = exc.model or self.model
        return exc

    def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> Coroutine[Any, Any, LLMResponse]:
        """One accounted call (a coroutine); under its span when the config carries a Tracing."""
        if config is not None and config.tracing is not None:
            return config.tracing.attempt(  # type: ignore[return-value]
                self, "chat", config, lambda cfg: self._execute_prompt(prompt, cfg)
            )
        return self._execute_prompt(prompt, config)

    async def _execute_prompt(self, prompt: Prompt, config: RunConfig | None) -> LLMResponse:
        cfg = config if config is not None else RunConfig()
        messages = normalize_messages(prompt, cfg.system_prompt)
        max_tokens, res, est_in = await self._begin(messages, cfg)
        cap = self._cap(cfg)
        start = time.perf_counter()
        try:
            with Timeout(cap):
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
        estimated = False
        if not resp.usage.total_tokens and resp.usage == Usage() and (resp.text or resp.tool_calls):
            # the provider reported no usage: bill an upper-bound estimate rather than nothing
            produced = resp.text + (orjson.dumps(resp.tool_calls).decode() if resp.tool_calls else "")
            resp.usage = self._estimated_usage(messages, cfg, est_in, produced, max_tokens)
            estimated = True
            log.warning("%s:%s reported no usage; billed an estimate %s", self.provider, resp.model, resp.usage)
        if resp.cost_usd is None:  # an adapter may report the provider's own billed cost
            resp.cost_usd = self.price(resp.usage, resp.model, service_tier=resp.service_tier)
        settle = None if res is None else functools.partial(res.asettle, resp.usage.total_tokens, resp.cost_usd)
        await _all_of(settle, functools.partial(self._publish, cfg, resp, streamed=False, estimated=estimated))
        return resp

    def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        """The accounted stream, chunk by chunk (:meth:`astream_batches` flattened)."""
        return flatten(self.astream_batches(prompt, config))

    def astream_batches(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[list[StreamChunk]]:
        """The accounted stream a batch per upstream read; under its span when the config carries a Tracing."""
        if config is not None and config.tracing is not None:
            return config.tracing.attempt_stream(self, config, lambda cfg: self._astream(prompt, cfg))
        return self._astream(prompt, config)

    async def _astream(self, prompt: Prompt, config: RunConfig | None) -> AsyncIterator[list[StreamChunk]]:
        cfg = config if config is not None else RunConfig()
        messages = normalize_messages(prompt, cfg.system_prompt)
        max_tokens, res, est_in = await self._begin(messages, cfg)
        cap = self._cap(cfg)
        tally = _StreamTally(self, cfg, messages, res, est_in, max_tokens)
        # the cap covers the provider's stream, not the time the caller takes between batches
        deadline = Deadline(None if cap is None else asyncio.get_running_loop().time() + cap)
        agen: AsyncIterator[list[StreamChunk]] | None = None
        try:
            agen = self._stream_batches(messages, cfg, max_tokens)
            while True:
                try:
                    batch = await deadline.run(anext(agen))
                except StopAsyncIteration:
                    break
                shown = tally.see(batch)
                final = tally.final
                if final is not None:
                    # the final chunk: settle and record it BEFORE the caller sees it (and the chunks of its
                    # batch), so a stream whose end reached the caller is always accounted
                    tally.final = None
                    final.model = final.model or self.model
                    if final.cost_usd is None and final.usage is not None:
                        final.cost_usd = self.price(final.usage, final.model, service_tier=final.service_tier)
                    await tally.settle(final)
                if shown:
                    yield shown
            if not tally.settled:
                # the provider ended the stream without usage (e.g. a server that ignores include_usage):
                # the last chunk still carries usage, an estimate from above, settled before it is seen
                usage = tally.estimate()
                final = StreamChunk(
                    finish_reason=tally.finish_reason,
                    usage=usage,
                    model=self.model,
                    cost_usd=self._estimate_cost(usage, cfg),
                )
                await tally.settle(final, estimated=True)
                yield [final]
        except BaseException as exc:
            err = self._error(exc, cap)
            if not tally.settled:
                await tally.settle(None, failure=err)
            if err is not exc:
                raise err from exc
            raise
        finally:
            deadline.close()
            if agen is not None:
                await agen.aclose()  # type: ignore[attr-defined]

    async def _publish(
        self,
        cfg: RunConfig,
        resp: LLMResponse,
        *,
        streamed: bool,
        error: BaseException | None = None,
        estimated: bool = False,
    ) -> None:
        if cfg.tracing is not None:
            cfg.tracing.settled(resp, error=error, estimated=estimated, streamed=streamed)
        trackers = [t for t in (cfg.usage_tracker, self.usage_tracker) if t is not None]
        if not trackers:
            return
        event = _usage_modules()[0].UsageEvent.from_response(
            resp,
            cfg,
            success=error is None,
            error=error,
            streamed=streamed,
            deployment=cfg.metadata.get("deployment"),
            estimated=estimated,
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


def _larger(a: Usage, b: Usage) -> Usage:
    """The larger of two usages, per token kind (the detail kinds too: 1-hour writes, audio, ...)."""
    return Usage(
        max(a.input_tokens, b.input_tokens),
        max(a.output_tokens, b.output_tokens),
        max(a.cache_read_tokens, b.cache_read_tokens),
        max(a.cache_write_tokens, b.cache_write_tokens),
        max(a.reasoning_tokens, b.reasoning_tokens),
        **{k: max(getattr(a, k), getattr(b, k)) for k in USAGE_DETAIL_KINDS},
    )


async def _all_of(*steps: Callable[[], Awaitable[object]] | None) -> None:
    """Run the accounting steps in turn, every one of them, even if this task is cancelled in the middle of one
    (a client hung up, a timeout fired); then raise the first cancellation or error.

    An interrupted step is not lost: the budget store finishes a settle on its own (see BudgetTracker), and
    UsageTracker.aemit lets its subscribers finish (the ledger's write is queued before it waits). What a
    cancellation must not do is skip the steps after it — the usage event of a settled call. No task is
    created here: the normal path costs nothing."""
    first: BaseException | None = None
    for step in steps:
        if step is None:
            continue
        try:
            await step()
        except (Exception, asyncio.CancelledError) as exc:
            if first is None:
                first = exc
    if first is not None:
        raise first


class _StreamTally:
    """One stream's accounting: the usage the provider reported so far, what was seen, and the settlement.

    :meth:`settle` acts on its first call only and always runs to its end (see :func:`_all_of`), so every
    stream publishes exactly one usage event however it ends: its final chunk, an error, the consumer stopping
    (GeneratorExit) or being cancelled.
    """

    __slots__ = (
        "adapter",
        "cfg",
        "est_in",
        "final",
        "finish_reason",
        "max_tokens",
        "messages",
        "reasoning_bytes",
        "reported",
        "request_id",
        "res",
        "settled",
        "start",
        "text",
        "tool_bytes",
    )

    def __init__(
        self,
        adapter: BaseAdapter,
        cfg: RunConfig,
        messages: list[Message],
        res: Reservation | None,
        est_in: int,
        max_tokens: int | None,
    ) -> None:
        self.adapter = adapter
        self.cfg = cfg
        self.messages = messages
        self.res = res
        self.est_in = est_in
        self.max_tokens = max_tokens
        self.start = time.perf_counter()
        self.text: list[str] = []
        self.tool_bytes = 0
        self.reasoning_bytes = 0
        self.reported: Usage | None = None
        self.finish_reason: str | None = None
        self.request_id: str | None = None
        #: the chunk with the provider's usage a batch brought, until it is settled
        self.final: StreamChunk | None = None
        #: the settlement has begun (it then always runs to its end)
        self.settled = False

    def see(self, batch: list[StreamChunk]) -> list[StreamChunk]:
        """Tally a batch; the chunks of it the caller is shown (``batch`` itself unless some carry only the
        running usage: the tally has it, the caller has nothing to see). A chunk with the provider's usage (the
        final one) is left in :attr:`final` to be settled."""
        shown: list[StreamChunk] | None = None  # made only when a chunk is left out
        for i, chunk in enumerate(batch):
            if chunk.text:
                self.text.append(chunk.text)
            if chunk.tool_calls:  # tool-call argument deltas: billed as output too
                self.tool_bytes += len(orjson.dumps(chunk.tool_calls))
            if chunk.reasoning:
                self.reasoning_bytes += estimate_tokens(chunk.reasoning)
            if chunk.usage_so_far is not None:
                so_far = chunk.usage_so_far
                self.reported = so_far if self.reported is None else _larger(self.reported, so_far)
            if chunk.finish_reason:
                self.finish_reason = chunk.finish_reason
            if chunk.request_id:
                self.request_id = chunk.request_id
            if chunk.usage is not None:
                self.final = chunk
            elif not (chunk.text or chunk.tool_calls or chunk.reasoning or chunk.finish_reason):
                if shown is None:
                    shown = batch[:i]
                continue
            if shown is not None:
                shown.append(chunk)
        return batch if shown is None else shown

    def estimate(self) -> Usage:
        """Per token kind, the larger of what the provider reported so far and an upper bound of what was
        seen: the prompt, and the text, tool-call and reasoning deltas (never more output than max_tokens)."""
        out = estimate_tokens("".join(self.text)) + self.tool_bytes + self.reasoning_bytes
        reasoning = self.reasoning_bytes
        if self.max_tokens is not None:
            out = min(out, self.max_tokens)
            reasoning = min(reasoning, out)
        est_in = self.est_in or self.adapter.count_input_tokens(self.messages, self.cfg)
        seen = Usage(input_tokens=est_in, output_tokens=out, reasoning_tokens=reasoning)
        return seen if self.reported is None else _larger(self.reported, seen)

    async def settle(
        self, final: StreamChunk | None, *, failure: BaseException | None = None, estimated: bool = False
    ) -> None:
        """Settle on ``final`` (the chunk with the provider's usage) or, without it, on :meth:`estimate`, and
        publish the usage event; only the first call acts."""
        if self.settled:
            return
        self.settled = True
        await self._settle(final, failure, estimated)

    async def _settle(self, final: StreamChunk | None, failure: BaseException | None, estimated: bool) -> None:
        a = self.adapter
        usage: Usage | None
        if final is not None and final.usage is not None:
            usage, cost = final.usage, final.cost_usd
        elif self.text or self.tool_bytes or self.reasoning_bytes or self.reported is not None:
            usage = self.estimate()
            cost = a._estimate_cost(usage, self.cfg)
            estimated = True
        else:  # nothing was produced nor reported: nothing to bill
            usage, cost = None, None
        settle: Callable[[], Awaitable[object]] | None = None
        if self.res is not None:
            settle = (
                self.res.arelease if usage is None else functools.partial(self.res.asettle, usage.total_tokens, cost)
            )
        resp = LLMResponse(
            text="".join(self.text),
            model=(final.model if final and final.model else a.model),
            provider=a.provider,
            usage=usage or Usage(),
            finish_reason=final.finish_reason if final else None,
            latency_ms=(time.perf_counter() - self.start) * 1000,
            cost_usd=cost,
            request_id=final.request_id if final else self.request_id,
            service_tier=final.service_tier if final else None,
        )
        error = failure if isinstance(failure, Exception) else None
        publish = functools.partial(a._publish, self.cfg, resp, streamed=True, error=error, estimated=estimated)
        await _all_of(settle, publish)
