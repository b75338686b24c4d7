"""Faults through the gateway (scripted on the mock server): upstream 500 / 429 / timeout / reset / cut stream
-> a fallback or a clean error, never a hung request. A client leaving mid-stream stops the upstream stream and
the call is accounted on what was produced."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import aiohttp
import openai
import orjson
import pytest

from llm_connect.testing import MockReply

from .conftest import ACME_KEY, GatewayProc, base_config, http

MSG = [{"role": "user", "content": "hello there"}]
LONG = " ".join(f"w{i}" for i in range(40))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def gw(mock, workdir):
    cfg = base_config(mock, workdir)
    groups = cfg["router"]["groups"]
    groups["pair"] = [
        {"model": "openai:first", "name": "first", "timeout": 0.6},
        {"model": "openai:second", "name": "second"},
    ]
    groups["solo"] = [{"model": "openai:solo", "name": "solo"}]
    # a deployment with its own timeout whose replies are slow, falling back to another group
    groups["hasty"] = [{"model": "openai:slow-primary", "name": "hasty", "timeout": 0.5}]
    groups["patient"] = [{"model": "openai:slow-primary", "name": "patient", "timeout": 4}]
    groups["backup"] = [{"model": "openai:backup", "name": "backup"}]
    cfg["router"]["fallbacks"].update({"hasty": ["backup"], "patient": ["backup"]})
    g = GatewayProc(cfg, workdir, name="faults").start()
    yield g
    g.stop()


@pytest.fixture(autouse=True)
def _clean(mock):
    mock.clear_scripts()
    yield
    mock.clear_scripts()
    time.sleep(0.03)  # past the (tiny) cooldowns of deployments a test tripped


def chat(gw, body, timeout=30):
    t0 = time.perf_counter()
    status, _headers, raw = http(
        "POST", gw.url + "/v1/chat/completions", body, headers={"Authorization": f"Bearer {ACME_KEY}"}, timeout=timeout
    )
    return status, orjson.loads(raw), time.perf_counter() - t0


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"error": "rate_limit", "retry_after": 0},
        {"fault": "reset"},
        {"fault": "malformed"},
        {"status": 529},
    ],
)
def test_first_deployment_fails_second_answers(gw, mock, fault):
    mock.script(MockReply(model="first", **fault))
    status, body, _ = chat(gw, {"model": "pair", "messages": MSG})
    assert status == 200, body
    assert body["model"] == "second"


def test_slow_deployment_times_out_and_falls_back(gw, mock):
    mock.script(MockReply(model="first", fault="slow", latency=5))
    status, body, took = chat(gw, {"model": "pair", "messages": MSG})
    assert status == 200 and body["model"] == "second"
    assert took < 3


@pytest.mark.parametrize(
    ("fault", "codes"),
    [
        ({"status": 500}, {503}),
        ({"error": "rate_limit", "retry_after": 0}, {429, 503}),
        ({"fault": "reset"}, {503}),
        ({"fault": "malformed"}, {503}),
    ],
)
def test_single_deployment_failure_is_a_clean_error(gw, mock, fault, codes):
    mock.script(MockReply(model="solo", **fault))
    status, body, took = chat(gw, {"model": "solo", "messages": MSG})
    assert status in codes, body
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] in ("provider_unavailable", "upstream_rate_limited")
    assert took < 5


def test_a_request_timeout_caps_the_deployment_timeout_and_the_fallback_answers(gw, mock):
    mock.script(MockReply(model="slow-primary", latency=5, repeat=True))
    status, body, took = chat(gw, {"model": "hasty", "messages": MSG, "timeout": 3})
    # the primary gave up at its own 0.5 s, not at the request's 3 s: the fallback answered in time
    assert status == 200, body
    assert body["model"] == "backup" and took < 1.5


def test_a_request_timeout_shorter_than_the_deployment_timeout_wins(gw, mock):
    mock.script(MockReply(model="slow-primary", latency=5, repeat=True))
    status, body, took = chat(gw, {"model": "patient", "messages": MSG, "timeout": 0.5})
    assert status == 504 and body["error"]["code"] == "timeout", body
    assert took < 1.5


def test_caller_timeout_is_504(gw, mock):
    mock.script(MockReply(model="solo", fault="slow", latency=10))
    status, body, took = chat(gw, {"model": "solo", "messages": MSG, "timeout": 0.5})
    assert status == 504 and body["error"]["code"] == "timeout"
    assert took < 3


def test_cut_stream_before_text_falls_back(gw, mock):
    mock.script(MockReply(model="first", fault="cut_stream", cut_after=0))
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=10) as c:
        chunks = list(c.chat.completions.create(model="pair", messages=MSG, stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "mock reply to: hello there"
    assert chunks[-1].model == "second" or chunks[0].model == "second"


def test_cut_stream_after_text_is_a_clean_stream_error(gw, mock):
    mock.script(MockReply(model="solo", text=LONG, fault="cut_stream", cut_after=4))
    with openai.OpenAI(base_url=gw.url + "/v1", api_key=ACME_KEY, max_retries=0, timeout=10) as c:
        stream = c.chat.completions.create(model="solo", messages=MSG, stream=True)
        got = []
        with pytest.raises(openai.APIError) as ei:
            for ch in stream:
                if ch.choices and ch.choices[0].delta.content:
                    got.append(ch.choices[0].delta.content)
    assert got  # some text arrived before the cut
    assert "provider_unavailable" in str(ei.value.body) or "failed" in str(ei.value)


def test_upstream_error_before_stream_is_json(gw, mock):
    mock.script(MockReply(model="solo", status=500))
    status, body, _ = chat(gw, {"model": "solo", "messages": MSG, "stream": True})
    assert status == 503 and body["error"]["code"] == "provider_unavailable"


async def test_no_hung_requests_under_mixed_faults(gw, mock):
    mock.script(
        *[
            MockReply(model="solo", **f)
            for f in (
                {"status": 500},
                {"fault": "reset"},
                {"fault": "malformed"},
                {"status": 502},
                {"fault": "slow", "latency": 4},
                {"fault": "cut_stream", "cut_after": 2},
                {"error": "rate_limit", "retry_after": 0},
                {"status": 400},
            )
        ]
    )

    async def one(session, i):
        body = {"model": "solo", "messages": MSG, "timeout": 1.5, "stream": i % 2 == 0}
        async with session.post(
            gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {ACME_KEY}"}
        ) as r:
            raw = await r.read()
            return r.status, raw

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        results = await asyncio.gather(*[one(s, i) for i in range(24)])
    for status, raw in results:
        assert status < 500 or status in (502, 503, 504), raw
        if status != 200:
            assert orjson.loads(raw)["error"]["code"]


async def test_client_disconnect_stops_upstream_and_settles(gw, mock, workdir):
    tag = f"disc-{time.time_ns()}"
    mock.script(MockReply(model="solo", text=LONG, chunk_delay=0.25))
    body = {"model": "solo", "messages": MSG, "stream": True, "agent": tag, "max_tokens": 300}
    budget = {"X-LLM-Budget-Id": tag, "X-LLM-Budget-Tokens": "1000"}
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s:
        resp = await s.post(
            gw.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {ACME_KEY}", **budget}
        )
        assert resp.status == 200
        seen = 0
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                seen += 1
                if seen == 3:
                    break
        resp.close()  # drop the connection mid-stream
    # the event of the aborted call is committed long before the 10 s the full stream would have taken
    row = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and row is None:
        conn = sqlite3.connect(workdir / "usage.sqlite3")
        try:
            row = conn.execute(
                "SELECT output_tokens, streamed, success FROM llm_usage WHERE agent = ?", (tag,)
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            await asyncio.sleep(0.1)
    assert row is not None, "no usage event for the aborted stream"
    assert time.perf_counter() - t0 < 6
    output_tokens, streamed, _ = row
    assert streamed == 1
    assert 0 < output_tokens < 40  # billed for what was produced, not the whole answer
    # the stream's reservation (prompt + 300 tokens) was settled to what it produced, not kept
    status, _, raw = http(
        "POST",
        gw.url + "/execute",
        {"prompt": "x", "model": "fake", "max_tokens": 2},
        headers={"Authorization": f"Bearer {ACME_KEY}", "X-LLM-Budget-Id": tag},
    )
    left = orjson.loads(raw)["budget"]["remaining_tokens"]
    assert status == 200 and 1000 - 300 < left < 1000


async def test_client_disconnect_cancels_a_non_streaming_call(gw, mock, workdir):
    """A client that gives up stops the call: nothing is recorded as a success, the budget is released."""
    tag = f"gone-{time.time_ns()}"
    mock.script(MockReply(model="solo", text="late answer", latency=2.0))
    body = {"model": "solo", "messages": MSG, "agent": tag, "max_tokens": 50}
    budget = {"X-LLM-Budget-Id": tag, "X-LLM-Budget-Tokens": "1000"}
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            await s.post(
                gw.url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {ACME_KEY}", **budget},
                timeout=aiohttp.ClientTimeout(total=0.4),
            )
    await asyncio.sleep(2.5)  # past the upstream's latency: had the call gone on, it would be recorded now
    conn = sqlite3.connect(workdir / "usage.sqlite3")
    try:
        rows = conn.execute("SELECT success FROM llm_usage WHERE agent = ?", (tag,)).fetchall()
    finally:
        conn.close()
    assert all(r[0] == 0 for r in rows), rows
    status, _, raw = http(
        "POST",
        gw.url + "/execute",
        {"prompt": "x", "model": "fake", "max_tokens": 2},
        headers={"Authorization": f"Bearer {ACME_KEY}", "X-LLM-Budget-Id": tag},
    )
    assert status == 200 and orjson.loads(raw)["budget"]["remaining_tokens"] > 990


def test_every_deployment_rate_limited_is_a_429_with_retry_after(gw, mock):
    mock.reset()
    mock.script(MockReply(model="gpt-plain", error="rate_limit", retry_after=3))
    status, headers, raw = http(
        "POST",
        gw.url + "/v1/chat/completions",
        {"model": "plain", "messages": MSG},
        headers={"Authorization": f"Bearer {ACME_KEY}"},
    )
    assert status == 429, raw
    assert orjson.loads(raw)["error"]["code"] == "upstream_rate_limited"
    assert float(headers["retry-after"]) >= 2
    mock.reset()


def test_a_group_that_is_down_answers_503_with_retry_after_at_once(mock, start_gateway, tmp_path):
    """Every deployment of a group (and of its fallback) failed once and cools down for 20 s: later requests do
    not wait that out — each is a 503 within 100 ms whose Retry-After says when the first one is back."""
    cfg = base_config(mock, tmp_path)
    cfg["router"]["groups"] = {
        "down": [{"model": "openai:down-a", "name": "down-a"}, {"model": "openai:down-b", "name": "down-b"}],
        "down-too": [{"model": "openai:down-c", "name": "down-c"}],
    }
    cfg["router"]["fallbacks"] = {"down": ["down-too"]}
    cfg["router"]["num_retries"] = 2
    cfg["router"]["cooldown"] = {"allowed_fails": 1, "cooldown_time": 20}
    cfg["models"], cfg["default_model"] = {}, "down"
    gw = start_gateway(cfg, name="down")
    mock.script(*[MockReply(model=m, status=500) for m in ("down-a", "down-b", "down-c")])
    status, body, _ = chat(gw, {"model": "down", "messages": MSG})
    assert status == 503 and body["error"]["code"] == "provider_unavailable", body
    took_all = []
    for _ in range(20):
        t0 = time.perf_counter()
        status, headers, raw = http(
            "POST",
            gw.url + "/v1/chat/completions",
            {"model": "down", "messages": MSG},
            headers={"Authorization": f"Bearer {ACME_KEY}"},
        )
        took_all.append(time.perf_counter() - t0)
        assert status == 503, raw
        assert 15 <= int(headers["retry-after"]) <= 20, headers
        assert b"cooling down" in raw
    # none waits for the cooldown; the median is the 100 ms (a loaded CI machine may stretch one call)
    took_all.sort()
    assert took_all[10] < 0.1 and took_all[-1] < 1.0, [f"{t * 1000:.0f} ms" for t in took_all]
