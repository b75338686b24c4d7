"""The OpenAI Responses API as an inbound codec: request bodies -> the core contract, results -> Response objects.

Pure functions, no I/O. :func:`parse_tools`, :func:`parse_tool_choice`, :func:`parse_text_format` and
:func:`input_items` read a ``POST /v1/responses`` body's structured fields; :func:`to_messages` turns a
conversation of items (a stored response's items and the request's own) into OpenAI chat messages, the
core's prompt shape. :func:`output_items`, :func:`usage_object` and :func:`response_object` render the core's
answer as the Response object the official SDKs parse; the stream encoder (``llm_connect.server.responses``)
builds its events from the same item shapes.

Tools: ``function`` tools, the functions inside a ``namespace`` tool (their names go upstream as
``<namespace>__<name>`` and come back split) and ``custom`` (free-form input) tools, which go upstream as a
function taking one string ``input``. Tools the OpenAI platform runs itself (``web_search``, ``file_search``,
``code_interpreter``, ``image_generation``, ``computer_use_preview``, ``mcp``, ...) have no runner here: with
``builtin_tools="drop"`` they are left out of what the model sees and reported back (the caller turns that into
the ``x-llm-tools-dropped`` header); with ``"refuse"`` any of them is a 400 naming it. A ``tool_choice`` that
forces one of them is a 400 either way: the request cannot be honoured.

Problems are :class:`RequestProblem` (a status, the offending parameter and a message); the gateway renders
them as OpenAI error bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...types import Usage
from . import RequestProblem

__all__ = [
    "CLIENT_TOOLS",
    "NS_SEP",
    "RequestProblem",
    "ToolSet",
    "flat_name",
    "input_items",
    "output_items",
    "parse_text_format",
    "parse_tool_choice",
    "parse_tools",
    "response_object",
    "to_messages",
    "usage_object",
]

#: tool types the client runs itself (everything else is a tool the OpenAI platform runs)
CLIENT_TOOLS = frozenset({"function", "namespace", "custom"})
#: between a namespace and a function name in the name sent upstream (tool names allow ``[A-Za-z0-9_-]``)
NS_SEP = "__"
_IMAGE_DETAILS = frozenset({"auto", "low", "high", "original"})
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


def _bad(param: str, message: str) -> RequestProblem:
    return RequestProblem(param, message)


def _unsupported(param: str, message: str, code: str = "unsupported_parameter") -> RequestProblem:
    return RequestProblem(param, message, status=400, code=code)


def flat_name(namespace: str | None, name: str) -> str:
    """The tool name the upstream sees for ``name`` inside ``namespace`` (or ``name`` itself)."""
    return f"{namespace}{NS_SEP}{name}" if namespace else name


# --------------------------------------------------------------------------------------------- tools


@dataclass(slots=True)
class ToolSet:
    """A request's tools as the upstream sees them, and how to name its calls back."""

    #: OpenAI chat tool definitions (None: no tools)
    chat: list[dict[str, Any]] | None = None
    #: upstream name -> (namespace or None, name, "function" | "custom")
    names: dict[str, tuple[str | None, str, str]] = field(default_factory=dict)
    #: the tools sent upstream, in the request's own shape (what the Response object echoes)
    echo: list[dict[str, Any]] = field(default_factory=list)
    #: types of the tools left out (built-in tools the gateway cannot run), in request order, no repeats
    dropped: list[str] = field(default_factory=list)

    def call_name(self, upstream: str) -> tuple[str | None, str, str]:
        """(namespace, name, kind) of a call the upstream made by ``upstream`` name."""
        return self.names.get(upstream) or (None, upstream, "function")


def _str(v: Any, param: str, *, required: bool = True) -> str | None:
    if v is None and not required:
        return None
    if not isinstance(v, str) or (required and not v):
        raise _bad(param, "must be a non-empty string" if required else "must be a string")
    return v


def _function(t: Mapping[str, Any], param: str, namespace: str | None, out: ToolSet) -> None:
    name = _str(t.get("name"), f"{param}.name")
    assert name is not None
    params = t.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise _bad(f"{param}.parameters", "must be a JSON Schema object")
    desc = _str(t.get("description"), f"{param}.description", required=False)
    strict = t.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(f"{param}.strict", "must be true or false")
    fn: dict[str, Any] = {"name": flat_name(namespace, name)}
    if desc:
        fn["description"] = desc
    fn["parameters"] = params if params is not None else {"type": "object", "properties": {}}
    if strict:
        fn["strict"] = True
    _add(out, fn, namespace, name, "function", param)


