"""The OpenAPI document: generated from the route table and the models of ``server/schemas.py``, valid, and
true — the fast validator accepts exactly what the request models accept, and the gateway's real responses
(over HTTP, through the official openai SDK too) are what the response models describe."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, get_args

import jsonschema
import openai
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from llm_connect.config import load_config, parse_config
from llm_connect.server import schemas
from llm_connect.server.app import ROUTES
from llm_connect.server.complete import parse_complete
from llm_connect.server.errors import ApiError
from llm_connect.server.execute import EXECUTE_FIELDS, parse_execute
from llm_connect.server.openai import _CHAT_FIELDS, parse_chat
from llm_connect.server.openapi import operations, spec
from llm_connect.testing import MockReply
from llm_connect.usage.ledger import GROUP_BYS

from .conftest import ACME_KEY, ADMIN_KEY, GatewayProc, base_config, http

USER = [{"role": "user", "content": "hello there friend"}]
REF = "#/components/schemas/"
AUTH = {"api_keys": [{"name": "a", "key": "k" * 20, "tenant": "acme"}]}


def ops_of(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def walk(node: Any):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


# -- the document ---------------------------------------------------------------------------------------------
def test_every_route_has_exactly_one_operation():
    doc = spec(load_config(None), ROUTES)
    assert ops_of(doc) == set(ROUTES)
    assert set(operations()) == set(ROUTES)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_a_route_without_documentation_cannot_be_published():
    cfg = load_config(None)
    with pytest.raises(RuntimeError, match="routes without documentation"):
        spec(cfg, [*ROUTES, ("GET", "/v1/new-thing")])
    with pytest.raises(RuntimeError, match=r"documentation without a route: \[\('GET', '/docs'\)\]"):
        spec(cfg, [r for r in ROUTES if r != ("GET", "/docs")])


def test_the_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate

    for cfg in (load_config(None), parse_config(AUTH)):
        doc = spec(cfg, ROUTES)
        validate(doc)
        assert doc["openapi"] == "3.1.0"


def test_every_ref_resolves_and_every_operation_answers():
    doc = spec(parse_config(AUTH), ROUTES)
    schemas_ = doc["components"]["schemas"]
    refs = [node["$ref"] for node in walk(doc) if isinstance(node.get("$ref"), str)]
    assert refs and all(ref.startswith(REF) and ref[len(REF) :] in schemas_ for ref in refs)
    assert {ref[len(REF) :] for ref in refs} == set(schemas_)  # and nothing unused is published
    for item in doc["paths"].values():
        for op in item.values():
            assert any(status.startswith("2") for status in op["responses"]), op["operationId"]
            assert all(r["description"] for r in op["responses"].values())


def test_components_are_the_models_json_schemas():
    doc = spec(load_config(None), ROUTES)
    comp = doc["components"]["schemas"]
    for model in (schemas.ChatCompletionRequest, schemas.ChatCompletion, schemas.ExecuteRequest):
        own = model.model_json_schema(ref_template=REF + "{model}")
        for name, sub in own.pop("$defs", {}).items():
            assert comp[name] == sub
        assert comp[model.__name__] == own
    chat = comp["ChatCompletionRequest"]["properties"]
    assert chat["timeout"]["description"] == "Extension: seconds"
    assert chat["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 2}
    assert chat["max_tokens"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert comp["ExecuteRequest"]["additionalProperties"] is False
    assert comp["BudgetSpec"]["additionalProperties"] is False
    for node in walk(doc["components"]):  # constraints render as JSON Schema keywords, not pydantic's names
        assert not {"ge", "le", "gt", "lt"} & node.keys() or "properties" in node


def test_operations_document_what_each_route_takes_and_answers():
    doc = spec(load_config(None), ROUTES)
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {"$ref": REF + "ChatCompletionRequest"}
    ok = chat["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": REF + "ChatCompletion"}
    assert ok["text/event-stream"]["schema"] == {"$ref": REF + "ChatCompletionChunk"}
    headers = {p["name"] for p in chat["parameters"] if p["in"] == "header"}
    assert {"X-LLM-Budget-Id", "X-LLM-Budget-Tokens", "X-LLM-Budget-USD", "X-LLM-Thread-Id"} <= headers
    assert doc["paths"]["/chat/completions"]["post"]["requestBody"] == chat["requestBody"]
    execute = doc["paths"]["/execute"]["post"]["responses"]
    assert execute["422"]["content"]["application/json"]["schema"] == {"$ref": REF + "ExecuteFailure"}
    complete_503 = doc["paths"]["/complete"]["post"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert complete_503 == {"oneOf": [{"$ref": REF + "CompleteUnavailable"}, {"$ref": REF + "ErrorResponse"}]}
    usage = {p["name"]: p for p in doc["paths"]["/v1/usage"]["get"]["parameters"]}
    assert usage["group_by"]["schema"]["enum"] == list(GROUP_BYS)
    assert "text/plain; version=0.0.4" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_security_follows_the_config():
    open_doc = spec(load_config(None), ROUTES)
    assert all(op["security"] == [] for item in open_doc["paths"].values() for op in item.values())
    assert "401" not in open_doc["paths"]["/v1/chat/completions"]["post"]["responses"]
    cfg = parse_config(AUTH)
    doc = spec(cfg, ROUTES)
    keyed = [{"bearer": []}, {"apiKey": []}, {"azureApiKey": []}]
    for method, path in ROUTES:
        op = doc["paths"][path][method.lower()]
        public = path in ("/health", "/healthz", "/ready", "/readyz", "/openapi.json", "/docs")
        assert op["security"] == ([] if public else keyed), path
        assert ("401" in op["responses"]) == (not public), path
    public_metrics = parse_config({**AUTH, "server": {"public_metrics": True}})
    assert spec(public_metrics, ROUTES)["paths"]["/metrics"]["get"]["security"] == []


def test_importing_the_gateway_or_its_docs_module_does_not_build_the_document_models():
    """The body models are loaded when /openapi.json is first asked for, not at import (the config's own
    models are, since the gateway validates its config at start)."""
    code = (
        "import sys, llm_connect, llm_connect.server.app, llm_connect.server.openapi; "
        "assert 'llm_connect.server.schemas' not in sys.modules, 'schemas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_closed_sets_agree_with_the_code():
    from llm_connect.server.admin import _GROUP_BYS
    from llm_connect.types import ROLES
    from llm_connect.usage.ledger import GROUP_BYS

    assert set(get_args(schemas.Message.model_fields["role"].annotation)) == set(ROLES)
    group_by = set(get_args(schemas.UsageQuery.model_fields["group_by"].annotation))
    assert group_by == set(_GROUP_BYS) == set(GROUP_BYS)


# -- the fast validator reads the models' fields --------------------------------------------------------------
class Recording(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.read: set[str] = set()

    def get(self, key: Any, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


FULL_CALL = {
    "model": "plain",
    "max_tokens": 10,
    "temperature": 0.5,
    "timeout": 30,
    "tenant_id": "acme",
    "agent": "triage",
    "thread_id": "t-1",
    "task_type": "triage",
    "metadata": {"k": "v"},
}
FULL_CHAT = {
    **FULL_CALL,
    "messages": USER,
    "max_completion_tokens": 12,
    "top_p": 0.9,
    "n": 1,
    "stream": True,
    "stream_options": {"include_usage": True},
    "stop": ["\n"],
    "seed": 7,
    "response_format": {"type": "json_object"},
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "tool_choice": "auto",
}
FULL_EXECUTE = {
    **{k: v for k, v in FULL_CHAT.items() if k in EXECUTE_FIELDS and k != "messages"},
    "prompt": USER,
    "system_prompt": "be brief",
    "json_mode": False,
    "budget": {"id": "chain", "total_tokens": 100, "total_usd": "0.5"},
}
ALL_HEADERS = {
    "x-llm-budget-id": "chain",
    "x-llm-budget-tokens": "100",
    "x-llm-budget-usd": "0.5",
    "x-llm-thread-id": "t-2",
    "x-llm-tenant-id": "acme",
    "x-llm-agent": "a",
    "x-llm-task-type": "t",
}


def assert_fields_match(model: type[BaseModel], read: set[str]) -> None:
    fields = set(model.model_fields)
    assert read <= fields, read - fields
    for name in fields - read:
        desc = model.model_fields[name].description or ""
        assert desc.startswith(schemas.IGNORED), f"{model.__name__}.{name} is neither read nor documented as ignored"
    for name in read:
        assert not (model.model_fields[name].description or "").startswith(schemas.IGNORED), name


def test_chat_fields_are_the_models_fields():
    body = Recording(FULL_CHAT)
    parse_chat(body, {})
    assert body.read == _CHAT_FIELDS | {"messages"}
    assert_fields_match(schemas.ChatCompletionRequest, body.read)
    schemas.ChatCompletionRequest.model_validate(FULL_CHAT)


def test_execute_fields_are_the_models_fields():
    budget = Recording(FULL_EXECUTE["budget"])
    body = Recording({**FULL_EXECUTE, "budget": budget})
    parse_execute(body, {})
    assert body.read | {"messages"} == set(EXECUTE_FIELDS) == set(schemas.ExecuteRequest.model_fields)
    assert budget.read == set(schemas.BudgetSpec.model_fields)
    schemas.ExecuteRequest.model_validate(FULL_EXECUTE)


def test_complete_fields_are_the_models_fields():
    body = Recording({**FULL_CALL, "messages": USER})
    parse_complete(body, {})
    assert_fields_match(schemas.CompleteRequest, body.read)
    assert body.read == set(schemas.CompleteRequest.model_fields)


def test_the_headers_read_are_the_documented_headers():
    documented = {f.alias.lower() for f in schemas.CallHeaders.model_fields.values()} - {"x-request-id"}
    for parse, body in ((parse_chat, FULL_CHAT), (parse_complete, {**FULL_CALL, "messages": USER})):
        headers = Recording(ALL_HEADERS)
        parse({k: v for k, v in body.items() if k not in ("tenant_id", "agent", "task_type")}, headers)
        assert headers.read == documented == set(ALL_HEADERS)
    schemas.CallHeaders.model_validate(
        {f.alias: ALL_HEADERS.get(f.alias.lower()) for f in schemas.CallHeaders.model_fields.values()}
    )


# -- the fast validator accepts exactly what the models accept ------------------------------------------------
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**66), max_value=2**66),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _values(valid: list[Any], invalid: list[Any], near: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    """Valid values a third of the time (so that bodies with several fields are often accepted), then edge
    cases, values near the bounds, and anything JSON can carry."""
    pick = {
        "valid": st.sampled_from(valid),
        "invalid": st.sampled_from(invalid),
        "near": near if near is not None else _ANY,
        "any": _ANY,
    }
    return st.sampled_from(["valid", "valid", "invalid", "near", "any"]).flatmap(pick.__getitem__)


def _near(lo: float, hi: float) -> st.SearchStrategy[Any]:
    """Numbers around [lo, hi]: floats, integers, integral floats."""
    return st.one_of(
        st.floats(lo - 1, hi + 1),
        st.integers(int(lo) - 2, int(hi) + 2),
        st.integers(int(lo) - 2, int(hi) + 2).map(float),
    )


_POSITIVE = _values(
    [None, 1, 5, 5.0, 256, 2**63 - 1], [0, -1, 5.5, 2**63, -(2**63), 1e19, "5", True, False], _near(0, 3)
)
_TEXT = _values([None, "", "x", "x" * 256, "tab\there"], ["x" * 257, 5, ["x"], True])
_IDENT = _values([None, "x", "x" * 128, "ok-id"], ["", "x" * 129, "tab\there", 5, True])
_BOOL = _values([None, True, False], [0, 1, "true"])
_MESSAGES = _values(
    [
        USER,
        [{"role": "system", "content": "be brief"}, *USER],
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]}],
    ],
    [
        None,
        [],
        [{"role": "wizard", "content": "x"}],
        [{"role": "user"}],
        [{"role": "assistant", "tool_calls": "x"}],
        [{"role": "user", "content": [{"type": "text"}]}],
        [{"role": "user", "content": [{"text": "x"}]}],
        [{"role": "user", "content": 5}],
        [{"role": "developer", "content": None}],
        ["hi"],
        "hi",
    ],
)
_CALL_FIELDS = {
    "model": _TEXT,
    "max_tokens": _POSITIVE,
    "temperature": _values(
        [None, 0, 0.0, 1, 2, 2.0, 0.7], [2.0001, -0.1, -1e-9, 1e300, 10**30, "1", True], _near(0, 2)
    ),
    "timeout": _values([None, 30, 0.5, 1e300, 10**30], [0, 0.0, -1, "30", True], _near(0, 1)),
    "tenant_id": _IDENT,
    "agent": _TEXT,
    "thread_id": _IDENT,
    "task_type": _TEXT,
    "metadata": _values([None, {}, {"k": 1}], [[], "x", 1]),
}
_SAMPLING = {
    "top_p": _values([None, 0, 1, 0.9], [1.01, -0.1, "1", False], _near(0, 1)),
    "stop": _values([None, "", "\n", ["a"] * 16, []], [["a"] * 17, ["a", 1], [None], 3]),
    "seed": _values(
        [None, 0, -5, 7, 5.0, 2**63 - 1, -(2**63 - 1)],
        [2**63, -(2**63), 1.5, "7", True],
        st.integers(-(2**64), 2**64),
    ),
    "response_format": _values(
        [None, {"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}],
        [{"type": "json_schema", "json_schema": "x"}, {"type": 5}, {}, "json"],
    ),
    "tools": _values(
        [
            None,
            [],
            [{"type": "function", "function": {"name": "f"}}],
            [{"function": {"name": "f", "parameters": {"type": "object"}}}],
            [{"type": None}],
            [{"type": "web_search"}],
        ],
        [[{"type": "function"}], [{"type": "function", "function": {"name": 3}}], [{}], ["f"], {"type": "function"}],
    ),
    "tool_choice": _ANY,
}
_CHAT = {
    **_CALL_FIELDS,
    **_SAMPLING,
    "max_completion_tokens": _POSITIVE,
    "n": _values([None, 1, 1.0], [0, 2, "1", True], _near(1, 1)),
    "stream": _BOOL,
    "stream_options": _values([None, {}, {"include_usage": True}, {"other": 1}], [{"include_usage": "yes"}, [], "x"]),
    "frequency_penalty": _ANY,
    "user": _ANY,
    "some_future_field": _ANY,
}
_BUDGET = {
    "id": _IDENT,
    "total_tokens": _values([None, 1, 10**15, "12", " 12 ", ""], [10**15 + 1, 0, "  ", "1.5", "-3", "0", 5.0, True]),
    "total_usd": _values([None, "0.5", "", "1e3", 0.5, 2, "1_0"], ["  ", "0", "-1", "1e10", "abc", "NaN", 1e10, True]),
    "other": _ANY,
}
_EXECUTE = {
    **_CALL_FIELDS,
    **_SAMPLING,
    "messages": _values([None], [USER, "x", ""]),  # besides a prompt: refused
    "system_prompt": _TEXT,
    "json_mode": _BOOL,
    "budget": st.one_of(
        _values(
            [None, {"id": "chain"}, {"id": "chain", "total_tokens": 100, "total_usd": "0.5"}],
            [{}, {"total_tokens": 5}, {"id": ""}, "chain"],
        ),
        st.fixed_dictionaries({"id": st.just("chain")}, optional={k: v for k, v in _BUDGET.items() if k != "id"}),
        st.fixed_dictionaries({}, optional=_BUDGET),
    ),
}
_PROMPT = _values([USER, "x"], [None, "", []])
_COMPLETE = {**_CALL_FIELDS, "anything": _ANY}


def _wire(body: dict[str, Any]) -> dict[str, Any]:
    """The body as the gateway sees it: JSON text parsed by orjson (big integers become floats)."""
    try:
        return orjson.loads(json.dumps(body))
    except (orjson.JSONDecodeError, ValueError):
        assume(False)
        raise


def _agree(parse: Any, model: type[BaseModel], body: dict[str, Any]) -> ApiError | None:
    """Both refuse or both accept the body; returns the fast validator's error."""
    data = _wire(body)
    try:
        parse(data, {})
        fast: ApiError | None = None
    except ApiError as exc:
        assert exc.status == 422, exc
        fast = exc
    try:
        model.model_validate(data)
        slow: ValidationError | None = None
    except ValidationError as exc:
        slow = exc
    assert (fast is None) == (slow is None), f"fast: {fast!r}, model: {slow}, body: {data!r}"
    return fast


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.fixed_dictionaries({"messages": _MESSAGES}, optional=_CHAT))
def test_chat_validator_agrees_with_the_model(body):
    _agree(parse_chat, schemas.ChatCompletionRequest, body)


