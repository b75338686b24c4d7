"""One routed call: which deployments to try, in what order, and what each failure means.

``Call.next_attempt()`` hands out deployments one at a time; the router reports each outcome back
(:meth:`Call.failed` / :meth:`Call.succeeded`) and the plan adapts: the next deployment of the group, the
fallback groups, larger context windows after a context overflow, content-policy fallback groups after a
safety refusal, backoff rounds, and finally the typed error listing every attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..errors import (
    Attempt,
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMCapabilityError,
    LLMConfigurationError,
    LLMContentFilterError,
    LLMContextWindowExceededError,
    LLMError,
    LLMInvalidRequestError,
    LLMProviderUnavailableError,
    LLMRateLimitError,
    LLMTimeoutError,
    LLMUsageError,
)
from ..types import RunConfig
from .deployment import Node
from .health import Status, current_minute
from .strategies import PickContext

if TYPE_CHECKING:
    from .router import Router

__all__ = ["Call"]

#: errors that, when every attempt ended in one of them, are raised as they are (not wrapped)
_SAME_KIND_RAISED = (
    LLMAuthenticationError,
    LLMBudgetExceededError,
    LLMCapabilityError,
    LLMConfigurationError,
    LLMContextWindowExceededError,
)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dedup(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class Call:
    """The routing state of one call (see the module docstring)."""

    __slots__ = (
        "_gi",
        "_nodes",
        "_now",
        "_order",
        "_round",
        "_statuses",
        "attempts",
        "banned",
        "cfg",
        "cw_groups",
        "deadline",
        "group",
        "groups",
        "last_error",
        "min_window",
        "retry_after",
        "router",
        "stream",
        "switched",
        "timeout",
        "tried",
    )

    def __init__(self, router: Router, group: str, cfg: RunConfig, *, stream: bool) -> None:
        self.router = router
        self.group = group
        self.cfg = cfg
        self.stream = stream
        self.groups: list[str] = list(router._chains[group])
        self.attempts: list[Attempt] = []
        self.banned: set[Node] = set()
        self.tried: set[Node] = set()
        #: after a context overflow: only windows larger than this (None = no constraint)
        self.min_window: int | None = None
        #: groups named as context-window fallbacks: deployments there with no known window are allowed
        self.cw_groups: set[str] = set()
        self.switched = False
        self.last_error: LLMError | None = None
        #: seconds until the first deployment comes back, when the plan gave up because none can take a call
        #: sooner than retry.max_wait (the 503's Retry-After)
        self.retry_after: float | None = None
        self.timeout = cfg.timeout if cfg.timeout is not None else router._call_timeout
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
        # where next_attempt() stands: the round, the next group's index, the current group's pick order
        self._round = 0
        self._gi = 0
        self._order: Iterator[int] | None = None
        self._nodes: Sequence[Node] = ()
        self._statuses: Sequence[Status] = ()
        self._now = 0.0

    # -- planning ----------------------------------------------------------------------------------
    def _window_ok(self, node: Node) -> bool:
        if self.min_window is None:
            return True
        if node.window is None:
            return node.group in self.cw_groups
        return node.window > self.min_window

    def _expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _availability(
        self, nodes: Sequence[Node], statuses: Sequence[Status], now: float, minute: int
    ) -> Callable[[int], bool]:
        """ok(i) for the strategies: not tried this round, not banned, window fits, not blocked now."""
        tried, banned = self.tried, self.banned
        window = self._window_ok if self.min_window is not None else None

        def ok(k: int) -> bool:
            node = nodes[k]
            if node in tried or node in banned or (window is not None and not window(node)):
                return False
            st = statuses[k]
            if st.until or st.tripped or node.rpm is not None or node.tpm is not None:
                return not st.blocked_until(now, minute, node.rpm, node.tpm)
            return True

        return ok

    async def next_attempt(self) -> tuple[Node, Status, bool] | None:
        """The next (deployment, its status, is_probe) to try, or None when the plan has run out.

        Round by round (retries), group by group (the group, then its fallbacks), each group in the strategy's
        order; after :meth:`failed` switched groups (context-window / content-policy fallbacks) it starts over
        on the new list. A plain coroutine rather than an async generator: one per attempt, no generator
        bookkeeping on the event loop for every routed call."""
        r = self.router
        state = r._state_proxy
        while True:
            if self._order is not None:
                if self.switched:
                    self.switched = False
                    self._gi = 0
                    self._order = None
                    continue
                now = self._now
                for k in self._order:
                    if self._expired():
                        return None
                    node, st = self._nodes[k], self._statuses[k]
                    probe = st.half_open(now)
                    if probe and not await state.claim_probe(node.name, now, r.cooldown):
                        continue
                    if node.rpm is not None:
                        await state.record_start(node.name, now)
                    self.tried.add(node)
                    return node, st, probe
                self._order = None
            if self._gi < len(self.groups):  # the next group of this round
                g = self.groups[self._gi]
                self._gi += 1
                nodes = r._groups[g]
                now = time.time()
                statuses = await state.snapshot(r._names[g], now, r._counted[g])
                minute = current_minute(now)
                ok = self._availability(nodes, statuses, now, minute)
                ctx = PickContext(self.stream, minute, r._rng, r._pricing, r._cum[g])
                self._nodes, self._statuses, self._now = nodes, statuses, now
                self._order = iter(r._strategy.order(nodes, statuses, ok, ctx))
                continue
            if self._round == r.retry.num_retries or self._expired():  # every group tried in every round
                return None
            delay = await self._delay(self._round)
            if delay is None:
                return None
            await asyncio.sleep(delay)
            self._round += 1
            self.tried = set()
            self._gi = 0

    async def _delay(self, rnd: int) -> float | None:
        """Seconds to wait before the next round, or None to give up now."""
        r = self.router
        backoff = r.retry.backoff(rnd, r._rng)
        now = time.time()
        minute = current_minute(now)
        earliest: float | None = None
        for g in self.groups:
            statuses = await r._state_proxy.snapshot(r._names[g], now, r._counted[g])
            for node, st in zip(r._groups[g], statuses, strict=True):
                if node in self.banned or not self._window_ok(node):
                    continue
                b = st.blocked_until(now, minute, node.rpm, node.tpm)
                if not b:
                    earliest = now
                    break
                earliest = b if earliest is None else min(earliest, b)
            if earliest == now:
                break
        if earliest is None:
            return None
        wait = max(backoff, earliest - now)
        if wait > r.retry.max_wait:  # fail fast: the caller hears when to come back instead of waiting it out
            self.retry_after = earliest - now if earliest > now else None
            return None
        if self.deadline is not None and time.monotonic() + wait >= self.deadline:
            return None
        return wait

    def config_for(self, node: Node) -> RunConfig:
        """The caller's RunConfig for one attempt: deployment recorded; the time cap is the deployment's own
        timeout or the time left of the call's, whichever is less. The call's timeout caps the deployment's,
        never replaces it: a slow deployment gives up at its own timeout and leaves the rest to the next."""
        md = dict(self.cfg.metadata) if self.cfg.metadata else {}
        md["deployment"] = node.name
        md["model_group"] = node.group
        cfg = self.cfg.copy()  # the values set below are valid by construction: no re-validation
        cfg.metadata = md
        cfg.model_name = None
        if cfg.tracing is not None:
            from ..tracing import Route

            route = Route(self.group, node.group, node.name, len(self.attempts) + 1, self._round)
            cfg.tracing = cfg.tracing.routed(route)
        own = node.timeout
        if self.deadline is not None:
            left = max(0.001, self.deadline - time.monotonic())
            cfg.timeout = left if own is None or own > left else own
        elif own is not None:
            cfg.timeout = own
        return cfg

    # -- outcomes ----------------------------------------------------------------------------------
    def _record(self, node: Node, exc: LLMError, t0: float) -> None:
        self.attempts.append(
            Attempt(node.name, _short(exc), type(exc).__name__, round((time.perf_counter() - t0) * 1000, 3))
        )
        self.last_error = exc

    def _switch(self, groups: list[str]) -> None:
        self.groups = _dedup(groups)
        self.switched = True

    async def failed(self, node: Node, exc: LLMError, t0: float, probe: bool) -> bool:
        """Record a failed attempt and adapt the plan. True means: raise ``exc`` now (fail fast)."""
        r = self.router
        state = r._state_proxy
        self._record(node, exc, t0)
        now = time.time()
        if isinstance(exc, LLMRateLimitError):
            await state.record_failure(node.name, now, r.cooldown, trip_for=r.cooldown.cooldown_for(exc.retry_after))
            return False
        if isinstance(exc, LLMAuthenticationError):
            self.banned.add(node)
            await state.record_failure(node.name, now, r.cooldown, trip_for=r.cooldown.cooldown_time)
            return False
        if probe:  # the deployment answered (or never ran): it proved nothing, let another call probe
            await state.release_probe(node.name)
        if isinstance(exc, LLMConfigurationError):
            self.banned.add(node)
            return False
        if isinstance(exc, LLMContextWindowExceededError):
            self.banned.add(node)
            self.min_window = max(self.min_window or 0, node.window or 0)
            targets = r._cw.get(node.group, ())
            extra = [g for t in targets for g in r._chains[t]]
            self.cw_groups.update(extra)
            self._switch([node.group, *extra, *self.groups])
            return False
        if isinstance(exc, LLMContentFilterError):
            targets = r._cp.get(node.group, ())
            if not targets:
                return True
            self.banned.add(node)
            self._switch([g for t in targets for g in r._chains[t]])
            return False
        if isinstance(exc, LLMCapabilityError):
            # this deployment cannot make such a call at all (an embedding on a chat-only provider): another
            # may. Nothing was sent, so nothing counts against it.
            self.banned.add(node)
            return False
        if isinstance(exc, LLMBudgetExceededError):
            # refused before any provider call, and the refusal may be this deployment's own (no price, a
            # dearer worst case): another deployment may fit. Not the deployment's fault: no breaker count.
            self.banned.add(node)
            return False
        if isinstance(exc, (LLMInvalidRequestError, LLMUsageError)):
            return True
        # timeouts, 5xx, connection failures, broken replies, unknown LLMErrors: count toward the breaker
        if isinstance(exc, LLMTimeoutError):
            # a timeout was cut short, so its elapsed time flatters the deployment: count it as at least
            # twice the slowest latency seen there, so latency routing moves away from it
            seen = (node.ttft if self.stream else node.latency) or 0.0
            node.observe(2 * max(time.perf_counter() - t0, seen), r._alpha, first_token=self.stream)
        wait = getattr(exc, "retry_after", None)  # a 503/529 that said when to come back: believe it
        trip_for = r.cooldown.cooldown_for(wait) if wait else None
        await state.record_failure(node.name, now, r.cooldown, trip_for=trip_for)
        return False

    async def broken(self, node: Node, exc: LLMError, t0: float) -> None:
        """A stream failed after it had sent text: no fallback possible; count it against the deployment."""
        self._record(node, exc, t0)
        r = self.router
        if not isinstance(exc, LLMInvalidRequestError):
            trip_for = r.cooldown.cooldown_for(exc.retry_after) if isinstance(exc, LLMRateLimitError) else None
            await r._state_proxy.record_failure(node.name, time.time(), r.cooldown, trip_for=trip_for)

    async def succeeded(self, node: Node, st: Status, tokens: int, probe: bool) -> None:
        """Close a probed circuit, forget counted failures, add to counters: nothing to write otherwise."""
        counted = node.counted
        if probe or st.fails or counted:
            await self.router._state_proxy.record_success(
                node.name,
                time.time(),
                requests=1 if counted and node.rpm is None else 0,
                tokens=tokens if counted else 0,
                probe=probe,
                reset=st.fails > 0,
            )

    async def exhausted(self) -> LLMError:
        """The error to raise when the plan ran out without a success."""
        n = len(self.attempts)
        where = f"model group {self.group!r}"
        if len(self.groups) > 1:
            where += f" (tried groups: {', '.join(self.groups)})"
        if self.deadline is not None and self._expired():
            err: LLMError = LLMTimeoutError(
                f"no answer from {where} within {self.timeout} s after {n} attempt(s)"
                + "".join(f"; {a.deployment}: {a.error_type}" for a in self.attempts),
                provider="router",
                model=self.group,
            )
            err.__cause__ = self.last_error
            err.attempts = list(self.attempts)  # type: ignore[attr-defined]  # every try, as for a failure
            return err
        last = self.last_error
        if last is not None and isinstance(last, _SAME_KIND_RAISED):
            kind = type(last).__name__
            if all(a.error_type == kind for a in self.attempts):
                return last
        if not self.attempts:
            reasons = await self.router._blocked_reasons(self.groups)
            if self.retry_after is None:
                self.retry_after = await self.router._earliest_back(self.groups)
            return LLMProviderUnavailableError(
                f"no deployment of {where} can take a call now: {reasons or 'none matches'}",
                provider="router",
                model=self.group,
                retry_after=self.retry_after,
            )
        err = LLMProviderUnavailableError(
            f"all {n} attempt(s) failed for {where}",
            attempts=self.attempts,
            provider="router",
            model=self.group,
            retry_after=self.retry_after,
        )
        err.__cause__ = last
        return err
