"""The llm-connect command, run as a user would (a subprocess, no keys in the environment)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

KEYS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENROUTER_API_KEY",
    "LLM_CONNECT_MODEL",
)


def cli(
    *args: str, stdin: str | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k not in KEYS}, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llm_connect.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.local
def test_run_answers_with_no_keys_on_the_local_model():
    out = cli("run", "Write one sentence about the sea.", "--max-tokens", "24", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert "Traceback" not in out.stderr


def test_run_json_output_and_usage():
    out = cli("run", "hello there", "--model", "fake:demo", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["text"] == "echo: hello there" and body["provider"] == "fake" and body["usage"]["total_tokens"] > 0


def test_run_reads_the_prompt_from_stdin_and_streams():
    out = cli("run", "-", "--model", "fake:demo", "--usage", stdin="from stdin")
    assert out.returncode == 0 and out.stdout.strip() == "echo: from stdin"
    assert "in=" in out.stderr and "out=" in out.stderr


def test_errors_are_one_clear_line_not_a_traceback():
    out = cli("run", "x", "--model", "nope:thing")
    assert out.returncode == 1
    assert "unknown provider 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_models_lists_providers():
    out = cli("models")
    assert out.returncode == 0 and "anthropic" in out.stdout and "local" in out.stdout


@pytest.mark.parametrize("command", ["mock-server", "serve"])
def test_a_busy_port_is_one_line_and_exit_code_2(command, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli(
            command, "--host", "127.0.0.1", "--port", str(port), timeout=60, env={"LLM_CONNECT_HOME": str(tmp_path)}
        )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "already in use" in lines[0]


def _expected_key(group_by: str) -> str:
    """What each --by value puts in the first column for the one event written below."""
    return {
        "tenant": "acme",
        "agent": "ada",
        "model": "openai:gpt-4o-mini",
        "provider": "openai",
        "day": "2025-03-01",
        "thread": "th-1",
        "task_type": "triage",
        "endpoint": "/v1/messages",
        "key": "acme-app",
        "team": "support",
    }[group_by]


def test_usage_help_lists_every_accepted_group_by_and_each_one_works(tmp_path):
    from datetime import UTC, datetime

    from llm_connect.usage import GROUP_BYS, Ledger, UsageEvent

    db = tmp_path / "usage.sqlite3"
    with Ledger.open(db) as led:
        led.record(
            UsageEvent(
                request_id="r1",
                timestamp=datetime(2025, 3, 1, 12, tzinfo=UTC),
                provider="openai",
                model="gpt-4o-mini",
                tenant_id="acme",
                agent="ada",
                thread_id="th-1",
                task_type="triage",
                input_tokens=10,
                output_tokens=5,
                total_tokens=15,
                endpoint="/v1/messages",
                metadata={"api_key": "acme-app", "team": "support"},
            )
        )
    help_text = " ".join(cli("usage", "--help", env={"COLUMNS": "200"}).stdout.split())
    for value in GROUP_BYS:
        assert value in help_text, value
        out = cli("usage", "--db", str(db), "--by", value)
        assert out.returncode == 0, (value, out.stderr)
        assert _expected_key(value) in out.stdout and "Traceback" not in out.stderr
    bad = cli("usage", "--db", str(db), "--by", "colour")
    assert bad.returncode == 2 and all(v in bad.stderr for v in GROUP_BYS), bad.stderr


def _commands(command, path=()):
    """(path, click command) for every command and sub-command of the typer app."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_option_and_argument_has_help():
    import typer.main

    from llm_connect.cli import app

    root = typer.main.get_command(app)
    missing = []
    seen = 0
    for path, command in _commands(root):
        if path and not (command.help or "").strip():
            missing.append(" ".join(path))
        for param in command.params:
            seen += 1
            # typer vendors click (typer._click): tell arguments by param_type_name, not isinstance
            kind = "argument" if param.param_type_name == "argument" else "option"
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{' '.join(path)} {kind} {param.name}")
    assert seen > 10  # the walk did reach the commands' parameters
    assert not missing, f"no help text: {missing}"