@_SETTINGS
@given(
    st.fixed_dictionaries(
        {"prompt": _PROMPT},
        optional=_EXECUTE,
    )
)
def test_execute_validator_agrees_with_the_model(body):
    _agree(parse_execute, schemas.ExecuteRequest, body)


@_SETTINGS
@given(st.fixed_dictionaries({"messages": _MESSAGES}, optional=_COMPLETE))
def test_complete_validator_agrees_with_the_model(body):
    _agree(parse_complete, schemas.CompleteRequest, body)


_ONE_FIELD = [
    *(
        (label, parse, model, base, (name,), strategy)
        for label, parse, model, base, fields in (
            ("chat", parse_chat, schemas.ChatCompletionRequest, {"messages": USER}, {**_CHAT, "messages": _MESSAGES}),
            ("execute", parse_execute, schemas.ExecuteRequest, {"prompt": "hi"}, {**_EXECUTE, "prompt": _PROMPT}),
            (
                "complete",
                parse_complete,
                schemas.CompleteRequest,
                {"messages": USER},
                {**_COMPLETE, "messages": _MESSAGES},
            ),
        )
        for name, strategy in {**fields, "unknown": _ANY}.items()
    ),
    *(
        (
            "execute",
            parse_execute,
            schemas.ExecuteRequest,
            {"prompt": "hi", "budget": {"id": "chain"}},
            ("budget", name),
            strategy,
        )
        for name, strategy in _BUDGET.items()
    ),
]


