"""Routing strategies: the order in which a router tries the available deployments of a group.

A strategy gets a group's deployments, their shared status and ``ok(i)`` (may deployment ``i`` take a
call now? — False while it cools down, is being probed, is at a cap, or was already tried in this
round) and yields indices lazily, best first; the router asks for the next one only when the previous
failed. ``weighted`` and ``ordered`` look only at the deployments they pick, so the common case is O(1)
in the group size; the others scan the group once for their first pick and sort only on a retry.
Ties are broken at random.

==============  =======================================================================================
``weighted``    weighted random shuffle (default); LiteLLM's ``simple-shuffle``
``latency``     lowest EWMA latency first (time to first token for streams); unmeasured ones first,
                so each deployment is measured once; ``latency_buffer`` spreads load over the ones
                within that fraction of the best
``least_busy``  fewest calls in flight in this process
``cost``        cheapest USD per 1000 tokens first (Pricing.price_per_1k or the deployment's
                ``price_per_1k``); unpriced ones last
``usage``       most rpm/tpm headroom this minute (share of the caps used; uncapped count as empty)
``ordered``     the order the group lists them (priority / failover chains)
==============  =======================================================================================
"""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from ..errors import LLMConfigurationError
from .deployment import Node
from .health import Status

__all__ = [
    "STRATEGIES",
    "CostStrategy",
    "LatencyStrategy",
    "LeastBusyStrategy",
    "Ok",
    "OrderedStrategy",
    "PickContext",
    "Strategy",
    "UsageStrategy",
    "WeightedStrategy",
    "make_strategy",
]

#: ok(i): may deployment i of the group take a call now?
Ok = Callable[[int], bool]


@dataclass(slots=True)
class PickContext:
    """What a strategy may look at besides the group: call kind, minute, randomness, prices, weights."""

    stream: bool
    minute: int
    rng: random.Random
    pricing: Any = None
    #: cumulative weights of the group (cum[-1] is the total)
    cum: Sequence[float] = ()


def _weighted(idx: list[int], nodes: Sequence[Node], rng: random.Random) -> Iterator[int]:
    """Weighted random order without replacement (consumes ``idx``)."""
    while idx:
        if len(idx) == 1:
            yield idx.pop()
            return
        total = 0.0
        for i in idx:
            total += nodes[i].weight
        x = rng.random() * total
        k = 0
        for k, i in enumerate(idx):  # noqa: B007
            x -= nodes[i].weight
            if x < 0:
                break
        yield idx.pop(k)


def _rotated(idx: list[int], rng: random.Random) -> list[int]:
    """``idx`` from a random starting point: stable sorts and min() then break ties at random."""
    if len(idx) > 1:
        k = rng.randrange(len(idx))
        return idx[k:] + idx[:k]
    return idx


def _best_then_rest(idx: list[int], key: Callable[[int], Any], rng: random.Random) -> Iterator[int]:
    """The minimum first (one scan); the rest sorted only if asked for."""
    if not idx:
        return
    idx = _rotated(idx, rng)
    best = min(idx, key=key)
    yield best
    idx.remove(best)
    idx.sort(key=key)
    yield from idx


class Strategy:
    """Base class. Subclasses implement :meth:`order`."""

    name: ClassVar[str] = ""

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class WeightedStrategy(Strategy):
    name = "weighted"

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        rng, n = ctx.rng, len(nodes)
        first = -1
        if ctx.cum:
            first = min(bisect_right(ctx.cum, rng.random() * ctx.cum[-1]), n - 1)
            if ok(first):
                yield first
        # the pick failed or was unavailable: weighted order over the ones still available
        yield from _weighted([i for i in range(n) if i != first and ok(i)], nodes, rng)


class OrderedStrategy(Strategy):
    name = "ordered"

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        return (i for i in range(len(nodes)) if ok(i))