def _custom(t: Mapping[str, Any], param: str, namespace: str | None, out: ToolSet) -> None:
    name = _str(t.get("name"), f"{param}.name")
    assert name is not None
    desc = _str(t.get("description"), f"{param}.description", required=False) or ""
    fmt = t.get("format")
    if isinstance(fmt, Mapping) and fmt.get("type") == "grammar":
        desc += f"\n\nThe input follows this {fmt.get('syntax', '')} grammar:\n{fmt.get('definition', '')}"
    fn = {
        "name": flat_name(namespace, name),
        "description": (desc + "\n\nPass the tool's whole free-form input as the string `input`.").strip(),
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]},
    }
    _add(out, fn, namespace, name, "custom", param)


def _add(out: ToolSet, fn: dict[str, Any], namespace: str | None, name: str, kind: str, param: str) -> None:
    upstream = fn["name"]
    if upstream in out.names:
        raise _bad(f"{param}.name", f"tool {upstream!r} is defined twice")
    out.names[upstream] = (namespace, name, kind)
    assert out.chat is not None
    out.chat.append({"type": "function", "function": fn})


def parse_tools(tools: Any, *, builtin_tools: str = "drop") -> ToolSet:
    """The request's ``tools`` (see the module docstring); ``builtin_tools`` is ``"drop"`` or ``"refuse"``."""
    out = ToolSet(chat=[])
    if tools is None:
        return ToolSet()
    if not isinstance(tools, list):
        raise _bad("tools", "must be a list of tools")
    for i, t in enumerate(tools):
        p = f"tools[{i}]"
        if not isinstance(t, Mapping) or not isinstance(t.get("type"), str):
            raise _bad(p, "must be an object with a 'type'")
        kind = t["type"]
        if kind == "function":
            _function(t, p, None, out)
        elif kind == "custom":
            _custom(t, p, None, out)
        elif kind == "namespace":
            ns = _str(t.get("name"), f"{p}.name")
            inner = t.get("tools")
            if not isinstance(inner, list):
                raise _bad(f"{p}.tools", "must be a list of function tools")
            for j, sub in enumerate(inner):
                q = f"{p}.tools[{j}]"
                if not isinstance(sub, Mapping) or sub.get("type") not in ("function", "custom"):
                    raise _bad(q, "must be a function or custom tool")
                (_function if sub["type"] == "function" else _custom)(sub, q, ns, out)
        elif builtin_tools == "refuse":
            raise _unsupported(
                p,
                f"the built-in tool {kind!r} runs on OpenAI's platform and this gateway cannot run it "
                "(responses.builtin_tools is 'refuse')",
                "unsupported_tool",
            )
        else:
            if kind not in out.dropped:
                out.dropped.append(kind)
            continue
        out.echo.append(dict(t))
    if not out.chat:
        out.chat = None
    return out


def _by_name(tools: ToolSet, name: Any, param: str) -> str:
    """The upstream name of a tool a tool_choice names (a plain name, or a function inside a namespace)."""
    if not isinstance(name, str) or not name:
        raise _bad(f"{param}.name", "must be a non-empty string")
    if name in tools.names:
        return name
    inner = [up for up, (ns, n, _) in tools.names.items() if n == name]
    if len(inner) == 1:
        return inner[0]
    raise _bad(f"{param}.name", f"names no tool of this request: {name!r}")


def parse_tool_choice(choice: Any, tools: ToolSet) -> Any:
    """The chat ``tool_choice`` of a Responses ``tool_choice`` (may narrow ``tools.chat`` for allowed_tools)."""
    if choice is None or choice in ("auto", "none"):
        return choice
    if choice == "required":
        if tools.chat is None:
            why = f" (only built-in tools, which were dropped: {', '.join(tools.dropped)})" if tools.dropped else ""
            raise _unsupported("tool_choice", f"'required' needs a function tool{why}", "unsupported_tool")
        return choice
    if not isinstance(choice, Mapping) or not isinstance(choice.get("type"), str):
        raise _bad("tool_choice", "must be 'auto', 'none', 'required' or an object with a 'type'")
    kind = choice["type"]
    if kind in ("function", "custom"):
        return {"type": "function", "function": {"name": _by_name(tools, choice.get("name"), "tool_choice")}}
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        if mode not in ("auto", "required"):
            raise _bad("tool_choice.mode", "must be 'auto' or 'required'")
        allowed = choice.get("tools")
        if not isinstance(allowed, list):
            raise _bad("tool_choice.tools", "must be a list of tools")
        keep: set[str] = set()
        for i, t in enumerate(allowed):
            if isinstance(t, Mapping) and t.get("type") in ("function", "custom"):
                keep.add(_by_name(tools, t.get("name"), f"tool_choice.tools[{i}]"))
        chat = [t for t in tools.chat or () if t["function"]["name"] in keep]
        if mode == "required" and not chat:
            raise _unsupported("tool_choice", "allowed_tools with mode 'required' allows no function tool")
        tools.chat = chat or None
        return mode if chat else "none"
    raise _unsupported(
        "tool_choice",
        f"forces the built-in tool {kind!r}, which runs on OpenAI's platform; this gateway cannot run it",
        "unsupported_tool",
    )


