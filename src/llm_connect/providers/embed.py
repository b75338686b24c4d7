"""The accounting pipeline of one embedding call, shared by every built-in adapter (``BaseAdapter.aembed``).

The chat pipeline (providers/base.py) with no output side:

1. the input is checked (:func:`llm_connect.embeddings.normalize_texts`, ``dimensions`` > 0);
2. with ``RunConfig.budget_tracker``: the input's upper bound (:meth:`BaseAdapter.count_embedding_tokens`) is
   reserved, priced at the model's input price for USD budgets. Refused, and the adapter has an exact count
   (``acount_exact_embedding_tokens``: tiktoken for OpenAI models), the exact count is reserved instead;
   refused again, ``LLMBudgetExceededError`` is raised before any provider call;
3. the provider is called under the wall-clock cap (``BaseAdapter._embed``);
4. the reported input tokens are priced, the reservation settled to them and one UsageEvent published
   (output 0). A reply without a count is billed the bound, the event marked ``estimated``. A failure
   releases the reservation and publishes a failed event with no tokens.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from .._timeout import Timeout
from ..embeddings import EmbeddingResponse, check_dimensions, normalize_texts
from ..errors import LLMBudgetExceededError, LLMError
from ..types import LLMResponse, RunConfig, Usage
from .base import _all_of

if TYPE_CHECKING:
    from ..budget import Reservation
    from .base import BaseAdapter

__all__ = ["run_embedding"]

log = logging.getLogger("llm_connect")


async def _reserve(adapter: BaseAdapter, texts: list[str], cfg: RunConfig) -> tuple[Reservation | None, int]:
    tracker = cfg.budget_tracker
    if tracker is None:
        return None, 0
    est_in = adapter.count_embedding_tokens(texts)
    label = f"{adapter.provider}:{adapter.model}"

    def usd(n: int) -> Any:
        return adapter._worst_cost(n, 0) if tracker.needs_usd else None

    try:
        return await tracker.areserve(est_in, usd(est_in), label=label), est_in
    except LLMBudgetExceededError as exc:
        if exc.unit is None or not adapter.fit_to_budget:
            raise  # unpriced, the store unreachable, or strict reservations: nothing to recount
        try:
            exact = await adapter.acount_exact_embedding_tokens(texts)
        except LLMError as count_exc:
            log.info("%s could not count the input exactly (%s); using the bound", label, count_exc)
            exact = None
        if exact is None or exact >= est_in:
            raise
        try:
            return await tracker.areserve(exact, usd(exact), label=label), exact
        except LLMBudgetExceededError:
            raise exc from None


async def run_embedding(
    adapter: BaseAdapter, texts: Any, config: RunConfig | None, dimensions: Any
) -> EmbeddingResponse:
    """One accounted embedding call on ``adapter`` (see the module docstring)."""
    cfg = config if config is not None else RunConfig()
    items = normalize_texts(texts)
    dims = check_dimensions(dimensions)
    adapter.check_embedding_request(dims)  # a capability error before anything is reserved
    res, est_in = await _reserve(adapter, items, cfg)
    if cfg.tracing is not None:
        cfg.tracing.reserved(None, res)
    cap = adapter._cap(cfg)
    start = time.perf_counter()
    try:
        async with Timeout(cap):
            resp = await adapter._embed(items, cfg, dims)
    except BaseException as exc:
        if res is not None:
            await res.arelease()
        err = adapter._error(exc, cap)
        if isinstance(err, Exception):
            await adapter._publish_failure(cfg, err, start, streamed=False)
        if err is exc:
            raise
        raise err from exc
    resp.latency_ms = (time.perf_counter() - start) * 1000
    resp.provider = resp.provider or adapter.provider
    resp.model = resp.model or adapter.model
    if resp.usage == Usage():
        # the provider reported no count: bill the bound (what was reserved) rather than nothing
        resp.usage = Usage(input_tokens=est_in or adapter.count_embedding_tokens(items))
        resp.estimated = True
        log.warning("%s:%s reported no usage; billed an estimate %s", adapter.provider, resp.model, resp.usage)
    if resp.cost_usd is None:
        resp.cost_usd = adapter.price(resp.usage, resp.model, estimate=resp.estimated)
    event = LLMResponse(
        text="",
        model=resp.model,
        provider=resp.provider,
        usage=resp.usage,
        latency_ms=resp.latency_ms,
        cost_usd=resp.cost_usd,
        request_id=resp.request_id,
    )
    settle = None if res is None else functools.partial(res.asettle, resp.usage.total_tokens, resp.cost_usd)
    publish = functools.partial(adapter._publish, cfg, event, streamed=False, estimated=resp.estimated)
    await _all_of(settle, publish)
    return resp
