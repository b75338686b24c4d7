"""Sizing an agent's call to its thread budget, so that the budget is usable to its last tokens and every
threshold warning reaches the model while a call is still possible.

:func:`plan_call` decides what one call sends and reserves:

* **Far from the cap** the prompt is counted with the cheap bound (UTF-8 bytes) and the call goes out with the
  agent's output cap: no extra round trip.
* **Near the cap** (the bound + the output cap + a landing no longer fit) the prompt is counted exactly by the
  backend (``ModelBackend.count_tokens``: the model's tokenizer or its provider's count endpoint), the oldest
  history turns are dropped while the prompt does not fit, and the output is clamped so that a *landing* stays
  free: room for a next prompt (system prompt, the user message, the warnings this call may cross) and a
  short answer (:func:`llm_connect.budget.plan.landing_output`). A warning crossed by such a call is delivered
  to the next prompt, which is then known to fit.
* **The final call** — the landing cannot be kept — may use everything that is left; the thresholds it can
  cross that have not fired yet are announced in *its own* prompt (:func:`preview_note`), since no later call
  may be possible. Their crossing warnings are not queued again afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..budget import BudgetTracker, BudgetWarning
from ..budget.plan import landing_output, output_budget, reachable_thresholds
from ..providers.tokens import estimate_tokens
from .prompts import build_messages, with_system_notes

__all__ = ["MIN_REPLY_TOKENS", "CallPlan", "estimate_prompt_tokens", "plan_call", "preview_note"]

#: the shortest answer a call is made for (a smaller max_tokens would cut the model off mid-word)
MIN_REPLY_TOKENS = 16

Counter = Callable[[Sequence[Mapping[str, Any]]], Awaitable[int | None]]


def estimate_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """An upper bound on the prompt's tokens for any BPE tokenizer (one per UTF-8 byte, plus framing)."""
    n = 3
    for m in messages:
        c = m.get("content")
        n += 4 + estimate_tokens(c if isinstance(c, str) else "" if c is None else str(c))
    return n


def preview_note(threshold: float, budget_id: str, used: int, total: int, max_tokens: int) -> str:
    """The system note of a final call that may take the budget past ``threshold``."""
    left = max(0, total - used)
    return (
        f"[BUDGET WARNING] This call may take the token budget '{budget_id}' past {threshold:.0%}: "
        f"{used:,} of {total:,} tokens are used or held, {left:,} left. Answer in at most {max_tokens:,} tokens; "
        "it may be the last call this budget allows, so finish the current step and summarise progress now."
    )


@dataclass(slots=True)
class CallPlan:
    """What one call sends (``messages``, ``max_tokens``) and reserves (``input_tokens + max_tokens``)."""

    messages: list[dict[str, Any]]
    input_tokens: int
    max_tokens: int
    #: no landing was kept: this call may use all that is left
    final: bool = False
    #: the input count came from the backend (exact), not the bound
    exact: bool = False
    #: history turns (messages) left out so that the prompt fits
    dropped: int = 0
    #: thresholds announced in this prompt ahead of their crossing, and the notes that announce them
    previewed: list[float] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)

    @property
    def reserve(self) -> int:
        return self.input_tokens + self.max_tokens


async def plan_call(
    tracker: BudgetTracker,
    count: Counter,
    system: str,
    user_text: str,
    history: Sequence[Mapping[str, Any]],
    notes: Sequence[str],
    out_cap: int,
    *,
    floor: int = MIN_REPLY_TOKENS,
    fit: bool = True,
) -> CallPlan | None:
    """The call to make now (see the module docstring), or None when not even the final one fits.

    ``fit=False`` is the strict plan: the bound, max_tokens cut to what it leaves, no history dropped.
    """
    floor = min(floor, out_cap)
    hist = [dict(t) for t in history]

    def build(turns: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> list[dict[str, Any]]:
        return with_system_notes(build_messages(system, user_text, turns), [*notes, *extra])

    messages = build(hist)
    bound = estimate_prompt_tokens(messages)
    room = await tracker.aremaining()
    if room is None:
        return CallPlan(messages, bound, out_cap)
    note_bound = estimate_tokens(preview_note(1.0, tracker.budget_id, room, room, out_cap)) + 8
    landing_bound = estimate_prompt_tokens(build_messages(system, user_text)) + floor
    landing_bound += note_bound * len(tracker.thresholds)
    if bound + out_cap + landing_bound <= room:
        return CallPlan(messages, bound, out_cap)
    if not fit:
        out = output_budget(out_cap, room, bound, floor=1)
        return CallPlan(messages, bound, out) if out else None

    exact = [False]

    async def counted(msgs: list[dict[str, Any]]) -> int:
        n = await count(msgs)
        if n is None:
            return estimate_prompt_tokens(msgs)
        exact[0] = True
        return n

    async def fitted(extra: Sequence[str]) -> tuple[list[dict[str, Any]], int, int]:
        """(messages, input tokens, history messages dropped): the oldest turns dropped until it fits."""
        turns = list(hist)
        msgs = build(turns, extra)
        n = await counted(msgs)
        while n + floor > room and turns:
            turns = turns[2:] if len(turns) > 1 else []
            msgs = build(turns, extra)
            n = await counted(msgs)
        return msgs, n, len(hist) - len(turns)

    state = await tracker.astate()
    total = tracker.total
    used = state.spent + state.reserved
    fired = {t for unit, t in state.fired if unit == "tokens"}
    messages, n_in, dropped = await fitted(())
    if n_in + floor > room:
        return None
    crossing = reachable_thresholds(used, total, n_in + out_cap, tracker.thresholds, fired)
    next_notes = [
        BudgetWarning(t, used, total or 0, max(0, (total or 0) - used), tracker.budget_id).as_system_message()
        for t in crossing
    ]
    landing = await counted(with_system_notes(build_messages(system, user_text), next_notes)) + floor
    out, final = landing_output(out_cap, room, n_in, landing, floor=floor)
    if not final:
        return CallPlan(messages, n_in, out, exact=exact[0], dropped=dropped)
    # the final call: announce what it may cross now, while a call is still possible
    reach = reachable_thresholds(used, total, n_in + out, tracker.thresholds, fired)
    if reach and total:
        promised = out
        for _ in range(2):  # the note names the answer's size, which the note's own length shrinks
            previews = [preview_note(t, tracker.budget_id, used, total, promised) for t in reach]
            p_messages, p_in, p_dropped = await fitted(previews)
            p_out = output_budget(out_cap, room, p_in, floor=floor)
            if not p_out:
                break
            if p_out >= promised:
                return CallPlan(p_messages, p_in, promised, True, exact[0], p_dropped, reach, previews)
            promised = p_out
    return CallPlan(messages, n_in, out, True, exact[0], dropped)
