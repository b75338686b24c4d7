"""The gateway's OpenAPI 3.1 document, generated, and a self-contained docs page (no CDN, no external assets).

Every route of :data:`llm_connect.server.app.ROUTES` has one :class:`Operation` here, keyed by the same
``(method, path)``; :func:`spec` refuses to build a document when the two tables differ (so a route cannot
ship undocumented). Bodies, query strings and headers are the pydantic models of
:mod:`llm_connect.server.schemas`; their JSON Schemas (``$defs`` included) become ``components/schemas``.

Importing this module is cheap; :func:`spec` imports pydantic (the gateway calls it once, on the first
``GET /openapi.json``, and keeps the bytes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from ..config import GatewayConfig

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["DOCS_HTML", "Operation", "Reply", "operations", "spec"]

_REF = "#/components/schemas/{model}"

#: who may call an operation: any key (when auth is on), /metrics' rule (the admin key unless
#: server.public_metrics), or anyone
Access = Literal["key", "metrics", "public"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One response of an operation: a JSON body (one model, or any of several), or another media type."""

    description: str
    models: tuple[type[BaseModel], ...] = ()
    #: the schema of each ``data:`` event when the same status may also be a text/event-stream
    stream: type[BaseModel] | None = None
    #: a non-JSON body: (media type, JSON Schema of it)
    media: tuple[str, dict[str, Any]] | None = None
    #: response headers besides x-request-id: name -> description
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Operation:
    """The documentation of one route."""

    operation_id: str
    summary: str
    tag: str
    responses: Mapping[str, Reply]
    description: str = ""
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    access: Access = "key"
    #: the parameters of a templated path (``/v1/models/{model}``): one required field per ``{name}``
    path: type[BaseModel] | None = None


_ERROR_CODES: Mapping[str, str] = MappingProxyType(
    {
        "400": "invalid_json (malformed or empty body), invalid_header, context_length_exceeded, content_filter, "
        "invalid_request, no_matching_policy",
        "401": "invalid_api_key: a missing or unknown API key",
        "403": "model_not_allowed, tenant_mismatch, policy_violation or admin_required",
        "404": "model_not_found: an unknown model, group or alias",
        "408": "request_timeout: the body did not arrive in time",
        "413": "request_too_large: the body is over server.max_body_bytes",
        "422": "invalid_field (error.param names the field or header) or unknown_budget",
        "429": "rate_limit_exceeded (a key's or tenant's rpm / tpm), budget_exceeded (type insufficient_quota) "
        "or upstream_rate_limited (every deployment was rate-limited)",
        "500": "internal_error",
        "502": "upstream_authentication_error: a provider refused the gateway's credentials",
        "503": "provider_unavailable (every deployment failed), budget_store_unavailable or configuration_error",
        "504": "timeout: no answer within the request's timeout",
    }
)
_RETRY_AFTER: Mapping[str, str] = MappingProxyType(
    {"Retry-After": "Seconds to wait (rate limits, an unreachable budget store)"}
)
_ANTHROPIC_ERRORS: Mapping[str, str] = MappingProxyType(
    {
        "400": "invalid_request_error: a malformed body or field (the message names it), an unknown budget, a "
        "request no provider can serve",
        "401": "authentication_error: a missing or unknown API key",
        "403": "permission_error: the key may not use that model or tenant",
        "404": "not_found_error: an unknown model, group or alias",
        "413": "request_too_large: the body is over server.max_body_bytes",
        "429": "rate_limit_error: a key's or tenant's rpm / tpm, a budget that cannot fit the request, or every "
        "deployment rate-limited",
        "500": "api_error: an internal error",
        "502": "api_error: a provider refused the gateway's credentials",
        "503": "api_error: the budget store is unreachable, or a configuration error",
        "504": "timeout_error: no answer within the request's timeout",
        "529": "overloaded_error: every deployment failed (the SDKs retry it with back-off)",
    }
)
_CALL_ERRORS = ("400", "401", "403", "404", "408", "413", "422", "429", "500", "502", "503", "504")


def _same_as(op: Operation, operation_id: str, twin: str, what: str, **changes: str) -> Operation:
    """The documentation of a second path of the same handler: ``op`` under its own id and summary."""
    return replace(op, operation_id=operation_id, summary=f"{what} (the same as {twin})", **changes)


