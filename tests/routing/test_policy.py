"""RoutingPolicy (seed FR-2): the seed's example, cost caps, failover at call time, trust rules, validation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_connect import FakeAdapter, LLMAdapter, LLMConfigurationError, LLMError, RunConfig
from llm_connect.routing import (
    Deployment,
    PolicyConfigError,
    PolicyViolationError,
    ResolvedRoute,
    Router,
    RoutingPolicy,
    RoutingPolicyError,
)
from llm_connect.testing import MockReply, MockServer

from .conftest import hits


def seed_rule(mock: MockServer | None = None, **changes: Any) -> dict[str, Any]:
    """The seed's rule; with a mock server, both candidates point at it (no keys needed)."""
    prefer: dict[str, Any] = {"provider": "openrouter", "model": "claude-haiku-4-5"}
    fallback: dict[str, Any] = {"provider": "gemini", "model": "gemini-flash-1.5"}
    if mock is not None:
        prefer["api_base"] = mock.openai_base
        fallback["api_base"] = mock.url
    rule = {"task_type": "triage", "prefer": [prefer], "max_cost_per_1k": 0.5, "fallback": fallback}
    rule.update(changes)
    return rule


def test_the_seed_example_resolves() -> None:
    policy = RoutingPolicy(
        rules=[
            {
                "task_type": "triage",
                "prefer": [{"provider": "openrouter", "model": "claude-haiku-4-5"}],
                "max_cost_per_1k": 0.5,
                "fallback": {"provider": "gemini", "model": "gemini-flash-1.5"},
            }
        ]
    )
    adapter = policy.resolve(task_type="triage")
    assert isinstance(adapter, LLMAdapter) and isinstance(adapter, ResolvedRoute)
    assert adapter.candidates == ["openrouter:claude-haiku-4-5", "gemini:gemini-flash-1.5"]
    assert adapter.skipped == []


async def test_seed_policy_calls_the_preferred_then_falls_back_when_it_is_down(mock: MockServer) -> None:
    policy = RoutingPolicy(rules=[seed_rule(mock)], cooldown={"allowed_fails": 1, "cooldown_time": 30})
    adapter = policy.resolve(task_type="triage")
    resp = await adapter.async_execute_prompt("sort this ticket")
    assert (resp.provider, resp.model) == ("openrouter", "claude-haiku-4-5")

    mock.script(MockReply(model="claude-haiku-4-5", error="overloaded", repeat=True))
    resp = await adapter.async_execute_prompt("sort this ticket")
    assert (resp.provider, resp.model) == ("gemini", "gemini-flash-1.5")
    assert mock.last_request is not None and mock.last_request["format"] == "gemini"
    # the down preferred is now cooling down: the next calls go straight to the fallback
    before = hits(mock, "claude-haiku-4-5")
    mock.clear_scripts()
    for _ in range(2):
        assert (await adapter.async_execute_prompt("again")).provider == "gemini"
    assert hits(mock, "claude-haiku-4-5") == before
    # other task types resolving to the same endpoint share that health (one state per policy)
    assert policy.resolve(task_type="triage").inner is adapter.inner


async def test_preferred_over_the_cost_cap_is_skipped(mock: MockServer) -> None:
    # genai-prices: anthropic/claude-haiku-4.5 on OpenRouter is 0.003 USD/1k blended, gemini-flash-1.5 0.0001875
    rule = seed_rule(mock, max_cost_per_1k=0.001)
    rule["prefer"][0]["model"] = "anthropic/claude-haiku-4.5"
    policy = RoutingPolicy(rules=[rule])
    adapter = policy.resolve(task_type="triage")
    assert [c.split("@")[0] for c in adapter.candidates] == ["gemini:gemini-flash-1.5"]
    assert [(c.split("@")[0], p) for c, p in adapter.skipped] == [
        ("openrouter:anthropic/claude-haiku-4.5", Decimal("0.003"))
    ]
    resp = await adapter.async_execute_prompt("cheap please")
    assert resp.provider == "gemini"
    assert hits(mock, "anthropic/claude-haiku-4.5") == 0


