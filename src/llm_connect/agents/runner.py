"""Running an agent on a message: prompt with thread history, thread budget, model call, turn stored.

:class:`AgentRuntime` holds what one run needs (settings, model backend, thread history, budget store) and
is opened per event loop — a Celery task opens one inside its ``asyncio.run`` and closes it at the end::

    async with AgentRuntime(settings) as rt:
        reply = await rt.handle_message({"sender": {"id": "u1"}, "content": "Hi", "thread_id": "t1"})

Thread budgets (seed 003): every (tenant, thread, agent) gets a token budget of the agent's
``max_tokens_per_thread``. Before a call its worst case (prompt + max_tokens) is reserved on it — and on
every ancestor when the run is a delegated sub-task — so concurrent calls and delegation chains never spend
past a cap. Near the cap the call is sized to what is left (:mod:`.budgeting`: exact prompt counts, oldest
history turns dropped, max_tokens clamped with room kept for a next call), so a thread spends its budget
to the last tokens. A call whose spend crosses 75 / 90 / 95 % queues the BudgetWarning text, and the
agent's NEXT prompt carries it as a system message (once); the final call of a budget announces in its own
prompt what it may cross. A used-up thread gets a clear reply and no model call.
:meth:`AgentRuntime.cleanup_thread` frees a finished thread and records its final usage.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..budget import BudgetStore, BudgetTracker, MemoryBudgetStore, StoreUnavailableError, ThreadBudgetRegistry
from ..errors import LLMBudgetExceededError, LLMError
from .backend import GatewayBackend, InProcessBackend, ModelBackend, ModelReply
from .budgeting import MIN_REPLY_TOKENS, CallPlan, estimate_prompt_tokens, plan_call
from .history import ThreadHistory, open_history
from .models import Agent, AgentConfigError, InboundMessage, InvalidMessageError, MessageContent, Sender
from .prompts import build_messages, build_system_prompt
from .settings import AgentSettings, load_settings

__all__ = [
    "BUDGET_EXHAUSTED_REPLY",
    "DELEGATION_EXHAUSTED_REPLY",
    "FALLBACK_REPLY",
    "THREAD_BUDGET_PREFIX",
    "TOO_LARGE_REPLY",
    "AgentReply",
    "AgentRuntime",
    "run_agent",
    "run_agent_reply",
]

log = logging.getLogger("llm_connect.agents")

#: sent when the model cannot be reached (gateway down, all providers failing, …)
FALLBACK_REPLY = "I'm having trouble processing your request right now. Please try again in a moment."
#: sent instead of a model call when the thread's token budget is used up
BUDGET_EXHAUSTED_REPLY = (
    "This conversation has reached its token budget, so I can't continue it here. "
    "Please start a new conversation to go on."
)
#: a delegated sub-task whose budget (or an ancestor's) is used up
DELEGATION_EXHAUSTED_REPLY = "The token budget for this delegated task is used up, so it was not run."
TOO_LARGE_REPLY = "That message is too long for me to handle in one go. Please shorten it or split it up."
#: budget ids of agent thread budgets: f"{THREAD_BUDGET_PREFIX}{tenant}/{thread}/{agent}"
THREAD_BUDGET_PREFIX = "agent-thread:"


def thread_key(tenant_id: str | None, thread_id: str) -> str:
    return f"{tenant_id or '_'}/{thread_id}"


def thread_ref(tenant_id: str | None, thread_id: str, agent: str) -> str:
    return f"{thread_key(tenant_id, thread_id)}/{agent}"


@dataclass(slots=True)
class AgentReply:
    """The outcome of one agent run. ``status``: ok, budget_exhausted, fallback, refused, skipped, invalid.

    ``agent`` is the agent's id; ``agent_name`` its display name (None when no agent could be picked).
    """

    content: str
    agent: str
    status: str = "ok"
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: BudgetWarning texts injected into THIS prompt (crossed by earlier calls)
    warnings: list[str] = field(default_factory=list)
    #: the thread budget (or delegated sub-budget) after the call
    budget: dict[str, Any] | None = None
    #: what a further delegation from this reply needs (agent, tenant, thread, budget chain)
    delegation: dict[str, Any] | None = None
    error: str | None = None
    latency_ms: float = 0.0
    agent_name: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "agent": self.agent,
            "agent_name": self.agent_name,
            "status": self.status,
            "model": self.model,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "warnings": list(self.warnings),
            "budget": self.budget,
            "delegation": self.delegation,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 3),
        }


@functools.cache
def _memory_store(namespace: str) -> MemoryBudgetStore:
    # without Redis, thread budgets must outlive the per-task runtime: one store per process
    return MemoryBudgetStore()


def _budget_view(tracker: BudgetTracker, state: Any) -> dict[str, Any]:
    return {
        "budget_id": tracker.budget_id,
        "total": tracker.total,
        "spent": state.spent,
        "reserved": state.reserved,
        "remaining": state.remaining,
    }


class AgentRuntime:
    """Settings + model backend + thread history + budget store, for one event loop. See the module docstring.

    ``backend`` / ``history`` / ``budget_store`` may be injected (tests, embedding); by default they are built
    from ``settings``: the gateway or in-process backend per ``settings.mode``, Redis history and a
    RedisBudgetStore when ``settings.redis_url`` is set, else in-memory ones.
    """

    #: size calls near a thread budget's cap (exact counts, history dropped, landing kept: see .budgeting);
    #: False: the strict plan (the prompt's bound, max_tokens cut to what it leaves)
    fit_to_budget: bool = True

    def __init__(
        self,
        settings: AgentSettings | None = None,
        *,
        backend: ModelBackend | None = None,
        history: ThreadHistory | None = None,
        budget_store: BudgetStore | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        s = self.settings
        if backend is None:
            if s.mode == "gateway":
                tracing = None
                if s.config is not None and s.config.tracing.enabled:
                    from ..tracing import build_tracing

                    tracing = build_tracing(s.config.tracing)
                backend = GatewayBackend(
                    s.gateway_url, api_key=s.gateway_api_key, timeout=s.call_timeout, tracing=tracing
                )
            else:
                backend = InProcessBackend(s.config)
        self.backend = backend
        self.history = (
            history
            if history is not None
            else open_history(
                s.redis_url, namespace=s.namespace, ttl=s.history_ttl_seconds, max_messages=s.history_max_messages
            )
        )
        self._owns_store = budget_store is None
        if budget_store is None:
            if s.redis_url:
                from ..budget import RedisBudgetStore

                budget_store = RedisBudgetStore(s.redis_url, namespace=s.namespace)
            else:
                budget_store = _memory_store(s.namespace)
        self.store = budget_store
        self._registries: dict[int, ThreadBudgetRegistry] = {}

    async def __aenter__(self) -> AgentRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what this runtime opened in the running loop (HTTP session, Redis clients)."""
        for closer in (self.backend.aclose, self.history.aclose, self.store.aclose if self._owns_store else None):
            if closer is None:
                continue
            try:
                await closer()
            except Exception as exc:  # closing must never mask the reply
                log.debug("closing %r failed: %s", closer, exc)

    # -- budgets -------------------------------------------------------------------------------------------
    def registry(self, agent: Agent) -> ThreadBudgetRegistry:
        """The thread-budget registry for this agent's per-thread cap."""
        cap = self.settings.thread_cap(agent)
        reg = self._registries.get(cap)
        if reg is None:
            reg = self._registries[cap] = ThreadBudgetRegistry(
                cap,
                self.store,
                thresholds=self.settings.thresholds,
                on_unavailable=self.settings.on_unavailable,  # type: ignore[arg-type]
                id_prefix=THREAD_BUDGET_PREFIX,
            )
        return reg

    def thread_tracker(self, tenant_id: str | None, thread_id: str, agent: Agent) -> BudgetTracker:
        return self.registry(agent).tracker(thread_ref(tenant_id, thread_id, agent.id))

    def chain_tracker(self, chain: Sequence[Mapping[str, Any]]) -> BudgetTracker:
        """Rebuild a delegation chain ``[{"budget_id", "total"}, ...]`` (root first) on this runtime's store."""
        if not chain:
            raise ValueError("a budget chain needs at least its root")
        root = chain[0]
        tracker = BudgetTracker(
            root.get("total"),
            store=self.store,
            budget_id=str(root["budget_id"]),
            thresholds=self.settings.thresholds,
            on_unavailable=self.settings.on_unavailable,  # type: ignore[arg-type]
        )
        for link in chain[1:]:
            tracker = tracker.child(link.get("total"), budget_id=str(link["budget_id"]))
        return tracker

    async def _queue_warnings(self, warnings: Sequence[Any]) -> None:
        """Queue each crossed warning of a thread budget for that thread's next prompt."""
        for w in warnings:
            if w.budget_id.startswith(THREAD_BUDGET_PREFIX):
                ref = w.budget_id[len(THREAD_BUDGET_PREFIX) :]
                try:
                    await self.history.push_notes(ref, [w.as_system_message()])
                except Exception as exc:
                    log.warning("could not queue a budget warning for %s: %s", ref, exc)
            log.info("budget %s crossed %.0f%%: %s of %s tokens", w.budget_id, w.threshold * 100, w.spent, w.total)

    async def _requeue(self, ref: str, notes: Sequence[str]) -> None:
        """Notes that never reached the model go back in the queue for the next prompt."""
        if notes:
            try:
                await self.history.push_notes(ref, notes)
            except Exception as exc:
                log.debug("could not re-queue notes for %s: %s", ref, exc)

    # -- one run -----------------------------------------------------------------------------------------
    async def run(
        self,
        message: InboundMessage,
        agent: Agent,
        *,
        tracker: BudgetTracker | None = None,
        chain: Sequence[Mapping[str, Any]] | None = None,
        use_history: bool = True,
    ) -> AgentReply:
        """Run ``agent`` on ``message``. Raises LLMError when the model call fails (callers decide the fallback).

        Without ``tracker`` the run uses the thread budget of (tenant, thread, agent) and its history; a
        delegated run passes the sub-budget ``tracker`` and its ``chain`` (and usually no history).
        """
        start = time.perf_counter()
        s = self.settings
        thread_id = message.conversation_id
        delegated = tracker is not None
        ref = thread_ref(message.tenant_id, thread_id, agent.id)
        if tracker is None:
            tracker = self.thread_tracker(message.tenant_id, thread_id, agent)
            chain = [{"budget_id": tracker.budget_id, "total": tracker.total}]
        chain = list(chain or [])

        history: list[dict[str, Any]] = []
        notes: list[str] = []
        if use_history:
            try:
                history = await self.history.load(ref)
                notes = await self.history.pop_notes(ref)
            except Exception as exc:  # history is a convenience: answer without it rather than fail
                log.warning(
                    "thread history unavailable for %s (%s: %s); answering without it", ref, type(exc).__name__, exc
                )
        system = build_system_prompt(agent)

        delegation = {
            "agent": agent.id,
            "tenant_id": message.tenant_id,
            "thread_id": thread_id,
            "chain": chain,
        }
        exhausted = AgentReply(
            DELEGATION_EXHAUSTED_REPLY if delegated else BUDGET_EXHAUSTED_REPLY,
            agent.id,
            status="budget_exhausted",
            delegation=delegation,
            agent_name=agent.name,
        )

        async def count(msgs: Sequence[Mapping[str, Any]]) -> int | None:
            try:
                return await self.backend.count_tokens(agent.model_preference, msgs)
            except LLMError as exc:  # counting is an optimisation: the bound still holds
                log.info("agent %s: could not count the prompt (%s); using the bound", agent.id, exc)
                return None

        alone = estimate_prompt_tokens(build_messages(system, message.text))
        if tracker.total is not None and alone + MIN_REPLY_TOKENS > tracker.total:
            exact_alone = await count(build_messages(system, message.text))
            alone = alone if exact_alone is None else exact_alone
        if tracker.total is not None and alone + min(MIN_REPLY_TOKENS, s.output_cap(agent)) > tracker.total:
            # no thread budget of this size could ever take it: the message is too large, not the thread spent
            await self._requeue(ref, notes)
            return AgentReply(
                TOO_LARGE_REPLY,
                agent.id,
                status="invalid",
                error=f"the message needs ~{alone} tokens; the thread budget is {tracker.total}",
                delegation=delegation,
                agent_name=agent.name,
            )
        plan: CallPlan | None = None
        try:
            for attempt in range(3):  # a concurrent call may take the room between plan and reserve
                plan = await plan_call(
                    tracker, count, system, message.text, history, notes, s.output_cap(agent), fit=self.fit_to_budget
                )
                if plan is None:
                    raise LLMBudgetExceededError("no room left", budget_id=tracker.budget_id)
                try:
                    reservation = await tracker.areserve(plan.reserve, label=f"agent:{agent.id}")
                    break
                except LLMBudgetExceededError as exc:
                    if exc.unit is None or attempt == 2:
                        raise
        except LLMBudgetExceededError as exc:
            await self._requeue(ref, notes)
            if isinstance(exc.__cause__, StoreUnavailableError):
                raise  # the budget store is down (fail_closed): a failure, not a spent budget
            log.info("agent %s: budget %s has no room for a call (%s); no model call", agent.id, exc.budget_id, exc)
            exhausted.error = str(exc)
            try:
                exhausted.budget = _budget_view(tracker, await tracker.astate())
            except LLMError:
                pass
            exhausted.latency_ms = (time.perf_counter() - start) * 1000
            return exhausted
        assert plan is not None
        messages, max_tokens = plan.messages, plan.max_tokens
        if plan.dropped:
            log.info("agent %s: %d history messages left out to fit budget %s", agent.id, plan.dropped, ref)

        try:
            reply: ModelReply = await self.backend.complete(
                agent.model_preference,
                messages,
                max_tokens=max_tokens,
                temperature=agent.temperature,
                tenant_id=message.tenant_id,
                agent=agent.id,
                thread_id=thread_id,
                timeout=s.call_timeout,
            )
        except BaseException:
            await reservation.arelease()
            await self._requeue(ref, notes)
            raise

        warnings = await reservation.asettle(reply.total_tokens)
        # a threshold this prompt already announced (the final call) is not announced again
        await self._queue_warnings(
            [w for w in warnings if not (w.budget_id == tracker.budget_id and w.threshold in plan.previewed)]
        )
        try:
            budget_view: dict[str, Any] | None = _budget_view(tracker, await tracker.astate())
        except LLMError as exc:  # the answer stands even if the numbers cannot be read back
            log.warning("could not read budget %s after the call: %s", tracker.budget_id, exc)
            budget_view = None
        key = thread_key(message.tenant_id, thread_id)
        try:
            if use_history:
                await self.history.append(
                    ref, [{"role": "user", "content": message.text}, {"role": "assistant", "content": reply.content}]
                )
            await self.history.note_turn(
                key,
                agent.id,
                reply.prompt_tokens,
                reply.completion_tokens,
                member=not delegated,
                budget_id=tracker.budget_id if delegated else None,
            )
        except Exception as exc:
            log.warning("could not store the turn of %s (%s: %s)", ref, type(exc).__name__, exc)
        return AgentReply(
            reply.content,
            agent.id,
            model=reply.model,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            warnings=[*notes, *plan.previews],
            budget=budget_view,
            delegation=delegation,
            latency_ms=(time.perf_counter() - start) * 1000,
            agent_name=agent.name,
        )

    # -- surfaces used by the Celery tasks (never raise) ----------------------------------------------------
    @staticmethod
    def _envelope(msg: InboundMessage | None, reply: AgentReply) -> dict[str, Any]:
        out = reply.to_dict()
        out["id"] = uuid.uuid4().hex
        if msg is not None:
            out.update(
                reply_to=msg.id,
                thread_id=msg.conversation_id,
                tenant_id=msg.tenant_id,
                channel=msg.channel,
                channel_metadata=dict(msg.channel_metadata),
            )
        return out

    async def handle_message(self, data: Any, agent: str | None = None) -> dict[str, Any]:
        """Validate ``data``, pick the agent (``agent``, else ``context["agent"]``, else the default), run it,
        and return the reply dict. Every failure becomes a reply: the polite fallback, logged."""
        msg: InboundMessage | None = None
        persona: Agent | None = None
        name = agent or "?"
        try:
            msg = InboundMessage.from_dict(data)
            name = agent or msg.context.get("agent") or None
            persona = self.settings.agent(name)
            name = persona.id
            reply = await self.run(msg, persona)
        except (InvalidMessageError, AgentConfigError) as exc:
            log.warning("message refused (%s): %s", type(exc).__name__, exc)
            status = "invalid" if isinstance(exc, InvalidMessageError) else "refused"
            reply = AgentReply(FALLBACK_REPLY, str(name or "?"), status=status, error=str(exc))
        except LLMError as exc:
            log.warning(
                "agent %s: the model call failed (%s: %s); sent the fallback reply", name, type(exc).__name__, exc
            )
            reply = AgentReply(FALLBACK_REPLY, str(name), status="fallback", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            log.exception("agent %s: unexpected failure; sent the fallback reply", name)
            reply = AgentReply(FALLBACK_REPLY, str(name), status="fallback", error=f"{type(exc).__name__}: {exc}")
        if reply.agent_name is None and persona is not None:
            reply.agent_name = persona.name
        return self._envelope(msg, reply)

    async def delegate(
        self,
        parent: Mapping[str, Any],
        to_agent: str,
        content: str | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Run ``to_agent`` on a sub-task of ``parent`` (a reply dict of handle_message or delegate) under a
        sub-budget of ``max_tokens`` (None: bounded only by the parent's chain). ``content`` defaults to the
        parent's reply text. Spend counts against every budget up the chain, in whatever process it runs."""
        d = parent.get("delegation") if isinstance(parent, Mapping) else None
        try:
            if not isinstance(d, Mapping) or not d.get("chain"):
                raise InvalidMessageError("delegation", "the parent reply carries no delegation context")
            src = self.settings.agent(str(d["agent"]))
            target = self.settings.agent(to_agent)
        except (InvalidMessageError, AgentConfigError) as exc:
            log.warning("delegation refused: %s", exc)
            return self._envelope(None, AgentReply("", to_agent, status="refused", error=str(exc)))
        if not src.can_delegate_to(target.id):
            text = f"agent {src.id!r} may not delegate to {target.id!r} (may_delegate_to: {list(src.may_delegate_to)})"
            log.warning("delegation refused: %s", text)
            return self._envelope(
                None,
                AgentReply("", target.id, status="refused", error=text, delegation=dict(d), agent_name=target.name),
            )
        if parent.get("status") != "ok" and content is None:
            # nothing to work on: a chain stops cleanly at the first step that did not run
            return self._envelope(
                None,
                AgentReply(
                    "",
                    target.id,
                    status="skipped",
                    error=f"parent status {parent.get('status')!r}",
                    delegation={**d, "agent": target.id},
                    agent_name=target.name,
                ),
            )
        text = content if content is not None else str(parent.get("content") or "")
        chain = [dict(c) for c in d["chain"]]
        sub_id = f"{chain[-1]['budget_id']}>{target.id}-{uuid.uuid4().hex[:8]}"
        chain.append({"budget_id": sub_id, "total": max_tokens})
        msg = InboundMessage(
            id=uuid.uuid4().hex,
            channel="delegation",
            sender=Sender(src.id, src.name, is_bot=True),
            content=MessageContent(text or "(no content)"),
            timestamp=datetime.now(UTC),
            tenant_id=d.get("tenant_id"),
            thread_id=d.get("thread_id"),
            reply_to=parent.get("id"),
            context={"delegated_by": src.id},
        )
        try:
            tracker = self.chain_tracker(chain)
            reply = await self.run(msg, target, tracker=tracker, chain=chain, use_history=False)
        except LLMError as exc:
            log.warning("delegated agent %s: the model call failed (%s: %s)", target.id, type(exc).__name__, exc)
            reply = AgentReply(
                FALLBACK_REPLY,
                target.id,
                status="fallback",
                error=f"{type(exc).__name__}: {exc}",
                delegation={**d, "agent": target.id, "chain": chain},
                agent_name=target.name,
            )
        except Exception as exc:
            log.exception("delegated agent %s: unexpected failure", target.id)
            reply = AgentReply(
                FALLBACK_REPLY,
                target.id,
                status="fallback",
                error=f"{type(exc).__name__}: {exc}",
                agent_name=target.name,
            )
        return self._envelope(msg, reply)

    async def cleanup_thread(self, thread_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        """End a thread: free its budgets, history and notes; record and return its final usage.

        The record: ``{thread_id, tenant_id, ended_at, total_tokens, agents: {id: {prompt_tokens,
        completion_tokens, turns}}, budgets: {id: final thread budget}}``. ``total_tokens`` is what the
        thread budgets were charged (delegated sub-tasks included).
        """
        for name, value in (("thread_id", thread_id), ("tenant_id", tenant_id)):
            if value is None and name == "tenant_id":
                continue
            if not isinstance(value, str) or not value or len(value) > 128 or not value.isprintable():
                raise InvalidMessageError(name, "must be a printable id of at most 128 characters")
        key = thread_key(tenant_id, thread_id)
        state = await self.history.thread_state(key)
        budgets: dict[str, Any] = {}
        refs: list[str] = []
        for name in state.members:
            persona = self.settings.personas.get(name)
            reg = (
                self.registry(persona)
                if persona is not None
                else ThreadBudgetRegistry(
                    self.settings.max_tokens_per_thread, self.store, id_prefix=THREAD_BUDGET_PREFIX
                )
            )
            ref = thread_ref(tenant_id, thread_id, name)
            refs.append(ref)
            final = await asyncio.to_thread(reg.cleanup_thread, ref)
            if final is not None:
                st = final.state()
                budgets[name] = {
                    "budget_id": final.tracker.budget_id,
                    "max_tokens": final.max_tokens,
                    "total_tokens": st.spent + st.overrun,
                    "overrun": st.overrun,
                    "triggered_thresholds": sorted(final.triggered_thresholds),
                }
        if state.budgets:  # delegated sub-budgets opened under the thread: a registry without a prefix
            dropper = ThreadBudgetRegistry(1, self.store, id_prefix="")  # forgets a budget by its full id
            for bid in state.budgets:
                try:
                    await asyncio.to_thread(dropper.cleanup_thread, bid)
                except Exception as exc:
                    log.debug("could not drop sub-budget %s: %s", bid, exc)
        await self.history.forget(key, refs)
        record = {
            "thread_id": thread_id,
            "tenant_id": tenant_id,
            "ended_at": datetime.now(UTC).isoformat(),
            "total_tokens": sum(b["total_tokens"] for b in budgets.values()),
            "agents": state.usage,
            "budgets": budgets,
        }
        await self.history.record_final(key, record)
        log.info(
            "thread %s ended: %d tokens (%s)",
            key,
            record["total_tokens"],
            ", ".join(f"{n}={b['total_tokens']}" for n, b in budgets.items()) or "no calls",
        )
        return record


async def run_agent_reply(
    msg: InboundMessage | Mapping[str, Any],
    agent: Agent | str | None = None,
    *,
    settings: AgentSettings | None = None,
    runtime: AgentRuntime | None = None,
) -> AgentReply:
    """Run one agent on message ``msg`` and return the whole :class:`AgentReply` (status, usage, budget, …).

    ``agent`` is an :class:`Agent` or an agent id (None: ``message.context["agent"]``, else the default
    agent). Uses ``runtime`` if given (else opens one from ``settings`` / the config and closes it). Model
    failures give the polite fallback reply (status "fallback"); a used-up thread gives status
    "budget_exhausted". An invalid message or an unknown agent raises (InvalidMessageError, AgentConfigError).
    """
    inbound = InboundMessage.from_dict(msg)
    rt = runtime if runtime is not None else AgentRuntime(settings)
    try:
        persona = agent if isinstance(agent, Agent) else rt.settings.agent(agent or inbound.context.get("agent"))
        try:
            return await rt.run(inbound, persona)
        except LLMError as exc:
            log.warning(
                "agent %s: the model call failed (%s: %s); sent the fallback reply",
                persona.id,
                type(exc).__name__,
                exc,
            )
            return AgentReply(
                FALLBACK_REPLY,
                persona.id,
                status="fallback",
                error=f"{type(exc).__name__}: {exc}",
                agent_name=persona.name,
            )
    finally:
        if runtime is None:
            await rt.aclose()


async def run_agent(
    msg: InboundMessage | Mapping[str, Any],
    agent: Agent | str | None = None,
    *,
    settings: AgentSettings | None = None,
    runtime: AgentRuntime | None = None,
) -> str:
    """Seed 002's ``async def run_agent(msg, agent) -> str``: the agent's reply text.

    The text is what the user should see: the model's answer, or the polite fallback when the model cannot
    be reached, or the budget message of a used-up thread. :func:`run_agent_reply` returns the same run as
    an :class:`AgentReply` (status, usage, budget, warnings) for callers that need more than the text.
    """
    reply = await run_agent_reply(msg, agent, settings=settings, runtime=runtime)
    return reply.content