def parse_text_format(text: Any) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the chat ``response_format`` or None, the ``text`` object to echo) of a request's ``text``."""
    if text is None:
        return None, {"format": {"type": "text"}}
    if not isinstance(text, Mapping):
        raise _bad("text", "must be an object")
    fmt = text.get("format")
    if fmt is None:
        return None, {**text, "format": {"type": "text"}}
    if not isinstance(fmt, Mapping):
        raise _bad("text.format", "must be an object with a 'type'")
    kind = fmt.get("type")
    if kind == "text":
        return None, dict(text)
    if kind == "json_object":
        return {"type": "json_object"}, dict(text)
    if kind == "json_schema":
        name = _str(fmt.get("name"), "text.format.name")
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("text.format.schema", "is required (a JSON Schema object)")
        js: dict[str, Any] = {"name": name, "schema": schema}
        for k in ("description", "strict"):
            if fmt.get(k) is not None:
                js[k] = fmt[k]
        return {"type": "json_schema", "json_schema": js}, dict(text)
    raise _bad("text.format.type", f"must be text, json_object or json_schema, got {kind!r}")


# --------------------------------------------------------------------------------------------- input


def input_items(value: Any) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message), checked item by item."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list) or not value:
        raise _bad("input", "is required: a string or a non-empty list of items")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise _bad(f"input[{i}]", "must be an object")
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            _check_message(item, f"input[{i}]")
        elif kind in ("function_call", "custom_tool_call"):
            _str(item.get("call_id"), f"input[{i}].call_id")
            _str(item.get("name"), f"input[{i}].name")
            key = "arguments" if kind == "function_call" else "input"
            if not isinstance(item.get(key), str):
                raise _bad(f"input[{i}].{key}", "must be a string")
        elif kind in ("function_call_output", "custom_tool_call_output"):
            _str(item.get("call_id"), f"input[{i}].call_id")
            if not isinstance(item.get("output"), (str, list)):
                raise _bad(f"input[{i}].output", "must be a string or a list of content parts")
        elif kind == "reasoning":
            pass  # the model's own earlier reasoning: kept in the conversation, not sent upstream
        elif kind == "item_reference":
            raise _unsupported(f"input[{i}].type", "item_reference is not supported; send the item itself")
        else:
            raise _unsupported(f"input[{i}].type", f"input items of type {kind!r} are not supported")
        out.append({**item, "type": kind})
    return out


def _check_message(item: Mapping[str, Any], p: str) -> None:
    role = item.get("role")
    if role not in _MESSAGE_ROLES:
        raise _bad(f"{p}.role", f"must be one of {sorted(_MESSAGE_ROLES)}, got {role!r}")
    content = item.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(f"{p}.content", "must be a string or a list of content parts")
    for j, part in enumerate(content):
        q = f"{p}.content[{j}]"
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            raise _bad(q, "must be an object with a 'type'")
        kind = part["type"]
        if kind in ("input_text", "output_text", "text", "refusal"):
            key = "refusal" if kind == "refusal" else "text"
            if not isinstance(part.get(key), str):
                raise _bad(f"{q}.{key}", "must be a string")
        elif kind == "input_image":
            if part.get("file_id") is not None and part.get("image_url") is None:
                raise _unsupported(f"{q}.file_id", "file ids are not supported: send image_url (a URL or data: URL)")
            if not isinstance(part.get("image_url"), str) or not part["image_url"]:
                raise _bad(f"{q}.image_url", "is required (a URL or a data: URL)")
            if part.get("detail") is not None and part["detail"] not in _IMAGE_DETAILS:
                raise _bad(f"{q}.detail", f"must be one of {sorted(_IMAGE_DETAILS)}")
        else:
            raise _unsupported(f"{q}.type", f"content parts of type {kind!r} are not supported")


