"""The config's typed models: its JSON Schema, the files and docs it must accept, YAML 1.1's traps, the CLI."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from llm_connect.cli import app
from llm_connect.config import json_schema, load_config, parse_config, read_yaml
from llm_connect.config import sections as S

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
TOP = set(S.ConfigFile.model_fields)


class _AnyEnv(dict):
    """Every ${VAR} is set (to a value long enough to be an API key)."""

    def get(self, key: str, default: Any = None) -> str:
        return super().get(key, "placeholder-0123456789")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


@pytest.fixture(scope="module")
def validator(schema):
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _config_blocks() -> list[tuple[str, str]]:
    """Every ```yaml block of the docs that is a config file (its top-level keys are config sections)."""
    out = []
    for doc in DOCS:
        for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)):
            data = read_yaml(m.group(1))
            if isinstance(data, Mapping) and data and set(data) <= TOP:
                out.append((f"{doc.name}#{i}", m.group(1)))
    return out


def test_examples_exist_and_docs_show_configs():
    assert EXAMPLES, "examples/*.yaml"
    names = [n for n, _ in _config_blocks()]
    assert any(n.startswith("gateway.md") for n in names), names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_validates(path, validator):
    data = read_yaml(path.read_text(encoding="utf-8"))
    errors = sorted(validator.iter_errors(data), key=str)
    assert not errors, errors[0].message
    load_config(path, environ=_AnyEnv())


@pytest.mark.parametrize(("name", "text"), _config_blocks(), ids=[n for n, _ in _config_blocks()])
def test_every_config_shown_in_the_docs_validates(name, text, validator):
    data = read_yaml(text)
    errors = sorted(validator.iter_errors(data), key=str)
    assert not errors, f"{name}: {errors[0].json_path}: {errors[0].message}"
    parse_config(data, source=name, environ=_AnyEnv())


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """The object schemas a node may be (through $ref and anyOf)."""
    if "$ref" in node:
        return _resolve(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
    if "anyOf" in node:
        return [s for alt in node["anyOf"] for s in _resolve(schema, alt)]
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return _resolve(schema, node["items"])
    return [node]


def _key_paths(data: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(data, Mapping):
        for k, v in data.items():
            out.append(f"{prefix}{k}")
            out.extend(_key_paths(v, f"{prefix}{k}."))
    elif isinstance(data, list):
        for v in data:
            out.extend(_key_paths(v, prefix))
    return out


def _in_schema(schema: dict[str, Any], path: str) -> bool:
    nodes = [schema]
    for key in path.split("."):
        nxt = []
        for n in nodes:
            for obj in _resolve(schema, n):
                if key in obj.get("properties", {}):
                    nxt.append(obj["properties"][key])
                elif isinstance(obj.get("additionalProperties"), dict):  # a name chosen by the user
                    nxt.append(obj["additionalProperties"])
                elif obj.get("additionalProperties") is True or obj == {}:
                    nxt.append({})
        if not nxt:
            return False
        nodes = nxt
    return True


def test_each_documented_key_appears_in_the_schema(schema):
    """Every key of the configuration reference in docs/gateway.md is a property the schema describes."""
    text = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    block = text.split("## Configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    paths = _key_paths(read_yaml(block))
    assert len(paths) > 60
    missing = [p for p in paths if not _in_schema(schema, p)]
    assert not missing, missing
    for section in TOP:  # and every section has a description for editors
        assert schema["properties"][section], section


def test_schema_refuses_typos_and_wrong_types(validator):
    assert not list(validator.iter_errors({"server": {"port": 8080}, "ledger": {"url": "off"}}))
    assert not list(validator.iter_errors({"server": {"port": "${PORT:-8080}"}}))  # interpolated numbers
    assert list(validator.iter_errors({"server": {"prot": 8080}}))
    assert list(validator.iter_errors({"servr": {}}))
    assert list(validator.iter_errors({"server": {"port": "eighty"}}))
    assert list(validator.iter_errors({"tenants": {"a": {"budget": {"period": "weekly", "tokens": 1}}}}))


def test_schema_key_sets_match_the_loaders_of_their_sections():
    """router / policies / agents are validated in full by their own loaders; the schema lists the same keys."""
    from llm_connect.agents import models as agent_models
    from llm_connect.agents import settings as agent_settings
    from llm_connect.routing import deployment, health, policy, router
    from llm_connect.usage import pricing

    def fields(model: type) -> set[str]:
        return set(model.model_fields)

    assert fields(S.RouterSection) == set(router._CONFIG_KEYS)
    assert fields(S.DeploymentEntry) == set(deployment._KEYS)
    assert fields(S.RetrySection) == {f.name for f in dataclasses.fields(health.RetryPolicy)}
    assert fields(S.CooldownSection) == {f.name for f in dataclasses.fields(health.CooldownPolicy)}
    assert fields(S.PolicySection) == set(policy._POLICY_KEYS)
    assert fields(S.RuleEntry) == set(policy._RULE_KEYS)
    assert fields(S.ConstraintEntry) == set(policy._CONSTRAINT_KEYS)
    assert fields(S.AgentsSection) == set(agent_settings._KEYS)
    assert fields(S.PersonaEntry) == {f.name for f in dataclasses.fields(agent_models.Agent)}
    assert fields(S.PriceEntry) == set(pricing._OVERRIDE_KEYS)


# ---------------------------------------------------------------------------------------------- YAML 1.1 traps


def _load(tmp_path: Path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return load_config(p, environ={})


def test_ledger_url_off_as_documented_turns_the_ledger_off(tmp_path):
    assert _load(tmp_path, "ledger: {url: off}\n").ledger is None
    assert _load(tmp_path, "ledger: off\n").ledger is None
    assert _load(tmp_path, "ledger:\n  url: none\n").ledger is None
    assert parse_config({"ledger": {"url": False}}).ledger is None  # a mapping built in Python
    assert _load(tmp_path, "ledger: {url: default}\n").ledger is not None


def test_period_none_as_documented_never_resets(tmp_path):
    cfg = _load(tmp_path, "tenants:\n  acme: {budget: {tokens: 100, period: none}}\n")
    budget = cfg.tenants["acme"].budget
    assert budget is not None and budget.period is None and budget.tokens == 100
    assert _load(tmp_path, "tenants: {a: {budget: {usd: 1, period: monthly}}}\n").tenants["a"].budget.period == (
        "monthly"
    )


def test_yaml_12_scalars_stay_what_they_look_like(tmp_path):
    cfg = _load(
        tmp_path,
        "server: {port: 010, access_log: yes}\n"  # 010 is ten (1.1: eight); yes is still a boolean *value*
        "models: {no: 'fake:echo', n: 'ollama:llama3:8b'}\n"
        "default_model: 'no'\n",
    )
    assert cfg.server.port == 10 and cfg.server.access_log is True
    assert set(cfg.models) == {"no", "n"}  # the key 'no' is not False
    assert read_yaml("t: 1:30\nb: True\nn: ~\nx: 0x1F\n") == {"t": "1:30", "b": True, "n": None, "x": 31}


def test_errors_keep_naming_the_key(tmp_path):
    from llm_connect.config import ConfigError

    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, "router:\n  groups:\n    g: [{model: 'openai:x', wieght: 2}]\n")
    assert ei.value.path == "router.groups.g[0].wieght" and "unknown key" in ei.value.problem
    assert "weight" in ei.value.problem  # the known keys are listed
    with pytest.raises(ConfigError) as ei:
        _load(tmp_path, "api_keys:\n  - {key: short, tenant: a}\n")
    assert ei.value.path == "api_keys[0].key" and "16" in ei.value.problem


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_config_schema_prints_the_schema(tmp_path, schema):
    out = CliRunner().invoke(app, ["config", "schema"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == schema
    target = tmp_path / "schema.json"
    out = CliRunner().invoke(app, ["config", "schema", "-o", str(target)])
    assert out.exit_code == 0 and json.loads(target.read_text()) == schema


def test_cli_config_check_accepts_the_example_and_names_the_bad_key(tmp_path):
    out = CliRunner().invoke(app, ["config", "check", str(EXAMPLES[0])])
    assert out.exit_code == 0 and out.stdout.startswith("ok: "), out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 99999}\n")
    out = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert out.exit_code == 2
    assert out.stderr.strip().count("\n") == 0 and "server.port" in out.stderr and str(bad) in out.stderr
    # what only building the router finds (a fallback to a group that does not exist) is found too
    bad.write_text("router: {groups: {a: ['fake:x']}, fallbacks: {a: [ghost]}}\n")
    out = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert out.exit_code == 2 and "ghost" in out.stderr and "Traceback" not in out.output
