"""Google Vertex AI for the mock server: a fake OAuth token endpoint and bearer tokens checked like Google does.

* ``POST /token`` is Google's OAuth 2.0 token endpoint for service accounts (RFC 7523 JWT bearer grant):
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>``. The assertion's RS256 signature
  is verified against the public key trusted for its ``iss`` (a service account's ``client_email``), and its
  ``aud`` (Google's token endpoint, or the mock's own URL), ``iat``/``exp`` (at most an hour apart) and
  ``scope`` are checked; the answer is ``{"access_token", "expires_in", "token_type": "Bearer"}``, or Google's
  ``{"error", "error_description"}``.
  A service-account JSON whose ``token_uri`` points at the mock makes google-auth's own flow work offline:
  :meth:`GoogleAuth.service_account` generates the key pair, trusts its public key and returns that JSON.
* The Vertex paths accept only ``Authorization: Bearer`` tokens this endpoint minted and that have not expired;
  anything else is Google's 401 ``UNAUTHENTICATED`` body (reason ``CREDENTIALS_MISSING``,
  ``ACCESS_TOKEN_EXPIRED`` or ``ACCESS_TOKEN_TYPE_UNSUPPORTED``).
* Claude's ``rawPredict`` / ``streamRawPredict`` require ``anthropic_version: "vertex-2023-10-16"`` in the body.

mock_server.py routes to it: the token endpoint and ``POST /__mock__/google/service-account`` are
:class:`GoogleAuth`'s own handlers, the rest pure functions. Needs ``cryptography`` for the signatures,
imported when a key is first used.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "ANTHROPIC_VERSION",
    "GRANT_TYPE",
    "SCOPE",
    "GoogleAuth",
    "body_problem",
    "unauthenticated",
]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ANTHROPIC_VERSION = "vertex-2023-10-16"
#: the audiences Google's token endpoint takes (google-auth always signs for the first, whatever ``token_uri`` is)
_AUDIENCES = ("https://oauth2.googleapis.com/token", "https://www.googleapis.com/oauth2/v4/token")
#: the longest assertion Google accepts (exp - iat), and the clock skew it allows
_MAX_LIFETIME = 3600
_SKEW = 300
_SEE = "See https://developers.google.com/identity/sign-in/web/devconsole-project."


#: the methods the mock serves per publisher (embeddings: ``predict``, as Vertex's text embedding models)
_METHODS = {
    "google": frozenset({"generateContent", "streamGenerateContent", "countTokens", "predict"}),
    "anthropic": frozenset({"rawPredict", "streamRawPredict"}),
}


def _not_found(message: str) -> bytes:
    return orjson.dumps({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}})


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _oauth_error(error: str, description: str, status: int = 400) -> tuple[int, bytes]:
    return status, orjson.dumps({"error": error, "error_description": description})


def unauthenticated(reason: str, method: str) -> tuple[int, bytes]:
    """Google's 401 for a Vertex call without a usable access token."""
    if reason == "CREDENTIALS_MISSING":
        msg = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie "
    else:
        msg = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "aiplatform.googleapis.com", "method": method},
    }
    msg += "or other valid authentication credential. " + _SEE
    return 401, orjson.dumps({"error": {"code": 401, "message": msg, "status": "UNAUTHENTICATED", "details": [info]}})


def body_problem(path: str, raw: bytes) -> tuple[int, bytes] | None:
    """The 400 Claude on Vertex answers when ``anthropic_version`` is missing or not Vertex's, else None
    (Gemini's bodies are checked by the Gemini path)."""
    if "/publishers/anthropic/" not in path:
        return None
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    version = body.get("anthropic_version") if isinstance(body, Mapping) else None
    if version == ANTHROPIC_VERSION:
        return None
    msg = f"anthropic_version: Input should be '{ANTHROPIC_VERSION}'"
    return 400, orjson.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": msg}})


