"""RoutingPolicy: declarative rules that pick a provider/model chain per task, under cost caps and trust rules.

::

    policy = RoutingPolicy(rules=[{
        "task_type": "triage",
        "prefer": [{"provider": "openrouter", "model": "claude-haiku-4-5"}],
        "max_cost_per_1k": 0.5,
        "fallback": {"provider": "gemini", "model": "gemini-flash-1.5"},
    }])
    adapter = policy.resolve(task_type="triage")

A rule's candidates (each ``prefer`` item, then ``fallback``) are create_adapter keywords
(``provider``, ``model``, ``api_base``, ``api_key``, ``api_key_env``, ``timeout``, ``options``…),
``{"group": "fast"}`` (a group of the policy's router) or ``{"rule": "other_task"}`` (that rule's
candidates). Candidates priced above ``max_cost_per_1k`` (USD per 1000 tokens, blended input/output,
from Pricing.price_per_1k or a candidate's ``price_per_1k``) are skipped at resolve time; the rest
become a failover chain (a :class:`~llm_connect.routing.router.Router` with the ``ordered`` strategy),
so a candidate that is down at call time is passed over for the next one, with cooldowns.

Trust constraints (``deny_trust`` / ``allow_trust`` on a rule, or policy-wide ``constraints`` with a
``when`` match on the call's context) make :meth:`RoutingPolicy.resolve` raise
:class:`PolicyViolationError`. Every rule is validated at load; errors name the rule.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._batches import flatten
from ..adapter import LLMAdapter
from ..errors import LLMConfigurationError
from ..types import LLMResponse, Prompt, RunConfig, StreamChunk
from .deployment import Deployment
from .errors import PolicyConfigError, PolicyViolationError, RoutingPolicyError
from .health import CooldownPolicy, MemoryRouterState, RetryPolicy, RouterState
from .router import Router

if TYPE_CHECKING:
    from ..embeddings import EmbeddingInput, EmbeddingResponse

__all__ = ["Candidate", "ResolvedRoute", "RoutingPolicy", "Rule"]

_RULE_KEYS = frozenset(
    {
        "task_type",
        "when",
        "prefer",
        "fallback",
        "max_cost_per_1k",
        "deny_trust",
        "allow_trust",
        "strategy",
        "name",
        "description",
        "message",
    }
)
_CONSTRAINT_KEYS = frozenset({"task_type", "when", "deny_trust", "allow_trust", "message", "name"})
_POLICY_KEYS = frozenset(
    {"rules", "default", "constraints", "unknown_price", "num_retries", "retry", "cooldown", "timeout"}
)
_UNKNOWN_PRICE = ("allow", "skip")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One entry of a rule's chain: a deployment, a router group, or a reference to another rule."""

    label: str
    deployment: Deployment | None = None
    group: str | None = None
    rule: str | None = None


@dataclass(slots=True, eq=False)
class Rule:
    """A parsed rule. ``index`` is its position in ``rules`` (None for the default rule)."""

    index: int | None
    task_types: tuple[str, ...] | None
    when: dict[str, Any]
    prefer: list[Candidate]
    fallback: list[Candidate]
    max_cost_per_1k: Decimal | None = None
    deny_trust: frozenset[str] = frozenset()
    allow_trust: frozenset[str] | None = None
    strategy: str = "ordered"
    name: str | None = None
    message: str | None = None
    #: filled at load: the chain after rule references and the cost cap; and what the cap skipped
    route: list[Candidate] = field(default_factory=list)
    n_prefer: int = 0
    skipped: list[tuple[str, Decimal]] = field(default_factory=list)
    guard: _Constraint | None = None

    @property
    def label(self) -> str:
        if self.index is None:
            return "default rule"
        tt = "any" if self.task_types is None else ", ".join(repr(t) for t in self.task_types)
        return f"rule {self.index} (task_type {tt})"