def operations() -> dict[tuple[str, str], Operation]:
    """The documentation of every route, keyed like ``ROUTES`` (imports the models, hence pydantic)."""
    from . import anthropic_schemas as a
    from . import schemas as s

    def errors(*codes: str, model: type[BaseModel] = s.ErrorResponse) -> dict[str, Reply]:
        return {
            c: Reply(_ERROR_CODES[c], (model,), headers=_RETRY_AFTER if c in ("429", "503") else MappingProxyType({}))
            for c in codes
        }

    chat = Operation(
        "createChatCompletion",
        "Chat completion (OpenAI shape; SSE when stream is true)",
        "openai",
        {
            "200": Reply(
                "A chat.completion, or with stream: true a text/event-stream of chat.completion.chunk events "
                "ending with data: [DONE]",
                (s.ChatCompletion,),
                stream=s.ChatCompletionChunk,
                headers={
                    "x-llm-provider": "The provider that answered (not on streams)",
                    "x-llm-model": "The model that answered",
                    "x-llm-cost-usd": "The call's cost, a decimal string (when the price is known; not on streams)",
                },
            ),
            **errors(*_CALL_ERRORS),
        },
        description="The official OpenAI SDKs work unchanged. Fields the gateway does not act on are ignored; "
        "n must be 1. Body extensions: tenant_id, agent, thread_id, task_type, timeout.",
        request=s.ChatCompletionRequest,
        headers=s.CallHeaders,
    )
    health = Operation(
        "health", "Liveness: the process answers", "ops", {"200": Reply("Alive", (s.Health,))}, access="public"
    )
    ready = Operation(
        "ready",
        "Readiness: the config is loaded and Redis, the ledger and the key store (when configured) answer",
        "ops",
        {"200": Reply("Ready", (s.Readiness,)), "503": Reply("Not ready", (s.Readiness,))},
        access="public",
    )
    text_schema = {"type": "string"}
    anthropic_errors = {
        c: Reply(d, (a.AnthropicError,), headers=_RETRY_AFTER if c == "429" else MappingProxyType({}))
        for c, d in _ANTHROPIC_ERRORS.items()
    }
    messages = Operation(
        "createMessage",
        "Create a message (Anthropic Messages shape; SSE when stream is true)",
        "anthropic",
        {
            "200": Reply(
                "A message, or with stream: true a text/event-stream of Anthropic's events",
                (a.AnthropicMessageResponse,),
                stream=a.AnthropicStreamEvent,
                headers={
                    "request-id": "The request's id (also in x-request-id)",
                    "x-llm-provider": "The provider that answered (not on streams)",
                    "x-llm-model": "The model that answered",
                    "x-llm-cost-usd": "The call's cost, a decimal string (when the price is known; not on streams)",
                },
            ),
            **anthropic_errors,
        },
        description="The official anthropic SDKs and Claude Code work unchanged (key in x-api-key or "
        "Authorization: Bearer; anthropic-version and anthropic-beta accepted with any value). Routed to an "
        "Anthropic deployment the body is passed through as is and the answer comes back verbatim; routed "
        "elsewhere it is translated (docs/anthropic.md). Body extensions: tenant_id, agent, thread_id, "
        "task_type, timeout.",
        request=a.AnthropicMessagesRequest,
        headers=s.CallHeaders,
    )
    from .openapi_keys import operations as key_operations

    return {
        **_responses(errors),
        **key_operations(),
        ("POST", "/v1/chat/completions"): chat,
        ("POST", "/chat/completions"): _same_as(
            chat,
            "createChatCompletionUnversioned",
            "POST /v1/chat/completions",
            "Chat completion",
            description="For clients configured with a base URL without /v1.",
        ),
        ("GET", "/v1/models"): Operation(
            "listModels",
            "Model groups and aliases this key may use",
            "openai",
            {"200": Reply("An OpenAI model list", (s.ModelList,)), **errors("401")},
        ),
        ("GET", "/v1/models/{model}"): Operation(
            "retrieveModel",
            "One model: what it is, what it can do, its deployments (admin key)",
            "openai",
            {"200": Reply("An OpenAI model object", (s.ModelEntry,)), **errors("401", "404")},
            description="404 model_not_found also for a name the key may not use.",
            path=s.ModelPath,
        ),
        ("POST", "/v1/embeddings"): Operation(
            "createEmbedding",
            "Embeddings (OpenAI shape; float or base64 vectors)",
            "openai",
            {
                "200": Reply(
                    "One vector per input string, in order",
                    (s.CreateEmbeddingResponse,),
                    headers={
                        "x-llm-provider": "The provider that answered",
                        "x-llm-model": "The model that answered",
                        "x-llm-cost-usd": "The call's cost (input tokens), a decimal string (when the price is known)",
                    },
                ),
                **errors(*_CALL_ERRORS),
            },
            description="The official OpenAI SDKs' embeddings.create works unchanged. Routed, budgeted (input "
            "tokens) and recorded like a chat call; dimensions is passed to the provider; a model that cannot "
            "embed is a 400 (code unsupported). Body extensions: tenant_id, agent, thread_id, task_type, timeout.",
            request=s.EmbeddingRequest,
            headers=s.CallHeaders,
        ),
        ("POST", "/execute"): Operation(
            "execute",
            "The bridge's request and response over HTTP (seed FR-1)",
            "llm-connect",
            {
                "200": Reply("The answer", (s.ExecuteResponse,)),
                **errors(*_CALL_ERRORS, model=s.ExecuteFailure),
            },
            description="The same bytes as stdin / stdout of `llm-connect bridge`. Every failure is an "
            'ExecuteFailure body ({"ok": false, "error": {...}}) with the status of the error table.',
            request=s.ExecuteRequest,
            headers=s.CallHeaders,
        ),
        ("POST", "/complete"): Operation(
            "complete",
            "LLM pool completion (seed 002)",
            "llm-connect",
            {
                "200": Reply("The answer", (s.CompleteResponse,)),
                **errors("400", "401", "403", "404", "408", "413", "422", "429", "500"),
                "503": Reply(
                    'Every provider of the group and its fallbacks failed, timed out or was rate-limited: {"error": '
                    '"All providers unavailable"}; otherwise (budget_store_unavailable, configuration_error) an '
                    "ErrorResponse",
                    (s.CompleteUnavailable, s.ErrorResponse),
                    headers=_RETRY_AFTER,
                ),
            },
            request=s.CompleteRequest,
            headers=s.CallHeaders,
        ),
        ("POST", "/count_tokens"): Operation(
            "countTokens",
            "Count a prompt's input tokens for a model (no call, nothing billed)",
            "llm-connect",
            {"200": Reply("The count", (s.CountTokensResponse,)), **errors("400", "401", "403", "404", "413", "422")},
            description="Exact where the model's tokenizer or its provider's count endpoint is at hand, else "
            "an upper bound (exact: false). The agents use it to size calls near a thread budget's cap.",
            request=s.CountTokensRequest,
        ),
        ("POST", "/v1/messages"): messages,
        ("POST", "/v1/messages/count_tokens"): Operation(
            "countMessageTokens",
            "Count a Messages request's input tokens (Anthropic shape; nothing is billed)",
            "anthropic",
            {"200": Reply("The count", (a.AnthropicTokenCount,)), **anthropic_errors},
            description="An Anthropic deployment is asked its own count_tokens endpoint (its estimate plus a "
            "margin of 1 % + 8 tokens); other models are counted by their tokenizer or bounded from above.",
            request=a.AnthropicCountTokensRequest,
        ),
        ("GET", "/v1/usage"): Operation(
            "getUsage",
            "Usage totals (a tenant key sees its own tenant, the admin key every tenant)",
            "admin",
            {"200": Reply("One row per group", (s.UsageReport,)), **errors("401", "403", "422")},
            query=s.UsageQuery,
        ),
        ("GET", "/health"): health,
        ("GET", "/healthz"): _same_as(health, "healthz", "/health", "Liveness"),
        ("GET", "/ready"): ready,
        ("GET", "/readyz"): _same_as(ready, "readyz", "/ready", "Readiness"),
        ("GET", "/metrics"): Operation(
            "metrics",
            "Prometheus metrics (admin key unless server.public_metrics)",
            "ops",
            {
                "200": Reply("The Prometheus text format", media=("text/plain; version=0.0.4", text_schema)),
                **errors("401", "403"),
                "404": Reply("not_found: metrics are disabled", (s.ErrorResponse,)),
            },
            access="metrics",
        ),
        ("GET", "/openapi.json"): Operation(
            "openapi",
            "This document (generated from the gateway's models)",
            "ops",
            {
                "200": Reply("OpenAPI 3.1", media=("application/json", {"type": "object"})),
                "404": Reply("not_found: server.docs is false", (s.ErrorResponse,)),
            },
            access="public",
        ),
        ("GET", "/docs"): Operation(
            "docs",
            "A self-contained HTML page of this document (no CDN)",
            "ops",
            {
                "200": Reply("HTML", media=("text/html", text_schema)),
                "404": Reply("not_found: server.docs is false", (s.ErrorResponse,)),
            },
            access="public",
        ),
    }


