"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), which Bedrock's ConverseStream
speaks instead of SSE. Pure functions, no I/O: the transport feeds the bytes as they arrive.

One message on the wire::

    [total length: uint32][headers length: uint32][prelude CRC32: uint32]   the 12-byte prelude
    [headers: headers-length bytes][payload: the rest][message CRC32: uint32]

all big-endian; the prelude CRC covers the first 8 bytes, the message CRC every byte before it. A header is
``[name length: uint8][name][type: uint8][value]``, the value's size given by its type (strings and byte arrays
carry a uint16 length). ``:message-type`` is ``event`` (with ``:event-type``, e.g. ``contentBlockDelta``),
``exception`` (with ``:exception-type``, e.g. ``throttlingException``, and a JSON ``{"message": ...}`` payload)
or ``error`` (with ``:error-code`` and ``:error-message`` headers).

:class:`EventStreamDecoder` takes chunks of any size (a message split across reads, several in one read) and
raises :class:`EventStreamError` on a bad CRC, an impossible length or a stream cut inside a message.
:func:`encode_message` builds a message (the mock server's streams).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "EventStreamDecoder",
    "EventStreamError",
    "EventStreamMessage",
    "encode_message",
    "event_headers",
]

_PRELUDE = struct.Struct(">III")
_PRELUDE_LENGTH = 12
_CRC_LENGTH = 4
#: the limits AWS documents (and botocore enforces): 128 KiB of headers, 24 MiB of payload
MAX_HEADERS_LENGTH = 128 * 1024
MAX_MESSAGE_LENGTH = _PRELUDE_LENGTH + MAX_HEADERS_LENGTH + 24 * 1024 * 1024 + _CRC_LENGTH

# header value types
_TRUE, _FALSE, _BYTE, _SHORT, _INT, _LONG, _BYTES, _STRING, _TIMESTAMP, _UUID = range(10)
_FIXED = {_BYTE: struct.Struct(">b"), _SHORT: struct.Struct(">h"), _INT: struct.Struct(">i")}
_INT64 = struct.Struct(">q")
_UINT16 = struct.Struct(">H")

HeaderValue = bool | int | bytes | str | uuid.UUID


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (a CRC mismatch, an impossible length, a cut message)."""


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    headers: Mapping[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str:
        value = self.headers.get(":message-type", "event")
        return value if isinstance(value, str) else "event"

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def _crc(data: bytes | memoryview, start: int = 0) -> int:
    return zlib.crc32(data, start) & 0xFFFFFFFF


def _parse_headers(raw: memoryview) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    i, end = 0, len(raw)
    try:
        while i < end:
            n = raw[i]
            name = bytes(raw[i + 1 : i + 1 + n]).decode("utf-8")
            i += 1 + n
            kind = raw[i]
            i += 1
            value: HeaderValue
            if kind in (_TRUE, _FALSE):
                value = kind == _TRUE
            elif kind in _FIXED:
                fmt = _FIXED[kind]
                (value,) = fmt.unpack_from(raw, i)
                i += fmt.size
            elif kind in (_LONG, _TIMESTAMP):
                (value,) = _INT64.unpack_from(raw, i)
                i += 8
            elif kind in (_BYTES, _STRING):
                (size,) = _UINT16.unpack_from(raw, i)
                data = bytes(raw[i + 2 : i + 2 + size])
                if len(data) != size:
                    raise EventStreamError("event stream header value runs past the headers")
                value = data.decode("utf-8") if kind == _STRING else data
                i += 2 + size
            elif kind == _UUID:
                value = uuid.UUID(bytes=bytes(raw[i : i + 16]))
                i += 16
            else:
                raise EventStreamError(f"unknown event stream header type {kind} for {name!r}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, EventStreamError):
            raise
        raise EventStreamError(f"malformed event stream headers: {exc}") from None
    if i != end:
        raise EventStreamError("event stream headers run past their length")
    return headers


class EventStreamDecoder:
    """Incremental decoder: :meth:`feed` bytes as they come, get the complete messages; :meth:`close` at the end
    of the body (raises if a message was cut)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[EventStreamMessage]:
        self._buf += data
        out: list[EventStreamMessage] = []
        while len(self._buf) >= _PRELUDE_LENGTH:
            total, headers_len, prelude_crc = _PRELUDE.unpack_from(self._buf)
            if _crc(memoryview(self._buf)[:8]) != prelude_crc:
                raise EventStreamError("event stream prelude CRC mismatch (corrupted or not an event stream)")
            if headers_len > MAX_HEADERS_LENGTH or total > MAX_MESSAGE_LENGTH:
                raise EventStreamError(f"event stream message too large ({total} bytes, {headers_len} of headers)")
            if total < _PRELUDE_LENGTH + headers_len + _CRC_LENGTH:
                raise EventStreamError(f"event stream message length {total} cannot hold {headers_len} of headers")
            if len(self._buf) < total:
                break
            view = memoryview(self._buf)
            try:
                (message_crc,) = struct.unpack_from(">I", view, total - _CRC_LENGTH)
                if _crc(view[: total - _CRC_LENGTH]) != message_crc:
                    raise EventStreamError("event stream message CRC mismatch (corrupted message)")
                headers = _parse_headers(view[_PRELUDE_LENGTH : _PRELUDE_LENGTH + headers_len])
                payload = bytes(view[_PRELUDE_LENGTH + headers_len : total - _CRC_LENGTH])
            finally:
                view.release()
            del self._buf[:total]
            out.append(EventStreamMessage(headers, payload))
        return out

    def close(self) -> None:
        """The body ended: anything left over is a message cut short."""
        if self._buf:
            left = len(self._buf)
            self._buf.clear()
            raise EventStreamError(f"event stream ended inside a message ({left} bytes of it)")


def _encode_header(name: str, value: HeaderValue) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"event stream header name too long: {name!r}")
    head = bytes([len(raw)]) + raw
    if isinstance(value, bool):
        return head + bytes([_TRUE if value else _FALSE])
    if isinstance(value, int):
        return head + bytes([_LONG]) + _INT64.pack(value)
    if isinstance(value, uuid.UUID):
        return head + bytes([_UUID]) + value.bytes
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return head + bytes([_STRING if isinstance(value, str) else _BYTES]) + _UINT16.pack(len(data)) + data


def encode_message(headers: Mapping[str, HeaderValue], payload: bytes) -> bytes:
    """One event-stream message: strings as type 7, bytes as 6, ints as 64-bit (type 5), bools, UUIDs."""
    raw_headers = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = _PRELUDE_LENGTH + len(raw_headers) + len(payload) + _CRC_LENGTH
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", _crc(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", _crc(body))


def event_headers(event_type: str) -> dict[str, Any]:
    """The headers of a JSON event (``:message-type: event``)."""
    return {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
