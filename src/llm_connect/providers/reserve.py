"""The reservation of one budgeted call: size it to what the budget has left, then reserve it.

1. The prompt is counted with the adapter's cheap bound (``count_input_tokens``; exact for adapters whose
   tokenizer is at hand) and ``prompt + max_tokens`` is reserved at once — one store round trip in the
   common case, where the budget has room.
2. Refused (the bound no longer fits), the prompt is counted exactly once
   (``acount_exact_input_tokens``: a tokenizer, or the provider's count-tokens endpoint), the chain's room is
   read (one round trip) and ``max_tokens`` is **clamped** to what is left after the prompt
   (:func:`llm_connect.budget.plan.output_budget`), also for the USD cap. The reservation is retried; a
   race with other callers that took the room is retried a few times with fresh numbers.
3. Refused for good (not one answer token fits), the first refusal is raised.

``BaseAdapter.fit_to_budget = False`` restores the strict behaviour: the bound is reserved with ``max_tokens``
as asked (without one: what the bound leaves, at most 4 096), or the call is refused.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..budget.plan import output_budget
from ..errors import LLMBudgetExceededError, LLMError
from ..types import Message, Prompt, RunConfig, normalize_messages
from .tokens import prompt_bound

if TYPE_CHECKING:
    from ..budget import BudgetTracker, Reservation
    from .base import BaseAdapter

__all__ = ["BUDGETED_DEFAULT_MAX_TOKENS", "RESERVE_ATTEMPTS", "count_prompt", "reserve_call"]

log = logging.getLogger("llm_connect")

#: max_tokens sent on a budgeted call whose caller set none: what the budget has left, but at most this,
#: so that one call does not reserve a whole shared budget and starve every other caller
BUDGETED_DEFAULT_MAX_TOKENS = 4096
#: reservations tried per call at most (the first, then after each refusal with fresh numbers)
RESERVE_ATTEMPTS = 4


async def _exact(adapter: BaseAdapter, messages: list[Message], config: RunConfig, bound: int) -> int:
    try:
        exact = await adapter.acount_exact_input_tokens(messages, config)
    except LLMError as exc:  # a count endpoint that is down: the bound still holds
        log.info("%s:%s could not count the prompt exactly (%s); using the bound", adapter.provider, adapter.model, exc)
        return bound
    return bound if exact is None else exact


def _affordable(
    adapter: BaseAdapter, left: Decimal, input_tokens: int, messages: list[Message], config: RunConfig
) -> int | None:
    """Output tokens ``left`` dollars pay for after the prompt's worst cost (None: the model has no price), both
    at the worst case the reservation takes (the requested service tier, the dearest output kind)."""
    prompt = adapter._worst_cost(input_tokens, 0, messages, config)  # the per-request price included
    million = adapter._worst_cost(0, 1_000_000, messages, config)
    base = adapter._worst_cost(0, 0, messages, config)
    if prompt is None or million is None or base is None or not million - base:
        return None
    return max(0, int((left - prompt) * 1_000_000 / (million - base)))


async def _fit(
    adapter: BaseAdapter,
    tracker: BudgetTracker,
    want: int,
    input_tokens: int,
    messages: list[Message],
    config: RunConfig,
) -> int:
    """Output tokens that fit after ``input_tokens`` in the chain's current room (tokens and USD); 0: none."""
    room, room_usd = await tracker.aheadroom()
    out = output_budget(want, room, input_tokens)
    if out and room_usd is not None:
        affordable = _affordable(adapter, room_usd, input_tokens, messages, config)
        if affordable is not None:
            out = min(out, affordable)
    return out


async def reserve_call(
    adapter: BaseAdapter, messages: list[Message], config: RunConfig
) -> tuple[int | None, Reservation | None, int]:
    """Reserve the call on ``config.budget_tracker``. Returns (max_tokens to send, reservation, input count)."""
    tracker = config.budget_tracker
    wanted = config.max_tokens
    if tracker is None:
        return wanted, None, 0
    est_in = adapter.count_input_tokens(messages, config)
    label = f"{adapter.provider}:{adapter.model}"
    if wanted is None and not tracker.caps_tokens and not tracker.needs_usd:
        # nothing caps the output: the provider's default applies and only the prompt is held
        return None, await tracker.areserve(est_in, None, label=label), est_in
    want = BUDGETED_DEFAULT_MAX_TOKENS if wanted is None else wanted
    max_tokens = want
    fit = adapter.fit_to_budget
    counted = False
    if wanted is None and tracker.caps_tokens:
        # no size asked: what the room leaves after the prompt, at most the default. The bound sizes it while
        # it leaves an answer at least as large as the prompt's bound; nearer the cap the prompt is counted
        room = await tracker.aremaining()
        if room is not None:
            if fit and room - est_in < min(est_in, want):
                est_in, counted = await _exact(adapter, messages, config, est_in), True
            max_tokens = max(1, min(max_tokens, room - est_in))  # nothing fits: reserve() refuses clearly
    if wanted is None and tracker.needs_usd:
        left = await tracker.aremaining_usd()
        affordable = None if left is None else _affordable(adapter, left, est_in, messages, config)
        if affordable is not None:
            max_tokens = max(1, min(max_tokens, affordable))  # nothing fits: reserve() refuses clearly
    first: LLMBudgetExceededError | None = None
    for _ in range(RESERVE_ATTEMPTS):
        usd = adapter._worst_cost(est_in, max_tokens, messages, config) if tracker.needs_usd else None
        try:
            res = await tracker.areserve(est_in + max_tokens, usd, label=label)
        except LLMBudgetExceededError as exc:
            if exc.unit is None or not fit:
                raise  # unpriced model, unreachable store, or strict reservations: nothing to resize
            first = first or exc
            if not counted:
                est_in, counted = await _exact(adapter, messages, config, est_in), True
            out = await _fit(adapter, tracker, want, est_in, messages, config)
            if out < 1:
                raise first from None
            max_tokens = out
            continue
        if max_tokens < want:
            log.debug("%s: max_tokens clamped from %d to %d to fit the budget", label, want, max_tokens)
        return max_tokens, res, est_in
    assert first is not None
    raise first


async def count_prompt(adapter: Any, prompt: Prompt, config: RunConfig | None = None) -> tuple[int, bool]:
    """(input tokens, exact) of ``prompt`` for ``adapter``: its exact count where it has one (a tokenizer, a
    count endpoint), else its cheap upper bound. Any adapter: one without counting methods (a Router, a
    wrapper) gets :func:`~llm_connect.providers.tokens.prompt_bound`."""
    cfg = config if config is not None else RunConfig()
    messages = normalize_messages(prompt, cfg.system_prompt)
    exact = getattr(adapter, "acount_exact_input_tokens", None)
    if exact is not None:
        try:
            n = await exact(messages, cfg)
        except LLMError as exc:
            log.info("exact prompt count failed (%s); using the bound", exc)
            n = None
        if n is not None:
            return int(n), True
    bound = getattr(adapter, "count_input_tokens", None)
    return (int(bound(messages, cfg)) if bound is not None else prompt_bound(messages, cfg)), False
