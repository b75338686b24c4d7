"""Stacked bar charts as plain geometry, drawn as inline SVG by the templates (no JavaScript, no library).

:func:`stacked_bars` turns a time series (bucket -> group -> value) into rectangles, axis ticks and a
legend in SVG user units; every text in it is escaped by the template that draws it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["PALETTE", "Bar", "Chart", "Tick", "nice_step", "stacked_bars"]

#: series colours (Tableau 10, readable on white and for most colour-blind readers); the last is "other"
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    #: the tooltip: group, bucket and value
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    plot_width: float
    plot_height: float
    bars: tuple[Bar, ...]
    yticks: tuple[Tick, ...]
    xticks: tuple[Tick, ...]
    #: (colour, group name, the group's total as text)
    legend: tuple[tuple[str, str, str], ...]
    total: str
    empty: bool


def nice_step(top: float, ticks: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that covers ``top`` in about ``ticks`` steps."""
    if top <= 0 or not math.isfinite(top):
        return 1.0
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag  # pragma: no cover - the loop always returns


def stacked_bars(
    buckets: Sequence[str],
    values: Mapping[str, Mapping[str, float]],
    *,
    fmt: Callable[[float], str],
    bucket_label: Callable[[str], str] = str,
    order: Sequence[str] = (),
    max_groups: int = len(PALETTE) - 1,
    width: int = 600,
    height: int = 220,
) -> Chart:
    """One bar per bucket (in order), stacked by group: ``values[bucket][group]``. The ``max_groups``
    largest groups keep their colour, the rest are summed as "other". ``order`` ranks groups ahead of that (two
    charts of the same groups given the same order colour each group alike)."""
    left, right, top, bottom = 62, 8, 10, 26
    pw, ph = width - left - right, height - top - bottom
    totals: dict[str, float] = {}
    for per in values.values():
        for g, v in per.items():
            totals[g] = totals.get(g, 0.0) + v
    first = {g: i for i, g in enumerate(order)}
    ranked = sorted((g for g in totals if totals[g] > 0), key=lambda g: (first.get(g, len(first)), -totals[g], g))
    kept = ranked if len(ranked) <= max_groups + 1 else ranked[:max_groups]  # never fold a lone group
    folded = [g for g in ranked if g not in kept]
    colors = {g: PALETTE[i] for i, g in enumerate(kept)}
    if folded:
        colors[OTHER] = PALETTE[-1]
    stacks: list[list[tuple[str, float]]] = []
    for b in buckets:
        per = values.get(b, {})
        stack = [(g, per.get(g, 0.0)) for g in kept]
        if folded:
            stack.append((OTHER, sum(per.get(g, 0.0) for g in folded)))
        stacks.append([(g, v) for g, v in stack if v > 0])
    peak = max((sum(v for _, v in s) for s in stacks), default=0.0)
    step = nice_step(peak)
    ymax = step * max(1, math.ceil(peak / step)) if peak > 0 else 1.0
    slot = pw / max(1, len(buckets))
    gap = min(6.0, slot * 0.2)
    bars: list[Bar] = []
    for i, (b, stack) in enumerate(zip(buckets, stacks, strict=True)):
        base = top + ph
        for g, v in stack:
            h = v / ymax * ph
            bars.append(
                Bar(left + i * slot + gap / 2, base - h, slot - gap, h, colors[g], f"{g} · {bucket_label(b)}: {fmt(v)}")
            )
            base -= h
    yticks = tuple(Tick(top + ph - (k * step) / ymax * ph, fmt(k * step)) for k in range(round(ymax / step) + 1))
    every = max(1, math.ceil(len(buckets) / 12))
    xticks = tuple(
        Tick(left + (i + 0.5) * slot, bucket_label(b))
        for i, b in enumerate(buckets)
        if (len(buckets) - 1 - i) % every == 0
    )
    legend = tuple((colors[g], g, fmt(totals[g])) for g in kept)
    if folded:
        legend += ((colors[OTHER], f"{OTHER} ({len(folded)})", fmt(sum(totals[g] for g in folded))),)
    return Chart(
        width=width,
        height=height,
        left=left,
        top=top,
        plot_width=pw,
        plot_height=ph,
        bars=tuple(bars),
        yticks=yticks,
        xticks=xticks,
        legend=legend,
        total=fmt(sum(totals.values())),
        empty=peak <= 0,
    )
