"""The mock server's Vertex AI side over raw HTTP: the OAuth token endpoint checks a service account's JWT
assertion (RS256 signature, scope, audience, lifetime) the way Google's does, and the Vertex paths take only
tokens it minted. Assertions are built here by hand (RFC 7523) from the service-account JSON's private key."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import pytest

from llm_connect.testing import MockServer

pytest.importorskip("cryptography")

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PREFIX = "/v1/projects/p/locations/us-central1/publishers"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(info: dict, *, alg: str = "RS256", tamper: bool = False, **claims) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    now = int(time.time())
    body = {
        "iss": info["client_email"],
        "scope": SCOPE,
        "aud": "https://oauth2.googleapis.com/token",
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    head = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": info["private_key_id"]}).encode())
    signing_input = f"{head}.{_b64(json.dumps(body).encode())}"
    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
async def mock():
    async with MockServer() as server:
        yield server


async def grant(mock: MockServer, form: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.post(mock.url + "/token", data=form) as r:
        return r.status, await r.json()


async def test_a_signed_assertion_gets_a_bearer_token_that_opens_the_vertex_paths(mock):
    info = mock.google.service_account(mock.url + "/token")
    status, body = await grant(mock, {"grant_type": GRANT, "assertion": assertion(info)})
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600
    token = body["access_token"]
    req = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        async with s.post(f"{mock.url}{PREFIX}/google/models/gemini-2.5-flash:generateContent", json=req) as r:
            reply = await r.json()
        assert r.status == 200 and reply["candidates"][0]["content"]["parts"][0]["text"] == "mock reply to: hi there"
        assert reply["usageMetadata"]["promptTokenCount"] == 3
        claude = {
            "anthropic_version": "vertex-2023-10-16",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "yo"}],
        }
        async with s.post(
            f"{mock.url}{PREFIX}/anthropic/models/claude-haiku-4-5@20251001:rawPredict", json=claude
        ) as r:
            msg = await r.json()
        assert r.status == 200 and msg["type"] == "message" and msg["model"] == "claude-haiku-4-5@20251001"
        async with s.post(
            f"{mock.url}{PREFIX}/anthropic/models/claude-haiku-4-5@20251001:rawPredict",
            json={**claude, "anthropic_version": None},
        ) as r:
            assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"
        async with s.post(f"{mock.url}{PREFIX}/meta/models/llama-4:rawPredict", json=claude) as r:
            assert r.status == 404 and (await r.json())["error"]["status"] == "NOT_FOUND"
        async with s.post(f"{mock.url}{PREFIX}/google/models/gemini-2.5-flash:rawPredict", json=req) as r:
            assert r.status == 404


@pytest.mark.parametrize(
    ("change", "description"),
    [
        ({"tamper": True}, "Invalid JWT Signature."),
        ({"alg": "none"}, "RS256"),
        ({"iss": "someone-else@p.iam.gserviceaccount.com"}, "account not found"),
        ({"scope": "https://www.googleapis.com/auth/userinfo.email"}, "scope"),
        ({"aud": "https://example.com/token"}, "audience"),
        ({"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "short-lived"),
        ({"exp": int(time.time()) + 7200}, "short-lived"),
    ],
)
async def test_bad_assertions_are_googles_invalid_grant(mock, change, description):
    info = mock.google.service_account(mock.url + "/token")
    status, body = await grant(mock, {"grant_type": GRANT, "assertion": assertion(info, **change)})
    assert status == 400 and body["error"] == "invalid_grant" and description in body["error_description"]
    assert mock.google.minted == 0


async def test_other_grant_types_and_garbage(mock):
    status, body = await grant(mock, {"grant_type": "client_credentials"})
    assert status == 400 and body["error"] == "unsupported_grant_type"
    status, body = await grant(mock, {"grant_type": GRANT, "assertion": "not.a.jwt"})
    assert status == 400 and body["error"] == "invalid_grant"


async def test_the_mock_hands_out_a_trusted_service_account_over_http(mock):
    async with aiohttp.ClientSession() as s, s.post(mock.url + "/__mock__/google/service-account") as r:
        info = await r.json()
    assert info["type"] == "service_account" and info["token_uri"] == mock.url + "/token"
    status, _ = await grant(mock, {"grant_type": GRANT, "assertion": assertion(info)})
    assert status == 200


async def test_a_minted_token_stands_for_require_key(mock):
    mock.require_key = "sk-only-this"
    info = mock.google.service_account(mock.url + "/token")
    _, body = await grant(mock, {"grant_type": GRANT, "assertion": assertion(info)})
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    req = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(f"{mock.url}{PREFIX}/google/models/g:countTokens", json=req) as r:
            assert r.status == 200 and (await r.json())["totalTokens"] == 2