@pytest.mark.parametrize(
    ("parse", "model", "base", "path", "values"),
    [c[1:] for c in _ONE_FIELD],
    ids=[f"{c[0]}-{'.'.join(c[4])}" for c in _ONE_FIELD],
)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_one_field_agrees_and_a_refusal_names_it(parse, model, base, path, values, data):
    """One field changed in a valid body: the two agree, and a refusal's error.param names that field."""
    body = json.loads(json.dumps(base))
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(values)
    fast = _agree(parse, model, body)
    if fast is not None:
        named = ".".join(path)
        assert fast.param == named or fast.param.startswith((named + ".", named + "[")), (fast.param, named)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "x", "name": 5}]},
        {"messages": [{"role": "tool", "content": "x", "tool_call_id": 5}]},
        {"messages": [{"role": "assistant", "content": None, "tool_calls": ["x"]}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "text": 5}]}]},
        {"messages": USER, "tools": [{"type": 5}]},
        {"messages": USER, "tools": [{"type": "web_search", "function": "x"}]},
    ],
)
def test_where_the_models_are_stricter_than_the_fast_validator(body):
    """The schemas module docstring lists these: the fast path passes them on to the provider, the model
    refuses them (the property tests above find no other difference)."""
    parse_chat(body, {})
    with pytest.raises(ValidationError):
        schemas.ChatCompletionRequest.model_validate(body)