def _err(
    where: str, msg: str, rule: Rule | None = None, *, index: int | None = None, task_type: str | None = None
) -> PolicyConfigError:
    if rule is not None:
        index = rule.index
        task_type = rule.task_types[0] if rule.task_types else None
    return PolicyConfigError(f"routing policy {where}: {msg}", rule_index=index, task_type=task_type)


def _str_set(value: Any, what: str, where: str) -> frozenset[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not all(isinstance(x, str) for x in items):
        raise _err(where, f"{what} must be a list of strings, got {value!r}")
    return frozenset(items)


def _matches(when: Mapping[str, Any], ctx: Mapping[str, Any]) -> bool:
    for k, v in when.items():
        cv = ctx.get(k)
        if isinstance(v, (list, tuple, set, frozenset)):
            if cv not in v:
                return False
        elif cv != v:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _Constraint:
    where: str
    task_types: tuple[str, ...] | None
    when: Mapping[str, Any]
    deny_trust: frozenset[str]
    allow_trust: frozenset[str] | None
    message: str | None

    def check(self, ctx: Mapping[str, Any], index: int | None) -> None:
        if self.task_types is not None and ctx.get("task_type") not in self.task_types:
            return
        if not _matches(self.when, ctx):
            return
        trust = ctx.get("trust")
        bad = (trust is not None and trust in self.deny_trust) or (
            self.allow_trust is not None and trust not in self.allow_trust
        )
        if bad:
            why = self.message or (
                f"trust {trust!r} is not allowed here"
                if trust in self.deny_trust
                else f"trust {trust!r} is not one of {sorted(self.allow_trust or ())}"
            )
            raise PolicyViolationError(
                f"routing policy {self.where} blocks this call (task_type {ctx.get('task_type')!r}): {why}",
                trust=trust,
                constraint=self.where,
                rule_index=index,
                task_type=ctx.get("task_type"),
            )


class ResolvedRoute(LLMAdapter):
    """What :meth:`RoutingPolicy.resolve` returns: the rule's failover chain as an adapter.

    ``candidates`` lists the chain in try order, ``skipped`` what the cost cap removed. Calls fill
    ``RunConfig.task_type`` with the resolved task type when the caller left it empty.
    """

    provider = "policy"
    #: the chain's deployments decide (one that cannot embed is passed over)
    supports_embeddings = True

    def __init__(self, rule: Rule, inner: LLMAdapter, task_type: str | None) -> None:
        self.rule = rule
        self.inner = inner
        self.task_type = task_type
        self.model = rule.label
        self.timeout = inner.timeout

    @property
    def candidates(self) -> list[str]:
        return [c.label for c in self.rule.route]

    @property
    def skipped(self) -> list[tuple[str, Decimal]]:
        return list(self.rule.skipped)

    def _cfg(self, config: RunConfig | None) -> RunConfig:
        cfg = config if config is not None else RunConfig()
        if cfg.task_type is None and self.task_type is not None:
            cfg = cfg.replace(task_type=self.task_type)
        return cfg

    async def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> LLMResponse:
        return await self.inner.async_execute_prompt(prompt, self._cfg(config))

    def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        return flatten(self.astream_batches(prompt, config))

    async def astream_batches(
        self, prompt: Prompt, config: RunConfig | None = None
    ) -> AsyncIterator[list[StreamChunk]]:
        agen = self.inner.astream_batches(prompt, self._cfg(config))
        try:
            async for batch in agen:
                yield batch
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    async def aembed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        return await self.inner.aembed(texts, self._cfg(config), dimensions=dimensions)

    def __repr__(self) -> str:
        return f"<ResolvedRoute {self.rule.label}: {' -> '.join(self.candidates)}>"


class RoutingPolicy(LLMAdapter):
    """Declarative routing rules (seed FR-2). See the module docstring and docs/routing.md.

    As an adapter itself, a call resolves with ``RunConfig.task_type``, ``metadata["trust"]``,
    ``metadata["autonomous"]`` and the rest of the metadata (plus ``tenant_id`` / ``agent``) as context.
    ``unknown_price``: under a cost cap, keep (``"allow"``, default) or skip (``"skip"``) unpriced candidates.
    """

    provider = "policy"
    #: the chain's deployments decide (one that cannot embed is passed over)
    supports_embeddings = True
    model = "policy"

    def __init__(
        self,
        rules: Sequence[Mapping[str, Any]] = (),
        *,
        router: Router | None = None,
        default: Mapping[str, Any] | str | None = None,
        constraints: Sequence[Mapping[str, Any]] = (),
        pricing: Any = None,
        unknown_price: str = "allow",
        num_retries: int = 0,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        cooldown: CooldownPolicy | Mapping[str, Any] | None = None,
        state: RouterState | None = None,
        timeout: float | None = None,
    ) -> None:
        if unknown_price not in _UNKNOWN_PRICE:
            raise _err("config", f"unknown_price must be one of {_UNKNOWN_PRICE}, got {unknown_price!r}")
        if isinstance(rules, Mapping) or not isinstance(rules, Sequence):
            raise _err("config", "rules must be a list of rule mappings")
        self.router = router
        self.unknown_price = unknown_price
        self._pricing = pricing
        self._pricing_loaded = pricing is not None
        try:
            base = RetryPolicy.from_config(retry)
            self.retry = dataclasses.replace(base, num_retries=num_retries) if retry is None else base
            self.cooldown = CooldownPolicy.from_config(cooldown)
        except LLMConfigurationError as exc:
            raise _err("config", exc.message) from exc
        self.state = state if state is not None else MemoryRouterState()
        self._call_timeout = timeout
        self.rules: list[Rule] = [self._parse_rule(r, i) for i, r in enumerate(rules)]
        self.default_rule: Rule | None = None
        if default is not None:
            bare = isinstance(default, Mapping) and not ({"prefer", "fallback"} & set(default))
            if isinstance(default, str) or bare:
                default = {"prefer": [default]}
            self.default_rule = self._parse_rule(default, None)
        self.constraints = [self._parse_constraint(c, i) for i, c in enumerate(constraints)]
        self._validate()
        self._lock = threading.Lock()
        self._adapters: dict[int, LLMAdapter] = {}
        self._owned_router: Router | None = None

    # -- loading -----------------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        router: Router | None = None,
        pricing: Any = None,
        state: RouterState | None = None,
    ) -> RoutingPolicy:
        """From the config's policy section: ``{"rules": [...], "default": ..., "constraints": [...], ...}``
        (a bare list is taken as the rules)."""
        if isinstance(config, Sequence) and not isinstance(config, (str, bytes)):
            config = {"rules": list(config)}
        if not isinstance(config, Mapping):
            raise _err("config", f"expected a mapping with 'rules', got {type(config).__name__}")
        unknown = sorted(set(config) - _POLICY_KEYS)
        if unknown:
            raise _err("config", f"unknown key(s) {unknown}; known: {sorted(_POLICY_KEYS)}")
        kw = {
            k: config[k]
            for k in ("default", "unknown_price", "num_retries", "retry", "cooldown", "timeout")
            if config.get(k) is not None
        }
        return cls(
            config.get("rules") or [],
            constraints=config.get("constraints") or [],
            router=router,
            pricing=pricing,
            state=state,
            **kw,
        )

    @classmethod
    def from_yaml(
        cls,
        source: str | os.PathLike[str],
        *,
        router: Router | None = None,
        pricing: Any = None,
        state: RouterState | None = None,
    ) -> RoutingPolicy:
        """From a YAML file path or YAML text. The document may be the policy section itself, a list of
        rules, or the whole config file with ``routing_policy:`` (or ``policy:``) and optionally ``router:``."""
        import yaml

        if isinstance(source, os.PathLike) or (
            isinstance(source, str)
            and "\n" not in source
            and source.endswith((".yaml", ".yml"))
            and Path(source).exists()
        ):
            text = Path(source).read_text(encoding="utf-8")
        else:
            text = str(source)
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _err("config", f"invalid YAML: {exc}") from exc
        owned = None
        if isinstance(doc, Mapping):
            if router is None and isinstance(doc.get("router"), Mapping):
                router = owned = Router.from_config(doc["router"])
            for key in ("routing_policy", "policy"):
                if key in doc:
                    doc = doc[key]
                    break
        policy = cls.from_config(doc or {}, router=router, pricing=pricing, state=state)
        policy._owned_router = owned
        return policy

    def _parse_candidate(self, obj: Any, where: str, rule: Rule) -> Candidate:
        if isinstance(obj, str):
            obj = {"group": obj} if ":" not in obj else {"model": obj}
        if not isinstance(obj, Mapping):
            raise _err(rule.label, f"{where} must be a mapping (provider/model, group or rule)", rule)
        if "group" in obj or "rule" in obj:
            kind = "group" if "group" in obj else "rule"
            if set(obj) != {kind} or not isinstance(obj[kind], str):
                raise _err(
                    rule.label, f"{where}: a {kind} reference is just {{'{kind}': '<name>'}}, got {dict(obj)}", rule
                )
            if kind == "group":
                if self.router is None:
                    raise _err(rule.label, f"{where} names group {obj['group']!r} but the policy has no router", rule)
                if not self.router.has_group(obj["group"]):
                    raise _err(
                        rule.label,
                        f"{where}: unknown router group {obj['group']!r}; groups: {', '.join(self.router.groups)}",
                        rule,
                    )
                return Candidate(f"group:{obj['group']}", group=obj["group"])
            return Candidate(f"rule:{obj['rule']}", rule=obj["rule"])
        try:
            d = Deployment.from_dict(obj, where=where)
        except LLMConfigurationError as exc:
            raise _err(rule.label, exc.message, rule) from exc
        from ..registry import provider_names

        known = provider_names()
        if d.provider not in known:
            raise _err(rule.label, f"{where}: unknown provider {d.provider!r}; known: {', '.join(known)}", rule)
        label = d.label + (f"@{d.api_base}" if d.api_base else "")
        return Candidate(label, deployment=dataclasses.replace(d, name=d.name or label))

    def _parse_rule(self, raw: Any, index: int | None) -> Rule:
        stub = Rule(index, None, {}, [], [])
        if not isinstance(raw, Mapping):
            raise _err(stub.label, f"must be a mapping, got {type(raw).__name__}", stub)
        tt = raw.get("task_type")
        if tt is not None and tt not in ("*", "default"):
            stub.task_types = tuple(sorted(_str_set(tt, "task_type", stub.label)))
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            raise _err(stub.label, f"unknown key(s) {unknown}; known: {sorted(_RULE_KEYS)}", stub)
        rule = stub
        when = raw.get("when") or {}
        if not isinstance(when, Mapping):
            raise _err(rule.label, "'when' must be a mapping of context keys to values", rule)
        rule.when = dict(when)
        prefer = raw.get("prefer") or []
        if isinstance(prefer, (Mapping, str)):
            prefer = [prefer]
        fallback = raw.get("fallback") or []
        if isinstance(fallback, (Mapping, str)):
            fallback = [fallback]
        rule.prefer = [self._parse_candidate(c, f"prefer[{i}]", rule) for i, c in enumerate(prefer)]
        rule.fallback = [self._parse_candidate(c, f"fallback[{i}]", rule) for i, c in enumerate(fallback)]
        if not rule.prefer and not rule.fallback:
            raise _err(rule.label, "has no candidates: give 'prefer' and/or 'fallback'", rule)
        cap = raw.get("max_cost_per_1k")
        if cap is not None:
            try:
                rule.max_cost_per_1k = Decimal(str(cap))
            except (InvalidOperation, ValueError):
                rule.max_cost_per_1k = None
            if isinstance(cap, bool) or rule.max_cost_per_1k is None or not rule.max_cost_per_1k > 0:
                raise _err(rule.label, f"max_cost_per_1k must be a positive number of USD, got {cap!r}", rule)
        if raw.get("deny_trust") is not None:
            rule.deny_trust = _str_set(raw["deny_trust"], "deny_trust", rule.label)
        if raw.get("allow_trust") is not None:
            rule.allow_trust = _str_set(raw["allow_trust"], "allow_trust", rule.label)
        rule.strategy = raw.get("strategy") or "ordered"
        from .strategies import STRATEGIES

        if rule.strategy not in STRATEGIES:
            raise _err(rule.label, f"unknown strategy {rule.strategy!r}; known: {', '.join(STRATEGIES)}", rule)
        rule.name = raw.get("name")
        rule.message = raw.get("message")
        if rule.deny_trust or rule.allow_trust is not None:
            rule.guard = _Constraint(rule.label, None, {}, rule.deny_trust, rule.allow_trust, rule.message)
        return rule

    def _parse_constraint(self, raw: Any, i: int) -> _Constraint:
        where = f"constraint {i}"
        if not isinstance(raw, Mapping):
            raise _err(where, "must be a mapping", index=i)
        unknown = sorted(set(raw) - _CONSTRAINT_KEYS)
        if unknown:
            raise _err(where, f"unknown key(s) {unknown}; known: {sorted(_CONSTRAINT_KEYS)}", index=i)
        when = raw.get("when") or {}
        if not isinstance(when, Mapping):
            raise _err(where, "'when' must be a mapping", index=i)
        deny = _str_set(raw.get("deny_trust") or [], "deny_trust", where)
        allow = _str_set(raw["allow_trust"], "allow_trust", where) if raw.get("allow_trust") is not None else None
        if not deny and allow is None:
            raise _err(where, "needs deny_trust or allow_trust", index=i)
        tt = raw.get("task_type")
        tts = tuple(sorted(_str_set(tt, "task_type", where))) if tt is not None else None
        label = f"{where} ({raw['name']})" if raw.get("name") else where
        return _Constraint(label, tts, dict(when), deny, allow, raw.get("message"))

    # -- validation --------------------------------------------------------------------------------
    def _all_rules(self) -> list[Rule]:
        return self.rules + ([self.default_rule] if self.default_rule is not None else [])

    def _find_rule(self, ref: str) -> Rule | None:
        for r in self.rules:
            if r.name == ref or (r.task_types is not None and ref in r.task_types):
                return r
        return None

    def _expand(self, rule: Rule, stack: list[Rule]) -> list[Candidate]:
        if rule in stack:
            path = " -> ".join(r.label for r in [*stack[stack.index(rule) :], rule])
            raise _err(stack[0].label, f"cycle in fallbacks: {path}", stack[0])
        out: list[Candidate] = []
        for c in [*rule.prefer, *rule.fallback]:
            if c.rule is None:
                out.append(c)
                continue
            target = self._find_rule(c.rule)
            if target is None:
                raise _err(rule.label, f"refers to rule {c.rule!r}, which no rule names or handles", rule)
            out += self._expand(target, [*stack, rule])
        return out

    def _price(self, c: Candidate) -> Decimal | None:
        if not self._pricing_loaded:
            self._pricing_loaded = True
            try:
                from ..providers.base import default_pricing

                self._pricing = default_pricing()
            except Exception:
                self._pricing = None
        pricing = self._pricing

        def one(d: Deployment) -> Decimal | None:
            if d.price_per_1k is not None:
                return d.price_per_1k
            if pricing is None:
                return None
            try:
                return pricing.price_per_1k(d.provider, d.model_name)
            except Exception:
                return None

        if c.deployment is not None:
            return one(c.deployment)
        assert self.router is not None and c.group is not None
        prices = [one(d) for d in self.router.groups[c.group]]
        return None if any(p is None for p in prices) else min(prices)  # type: ignore[type-var]

    def _validate(self) -> None:
        covered: set[str] = set()  # task types an earlier unconditional rule takes
        catch_all: Rule | None = None
        for rule in self.rules:
            if catch_all is not None:  # conditional or not, nothing after a catch-all is ever looked at
                raise _err(rule.label, f"can never match: {catch_all.label} already takes every call", rule)
            if rule.task_types is not None and set(rule.task_types) <= covered:
                raise _err(
                    rule.label,
                    f"can never match: an earlier rule already takes task_type {rule.task_types[0]!r}",
                    rule,
                )
            if not rule.when:
                if rule.task_types is None:
                    catch_all = rule
                else:
                    covered.update(rule.task_types)
        if catch_all is not None and self.default_rule is not None:
            raise _err(
                self.default_rule.label,
                f"can never be used: {catch_all.label} already takes every call",
                self.default_rule,
            )
        for rule in self._all_rules():
            seen: dict[str, str] = {}
            for section, cands in (("prefer", rule.prefer), ("fallback", rule.fallback)):
                for i, c in enumerate(cands):
                    where = f"{section}[{i}]"
                    if c.label in seen:
                        raise _err(
                            rule.label,
                            f"{where} ({c.label}) can never be reached: it is already tried as {seen[c.label]}",
                            rule,
                        )
                    seen[c.label] = where
            prefer = self._expand(Rule(rule.index, rule.task_types, {}, rule.prefer, []), [rule])
            chain = list({c.label: c for c in self._expand(rule, [])}.values())
            n_prefer = len({c.label for c in prefer})
            if rule.fallback and len(chain) == n_prefer:
                raise _err(
                    rule.label, "fallback can never be reached: every candidate it names is already preferred", rule
                )
            if rule.max_cost_per_1k is not None:
                cap = rule.max_cost_per_1k
                skipped: list[tuple[str, Decimal]] = []

                def ok(c: Candidate, cap: Decimal = cap, skipped: list[tuple[str, Decimal]] = skipped) -> bool:
                    p = self._price(c)
                    if p is not None and p > cap:
                        skipped.append((c.label, p))
                        return False
                    if p is None and self.unknown_price == "skip":
                        skipped.append((c.label, Decimal("NaN")))
                        return False
                    return True

                kept_prefer = [c for c in chain[:n_prefer] if ok(c)]
                kept_fallback = [c for c in chain[n_prefer:] if ok(c)]
                if not kept_prefer and not kept_fallback:
                    listing = ", ".join(f"{lbl} ({'unpriced' if p.is_nan() else f'{p:.4f}/1k'})" for lbl, p in skipped)
                    raise _err(rule.label, f"max_cost_per_1k {cap} is below every candidate: {listing}", rule)
                chain, n_prefer = kept_prefer + kept_fallback, len(kept_prefer)
                rule.skipped = skipped
            rule.route, rule.n_prefer = chain, n_prefer

    # -- resolving ---------------------------------------------------------------------------------
    def _match(self, ctx: Mapping[str, Any]) -> Rule:
        tt = ctx.get("task_type")
        for rule in self.rules:
            if (rule.task_types is None or tt in rule.task_types) and _matches(rule.when, ctx):
                return rule
        if self.default_rule is not None:
            return self.default_rule
        raise RoutingPolicyError(f"routing policy: no rule for task_type {tt!r} and no default rule", task_type=tt)

    def _adapter_for(self, rule: Rule) -> LLMAdapter:
        key = -1 if rule.index is None else rule.index
        a = self._adapters.get(key)
        if a is not None:
            return a
        with self._lock:
            a = self._adapters.get(key)
            if a is None:
                a = self._adapters[key] = self._build(rule)
        return a

    def _build(self, rule: Rule) -> LLMAdapter:
        route = rule.route
        if len(route) == 1 and route[0].group is not None and self.router is not None:
            return self.router.for_group(route[0].group)

        def dep(c: Candidate) -> Deployment:
            if c.deployment is not None:
                return c.deployment
            assert self.router is not None and c.group is not None
            return Deployment(adapter=self.router.for_group(c.group), name=c.label)

        prefer = [dep(c) for c in route[: rule.n_prefer]]
        fallback = [dep(c) for c in route[rule.n_prefer :]]
        groups = {k: v for k, v in (("prefer", prefer), ("fallback", fallback)) if v}
        return Router(
            groups,
            fallbacks={"prefer": ["fallback"]} if len(groups) == 2 else None,
            strategy=rule.strategy,
            retry=self.retry,
            cooldown=self.cooldown,
            state=self.state,
            timeout=self._call_timeout,
            pricing=self._pricing,
        )

    def resolve(
        self, task_type: str | None = None, trust: str | None = None, autonomous: bool = False, **context: Any
    ) -> ResolvedRoute:
        """The adapter for a call: the first rule matching ``task_type`` (and its ``when``), else the default.

        Raises PolicyViolationError when a trust constraint forbids the call, RoutingPolicyError when no
        rule applies.
        """
        ctx = {**context, "task_type": task_type, "trust": trust, "autonomous": autonomous}
        return self._resolve(ctx)

    def _resolve(self, ctx: Mapping[str, Any]) -> ResolvedRoute:
        for c in self.constraints:
            c.check(ctx, None)
        rule = self._match(ctx)
        if rule.guard is not None:
            rule.guard.check(ctx, rule.index)
        return ResolvedRoute(rule, self._adapter_for(rule), ctx.get("task_type"))

    def _context(self, cfg: RunConfig) -> dict[str, Any]:
        md = cfg.metadata or {}
        return {
            **md,
            "tenant_id": cfg.tenant_id,
            "agent": cfg.agent,
            "task_type": cfg.task_type,
            "trust": md.get("trust"),
            "autonomous": bool(md.get("autonomous", False)),
        }

    async def async_execute_prompt(self, prompt: Prompt, config: RunConfig | None = None) -> LLMResponse:
        cfg = config if config is not None else RunConfig()
        return await self._resolve(self._context(cfg)).async_execute_prompt(prompt, cfg)

    def astream(self, prompt: Prompt, config: RunConfig | None = None) -> AsyncIterator[StreamChunk]:
        return flatten(self.astream_batches(prompt, config))

    async def astream_batches(
        self, prompt: Prompt, config: RunConfig | None = None
    ) -> AsyncIterator[list[StreamChunk]]:
        """The stream of the chain the call's rule picks, a batch per upstream read (resolved at the first step:
        a refusal comes out of the stream, as any stream's error)."""
        cfg = config if config is not None else RunConfig()
        agen = self._resolve(self._context(cfg)).astream_batches(prompt, cfg)
        try:
            async for batch in agen:
                yield batch
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    async def aembed(
        self, texts: EmbeddingInput, config: RunConfig | None = None, *, dimensions: int | None = None
    ) -> EmbeddingResponse:
        """Embed on the chain the call's rule picks (by task_type, as for a chat call)."""
        cfg = config if config is not None else RunConfig()
        return await self._resolve(self._context(cfg)).aembed(texts, cfg, dimensions=dimensions)

    def describe(self) -> list[dict[str, Any]]:
        """Each rule: what it matches, its chain after the cost cap, what the cap skipped, trust limits."""
        out = []
        for r in self._all_rules():
            out.append(
                {
                    "rule": r.label,
                    "index": r.index,
                    "task_type": list(r.task_types) if r.task_types is not None else None,
                    "when": dict(r.when),
                    "candidates": [c.label for c in r.route],
                    "skipped": [
                        {"candidate": lbl, "price_per_1k": None if p.is_nan() else str(p)} for lbl, p in r.skipped
                    ],
                    "max_cost_per_1k": None if r.max_cost_per_1k is None else str(r.max_cost_per_1k),
                    "deny_trust": sorted(r.deny_trust),
                    "allow_trust": None if r.allow_trust is None else sorted(r.allow_trust),
                }
            )
        return out

    async def aclose(self) -> None:
        """Close the per-rule routers (and a router this policy built from YAML)."""
        for a in list(self._adapters.values()):
            if isinstance(a, Router):
                await a.aclose()
        if self._owned_router is not None:
            await self._owned_router.aclose()

    def __repr__(self) -> str:
        return f"<RoutingPolicy {len(self.rules)} rule(s){' + default' if self.default_rule else ''}>"
