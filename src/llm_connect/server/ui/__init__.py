"""The web dashboard served by the gateway at ``/ui``: spend and tokens over time, budgets, API keys (create,
revoke), the recent calls and each call's detail, server-rendered (HTML and inline SVG charts; a small script
only refreshes the live parts in place). Templates, stylesheet and script ship inside this package: nothing
is fetched from elsewhere.

See docs/dashboard.md. :data:`ROUTES` joins the gateway's route table (:mod:`llm_connect.server.app`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from . import keys, pages

__all__ = ["ROUTES"]

#: (method, path) -> handler, merged into the gateway's route table (HTML pages: not in the OpenAPI document)
ROUTES: Mapping[tuple[str, str], Callable[[Any, Any], Awaitable[Any]]] = MappingProxyType(
    {
        ("GET", "/ui"): pages.handle_index,
        ("GET", "/ui/"): pages.handle_index,
        ("GET", "/ui/login"): pages.handle_login_form,
        ("POST", "/ui/login"): pages.handle_login,
        ("POST", "/ui/logout"): pages.handle_logout,
        ("GET", "/ui/overview"): pages.handle_overview,
        ("GET", "/ui/budgets"): pages.handle_budgets,
        ("GET", "/ui/keys"): keys.handle_keys,
        ("POST", "/ui/keys/create"): keys.handle_key_create,
        ("POST", "/ui/keys/revoke"): keys.handle_key_revoke,
        ("GET", "/ui/calls"): pages.handle_calls,
        ("GET", "/ui/calls/{request_id}"): pages.handle_call,
        ("GET", "/ui/static/{name}"): pages.handle_static,
    }
)
