"""The AWS event-stream framing (application/vnd.amazon.eventstream), on frames built here byte for byte.

Layout (AWS "Event stream encoding" and the Transcribe / Bedrock streaming references): a 12-byte prelude of
total length, headers length and a CRC32 of those 8 bytes; the headers (name length, name, type, value); the
payload; a CRC32 of everything before it. All big-endian.
"""

from __future__ import annotations

import struct
import uuid
import zlib

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from llm_connect.wire.eventstream import EventStreamDecoder, EventStreamError, encode_message


def string_header(name: str, value: str) -> bytes:
    raw = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw


def frame(headers: bytes, payload: bytes) -> bytes:
    """One message, by hand: prelude, prelude CRC, headers, payload, message CRC."""
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(event_type: str, obj: dict) -> bytes:
    headers = (
        string_header(":event-type", event_type)
        + string_header(":content-type", "application/json")
        + string_header(":message-type", "event")
    )
    return frame(headers, orjson.dumps(obj))


DELTA = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "abcdefghij"})


def test_a_hand_built_frame_decodes_to_its_headers_and_payload():
    (msg,) = EventStreamDecoder().feed(DELTA)
    assert msg.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert msg.message_type == "event" and msg.header(":event-type") == "contentBlockDelta"
    assert orjson.loads(msg.payload)["delta"] == {"text": "Hello"}


def test_the_prelude_says_the_lengths_and_the_crcs_are_where_aws_puts_them():
    total, headers_len, prelude_crc = struct.unpack(">III", DELTA[:12])
    assert total == len(DELTA)
    assert prelude_crc == zlib.crc32(DELTA[:8])
    assert struct.unpack(">I", DELTA[-4:])[0] == zlib.crc32(DELTA[:-4])
    assert headers_len == len(DELTA) - 16 - len(
        orjson.dumps({"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "abcdefghij"})
    )


def test_every_split_of_the_bytes_gives_the_same_messages():
    stream = DELTA + event("messageStop", {"stopReason": "end_turn"}) + event("metadata", {"usage": {}})
    for cut in range(1, len(stream)):
        d = EventStreamDecoder()
        got = d.feed(stream[:cut]) + d.feed(stream[cut:])
        assert [m.header(":event-type") for m in got] == ["contentBlockDelta", "messageStop", "metadata"], cut
        d.close()
    d = EventStreamDecoder()
    one_by_one = [m for i in range(len(stream)) for m in d.feed(stream[i : i + 1])]
    assert len(one_by_one) == 3


def test_every_header_type():
    u = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    headers = (
        b"\x01t\x00"  # bool true
        + b"\x01f\x01"  # bool false
        + b"\x01b\x02\xff"  # byte -1
        + b"\x01s\x03"
        + struct.pack(">h", -2)
        + b"\x01i\x04"
        + struct.pack(">i", 70000)
        + b"\x01l\x05"
        + struct.pack(">q", 2**40)
        + b"\x01y\x06"
        + struct.pack(">H", 3)
        + b"\x00\x01\x02"
        + string_header("n", "text")
        + b"\x02ts\x08"
        + struct.pack(">q", 1_700_000_000_000)
        + b"\x01u\x09"
        + u.bytes
    )
    (msg,) = EventStreamDecoder().feed(frame(headers, b""))
    assert msg.headers == {
        "t": True, "f": False, "b": -1, "s": -2, "i": 70000, "l": 2**40, "y": b"\x00\x01\x02", "n": "text",
        "ts": 1_700_000_000_000, "u": u,
    }  # fmt: skip
    assert msg.payload == b""


def test_a_corrupted_payload_byte_fails_the_message_crc():
    bad = bytearray(DELTA)
    bad[-10] ^= 0x01
    with pytest.raises(EventStreamError, match="message CRC"):
        EventStreamDecoder().feed(bytes(bad))


def test_a_corrupted_length_fails_the_prelude_crc():
    bad = bytearray(DELTA)
    bad[3] ^= 0x01
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(bad))


def test_text_that_is_no_event_stream_fails_at_once():
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(b'{"message": "not a frame"}')


def test_a_stream_cut_inside_a_message_is_an_error_at_the_end():
    d = EventStreamDecoder()
    assert d.feed(DELTA[:-5]) == []
    with pytest.raises(EventStreamError, match="ended inside a message"):
        d.close()


def test_lengths_that_cannot_hold_the_headers_are_refused():
    prelude = struct.pack(">II", 16, 100)
    with pytest.raises(EventStreamError, match="cannot hold"):
        EventStreamDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)) + b"\x00" * 4)


def test_the_encoder_matches_the_hand_built_frame_and_botocore_reads_it():
    headers = {":event-type": "contentBlockDelta", ":content-type": "application/json", ":message-type": "event"}
    payload = orjson.dumps({"contentBlockIndex": 0, "delta": {"text": "Hello"}, "p": "abcdefghij"})
    assert encode_message(headers, payload) == DELTA
    buf = EventStreamBuffer()  # botocore's own decoder, an independent reading
    buf.add_data(encode_message({**headers, "n": 7, "ok": True}, payload))
    (msg,) = list(buf)
    assert msg.headers[":event-type"] == "contentBlockDelta" and msg.headers["n"] == 7 and msg.headers["ok"] is True
    assert msg.payload == payload
