"""Field-by-field validation of request bodies: every problem is a 422 that names the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..types import ROLES, metadata_problem
from .budgets import BudgetRequest, check_id, parse_tokens, parse_usd
from .errors import ApiError, field_error

__all__ = ["Fields", "budget_from_headers", "check_messages", "header", "with_thread"]

_MAX_STR = 256

#: the largest integer any field may carry (what a 64-bit JSON encoder and every provider accept)
INT64_MAX = 2**63 - 1


class Fields:
    """Reads a JSON object; each getter validates one field (absent or null -> the default)."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def _p(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def str(self, key: str, *, max_len: int = _MAX_STR, required: bool = False) -> str | None:
        v = self.data.get(key)
        if v is None:
            if required:
                raise field_error(self._p(key), "is required")
            return None
        if not isinstance(v, str):
            raise field_error(self._p(key), f"must be a string, got {type(v).__name__}")
        if len(v) > max_len:
            raise field_error(self._p(key), f"must be at most {max_len} characters")
        return v

    def ident(self, key: str) -> str | None:
        v = self.data.get(key)
        return None if v is None else check_id(v, self._p(key))

    def int(self, key: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise field_error(self._p(key), f"must be an integer, got {v!r}")
        if not -INT64_MAX <= v <= INT64_MAX:
            raise field_error(self._p(key), "is out of range (a 64-bit integer)")
        if minimum is not None and v < minimum:
            raise field_error(self._p(key), f"must be >= {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise field_error(self._p(key), f"must be <= {maximum}, got {v}")
        return v

    def num(
        self, key: str, *, lo: float | None = None, hi: float | None = None, positive: bool = False
    ) -> float | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            raise field_error(self._p(key), f"must be a number, got {v!r}")
        if positive and v <= 0:
            raise field_error(self._p(key), f"must be > 0, got {v}")
        if lo is not None and v < lo:
            raise field_error(self._p(key), f"must be >= {lo:g}, got {v}")
        if hi is not None and v > hi:
            raise field_error(self._p(key), f"must be <= {hi:g}, got {v}")
        return float(v)

    def bool(self, key: str, default: bool = False) -> bool:
        v = self.data.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise field_error(self._p(key), f"must be true or false, got {v!r}")
        return v

    def obj(self, key: str) -> dict[str, Any] | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise field_error(self._p(key), f"must be an object, got {type(v).__name__}")
        return v

    def stop(self, key: str = "stop") -> str | list[str] | None:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, str):
            return v
        if isinstance(v, list) and len(v) <= 16 and all(isinstance(s, str) for s in v):
            return v
        raise field_error(self._p(key), "must be a string or a list of at most 16 strings")

    def tools(self, key: str = "tools") -> list[dict[str, Any]] | None:
        v = self.data.get(key)
        if v is None:
            return None
        if not isinstance(v, list):
            raise field_error(self._p(key), "must be a list of tool definitions")
        for i, t in enumerate(v):
            if not isinstance(t, dict):
                raise field_error(f"{self._p(key)}[{i}]", "must be an object")
            fn = t.get("function")
            named = isinstance(fn, dict) and isinstance(fn.get("name"), str)
            if t.get("type", "function") == "function" and not named:
                raise field_error(f"{self._p(key)}[{i}].function.name", "is required (a string)")
        return v or None

    def response_format(self, key: str = "response_format") -> dict[str, Any] | None:
        v = self.obj(key)
        if v is not None and not isinstance(v.get("type"), str):
            raise field_error(f"{self._p(key)}.type", "is required (text, json_object or json_schema)")
        if v is not None and not isinstance(v.get("json_schema", {}), (dict, type(None))):
            raise field_error(f"{self._p(key)}.json_schema", "must be an object")
        return v

    def metadata(self, key: str = "metadata") -> dict[str, Any]:
        """An object within the bounds every call's metadata has (see :func:`llm_connect.types.metadata_problem`:
        8 levels deep, 64 keys, 16 KiB of JSON)."""
        v = self.obj(key)
        if not v:
            return {}
        problem = metadata_problem(v)
        if problem is not None:
            raise field_error(self._p(key), problem)
        return dict(v)

    def messages(self, key: str = "messages", *, required: bool = True) -> list[dict[str, Any]] | None:
        v = self.data.get(key)
        if v is None:
            if required:
                raise field_error(self._p(key), "is required (a non-empty list of messages)")
            return None
        return check_messages(v, self._p(key))

    def reject_unknown(self, known: frozenset[str]) -> None:
        for k in self.data:
            if k not in known:
                raise field_error(self._p(str(k)), f"unknown field (known: {', '.join(sorted(known))})")


def check_messages(v: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(v, list) or not v:
        raise field_error(param, "must be a non-empty list of messages")
    for i, m in enumerate(v):
        p = f"{param}[{i}]"
        if not isinstance(m, dict):
            raise field_error(p, "must be an object with 'role' and 'content'")
        role = m.get("role")
        if not isinstance(role, str):
            raise field_error(f"{p}.role", "is required (a string)")
        if role not in ROLES:
            raise field_error(f"{p}.role", f"must be one of {sorted(ROLES)}, got {role!r}")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise field_error(f"{p}.content", "must be a string, a list of content parts or null")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise field_error(f"{p}.content[{j}]", "must be an object with a 'type'")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise field_error(f"{p}.content[{j}].text", "must be a string")
        if content is None and role in ("user", "system", "developer"):
            raise field_error(f"{p}.content", "is required for this role")
        if m.get("tool_calls") is not None and not isinstance(m["tool_calls"], list):
            raise field_error(f"{p}.tool_calls", "must be a list")
    return v


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """An X-LLM-* header value (at most 256 printable characters; 422 otherwise)."""
    v = headers.get(name) if headers else None
    if v is None:
        return None
    if not v or len(v) > _MAX_STR or not v.isprintable():
        title = "-".join(w.upper() if w == "llm" else w.capitalize() for w in name.split("-"))
        raise ApiError(
            422,
            f"{title} must be 1 to {_MAX_STR} printable characters",
            "invalid_request_error",
            "invalid_field",
            title,
        )
    return v


def budget_from_headers(headers: Mapping[str, str]) -> BudgetRequest | None:
    """X-LLM-Budget-Id (+ -Tokens / -USD when creating it) and X-LLM-Thread-Id."""
    bid = headers.get("x-llm-budget-id")
    tid = headers.get("x-llm-thread-id")
    tokens = headers.get("x-llm-budget-tokens")
    usd = headers.get("x-llm-budget-usd")
    if bid is None and tid is None:
        if tokens is not None or usd is not None:
            raise ApiError(
                422,
                "X-LLM-Budget-Tokens / X-LLM-Budget-USD need X-LLM-Budget-Id",
                "invalid_request_error",
                "invalid_field",
                "X-LLM-Budget-Id",
            )
        return None
    return BudgetRequest(
        budget_id=None if bid is None else check_id(bid, "X-LLM-Budget-Id"),
        tokens=parse_tokens(tokens, "X-LLM-Budget-Tokens"),
        usd=parse_usd(usd, "X-LLM-Budget-USD"),
        thread_id=None if tid is None else check_id(tid, "X-LLM-Thread-Id"),
    )


def with_thread(budget: BudgetRequest | None, thread_id: str | None) -> BudgetRequest | None:
    """The budget request with a thread id from the body added (the body wins over X-LLM-Thread-Id)."""
    if thread_id is None:
        return budget
    if budget is None:
        return BudgetRequest(thread_id=thread_id)
    return BudgetRequest(budget.budget_id, budget.tokens, budget.usd, thread_id)