def test_price_override_puts_the_seed_preferred_over_its_cap() -> None:
    rule = seed_rule()
    rule["prefer"][0]["price_per_1k"] = 0.8
    adapter = RoutingPolicy(rules=[rule]).resolve(task_type="triage")
    assert adapter.candidates == ["gemini:gemini-flash-1.5"]
    assert adapter.skipped == [("openrouter:claude-haiku-4-5", Decimal("0.8"))]


def test_unpriced_candidates_are_kept_or_skipped_on_request() -> None:
    rule = seed_rule()  # openrouter claude-haiku-4-5 has no known price
    assert RoutingPolicy(rules=[rule]).resolve(task_type="triage").candidates[0] == "openrouter:claude-haiku-4-5"
    skipping = RoutingPolicy(rules=[rule], unknown_price="skip").resolve(task_type="triage")
    assert skipping.candidates == ["gemini:gemini-flash-1.5"]


def test_trust_rule_blocks() -> None:
    policy = RoutingPolicy(
        rules=[
            {"task_type": "autonomous_action", "deny_trust": ["auto_apply"], "prefer": ["fake:careful"]},
            {"task_type": "triage", "prefer": ["fake:quick"]},
        ],
        constraints=[
            {
                "when": {"autonomous": True},
                "deny_trust": ["auto_apply"],
                "message": "never use auto_apply trust agents for autonomous actions",
            }
        ],
    )
    with pytest.raises(PolicyViolationError) as ei:
        policy.resolve(task_type="autonomous_action", trust="auto_apply")
    assert ei.value.rule_index == 0 and ei.value.trust == "auto_apply"
    assert "rule 0 (task_type 'autonomous_action')" in str(ei.value)
    assert isinstance(ei.value, RoutingPolicyError) and isinstance(ei.value, LLMError)
    assert policy.resolve(task_type="autonomous_action", trust="human_review").candidates == ["fake:careful"]
    # the policy-wide constraint: any task, when autonomous
    with pytest.raises(PolicyViolationError, match="never use auto_apply trust agents"):
        policy.resolve(task_type="triage", trust="auto_apply", autonomous=True)
    assert policy.resolve(task_type="triage", trust="auto_apply").candidates == ["fake:quick"]


def test_allow_trust_and_when_matching() -> None:
    policy = RoutingPolicy(
        rules=[
            {"task_type": "deploy", "when": {"tenant": ["acme"]}, "allow_trust": ["reviewed"], "prefer": ["fake:a"]},
            {"task_type": "deploy", "prefer": ["fake:b"]},
        ]
    )
    assert policy.resolve(task_type="deploy", trust="reviewed", tenant="acme").candidates == ["fake:a"]
    with pytest.raises(PolicyViolationError, match="not one of \\['reviewed'\\]"):
        policy.resolve(task_type="deploy", trust=None, tenant="acme")
    assert policy.resolve(task_type="deploy", tenant="other").candidates == ["fake:b"]


async def test_policy_is_an_adapter_resolving_from_the_run_config() -> None:
    policy = RoutingPolicy(
        rules=[{"task_type": "triage", "prefer": ["fake:t"]}, {"task_type": "write", "prefer": ["fake:w"]}],
        constraints=[{"when": {"autonomous": True}, "deny_trust": ["auto_apply"]}],
        default="fake:d",
    )
    assert (await policy.async_execute_prompt("x", RunConfig(task_type="write"))).model == "w"
    assert (await policy.async_execute_prompt("x")).model == "d"
    with pytest.raises(PolicyViolationError):
        await policy.async_execute_prompt("x", RunConfig(metadata={"trust": "auto_apply", "autonomous": True}))
    chunks = [c async for c in policy.astream("hi", RunConfig(task_type="triage"))]
    assert chunks[-1].model == "t"


async def test_resolved_route_fills_the_task_type_of_usage() -> None:
    from llm_connect.usage import UsageTracker

    tracker = UsageTracker()
    events = []
    tracker.subscribe(events.append)
    policy = RoutingPolicy(rules=[{"task_type": "triage", "prefer": ["fake:t"]}])
    await policy.resolve(task_type="triage").async_execute_prompt("x", RunConfig(usage_tracker=tracker))
    assert events[0].task_type == "triage" and events[0].metadata["deployment"] == "fake:t"


