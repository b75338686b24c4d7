"""OpenAI-compatible ``POST /v1/embeddings``: the request in OpenAI's shape, through the engine, the reply in
OpenAI's exact shape (the official SDKs' ``embeddings.create`` works unchanged, float or base64).

Like a chat call: auth, tenant, rate limits and the budget chain in :meth:`Engine.prepare`, the model a router
group (with its fallbacks), an alias or ``provider:model``; the call is accounted as input tokens only and its
ledger row carries ``endpoint = "/v1/embeddings"``. Body extensions: ``tenant_id``, ``agent``, ``thread_id``,
``task_type``, ``timeout``; the X-LLM-* headers as for chat. The cost is the ``x-llm-cost-usd`` header.
``user`` is ignored. The codec is :mod:`llm_connect.wire.inbound.openai_embeddings`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..wire.inbound import RequestProblem
from ..wire.inbound.openai_embeddings import (
    EmbeddingFields,
    embedding_body,
    parse_embedding_fields,
)
from .asgi import Request, Response
from .engine import CallSpec, Engine
from .errors import problem_error
from .openai import llm_headers
from .validate import Fields, budget_from_headers, header, with_thread

__all__ = ["ENDPOINT", "handle_embeddings", "parse_embeddings"]

#: the ledger's ``endpoint`` for these calls
ENDPOINT = "/v1/embeddings"


def parse_embeddings(data: dict[str, Any], headers: dict[str, str]) -> tuple[CallSpec, EmbeddingFields]:
    """(spec, the embedding fields) from a Create embeddings body."""
    try:
        fields = parse_embedding_fields(data)
    except RequestProblem as exc:
        raise problem_error(exc) from None
    f = Fields(data)
    budget = with_thread(budget_from_headers(headers), f.ident("thread_id"))
    spec = CallSpec(
        prompt=fields.texts,
        model=f.str("model"),
        timeout=f.num("timeout", positive=True),
        tenant_id=f.ident("tenant_id") or header(headers, "x-llm-tenant-id"),
        agent=f.str("agent") or header(headers, "x-llm-agent"),
        thread_id=budget.thread_id if budget else None,
        task_type=f.str("task_type") or header(headers, "x-llm-task-type"),
        budget=budget,
        endpoint=ENDPOINT,
    )
    return spec, fields


async def handle_embeddings(engine: Engine, req: Request) -> Response:
    principal = engine.auth.authenticate(req.headers)
    data = await req.json_object(engine.config.server.max_body_bytes)
    spec, fields = parse_embeddings(data, req.headers)
    prep = await engine.prepare(principal, spec, req.request_id)
    resp = await req.unless_gone(engine.embed(prep, fields.dimensions))
    body = orjson.dumps(embedding_body(resp, fields.encoding_format))
    return Response(200, body, headers=llm_headers(resp.provider, resp.model, resp.cost_usd))
