"""The gateway's OpenAPI 3.1 description and a self-contained docs page (no CDN, no external assets)."""

from __future__ import annotations

from typing import Any

from ..config import GatewayConfig

__all__ = ["DOCS_HTML", "spec"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "Malformed JSON or a request no provider can serve"),
    "401": _json(_ref("Error"), "Missing or invalid API key"),
    "403": _json(_ref("Error"), "The key may not use this model / tenant"),
    "404": _json(_ref("Error"), "Unknown model"),
    "413": _json(_ref("Error"), "Body over server.max_body_bytes"),
    "422": _json(_ref("Error"), "Schema error; error.param names the field"),
    "429": _json(_ref("Error"), "code rate_limit_exceeded (Retry-After set), budget_exceeded or upstream_rate_limited"),
    "503": _json(_ref("Error"), "Every provider failed (provider_unavailable) or the budget store is down"),
    "504": _json(_ref("Error"), "No answer within the timeout"),
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "null"}]},
        "name": {"type": "string"},
        "tool_calls": {"type": "array", "items": {"type": "object"}},
        "tool_call_id": {"type": "string"},
    },
}

_USAGE = {
    "type": "object",
    "properties": {
        k: {"type": "integer"}
        for k in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "total_tokens",
        )
    },
}

_DELEGATION_HEADERS = [
    {
        "name": "X-LLM-Budget-Id",
        "in": "header",
        "schema": {"type": "string"},
        "description": "Shared budget of a delegation chain (per tenant).",
    },
    {
        "name": "X-LLM-Budget-Tokens",
        "in": "header",
        "schema": {"type": "integer"},
        "description": "Token cap of the budget, set by the request that creates it.",
    },
    {
        "name": "X-LLM-Budget-USD",
        "in": "header",
        "schema": {"type": "string"},
        "description": "USD cap of the budget, set by the request that creates it.",
    },
    {
        "name": "X-LLM-Thread-Id",
        "in": "header",
        "schema": {"type": "string"},
        "description": "Per-thread budget (budgets.max_tokens_per_thread).",
    },
]


def _schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "object",
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "code": {"type": ["string", "null"]},
                        "param": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "Message": _MESSAGE,
        "ExecuteRequest": {
            "type": "object",
            "description": "The bridge's request (stdin of `llm-connect bridge`). Unknown fields are refused.",
            "properties": {
                "prompt": {"anyOf": [{"type": "string"}, {"type": "array", "items": _ref("Message")}]},
                "messages": {"type": "array", "items": _ref("Message")},
                "model": {"type": "string", "description": "group, alias or provider:model"},
                "system_prompt": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number"},
                "timeout": {"type": "number", "description": "seconds"},
                "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "seed": {"type": "integer"},
                "response_format": {"type": "object"},
                "json_mode": {"type": "boolean"},
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {},
                "tenant_id": {"type": "string"},
                "agent": {"type": "string"},
                "thread_id": {"type": "string"},
                "task_type": {"type": "string"},
                "metadata": {
                    "type": "object",
                    "description": "stored with the call's usage; at most 8 levels deep, 64 keys, 16 KiB as JSON",
                },
                "budget": {
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": {"type": "string"},
                        "total_tokens": {"type": "integer"},
                        "total_usd": {"type": "string"},
                    },
                },
            },
        },
        "ExecuteResponse": {
            "type": "object",
            "properties": {
                "ok": {"type": "boolean"},
                "text": {"type": "string"},
                "model": {"type": "string"},
                "provider": {"type": "string"},
                "finish_reason": {"type": ["string", "null"]},
                "usage": _USAGE,
                "cost_usd": {"type": ["string", "null"]},
                "latency_ms": {"type": "number"},
                "request_id": {"type": "string"},
                "tool_calls": {"type": ["array", "null"]},
                "budget": {"type": "object"},
                "error": {"type": "object", "description": "when ok is false: type, code, message, param"},
            },
        },
        "CompleteRequest": {
            "type": "object",
            "required": ["messages"],
            "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "items": _ref("Message")},
                "tenant_id": {"type": "string"},
            },
        },
        "CompleteResponse": {
            "type": "object",
            "properties": {
                "content": {"type": "string"},
                "model": {"type": "string"},
                "usage": {
                    "type": "object",
                    "properties": {"prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}},
                },
            },
        },
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["messages"],
            "description": "OpenAI Chat Completions. Extensions: tenant_id, agent, thread_id, task_type, timeout.",
            "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "items": _ref("Message")},
                "max_tokens": {"type": "integer"},
                "max_completion_tokens": {"type": "integer"},
                "temperature": {"type": "number"},
                "top_p": {"type": "number"},
                "stop": {},
                "seed": {"type": "integer"},
                "stream": {"type": "boolean"},
                "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
                "response_format": {"type": "object"},
                "tools": {"type": "array"},
                "tool_choice": {},
            },
        },
    }