async def test_candidates_may_name_router_groups() -> None:
    router = Router(
        {"fast": [Deployment(adapter=FakeAdapter("f"), name="f")], "quality": [Deployment(adapter=FakeAdapter("q"))]}
    )
    policy = RoutingPolicy(
        rules=[
            {"task_type": "triage", "prefer": [{"group": "fast"}]},
            {"task_type": "write", "prefer": [{"group": "quality"}], "fallback": "fast"},
        ],
        router=router,
        default="quality",
    )
    assert (await policy.resolve(task_type="triage").async_execute_prompt("x")).model == "f"
    write = policy.resolve(task_type="write")
    assert write.candidates == ["group:quality", "group:fast"]
    assert (await write.async_execute_prompt("x")).model == "q"
    assert (await policy.resolve(task_type="other").async_execute_prompt("x")).model == "q"


async def test_rule_references_chain_rules() -> None:
    policy = RoutingPolicy(
        rules=[
            {"task_type": "summarise", "prefer": ["fake:s1"], "fallback": ["fake:s2"]},
            {"task_type": "triage", "prefer": ["fake:t"], "fallback": {"rule": "summarise"}},
        ]
    )
    assert policy.resolve(task_type="triage").candidates == ["fake:t", "fake:s1", "fake:s2"]


def test_no_rule_and_no_default() -> None:
    policy = RoutingPolicy(rules=[{"task_type": "triage", "prefer": ["fake:t"]}])
    with pytest.raises(RoutingPolicyError, match="no rule for task_type 'chat'"):
        policy.resolve(task_type="chat")


def test_from_yaml_text_and_file(tmp_path: Path) -> None:
    text = """
routing_policy:
  rules:
    - task_type: triage
      prefer:
        - {provider: openrouter, model: claude-haiku-4-5}
      max_cost_per_1k: 0.5
      fallback: {provider: gemini, model: gemini-flash-1.5}
    - task_type: autonomous_action
      deny_trust: [auto_apply]
      prefer: [{group: fast}]
  default: {group: fast}
router:
  groups:
    fast: ["fake:f"]
"""
    policy = RoutingPolicy.from_yaml(text)
    assert policy.router is not None and policy.router.has_group("fast")
    assert policy.resolve(task_type="triage").candidates == ["openrouter:claude-haiku-4-5", "gemini:gemini-flash-1.5"]
    path = tmp_path / "llm-connect.yaml"
    path.write_text(text)
    from_file = RoutingPolicy.from_yaml(path)
    with pytest.raises(PolicyViolationError):
        from_file.resolve(task_type="autonomous_action", trust="auto_apply")
    assert RoutingPolicy.from_yaml(str(path)).resolve(task_type="anything").candidates == ["group:fast"]
    assert from_file.describe()[0]["max_cost_per_1k"] == "0.5"