# -- over HTTP: the served document, and real responses against the models -----------------------------------
@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    g = GatewayProc(base_config(mock, tmp_path_factory.mktemp("oa")), tmp_path_factory.mktemp("oa-run")).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def doc(gw):
    status, headers, raw = http("GET", gw.url + "/openapi.json")
    assert status == 200 and headers["content-type"].startswith("application/json")
    return orjson.loads(raw)


def sent(doc: dict[str, Any], model: type[BaseModel], raw: bytes, route: tuple[str, str], status: int) -> Any:
    """Checks a real body: it validates strictly against the model and round-trips key for key, it validates
    against the served document's schema, and the route documents the status with that schema."""
    body = orjson.loads(raw)
    parsed = model.model_validate_json(raw, strict=True)
    assert parsed.model_dump(mode="json", exclude_unset=True) == body
    jsonschema.Draft202012Validator({"$ref": REF + model.__name__, "components": doc["components"]}).validate(body)
    method, path = route
    reply = doc["paths"][path][method.lower()]["responses"][str(status)]
    schema = next(iter(reply["content"].values()))["schema"]
    assert {"$ref": REF + model.__name__} in (schema, *schema.get("oneOf", ())), (route, status, schema)
    return parsed


def test_the_served_document_lists_every_route_and_is_cached(gw, doc):
    assert ops_of(doc) == set(ROUTES)
    status, _, again = http("GET", gw.url + "/openapi.json")
    assert status == 200 and orjson.loads(again) == doc
    security = doc["paths"]["/v1/chat/completions"]["post"]["security"]
    assert security and doc["paths"]["/health"]["get"]["security"] == []
    status, headers, page = http("GET", gw.url + "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"openapi.json" in page


def test_chat_completion_through_the_sdk_is_what_the_model_describes(gw, doc, mock):
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="plain", messages=USER, max_tokens=20)
        ours = sent(doc, schemas.ChatCompletion, raw.http_response.content, ("POST", "/v1/chat/completions"), 200)
        theirs = raw.parse()
        assert theirs.choices[0].message.content == ours.choices[0].message.content
        assert theirs.usage.total_tokens == ours.usage.total_tokens

        mock.script(MockReply(model="gpt-plain", tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        raw = client.chat.completions.with_raw_response.create(model="plain", messages=USER, tools=tools)
        ours = sent(doc, schemas.ChatCompletion, raw.http_response.content, ("POST", "/v1/chat/completions"), 200)
        assert (
            ours.choices[0].message.tool_calls[0].function.name
            == raw.parse().choices[0].message.tool_calls[0].function.name
        )


def events(raw: bytes) -> list[bytes]:
    frames = [f for f in raw.split(b"\n\n") if f]
    assert frames[-1] == b"data: [DONE]"
    return [f.removeprefix(b"data: ") for f in frames[:-1]]


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_chunks_are_what_the_model_describes(gw, doc, include_usage):
    body = {"model": "plain", "messages": USER, "stream": True, "stream_options": {"include_usage": include_usage}}
    status, headers, raw = http("POST", gw.url + "/v1/chat/completions", body, {"Authorization": f"Bearer {ACME_KEY}"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert "text/event-stream" in doc["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    chunks = [schemas.ChatCompletionChunk.model_validate_json(e, strict=True) for e in events(raw)]
    for e, c in zip(events(raw), chunks, strict=True):
        assert c.model_dump(mode="json", exclude_unset=True) == orjson.loads(e)
    assert chunks[0].choices[0].delta.role == "assistant"
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert all("usage" in c.model_fields_set and c.usage is None for c in chunks[:-1])
    else:
        assert all("usage" not in c.model_fields_set for c in chunks)


def test_stream_tool_call_deltas_are_what_the_model_describes(gw, mock):
    mock.script(MockReply(model="gpt-plain", tool_calls=[{"name": "lookup", "arguments": {"q": "x"}}]))
    body = {"model": "plain", "messages": USER, "stream": True}
    _, _, raw = http("POST", gw.url + "/v1/chat/completions", body, {"Authorization": f"Bearer {ACME_KEY}"})
    chunks = [schemas.ChatCompletionChunk.model_validate_json(e, strict=True) for e in events(raw)]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].function.name == "lookup"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_every_other_route_sends_what_its_models_describe(gw, doc, mock):
    key = {"Authorization": f"Bearer {ACME_KEY}"}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    chat = ("POST", "/v1/chat/completions")
    status, _, raw = http("GET", gw.url + "/v1/models", headers=key)
    models = sent(doc, schemas.ModelList, raw, ("GET", "/v1/models"), status)
    assert any(m.default for m in models.data)

    status, _, raw = http("POST", gw.url + "/execute", {"prompt": "hi", "model": "plain"}, key)
    sent(doc, schemas.ExecuteResponse, raw, ("POST", "/execute"), status)
    budgeted = {"prompt": "hi", "model": "plain", "budget": {"id": "oa-chain", "total_tokens": 500}}
    status, _, raw = http("POST", gw.url + "/execute", budgeted, key)
    assert sent(doc, schemas.ExecuteResponse, raw, ("POST", "/execute"), status).budget.remaining_tokens < 500
    status, _, raw = http("POST", gw.url + "/execute", {"prompt": "hi", "surprise": 1}, key)
    assert status == 422
    assert sent(doc, schemas.ExecuteFailure, raw, ("POST", "/execute"), status).error.param == "surprise"

    status, _, raw = http("POST", gw.url + "/complete", {"model": "plain", "messages": USER}, key)
    sent(doc, schemas.CompleteResponse, raw, ("POST", "/complete"), status)
    mock.script(MockReply(model="gpt-plain", error="server", repeat=True))
    try:
        status, _, raw = http("POST", gw.url + "/complete", {"model": "plain", "messages": USER}, key)
    finally:
        mock.clear_scripts()
    assert status == 503
    sent(doc, schemas.CompleteUnavailable, raw, ("POST", "/complete"), status)

    status, _, raw = http("POST", gw.url + chat[1], {"messages": [{"role": "wizard", "content": "x"}]}, key)
    assert status == 422
    sent(doc, schemas.ErrorResponse, raw, chat, status)
    status, _, raw = http("POST", gw.url + chat[1], {"messages": USER}, {"Authorization": "Bearer nope-0123456789abc"})
    assert status == 401
    sent(doc, schemas.ErrorResponse, raw, chat, status)

    status, _, raw = http("GET", gw.url + "/v1/usage?group_by=model", headers=admin)
    report = sent(doc, schemas.UsageReport, raw, ("GET", "/v1/usage"), status)
    assert report.source == "ledger" and report.data
    for path in ("/health", "/healthz"):
        status, _, raw = http("GET", gw.url + path)
        sent(doc, schemas.Health, raw, ("GET", path), status)
    for path in ("/ready", "/readyz"):
        status, _, raw = http("GET", gw.url + path)
        sent(doc, schemas.Readiness, raw, ("GET", path), status)
    status, headers, _ = http("GET", gw.url + "/metrics", headers=admin)
    assert status == 200 and headers["content-type"].split(";")[0] in {
        m.split(";")[0] for m in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    }


def test_docs_off_hides_the_document(mock, start_gateway, tmp_path):
    cfg = base_config(mock, tmp_path)
    cfg["server"] = {**cfg["server"], "docs": False}
    gw = start_gateway(cfg)
    for path in ("/openapi.json", "/docs"):
        status, _, raw = http("GET", gw.url + path)
        assert status == 404 and orjson.loads(raw)["error"]["code"] == "not_found"
