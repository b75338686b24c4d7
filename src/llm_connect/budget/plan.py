"""Sizing one call to what a budget has left: pure integer arithmetic, no I/O (property-tested).

A call reserves ``input + output`` tokens. Near a cap the output is *clamped* rather than the call refused:
the last call of a budget still runs, with a shorter answer. ``room`` is what can still be reserved through a
whole budget chain (``BudgetTracker.aheadroom()``), ``None`` meaning no cap.

The guarantees (``tests/budget/test_plan.py`` checks them with hypothesis):

* :func:`output_budget` never returns a negative number, never more than was asked, and a call it allows
  (``> 0``) always fits: ``input + output <= room``. It refuses (``0``) only when fewer than ``floor`` tokens
  of answer would be left.
* :func:`landing_output` keeps ``landing`` tokens free for a next call while that still leaves ``floor`` tokens
  of answer; otherwise the call is the budget's *final* one and may take everything that is left. Either way
  it fits, like :func:`output_budget`.
* :func:`reachable_thresholds` lists the thresholds a spend of at most ``extra`` more tokens can cross, with
  the store's own test (``spent >= threshold * total``), so none that a settle could fire is missed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

__all__ = ["landing_output", "output_budget", "reachable_thresholds", "room_after"]


def _check(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return value


def room_after(room: int | None, used: int) -> int | None:
    """What ``room`` leaves after ``used`` tokens (never negative; None stays None)."""
    return None if room is None else max(0, room - used)


def output_budget(wanted: int, room: int | None, input_tokens: int, *, floor: int = 1) -> int:
    """Output tokens a call may ask for: ``wanted``, cut to what ``room`` leaves after ``input_tokens``.

    0 means refuse: fewer than ``floor`` tokens of answer would fit (``floor`` is at most ``wanted``: a call
    that asks for 3 tokens is never refused for a floor of 16).
    """
    _check("wanted", wanted)
    _check("input_tokens", input_tokens)
    floor = min(max(1, _check("floor", floor)), wanted)
    if wanted == 0:
        return 0
    if room is None:
        return wanted
    out = min(wanted, _check("room", room) - input_tokens)
    return out if out >= floor else 0


def landing_output(
    wanted: int, room: int | None, input_tokens: int, landing: int, *, floor: int = 1
) -> tuple[int, bool]:
    """(output tokens, final). Keeps ``landing`` tokens for a next call when ``floor`` tokens of answer still
    fit beside it; otherwise the call is the final one of the budget (``final`` True) and may use all of
    ``room``. Output 0: not even the final call fits (refuse)."""
    _check("landing", landing)
    if room is None:
        return output_budget(wanted, None, input_tokens, floor=floor), False
    kept = output_budget(wanted, room_after(room, landing), input_tokens, floor=floor)
    if kept:
        return kept, False
    return output_budget(wanted, room, input_tokens, floor=floor), True


def reachable_thresholds(
    spent: int, total: int | None, extra: int, thresholds: Iterable[float], fired: Collection[float] = ()
) -> list[float]:
    """Thresholds (fractions of ``total``) not in ``fired`` that spending up to ``extra`` more tokens on top
    of ``spent`` can reach, lowest first."""
    _check("spent", spent)
    _check("extra", extra)
    if not total:
        return []
    return sorted(t for t in thresholds if t not in fired and spent + extra >= t * total)
