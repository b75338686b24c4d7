"""The stdin bridge: one JSON request on stdin -> one JSON response on stdout (``llm-connect bridge``).

The request and response are exactly those of ``POST /execute`` (see :mod:`llm_connect.server.execute` and
docs/gateway.md), so a caller can switch from spawning the bridge to POSTing to a running gateway with the
same bytes. Errors are JSON too (``{"ok": false, "error": {...}}``), with a non-zero exit code:

====  ==========================================================
0     ok
1     configuration or internal error
2     bad request (malformed JSON, schema error, unknown model)
3     refused by a budget or a rate limit
4     the provider failed (unavailable, timeout, rate-limited)
====  ==========================================================

Everything is imported lazily: no HTTP server, no metrics, and only the provider the call needs.
"""

from __future__ import annotations

import sys
from typing import IO, Any

__all__ = ["exit_code", "main"]


def exit_code(status: int, code: str | None) -> int:
    if status == 429 and code in ("budget_exceeded", "rate_limit_exceeded"):
        return 3
    if status >= 500 and code in ("configuration_error", "internal_error"):
        return 1
    if status >= 429:
        return 4
    if status >= 400:
        return 2
    return 0


async def _run(config_path: str | None, data: Any) -> dict[str, Any]:
    from ..config import load_config
    from .asgi import new_request_id
    from .engine import Engine
    from .execute import run_execute

    engine = Engine(load_config(config_path), metrics=False, keys=False)  # a trusted local caller: no key look-ups
    try:
        await engine.start()
        principal = engine.auth.local()
        return await run_execute(engine, principal, data, {}, new_request_id(), "bridge")
    finally:
        await engine.aclose()


def main(config_path: str | None = None, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> int:
    """Run one request. Returns the exit code (see the module docstring)."""
    import asyncio

    import orjson

    from ..errors import LLMConfigurationError
    from .errors import ApiError

    src = stdin if stdin is not None else sys.stdin.buffer
    dst = stdout if stdout is not None else sys.stdout.buffer
    status = 0
    try:
        raw = src.read()
        if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM, as Windows tools write it
            raw = raw[3:]
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"malformed JSON on stdin: {exc}", "invalid_request_error", "invalid_json") from None
        payload = asyncio.run(_run(config_path, data))
    except ApiError as err:
        from .execute import error_payload

        payload, status = error_payload(err), exit_code(err.status, err.code)
    except LLMConfigurationError as exc:
        payload = {
            "ok": False,
            "error": {
                "type": "configuration_error",
                "code": "configuration_error",
                "message": str(exc),
                "param": getattr(exc, "path", None),
            },
        }
        status = 1
    except KeyboardInterrupt:
        payload = {
            "ok": False,
            "error": {"type": "api_error", "code": "interrupted", "message": "interrupted", "param": None},
        }
        status = 130
    except Exception as exc:  # never a traceback on stdout
        payload = {
            "ok": False,
            "error": {
                "type": "api_error",
                "code": "internal_error",
                "message": f"internal error ({type(exc).__name__})",
                "param": None,
            },
        }
        status = 1
    dst.write(orjson.dumps(payload) + b"\n")
    dst.flush()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