def _responses(errors: Any) -> dict[tuple[str, str], Operation]:
    """The Responses API's routes (llm_connect.server.responses)."""
    from . import schemas as s
    from . import schemas_responses as r

    missing = {"404": Reply("response_not_found: unknown, expired, deleted or another tenant's", (s.ErrorResponse,))}
    return {
        ("POST", "/v1/responses"): Operation(
            "createResponse",
            "Create a response (OpenAI Responses API; SSE when stream is true)",
            "openai",
            {
                "200": Reply(
                    "A Response object, or with stream: true a text/event-stream of typed events (response.created, "
                    "response.output_item.added, response.output_text.delta, ..., response.completed)",
                    (r.ResponseObject,),
                    stream=r.ResponseStreamEvent,
                    headers={
                        "x-llm-provider": "The provider that answered (not on streams)",
                        "x-llm-model": "The model that answered",
                        "x-llm-cost-usd": "The call's cost, a decimal string (when the price is known; not on streams)",
                        "x-llm-tools-dropped": "The built-in tool types left out of the call (responses.builtin_tools)",
                    },
                ),
                **errors(*_CALL_ERRORS),
            },
            description="The official OpenAI SDKs and Codex work unchanged. Any upstream serves it (the call goes "
            "through the core contract). 400 previous_response_not_found for an unknown previous_response_id, "
            "unsupported_tool for a tool_choice forcing a built-in tool, unsupported_parameter for background, "
            "conversation or prompt. Body extensions: tenant_id, agent, thread_id, task_type, timeout.",
            request=r.ResponseCreateRequest,
            headers=s.CallHeaders,
        ),
        ("GET", "/v1/responses/{response_id}"): Operation(
            "getResponse",
            "A stored response (store: true) of this tenant",
            "openai",
            {"200": Reply("The Response object as it was sent", (r.ResponseObject,)), **errors("401"), **missing},
            path=r.ResponseIdPath,
        ),
        ("DELETE", "/v1/responses/{response_id}"): Operation(
            "deleteResponse",
            "Delete a stored response of this tenant",
            "openai",
            {"200": Reply("Deleted", (r.ResponseDeleted,)), **errors("401"), **missing},
            path=r.ResponseIdPath,
        ),
    }


