"""Real agent CLIs through the gateway: Claude Code over ``/v1/messages``, Codex over ``/v1/responses``.

Optional: the CLIs come from npm (``./dev agent-clis`` installs pinned versions into ``.agent-clis/``, or point
``LLM_CONNECT_AGENT_CLIS`` at a ``node_modules/.bin`` holding ``claude`` and ``codex``); without them these tests
skip. Each CLI runs headless against a gateway whose upstream is the mock server, once to an upstream of its
own protocol and once translated to the other, and its answer, exit code and ledger row are checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ACME_KEY, GatewayProc, base_config

pytestmark = pytest.mark.agent_cli

ROOT = Path(__file__).resolve().parents[2]


def _bin(name: str) -> str | None:
    where = os.environ.get("LLM_CONNECT_AGENT_CLIS") or str(ROOT / ".agent-clis" / "node_modules" / ".bin")
    path = Path(where) / name
    return str(path) if path.exists() else None


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("agent-clis")
    cfg = base_config(mock, workdir)
    cfg["server"]["max_body_bytes"] = 1 << 20  # a Claude Code request is about 77 KB (its 24 tools' schemas)
    # one name per upstream protocol, as a user would alias them
    cfg["models"] = {
        **cfg["models"],
        "to-anthropic": "anthropic-only",
        "to-openai": "plain",
    }
    cfg["router"]["groups"]["anthropic-only"] = [{**cfg["router"]["groups"]["quality"][0], "name": "a-only"}]
    g = GatewayProc(cfg, workdir, name="clis").start()
    yield g
    g.stop()


def _rows(gw, endpoint):
    from llm_connect.usage import Ledger

    with Ledger.open(gw.workdir / "usage.sqlite3") as led:
        return [e for e in led.query() if e.endpoint == endpoint]


def _run(args: list[str], home: Path, timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    """A CLI run headless in a clean environment (its own HOME; nothing of the caller's but PATH)."""
    return subprocess.run(
        args,
        env={"PATH": os.environ["PATH"], "HOME": str(home), **env},
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("model", ["to-anthropic", "to-openai"])
def test_claude_code_answers_through_the_gateway(gw, tmp_path, model):
    claude = _bin("claude")
    if claude is None:
        pytest.skip("Claude Code is not installed (./dev agent-clis)")
    before = len(_rows(gw, "/v1/messages"))
    out = _run(
        [claude, "-p", "Say hello.", "--model", model, "--output-format", "json"],
        tmp_path,
        120,
        ANTHROPIC_BASE_URL=gw.url,
        ANTHROPIC_API_KEY=ACME_KEY,
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CODE_MAX_RETRIES="0",
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    import json

    result = json.loads(out.stdout)
    assert result["is_error"] is False and result["result"].strip(), result
    rows = _rows(gw, "/v1/messages")
    assert len(rows) > before and all(r.success and r.input_tokens > 0 for r in rows[before:])


@pytest.mark.parametrize("model", ["to-openai", "to-anthropic"])
def test_codex_answers_through_the_gateway(gw, tmp_path, model):
    codex = _bin("codex")
    if codex is None or shutil.which("node") is None:
        pytest.skip("Codex is not installed (./dev agent-clis)")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\nmodel_provider = "gw"\ncheck_for_update_on_startup = false\n'
        "[analytics]\nenabled = false\n[feedback]\nenabled = false\n"
        f'[model_providers.gw]\nname = "gateway"\nbase_url = "{gw.url}/v1"\nenv_key = "GW_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    before = len(_rows(gw, "/v1/responses"))
    flags = [f"--disable={f}" for f in ("remote_plugin", "plugin_discovery_prefetch", "plugins", "apps")]
    out = _run(
        [codex, "exec", "--skip-git-repo-check", *flags, "Say hello."],
        tmp_path,
        180,
        CODEX_HOME=str(home),
        GW_API_KEY=ACME_KEY,
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    assert out.stdout.strip(), out.stderr[-3000:]
    rows = _rows(gw, "/v1/responses")
    assert len(rows) > before and all(r.success for r in rows[before:])
