"""The ``llm-connect`` command: run | serve | bridge | usage | models | mock-server | config | keys | teams | tenants.

Each command imports what it needs when it runs, so ``llm-connect bridge`` starts fast.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

app = typer.Typer(
    name="llm-connect",
    help="One fast LLM layer: library, stdin bridge, OpenAI-compatible gateway and agent workers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _Command(TyperCommand):
    """Usage lines in the usual shape (``run [OPTIONS] PROMPT``), not typer's ``{PROMPT}``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "arg").upper()
                pieces.append(name if param.required else f"[{name}]")
        return pieces


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command(cls=_Command)
def run(
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The prompt; '-' reads it from stdin.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="provider:model (default: $LLM_CONNECT_MODEL, a keyed provider, else the local model)"
        ),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, help="Cap on output tokens (default: the provider's).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option("--temperature", min=0.0, max=2.0, help="Sampling temperature; 0 = greedy.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampling seed, for repeatable answers.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Base URL of the provider's API.")] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Print tokens as they arrive.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole response as JSON (never streamed).")] = False,
    show_usage: Annotated[bool, typer.Option("--usage", help="Print token usage and cost to stderr.")] = False,
) -> None:
    """Send one prompt to a model and print the answer (no keys needed: the local model answers).

    The answer streams to stdout as it is generated; while the model loads (or the first token is on its way) a
    spinner shows on stderr when that is a terminal.
    """
    from .errors import LLMError
    from .registry import create_adapter
    from .types import RunConfig

    text = sys.stdin.read() if prompt == "-" else prompt
    try:
        adapter = create_adapter(model, api_base=api_base)
        cfg = RunConfig(system_prompt=system, max_tokens=max_tokens, temperature=temperature, seed=seed)
        waiting = _waiting(adapter)
        if as_json or not stream:
            with waiting:
                resp = adapter.execute_prompt(text, cfg)
            if as_json:
                import orjson

                typer.echo(orjson.dumps(resp.to_dict(), option=orjson.OPT_INDENT_2).decode())
            else:
                typer.echo(resp.text.strip())
            usage, cost = resp.usage, resp.cost_usd
        else:
            usage, cost = None, None
            started = False
            waiting.__enter__()
            try:
                for chunk in adapter.stream(text, cfg):
                    if chunk.text:
                        if not started:
                            waiting.__exit__(None, None, None)
                            started = True
                            chunk_text = chunk.text.lstrip()
                        else:
                            chunk_text = chunk.text
                        sys.stdout.write(chunk_text)
                        sys.stdout.flush()
                    if chunk.usage is not None:
                        usage, cost = chunk.usage, chunk.cost_usd
            finally:
                if not started:
                    waiting.__exit__(None, None, None)
            sys.stdout.write("\n")
    except LLMError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    if show_usage and usage is not None:
        typer.echo(
            f"[{adapter.provider}:{adapter.model}] in={usage.input_tokens} out={usage.output_tokens} "
            f"cost_usd={'unknown' if cost is None else cost}",
            err=True,
        )


def _waiting(adapter: object) -> contextlib.AbstractContextManager[object]:
    """A spinner on stderr until the answer starts (only when stderr is a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        return contextlib.nullcontext()
    engine = getattr(adapter, "engine", None)
    name = f"{getattr(adapter, 'provider', '?')}:{getattr(adapter, 'model', '?')}"
    if engine is not None and not getattr(engine, "loaded", True):
        label = f"loading local model {name} …"
    else:
        label = f"waiting for {name} …"
    return console.status(label, spinner="dots")


@app.command()
def serve(
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="YAML config (default: $LLM_CONNECT_CONFIG, else embedded).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default: server.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port to listen on (default: server.port, 9999).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="Worker processes (default: server.workers, 1).")
    ] = None,
) -> None:
    """Run the OpenAI-compatible gateway (/v1/chat/completions, /execute, /complete, /metrics …)."""
    from .server.app import serve as _serve

    _serve(config_path=config, host=host, port=port, workers=workers)


@app.command()
def bridge(
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="YAML config (default: $LLM_CONNECT_CONFIG, else embedded).")
    ] = None,
) -> None:
    """Read one JSON request on stdin, write one JSON response on stdout (errors are JSON too, exit != 0)."""
    from .server.bridge import main as bridge_main

    raise typer.Exit(bridge_main(config_path=config))


class _UsageCommand(_Command):
    """``usage --help`` lists the values ``--by`` accepts: the ledger's GROUP_BYS, the one list that
    ``usage`` also checks ``--by`` against. Imported only when the help is shown, so other starts stay fast."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        from .usage.ledger import GROUP_BYS

        for param in self.params:
            if param.name == "by":
                param.help = f"Group the totals by: {' | '.join(GROUP_BYS)}."
        super().format_help(ctx, formatter)