def spec(config: GatewayConfig | None = None) -> dict[str, Any]:
    """The OpenAPI document of the gateway."""
    sec = [{"bearer": []}] if config is not None and config.auth else []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llm-connect gateway",
            "version": "1",
            "description": "OpenAI-compatible, multi-tenant LLM gateway with budgets, routing and usage.",
        },
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/chat/completions": {
                "post": {
                    "summary": "Chat completion (OpenAI shape; SSE when stream=true)",
                    "security": sec,
                    "parameters": _DELEGATION_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ChatCompletionRequest")}},
                    },
                    "responses": {
                        "200": {"description": "chat.completion, or text/event-stream of chat.completion.chunk"},
                        **_ERRORS,
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "Model groups and aliases this key may use",
                    "security": sec,
                    "responses": {"200": {"description": "OpenAI model list"}, "401": _ERRORS["401"]},
                }
            },
            "/execute": {
                "post": {
                    "summary": "The bridge's request / response over HTTP (seed FR-1)",
                    "security": sec,
                    "parameters": _DELEGATION_HEADERS,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ExecuteRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("ExecuteResponse")),
                        "default": _json(_ref("ExecuteResponse"), "ok=false with an error object"),
                    },
                }
            },
            "/complete": {
                "post": {
                    "summary": "LLM pool completion (seed 002)",
                    "security": sec,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("CompleteRequest")}},
                    },
                    "responses": {
                        "200": _json(_ref("CompleteResponse")),
                        "503": {"description": '{"error": "All providers unavailable"}'},
                        **_ERRORS,
                    },
                }
            },
            "/v1/usage": {
                "get": {
                    "summary": "Usage totals (a tenant key sees its own tenant, the admin key all)",
                    "security": sec,
                    "parameters": [
                        {
                            "name": "group_by",
                            "in": "query",
                            "schema": {
                                "type": "string",
                                "enum": ["tenant", "agent", "model", "provider", "day", "thread", "task_type"],
                            },
                        },
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "tenant", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "rows of totals"}, "401": _ERRORS["401"]},
                }
            },
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": '{"status": "ok"}'}}}},
            "/ready": {
                "get": {
                    "summary": "Readiness (Redis and ledger when configured)",
                    "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (admin key unless server.public_metrics)",
                    "responses": {"200": {"description": "text/plain; version=0.0.4"}},
                }
            },
        },
    }


DOCS_HTML = rb"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llm-connect gateway API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#fafafa;color:#222}
header{background:#1f2937;color:#fff;padding:1rem 2rem}main{max-width:1000px;margin:auto;padding:1rem 2rem}
details{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.6rem 0}
summary{cursor:pointer;padding:.6rem 1rem;font-weight:600}
.m{display:inline-block;min-width:4.5em;padding:0 .4em;margin-right:.6em;border-radius:4px;color:#fff;text-align:center}
.get{background:#2563eb}.post{background:#059669}
pre{background:#f3f4f6;padding:.8rem;overflow:auto;border-radius:4px;margin:.4rem 1rem 1rem}
h4{margin:.6rem 1rem 0}p{margin:.2rem 1rem}
</style></head><body>
<header><h1 style="margin:0;font-size:1.4rem">llm-connect gateway API</h1>
<div id="desc"></div></header><main id="out">loading /openapi.json ...</main>
<script>
function esc(s){return String(s).replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]))}
function deref(doc,s){if(s&&s.$ref){return doc.components.schemas[s.$ref.split('/').pop()]}return s}
fetch('openapi.json').then(r=>r.json()).then(doc=>{
 document.getElementById('desc').textContent=doc.info.description;
 let h='';
 for(const [path,ops] of Object.entries(doc.paths)){for(const [m,op] of Object.entries(ops)){
  h+='<details><summary><span class="m '+m+'">'+m.toUpperCase()+'</span>';
  h+=esc(path)+' \u2014 '+esc(op.summary||'')+'</summary>';
  if(op.parameters){
   const ps=op.parameters.map(p=>p.in+' '+p.name+(p.description?' \u2014 '+p.description:''));
   h+='<h4>Parameters</h4><pre>'+esc(ps.join('\n'))+'</pre>'}
  const rb=op.requestBody&&op.requestBody.content['application/json'];
  if(rb){h+='<h4>Request body</h4><pre>'+esc(JSON.stringify(deref(doc,rb.schema),null,2))+'</pre>'}
  const rs=Object.entries(op.responses).map(([c,r])=>c+'  '+(r.description||''));
  h+='<h4>Responses</h4><pre>'+esc(rs.join('\n'))+'</pre>';
  h+='</details>'}}
 document.getElementById('out').innerHTML=h;
}).catch(e=>{document.getElementById('out').textContent='cannot load openapi.json: '+e});
</script></body></html>
"""