class _Components:
    """Collects the JSON Schemas of models (and their ``$defs``) under one name each."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel]) -> dict[str, str]:
        name = model.__name__
        if name not in self.schemas:
            schema = model.model_json_schema(ref_template=_REF, by_alias=True)
            for dname, dschema in [*schema.pop("$defs", {}).items(), (name, schema)]:
                if self.schemas.setdefault(dname, dschema) != dschema:
                    raise RuntimeError(f"two different schemas are named {dname!r}")
        return {"$ref": _REF.format(model=name)}

    def body(self, models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
        refs = [self.ref(m) for m in models]
        return refs[0] if len(refs) == 1 else {"oneOf": refs}

    def parameters(self, model: type[BaseModel], where: str) -> list[dict[str, Any]]:
        """One parameter per field of a query / header model (nullable -> optional)."""
        schema = model.model_json_schema(ref_template=_REF, by_alias=True)
        required = set(schema.get("required", ()))
        out = []
        for name, prop in schema["properties"].items():
            prop = dict(prop)
            description = prop.pop("description", "")
            prop.pop("title", None)
            if prop.get("default") is None:
                prop.pop("default", None)
            branches = prop.get("anyOf")
            if branches and {"type": "null"} in branches:  # absent is how a parameter says "none"
                rest = [b for b in branches if b != {"type": "null"}]
                del prop["anyOf"]
                prop = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **prop}
            out.append(
                {"name": name, "in": where, "required": name in required, "description": description, "schema": prop}
            )
        return out


def _security(access: Access, config: GatewayConfig | None) -> list[dict[str, list[str]]]:
    if config is None or not config.auth or access == "public":
        return []
    if access == "metrics" and config.server.public_metrics:
        return []
    return [{"bearer": []}, {"apiKey": []}, {"azureApiKey": []}]


def _operation(op: Operation, config: GatewayConfig | None, comp: _Components) -> dict[str, Any]:
    security = _security(op.access, config)
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    description = op.description
    if op.access == "metrics" and security:
        description = (description + " Needs the admin key.").strip()
    if description:
        out["description"] = description
    out["security"] = security
    params = []
    if op.path is not None:
        params += comp.parameters(op.path, "path")
    if op.query is not None:
        params += comp.parameters(op.query, "query")
    if op.headers is not None:
        params += comp.parameters(op.headers, "header")
    if params:
        out["parameters"] = params
    if op.request is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": comp.ref(op.request)}}}
    responses: dict[str, Any] = {}
    for status, reply in op.responses.items():
        if status == "401" and not security:
            continue  # no key is asked for, so none can be refused
        content: dict[str, Any] = {}
        if reply.models:
            content["application/json"] = {"schema": comp.body(reply.models)}
        if reply.stream is not None:
            # as in OpenAI's own document: the schema of one event's JSON (the stream ends with data: [DONE])
            content["text/event-stream"] = {"schema": comp.ref(reply.stream)}
        if reply.media is not None:
            content[reply.media[0]] = {"schema": reply.media[1]}
        headers = {"x-request-id": {"description": "The request's id (the client's, if it sent one)"}}
        headers.update({k: {"description": v} for k, v in reply.headers.items()})
        responses[status] = {
            "description": reply.description,
            "headers": {k: {**v, "schema": {"type": "string"}} for k, v in headers.items()},
            "content": content,
        }
    out["responses"] = responses
    return out


def spec(config: GatewayConfig | None, routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The OpenAPI document of a gateway serving ``routes`` (the keys of ``ROUTES``) under ``config``.

    Raises RuntimeError when a route has no :class:`Operation` or an operation no route."""
    docs = operations()
    served = list(dict.fromkeys(routes))  # in the route table's order
    missing, stale = set(served) - docs.keys(), docs.keys() - set(served)
    if missing or stale:
        raise RuntimeError(
            f"routes without documentation: {sorted(missing)}; documentation without a route: {sorted(stale)}"
        )
    comp = _Components()
    paths: dict[str, dict[str, Any]] = {}
    for method, path in served:
        paths.setdefault(path, {})[method.lower()] = _operation(docs[(method, path)], config, comp)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "llm-connect gateway",
            "version": "1",
            "description": "OpenAI-compatible, multi-tenant LLM gateway with budgets, routing and usage. "
            "Generated from the gateway's route table and its models (llm_connect.server.schemas).",
        },
        "tags": [
            {"name": "openai", "description": "OpenAI-compatible API"},
            {"name": "anthropic", "description": "Anthropic Messages API (passthrough to Anthropic, else translated)"},
            {"name": "llm-connect", "description": "The bridge protocol and the LLM pool"},
            {"name": "admin", "description": "Accounting, and the tenants, teams and API keys (docs/keys.md)"},
            {"name": "ops", "description": "Health, readiness, metrics and this document"},
        ],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(comp.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "azureApiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
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
function name(s){return s&&s.$ref?s.$ref.split('/').pop():(s&&s.oneOf?s.oneOf.map(name).join(' | '):'')}
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
  if(rb){h+='<h4>Request body: '+esc(name(rb.schema))+'</h4>';
   h+='<pre>'+esc(JSON.stringify(deref(doc,rb.schema),null,2))+'</pre>'}
  const rs=Object.entries(op.responses).map(([c,r])=>c+'  '+(r.description||'')+
   Object.entries(r.content||{}).map(([t,m])=>'\n       '+t+(name(m.schema)?': '+name(m.schema):'')).join(''));
  h+='<h4>Responses</h4><pre>'+esc(rs.join('\n'))+'</pre>';
  h+='</details>'}}
 h+='<h2>Schemas</h2>';
 for(const [n,s] of Object.entries(doc.components.schemas)){
  h+='<details id="'+esc(n)+'"><summary>'+esc(n)+'</summary><pre>'+esc(JSON.stringify(s,null,2))+'</pre></details>'}
 document.getElementById('out').innerHTML=h;
}).catch(e=>{document.getElementById('out').textContent='cannot load openapi.json: '+e});
</script></body></html>
"""
