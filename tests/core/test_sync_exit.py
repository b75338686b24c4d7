"""The sync facade over HTTP adapters, in a script of its own: its sessions are closed at exit (no aiohttp
"Unclosed client session" / "Unclosed connector"), and consecutive calls share one keep-alive connection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, threading

    from llm_connect import Router, create_adapter
    from llm_connect.testing import MockServer

    peers = []  # the client port of each request

    async def note_peer(request, response):
        peers.append(request.transport.get_extra_info("peername")[1])

    server = MockServer()
    server.app.on_response_prepare.append(note_peer)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)

    openai = create_adapter("openai:gpt-4o-mini", api_base=server.openai_base, api_key="k")
    anthropic = create_adapter("anthropic:claude-x", api_base=server.url, api_key="k")
    router = Router({"g": [openai]})
    answers = [openai.execute_prompt(f"one {i}").text for i in range(3)]
    answers.append("".join(c.text for c in openai.stream("two")))
    answers.append(anthropic.execute_prompt("three").text)
    answers.append(router.execute_prompt("four").text)
    for chunk in anthropic.stream("five"):  # left early: the stream is closed, its connection not reused
        break
    print(answers)
    print("connections", len(set(peers[:6])), "requests", len(peers))
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    """
)


@pytest.mark.parametrize("warnings", ["error::ResourceWarning", "always::ResourceWarning"])
def test_a_sync_script_ends_without_unclosed_session_warnings(warnings, tmp_path):
    out = subprocess.run(
        [sys.executable, "-W", warnings, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LLM_CONNECT_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("mock reply to:") == 6, out.stdout
    assert "Unclosed" not in out.stderr and "ResourceWarning" not in out.stderr, out.stderr
    # the six sequential calls (two adapters and a router over the one shared session) used one connection
    assert "connections 1 requests 7" in out.stdout, out.stdout


def test_closing_a_runner_closes_the_sessions_opened_on_its_loop():
    import asyncio

    from llm_connect import LLMUsageError
    from llm_connect.adapter import SyncRunner
    from llm_connect.transport import Transport

    runner, transport = SyncRunner(), Transport()

    async def session():
        return transport.session()

    first = runner.run(session())
    assert runner.run(session()) is first  # one session per loop, kept across calls
    runner.close()
    assert first.closed and runner.loop.is_closed()
    with pytest.raises(LLMUsageError):
        runner.run(asyncio.sleep(0))
    runner.close()  # idempotent
