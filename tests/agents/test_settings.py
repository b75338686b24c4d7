"""The ``agents`` section of the YAML config: validation with errors naming the key, defaults, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_connect.agents import Agent, AgentConfigError, AgentSettings, load_settings
from llm_connect.agents.tasks import celery_config, make_app


def _cfg(agents: dict, **top: object) -> dict:
    return {"agents": agents, **top}


def test_full_section_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
redis: {url: "redis://127.0.0.1:6379/3", namespace: acme}
budgets: {max_tokens_per_thread: 5000, thresholds: [0.5, 0.9]}
agents:
  mode: in_process
  timeout: 30
  queue: acme-agents
  default_agent: ada
  max_output_tokens: 300
  personas:
    ada: {role: support, may_delegate_to: [rex]}
    rex: {role: research, model_preference: fast, max_tokens_per_thread: 900}
"""
    )
    s = load_settings(path, environ={})
    assert s.mode == "in_process" and s.call_timeout == 30 and s.queue == "acme-agents"
    assert s.redis_url == "redis://127.0.0.1:6379/3" and s.namespace == "acme"
    assert s.broker_url == "redis://127.0.0.1:6379/3" and s.effective_result_backend == s.broker_url
    assert s.thresholds == (0.5, 0.9) and s.max_tokens_per_thread == 5000
    assert s.agent().id == "ada" and s.agent("rex").model_preference == "fast"
    assert s.thread_cap(s.agent("ada")) == 5000 and s.thread_cap(s.agent("rex")) == 900
    assert s.output_cap(s.agent("rex")) == 300


def test_personas_are_keyed_by_id_and_carry_free_text_display_names(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
agents:
  default_agent: ada
  personas:
    ada: {name: Ada Lovelace, role: analyst, may_delegate_to: [obrien]}
    obrien: {name: "O'Brien", role: fact checker}
    jose: {name: José Núñez, role: support}
"""
    )
    s = load_settings(path, environ={})
    assert sorted(s.personas) == ["ada", "jose", "obrien"]
    assert (s.agent().id, s.agent().name) == ("ada", "Ada Lovelace")
    assert s.agent("obrien").name == "O'Brien" and s.agent("jose").name == "José Núñez"
    assert s.agent("ada").can_delegate_to("obrien")
    with pytest.raises(AgentConfigError, match="no such agent id"):
        s.agent("Ada Lovelace")  # lookups are by id, never by display name
    listed = AgentSettings.from_config(
        _cfg({"personas": [{"name": "Ada Lovelace", "role": "r"}, {"id": "rex", "name": "Rex", "role": "r"}]}),
        environ={},
    )
    assert sorted(listed.personas) == ["Ada-Lovelace", "rex"]
    with pytest.raises(AgentConfigError, match="control characters") as ei:
        AgentSettings.from_config(_cfg({"personas": {"ada": {"name": "Ada\u0007", "role": "r"}}}), environ={})
    assert ei.value.field == "agents.personas.ada.name"
    with pytest.raises(AgentConfigError) as ei:
        AgentSettings.from_config(_cfg({"personas": {"two words": {"role": "r"}}}), environ={})
    assert ei.value.field == "agents.personas.two words.id"


def test_defaults_and_env_overrides() -> None:
    s = AgentSettings.from_config({}, environ={})
    assert s.mode == "gateway" and s.broker_url == "redis://127.0.0.1:6379/0" and s.redis_url == s.broker_url
    env = {
        "LLM_CONNECT_BROKER_URL": "amqp://guest@127.0.0.1//",
        "LLM_CONNECT_AGENT_QUEUE": "q2",
        "LLM_CONNECT_GATEWAY_URL": "http://gw:8000/",
        "LLM_CONNECT_AGENT_MODE": "in_process",
    }
    s = AgentSettings.from_config({}, environ=env)
    assert s.broker_url.startswith("amqp://") and s.effective_result_backend == "rpc://"
    assert s.redis_url is None  # no Redis anywhere: in-memory history and budgets
    assert (s.queue, s.gateway_url, s.mode) == ("q2", "http://gw:8000", "in_process")


def test_rabbitmq_broker_builds_a_celery_app() -> None:
    s = AgentSettings(broker_url="amqp://guest:guest@127.0.0.1:5672//", queue="rq")
    app = make_app(s)
    assert app.conf.broker_url.startswith("amqp://") and app.conf.result_backend == "rpc://"
    assert app.conf.task_default_queue == "rq"
    assert celery_config(s)["accept_content"] == ["json"]


@pytest.mark.parametrize(
    ("agents", "where"),
    [
        ({"mode": "telepathy"}, "agents.mode"),
        ({"gateway_url": "ftp://x"}, "agents.gateway_url"),
        ({"timeout": "soon"}, "agents.timeout"),
        ({"max_output_tokens": 0}, "agents.max_output_tokens"),
        ({"personas": {"a": {"role": "r"}}, "default_agent": "b"}, "agents.default_agent"),
        ({"personas": {"a": {"role": "r", "may_delegate_to": ["ghost"]}}}, "agents.personas.a.may_delegate_to"),
        ({"personas": {"a": {"role": "r", "trust_level": "x"}}}, "agents.personas.a.trust_level"),
        ({"personas": [{"role": "r"}]}, "agents.personas[]"),
        ({"personas": "ada"}, "agents.personas"),
        ({"brokerurl": "x"}, "agents.brokerurl"),
        ({"queue": "two words"}, "agents.queue"),
    ],
)
def test_errors_name_the_key(agents: dict, where: str) -> None:
    with pytest.raises(AgentConfigError) as ei:
        AgentSettings.from_config(_cfg(agents), environ={})
    assert ei.value.field == where, str(ei.value)


def test_python_defined_agents_join_config_ones() -> None:
    s = AgentSettings.from_config(_cfg({"personas": {"a": {"role": "r"}}}), environ={}, personas=[Agent("b", "other")])
    assert sorted(s.personas) == ["a", "b"]
    with pytest.raises(AgentConfigError, match="both"):
        AgentSettings.from_config(_cfg({"personas": {"a": {"role": "r"}}}), environ={}, personas=[Agent("a", "x")])
    with pytest.raises(AgentConfigError, match="no such agent"):
        s.agent("zed")
    with pytest.raises(AgentConfigError, match="no default agent"):
        s.agent(None)


def test_package_exports_are_lazy_and_complete() -> None:
    import subprocess
    import sys

    import llm_connect.agents as pkg

    assert sorted(pkg.__all__) == sorted(pkg._EXPORTS) and all(getattr(pkg, n) is not None for n in pkg.__all__)
    code = "import sys, llm_connect.agents as a; a.build_system_prompt; a.run_agent; print('celery' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # only the tasks module imports Celery
