"""Streams in batches: the internal iterator protocol every streaming layer speaks.

A stream travels from the provider's reads to the gateway's writes as lists of :class:`StreamChunk`, one list per
upstream read (``LLMAdapter.astream_batches``): a 12-chunk answer that arrives in one read resumes each layer
(adapter, router, policy, tracing, engine) once, not 12 times. A list is never empty. The public
``astream`` yields the same chunks one by one (:func:`flatten`); an adapter that only implements ``astream``
is batched one chunk per list (:func:`singles`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

from .types import LLMResponse, StreamChunk, Usage

T = TypeVar("T")

__all__ = ["answer_chunks", "flatten", "singles", "visible"]


async def flatten(batches: AsyncIterator[list[T]]) -> AsyncIterator[T]:
    """The items (chunks, or a transport's events) of ``batches`` one by one; closing this closes ``batches`` (a
    consumer that stops mid-batch closes the stream at once)."""
    try:
        async for batch in batches:
            for chunk in batch:
                yield chunk
    finally:
        await batches.aclose()  # type: ignore[attr-defined]


async def singles(chunks: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    """``chunks`` (or any items) as batches of one; closing this closes ``chunks``."""
    try:
        async for chunk in chunks:
            yield [chunk]
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def answer_chunks(resp: LLMResponse) -> list[StreamChunk]:
    """A whole answer as a stream (an adapter that cannot stream): one delta with its text, tool calls and
    reasoning (left out when it has none of them), then the final chunk with the finish reason, the usage (None
    when the answer reported none, so that the stream's accounting estimates it instead of billing zero), the
    cost, the service tier and the provider's kept fields."""
    out: list[StreamChunk] = []
    if resp.text or resp.tool_calls or resp.reasoning:
        out.append(
            StreamChunk(
                text=resp.text,
                tool_calls=resp.tool_calls,
                model=resp.model,
                request_id=resp.request_id,
                reasoning=resp.reasoning,
            )
        )
    out.append(
        StreamChunk(
            finish_reason=resp.finish_reason,
            usage=resp.usage if resp.usage != Usage() else None,
            model=resp.model,
            request_id=resp.request_id,
            cost_usd=resp.cost_usd,
            service_tier=resp.service_tier,
            provider_fields=resp.provider_fields,
        )
    )
    return out


def visible(chunk: StreamChunk) -> bool:
    """Whether an accounted stream shows ``chunk`` to its caller: the chunks that carry only the running usage
    (``usage_so_far``) are for the accounting alone."""
    return bool(chunk.usage is not None or chunk.text or chunk.tool_calls or chunk.reasoning or chunk.finish_reason)