def _parts(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part["type"]
        if kind == "input_image":
            img = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                img["detail"] = part["detail"]
            out.append({"type": "image_url", "image_url": img})
        else:
            out.append({"type": "text", "text": part["refusal" if kind == "refusal" else "text"]})
    if all(p["type"] == "text" for p in out):  # plain text stays a string (every wire format takes it)
        return "\n\n".join(p["text"] for p in out) if len(out) != 1 else out[0]["text"]
    return out


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return "\n\n".join(p.get("text", "") for p in output if isinstance(p, Mapping) and isinstance(p.get("text"), str))


def to_messages(items: list[dict[str, Any]], instructions: str | None = None) -> list[dict[str, Any]]:
    """OpenAI chat messages of a conversation of items (``instructions`` first, as a system message).

    Consecutive function calls become one assistant message with several tool calls; an assistant message
    right before them carries them."""
    msgs: list[dict[str, Any]] = []
    if instructions:
        msgs.append({"role": "system", "content": instructions})
    for item in items:
        kind = item["type"]
        if kind == "message":
            msgs.append({"role": item["role"], "content": _parts(item["content"])})
        elif kind in ("function_call", "custom_tool_call"):
            name = flat_name(item.get("namespace"), item["name"])
            args = item["arguments"] if kind == "function_call" else orjson.dumps({"input": item["input"]}).decode()
            call = {"id": item["call_id"], "type": "function", "function": {"name": name, "arguments": args}}
            if msgs and msgs[-1]["role"] == "assistant":
                msgs[-1].setdefault("tool_calls", []).append(call)
            else:
                msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            msgs.append({"role": "tool", "tool_call_id": item["call_id"], "content": _output_text(item["output"])})
    return msgs


# --------------------------------------------------------------------------------------------- output


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def reasoning_item(item_id: str, text: str) -> dict[str, Any]:
    """A reasoning output item whose summary is the upstream's reasoning text (DeepSeek ``reasoning_content``,
    Claude thinking, Gemini thoughts): one ``summary_text`` part; the empty summary of an item announced
    before its text."""
    return {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}] if text else []}


def call_item(
    item_id: str, call_id: str, upstream_name: str, arguments: str, tools: ToolSet, status: str = "completed"
) -> dict[str, Any]:
    """A function_call (or custom_tool_call) output item of a call the upstream made by ``upstream_name``."""
    namespace, name, kind = tools.call_name(upstream_name)
    if kind == "custom":
        args = _loads(arguments)
        value = args.get("input") if isinstance(args, dict) else None
        item: dict[str, Any] = {
            "id": item_id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "input": value if isinstance(value, str) else arguments,
        }
    else:
        item = {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }
    if namespace:
        item["namespace"] = namespace
    return item


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return None


def output_items(
    text: str,
    tool_calls: list[dict[str, Any]] | None,
    tools: ToolSet,
    new_id: Callable[[str], str],
    reasoning: str = "",
) -> list[dict[str, Any]]:
    """The output items of a finished answer: its reasoning text (if any) as a reasoning item, its text as one
    message, then one item per tool call."""
    out = [reasoning_item(new_id("rs"), reasoning)] if reasoning else []
    if text or not tool_calls:
        out.append(message_item(new_id("msg"), text))
    for tc in tool_calls or ():
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        args = args if isinstance(args, str) else orjson.dumps(args or {}).decode()
        out.append(call_item(new_id("fc"), tc.get("id") or new_id("call"), fn.get("name") or "", args, tools))
    return out


def usage_object(usage: Usage, cost: Any = None, *, with_cost: bool = False) -> dict[str, Any]:
    """A Response's ``usage``; ``with_cost`` adds the extension ``cost_usd`` (a decimal string or null)."""
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }
    if with_cost:
        out["cost_usd"] = None if cost is None else str(cost)
    return out


def response_object(
    resp_id: str,
    created_at: int,
    model: str,
    echo: Mapping[str, Any],
    *,
    output: list[dict[str, Any]] | None = None,
    status: str = "completed",
    usage: dict[str, Any] | None = None,
    finish: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object: ``echo`` holds the request parameters it repeats (instructions, tools, ...);
    a finish reason ``length`` makes it ``incomplete`` (reason ``max_output_tokens``), ``content_filter``
    too (reason ``content_filter``)."""
    incomplete = None
    if status == "completed" and finish in ("length", "content_filter"):
        status = "incomplete"
        incomplete = {"reason": "max_output_tokens" if finish == "length" else "content_filter"}
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "model": model,
        "output": output if output is not None else [],
        "usage": usage,
        **echo,
    }