@pytest.mark.parametrize(
    ("rules", "extra", "message"),
    [
        (
            [seed_rule(prefer=[{"provider": "opnerouter", "model": "claude-haiku-4-5"}])],
            {},
            "rule 0 (task_type 'triage'): prefer[0]: unknown provider 'opnerouter'",
        ),
        (
            [
                {"task_type": "a", "prefer": ["fake:x"], "fallback": {"rule": "b"}},
                {"task_type": "b", "prefer": ["fake:y"], "fallback": {"rule": "a"}},
            ],
            {},
            "cycle in fallbacks: rule 0 (task_type 'a') -> rule 1 (task_type 'b') -> rule 0 (task_type 'a')",
        ),
        (
            [{"task_type": "triage", "prefer": ["fake:x", "fake:y"], "fallback": "fake:x"}],
            {},
            "rule 0 (task_type 'triage'): fallback[0] (fake:x) can never be reached: it is already tried as prefer[0]",
        ),
        (
            [{"task_type": "triage", "prefer": ["fake:x"]}, {"task_type": "triage", "prefer": ["fake:y"]}],
            {},
            "rule 1 (task_type 'triage'): can never match: an earlier rule already takes task_type 'triage'",
        ),
        (
            [{"prefer": ["fake:x"]}, {"task_type": "triage", "prefer": ["fake:y"]}],
            {},
            "rule 1 (task_type 'triage'): can never match: rule 0 (task_type any) already takes every call",
        ),
        (
            [
                seed_rule(
                    max_cost_per_1k=0.0001,
                    prefer=[{"provider": "openrouter", "model": "anthropic/claude-haiku-4.5"}],
                    fallback={"provider": "openai", "model": "gpt-4o-mini"},
                )
            ],
            {},
            "rule 0 (task_type 'triage'): max_cost_per_1k 0.0001 is below every candidate: "
            "openrouter:anthropic/claude-haiku-4.5 (0.0030/1k), openai:gpt-4o-mini (0.0004/1k)",
        ),
        (
            [{"prefer": ["fake:x"]}, {"task_type": "triage", "when": {"autonomous": True}, "prefer": ["fake:y"]}],
            {},
            "rule 1 (task_type 'triage'): can never match: rule 0 (task_type any) already takes every call",
        ),
        (
            [
                {"task_type": "a", "prefer": ["fake:x"]},
                {"task_type": "a", "when": {"trust": "x"}, "prefer": ["fake:y"]},
            ],
            {},
            "rule 1 (task_type 'a'): can never match: an earlier rule already takes task_type 'a'",
        ),
        (
            [{"prefer": ["fake:x"]}],
            {"default": {"prefer": ["fake:y"]}},
            "default rule: can never be used: rule 0 (task_type any) already takes every call",
        ),
        (
            [
                {"task_type": "a", "prefer": ["fake:x"], "fallback": {"rule": "b"}},
                {"task_type": "b", "prefer": ["fake:x"]},
            ],
            {},
            "rule 0 (task_type 'a'): fallback can never be reached: every candidate it names is already preferred",
        ),
        ([seed_rule(max_cost_per_1k=-1)], {}, "max_cost_per_1k must be a positive number"),
        ([{"task_type": "t", "prefer": [{"group": "fast"}]}], {}, "names group 'fast' but the policy has no router"),
        ([{"task_type": "t", "fallback": {"rule": "nope"}}], {}, "refers to rule 'nope'"),
        ([{"task_type": "t"}], {}, "rule 0 (task_type 't'): has no candidates"),
        ([{"task_type": "t", "prefer": ["fake:x"], "prefered": []}], {}, "unknown key(s) ['prefered']"),
        ([{"task_type": "t", "prefer": ["fake:x"], "strategy": "best"}], {}, "unknown strategy 'best'"),
        ([], {"constraints": [{"when": {"autonomous": True}}]}, "constraint 0: needs deny_trust or allow_trust"),
        ([], {"unknown_price": "maybe"}, "unknown_price must be one of"),
    ],
)
def test_bad_policies_are_rejected_naming_the_rule(rules: list, extra: dict, message: str) -> None:
    with pytest.raises(PolicyConfigError) as ei:
        RoutingPolicy(rules=rules, **extra)
    assert isinstance(ei.value, LLMConfigurationError)
    assert message in str(ei.value), str(ei.value)


def test_config_errors_carry_the_rule_index_and_task_type() -> None:
    with pytest.raises(PolicyConfigError) as ei:
        RoutingPolicy.from_config({"rules": [{"task_type": "ok", "prefer": ["fake:a"]}, {"task_type": "bad"}]})
    assert (ei.value.rule_index, ei.value.task_type) == (1, "bad")
    with pytest.raises(PolicyConfigError, match="unknown key\\(s\\) \\['rule'\\]"):
        RoutingPolicy.from_config({"rule": []})
    with pytest.raises(PolicyConfigError, match="unknown router group 'slow'; groups: fast"):
        RoutingPolicy(rules=[{"task_type": "t", "prefer": [{"group": "slow"}]}], router=Router({"fast": ["fake:f"]}))