class GoogleAuth:
    """The mock's OAuth state: trusted service-account keys and the tokens it minted. Thread-safe.

    ``token_lifetime``: the ``expires_in`` of minted tokens (seconds; short in tests of the refresh);
    ``record``: the mock's request log writer (token requests are logged with the grant type only)."""

    def __init__(self, token_lifetime: int = 3600, *, record: Callable[..., Any] | None = None) -> None:
        self.token_lifetime = token_lifetime
        self._record = record
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._tokens: dict[str, float] = {}
        #: tokens minted so far
        self.minted = 0

    def trust(self, client_email: str, public_key_pem: str | bytes) -> None:
        """Accept assertions signed by the private key of ``public_key_pem`` for ``client_email``."""
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        with self._lock:
            self._keys[client_email] = load_pem_public_key(pem)

    def service_account(
        self,
        token_uri: str,
        *,
        client_email: str = "llm-connect-test@mock-project.iam.gserviceaccount.com",
        project_id: str = "mock-project",
    ) -> dict[str, Any]:
        """A new service-account JSON (as ``json.dump`` writes it to a file) with a fresh RSA key pair whose
        public key this mock trusts, and ``token_uri`` pointing at the mock's ``/token``."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.trust(client_email, public)
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": secrets.token_hex(20),
            "private_key": private,
            "client_email": client_email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    # ------------------------------------------------------------------ the token endpoint

    async def token_endpoint(self, request: web.Request) -> web.Response:
        """``POST /token``: Google's OAuth token endpoint for service-account JWT grants."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        if self._record is not None:
            self._record(request, "google-oauth", None, {"grant_type": form.get("grant_type")}, b"", None)
        status, body = self.grant(form, str(request.url.with_query(None)))
        return web.Response(status=status, body=body, content_type="application/json")

    async def account_endpoint(self, request: web.Request) -> web.Response:
        """``POST /__mock__/google/service-account``: a new service-account JSON (:meth:`service_account`)
        whose ``token_uri`` is this mock's ``/token``."""
        info = self.service_account(str(request.url.with_path("/token").with_query(None)))
        return web.Response(body=orjson.dumps(info), content_type="application/json")

    def grant(self, form: Mapping[str, str], token_uri: str) -> tuple[int, bytes]:
        """Answer a token request (the form fields) made to ``token_uri``."""
        if form.get("grant_type") != GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        problem = self._check_assertion(form.get("assertion", ""), token_uri)
        if problem is not None:
            return _oauth_error("invalid_grant", problem)
        token = "ya29.mock-" + secrets.token_urlsafe(32)
        lifetime = int(self.token_lifetime)
        with self._lock:
            now = time.time()
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}  # forget the expired ones
            self._tokens[token] = now + lifetime
            self.minted += 1
        return 200, orjson.dumps({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"})

    def _check_assertion(self, assertion: str, token_uri: str) -> str | None:
        """What is wrong with the JWT (Google's wording), or None."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        parts = assertion.split(".")
        if len(parts) != 3:
            return "Invalid JWT: not a signed JWT."
        try:
            header = orjson.loads(_b64decode(parts[0]))
            claims = orjson.loads(_b64decode(parts[1]))
            signature = _b64decode(parts[2])
        except (ValueError, orjson.JSONDecodeError):
            return "Invalid JWT: cannot decode it."
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
            return "Invalid JWT: the algorithm must be RS256."
        with self._lock:
            key = self._keys.get(str(claims.get("iss")))
        if key is None:
            return "Invalid grant: account not found"
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "Invalid JWT Signature."
        iat, exp, now = claims.get("iat"), claims.get("exp"), time.time()
        if (
            not isinstance(iat, int | float)
            or not isinstance(exp, int | float)
            or exp - iat > _MAX_LIFETIME
            or iat > now + _SKEW
            or exp < now - _SKEW
        ):
            return (
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check "
                "your iat and exp values in the JWT claim."
            )
        if claims.get("aud") not in (*_AUDIENCES, token_uri):
            return "Invalid JWT: the audience must be the token endpoint."
        if SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid OAuth scope or ID token audience provided."
        return None

    # ------------------------------------------------------------------ the Vertex paths

    def refusal(self, path: str, publisher: str, method: str, headers: Mapping[str, str]) -> tuple[int, bytes] | None:
        """What Vertex answers before reading a request to ``path``: Google's 401 without a token this mock
        minted, a 404 for a publisher or method it does not serve there; else None."""
        rpc = "google.cloud.aiplatform.v1.PredictionService." + method[:1].upper() + method[1:]
        problem = self.check_bearer(headers, rpc)
        if problem is None and publisher not in _METHODS:
            return 404, _not_found(f"Publisher Model `{path.removeprefix('/v1/').partition(':')[0]}` not found.")
        if problem is None and method not in _METHODS[publisher]:
            return 404, _not_found(f"Method {method or '(none)'} not found.")
        return problem

    def check_bearer(self, headers: Mapping[str, str], method: str) -> tuple[int, bytes] | None:
        """None if ``headers`` carry an unexpired token this mock minted, else Google's 401."""
        auth = headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return unauthenticated("CREDENTIALS_MISSING", method)
        with self._lock:
            expiry = self._tokens.get(auth[7:].strip())
        if expiry is None:
            return unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED", method)
        if expiry <= time.time():
            return unauthenticated("ACCESS_TOKEN_EXPIRED", method)
        return None