@app.command(cls=_UsageCommand)
def usage(
    db: Annotated[str | None, typer.Option("--db", help="Ledger: SQLite path or postgresql:// URL.")] = None,
    by: Annotated[str, typer.Option("--by", help="Group the totals by one of the ledger's columns.")] = "tenant",
    chart: Annotated[str | None, typer.Option("--chart", help="Write a PNG chart of spend over time.")] = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's calls.")] = None,
) -> None:
    """Print usage totals from the ledger; optionally chart spend over time."""
    from .paths import default_ledger_url
    from .usage.report import usage_command

    raise typer.Exit(usage_command(db or default_ledger_url(), by, chart, tenant))


@app.command()
def models() -> None:
    """List the providers this installation knows and which have keys set."""
    from rich.console import Console
    from rich.table import Table

    from .registry import HTTP_PROVIDERS, OTHER_PROVIDERS, default_spec

    table = Table("provider", "kind", "key", "supports", "base URL / notes")
    for name, spec in sorted(HTTP_PROVIDERS.items()):
        var = spec.key_variable_set()
        key = f"set ({var})" if var else ("-" if not spec.key_required else "missing: " + " or ".join(spec.key_env))
        where = spec.base_url or (f"${spec.base_env}" if spec.base_env else "api_base")
        table.add_row(name, spec.wire, key, ", ".join(sorted(spec.capabilities)), where)
    for name in sorted(OTHER_PROVIDERS):
        table.add_row(
            name,
            "in-process",
            "-",
            "",
            {
                "local": "llama.cpp: smollm2-135m (default, instruction-tuned), gemma3-270m (base)",
                "claude_code": "the claude CLI",
                "fake": "scripted, for tests",
            }[name],
        )
    console = Console()
    console.print(table)
    console.print(f"default: [bold]{default_spec()}[/bold]")


@app.command("mock-server")
def mock_server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on (0: any free port).")] = 8765,
) -> None:
    """Serve the mock provider (OpenAI, Anthropic, Gemini, Ollama wire formats) for tests."""
    from .testing.mock_server import run_mock_server

    run_mock_server(host, port)


config_app = typer.Typer(
    name="config",
    help="The config file: print its JSON Schema, check a file before serving it.",
    no_args_is_help=True,
)
app.add_typer(config_app)


@config_app.command("schema")
def config_schema(
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write the schema to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of llm-connect.yaml (point your editor's YAML support at it)."""
    import json

    from .config import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        from pathlib import Path

        Path(output).write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@config_app.command("check")
def config_check(
    file: Annotated[str, typer.Argument(help="The YAML config file to check.", metavar="FILE")],
) -> None:
    """Check a config file as `serve` would (schema, routers, policies, agents) without starting anything."""
    from .errors import LLMConfigurationError
    from .server.app import check_config

    try:
        cfg = check_config(file)
    except LLMConfigurationError as exc:
        _fail(str(exc), 2)
    groups, aliases = len(cfg.router_groups), len(cfg.models)
    ledger = cfg.ledger.url if cfg.ledger is not None else "off"
    default = cfg.default_model or "(none)"
    typer.echo(
        f"ok: {file}: {groups} router group(s), {aliases} alias(es), {len(cfg.tenants)} tenant(s), "
        f"{len(cfg.api_keys)} API key(s); auth {'on' if cfg.auth else 'OFF'}; default model {default}; "
        f"ledger {ledger}"
    )


def _key_commands() -> None:
    from .cli_keys import keys_app, teams_app, tenants_app

    for sub in (keys_app, teams_app, tenants_app):
        app.add_typer(sub)


_key_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