class LatencyStrategy(Strategy):
    """Lowest EWMA latency first (time to first token for streams).

    A deployment with fewer than ``warmup`` samples, or whose last sample is older than ``stale_after``
    seconds, is tried first when nothing is in flight on it: it gets (re-)measured instead of being
    judged forever on one unlucky sample. ``latency_buffer`` (a fraction) spreads calls at random
    over the deployments within that margin of the best.
    """

    name = "latency"

    def __init__(self, latency_buffer: float = 0.0, *, warmup: int = 2, stale_after: float = 60.0) -> None:
        if latency_buffer < 0:
            raise LLMConfigurationError(f"latency_buffer must be >= 0, got {latency_buffer!r}")
        self.latency_buffer = latency_buffer
        self.warmup = warmup
        self.stale_after = stale_after

    @staticmethod
    def metric(node: Node, stream: bool) -> tuple[float | None, int, float]:
        """(EWMA seconds, samples, last sample time) of the metric that fits the call."""
        if (stream and node.ttft_n) or not node.latency_n:
            return node.ttft, node.ttft_n, node.ttft_at
        return node.latency, node.latency_n, node.latency_at

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        now = time.monotonic()
        explore: list[int] = []
        measured: list[int] = []
        value: dict[int, float] = {}
        unknown: list[int] = []
        for i in range(len(nodes)):
            if not ok(i):
                continue
            node = nodes[i]
            v, n, at = self.metric(node, ctx.stream)
            if (n < self.warmup or now - at > self.stale_after) and node.in_flight == 0:
                explore.append(i)
            elif v is None:
                unknown.append(i)
            else:
                measured.append(i)
                value[i] = v
        yield from _weighted(explore, nodes, ctx.rng)
        if measured:
            if self.latency_buffer > 0 and len(measured) > 1:
                limit = min(value.values()) * (1 + self.latency_buffer)
                near = [i for i in measured if value[i] <= limit]
                yield from _weighted(near, nodes, ctx.rng)
                measured = [i for i in measured if value[i] > limit]
            yield from _best_then_rest(measured, value.__getitem__, ctx.rng)
        yield from _weighted(unknown, nodes, ctx.rng)


class LeastBusyStrategy(Strategy):
    name = "least_busy"

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        idx = [i for i in range(len(nodes)) if ok(i)]
        return _best_then_rest(idx, lambda i: nodes[i].in_flight, ctx.rng)


class CostStrategy(Strategy):
    name = "cost"

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        pricing = ctx.pricing
        idx = [i for i in range(len(nodes)) if ok(i)]

        def key(i: int) -> tuple[bool, Any]:
            p = nodes[i].price(pricing)
            return (p is None, p if p is not None else 0)

        return _best_then_rest(idx, key, ctx.rng)


class UsageStrategy(Strategy):
    name = "usage"

    def order(self, nodes: Sequence[Node], statuses: Sequence[Status], ok: Ok, ctx: PickContext) -> Iterator[int]:
        m = ctx.minute
        idx = [i for i in range(len(nodes)) if ok(i)]

        def key(i: int) -> tuple[float, int]:
            node, st = nodes[i], statuses[i]
            used = 0.0
            if node.rpm:
                used = st.rpm_used(m) / node.rpm
            if node.tpm:
                used = max(used, st.tpm_used(m) / node.tpm)
            return (used, st.tpm_used(m))

        return _best_then_rest(idx, key, ctx.rng)


#: strategy names (ours and LiteLLM's) -> class
STRATEGIES = MappingProxyType(
    {
        "weighted": WeightedStrategy,
        "simple-shuffle": WeightedStrategy,
        "shuffle": WeightedStrategy,
        "latency": LatencyStrategy,
        "latency-based-routing": LatencyStrategy,
        "least_busy": LeastBusyStrategy,
        "least-busy": LeastBusyStrategy,
        "cost": CostStrategy,
        "cost-based-routing": CostStrategy,
        "usage": UsageStrategy,
        "usage-based-routing": UsageStrategy,
        "usage-based-routing-v2": UsageStrategy,
        "ordered": OrderedStrategy,
        "priority": OrderedStrategy,
    }
)


def make_strategy(spec: str | Strategy | None, **options: Any) -> Strategy:
    """A strategy instance from a name (see :data:`STRATEGIES`) or an instance."""
    if spec is None:
        return WeightedStrategy()
    if isinstance(spec, Strategy):
        return spec
    cls = STRATEGIES.get(str(spec).lower())
    if cls is None:
        names = sorted({c.name for c in STRATEGIES.values()})
        raise LLMConfigurationError(f"unknown routing strategy {spec!r}; known: {', '.join(names)}")
    if cls is LatencyStrategy:
        return LatencyStrategy(**options)
    if options:
        raise LLMConfigurationError(f"strategy {cls.name!r} takes no options, got {sorted(options)}")
    return cls()
