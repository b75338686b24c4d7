"""The llm-connect gateway: an OpenAI-compatible, multi-tenant HTTP server, and the stdin bridge.

* :func:`create_app` / :class:`Gateway` — the raw ASGI app (``/v1/chat/completions``, ``/execute``,
  ``/complete``, ``/v1/models``, ``/v1/usage``, ``/health``, ``/ready``, ``/metrics``, ``/docs``).
* :func:`serve` — run it with uvicorn (``llm-connect serve`` / ``python -m llm_connect.server``).
* :func:`bridge_main` — one JSON request on stdin, one JSON response on stdout (``llm-connect bridge``).

See docs/gateway.md. Names are imported on first use so the bridge starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import Gateway, create_app, serve
    from .bridge import main as bridge_main
    from .engine import Engine

__all__ = ["Engine", "Gateway", "bridge_main", "create_app", "serve"]

_LAZY = {
    "Engine": ("engine", "Engine"),
    "Gateway": ("app", "Gateway"),
    "create_app": ("app", "create_app"),
    "serve": ("app", "serve"),
    "bridge_main": ("bridge", "main"),
}


def __getattr__(name: str) -> Any:
    entry = _LAZY.get(name)
    if entry is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{entry[0]}"), entry[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
