"""OAuth access tokens for Google Cloud (Vertex AI) from google-auth, refreshed before they expire.

:class:`GoogleToken` holds one set of google-auth credentials (a service-account JSON, application default
credentials, or a ``google.auth.credentials.Credentials`` object of the caller's) and hands out its access token.
A token that expires within ``margin`` seconds is refreshed first. The refresh is a blocking HTTP exchange
(google-auth's ``requests`` transport), so it runs in a worker thread, never on the event loop, and only one runs
at a time: concurrent callers, on any event loop or thread, wait for the same refresh. Loading application
default credentials (which may probe the metadata server) happens in that thread too, on first use.

Failures map to the error tree at this boundary: credentials that cannot be found or read are an
``LLMConfigurationError``, a refused grant (a revoked key, a deleted service account) an
``LLMAuthenticationError``, a token endpoint that cannot be reached or answers 5xx an
``LLMProviderUnavailableError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import LLMAuthenticationError, LLMConfigurationError, LLMProviderUnavailableError

__all__ = ["CLOUD_PLATFORM_SCOPE", "GoogleToken", "load_credentials_file", "require_google_auth"]

#: the OAuth scope Vertex AI accepts
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_INSTALL_HINT = "pip install 'llm-connect[vertex]'"


def require_google_auth(provider: str) -> None:
    """Raise LLMConfigurationError with the pip line when google-auth (and its requests transport) is missing."""
    try:
        import google.auth
        import google.auth.transport.requests  # noqa: F401
    except ImportError as exc:
        raise LLMConfigurationError(
            f"provider {provider!r} needs google-auth for its OAuth tokens ({exc.name} is not installed) — install "
            f"it with: {_INSTALL_HINT}",
            provider=provider,
        ) from exc


def load_credentials_file(path: str, provider: str) -> tuple[Any, str | None]:
    """(credentials, project id or None) from a credentials JSON file: a service account's key, or the
    authorized-user file ``gcloud auth application-default login`` writes. A file read, no network. Other kinds
    (workload identity federation, impersonation) load through application default credentials: (None, None)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError) as exc:
        raise LLMConfigurationError(f"cannot read Google credentials for {provider!r} from {path!r}: {exc}") from None
    kind = info.get("type") if isinstance(info, dict) else None
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            creds = service_account.Credentials.from_service_account_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
            return creds, info.get("project_id")
        if kind == "authorized_user":
            from google.oauth2 import credentials

            user = credentials.Credentials.from_authorized_user_info(info, scopes=[CLOUD_PLATFORM_SCOPE])
            return user, info.get("quota_project_id")
    except (ValueError, KeyError) as exc:
        raise LLMConfigurationError(f"the Google credentials in {path!r} are malformed: {exc}") from None
    if kind in ("external_account", "external_account_authorized_user", "impersonated_service_account"):
        return None, None
    raise LLMConfigurationError(f"{path!r} is not a Google credentials file (type {kind!r})", provider=provider)


def _application_default() -> Any:
    import google.auth

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials


def _now_like(expiry: datetime) -> datetime:
    """Now, in the convention of google-auth's ``expiry`` (naive UTC in google-auth 2.x)."""
    now = datetime.now(UTC)
    return now.replace(tzinfo=None) if expiry.tzinfo is None else now


class GoogleToken:
    """The access token of one set of google-auth credentials; see the module docstring.

    ``credentials``: a google-auth Credentials object, or None for application default credentials (loaded on
    first use). ``margin``: seconds before expiry at which a token counts as expired and is refreshed."""

    def __init__(self, credentials: Any | None, *, provider: str, margin: float = 300.0) -> None:
        self._credentials = credentials
        self._provider = provider
        self._margin = timedelta(seconds=max(0.0, float(margin)))
        self._lock = threading.Lock()
        #: the refresh under way (its waiters share it), or None
        self._pending: concurrent.futures.Future[str] | None = None

    def current(self) -> str | None:
        """The token if it is valid for longer than the margin, else None (no I/O)."""
        creds = self._credentials
        token = getattr(creds, "token", None) if creds is not None else None
        if not token:
            return None
        expiry = getattr(creds, "expiry", None)
        if expiry is None:  # a token without a known expiry: used until the provider refuses it
            return str(token)
        return str(token) if expiry - _now_like(expiry) > self._margin else None

    async def token(self) -> str:
        """A valid access token, refreshing (off the loop, once for all concurrent callers) when needed."""
        token = self.current()
        if token is not None:
            return token
        with self._lock:
            pending = self._pending
            start = pending is None
            if pending is None:
                pending = self._pending = concurrent.futures.Future()
                pending.set_running_or_notify_cancel()  # a waiter's cancellation must not cancel the others'
        if start:
            try:
                asyncio.get_running_loop().run_in_executor(None, self._refresh, pending)
            except BaseException as exc:  # the executor is shut down: no refresh will run
                self._finish(pending, exc=LLMProviderUnavailableError(f"cannot refresh a Google token: {exc}"))
        return await asyncio.wrap_future(pending)

    def _refresh(self, pending: concurrent.futures.Future[str]) -> None:
        """In a worker thread: load the credentials if needed, refresh them, resolve ``pending``."""
        try:
            token = self.current()  # a token another thread refreshed meanwhile
            if token is None:
                token = self._refresh_now()
        except BaseException as exc:
            self._finish(pending, exc=exc)
            return
        self._finish(pending, token=token)

    def _refresh_now(self) -> str:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        provider = self._provider
        try:
            if self._credentials is None:
                self._credentials = _application_default()
            self._credentials.refresh(Request())
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise LLMConfigurationError(
                f"no Google credentials for {provider!r}: set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
                f"JSON, pass credentials_file=, or run `gcloud auth application-default login` ({exc})",
                provider=provider,
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            cls = LLMProviderUnavailableError if getattr(exc, "retryable", False) else LLMAuthenticationError
            raise cls(f"Google refused the token request for {provider!r}: {exc}", provider=provider) from None
        except google.auth.exceptions.TransportError as exc:
            raise LLMProviderUnavailableError(
                f"cannot reach Google's token endpoint for {provider!r}: {exc}", provider=provider
            ) from None
        except Exception as exc:  # a reply google-auth cannot read, credentials of a kind it refuses, …
            raise LLMAuthenticationError(
                f"cannot get a Google access token for {provider!r}: {type(exc).__name__}: {exc}", provider=provider
            ) from None
        token = getattr(self._credentials, "token", None)
        if not isinstance(token, str) or not token:
            raise LLMAuthenticationError(f"the Google credentials of {provider!r} gave no access token")
        return token

    def _finish(
        self, pending: concurrent.futures.Future[str], *, token: str | None = None, exc: BaseException | None = None
    ) -> None:
        with self._lock:
            if self._pending is pending:
                self._pending = None
        if exc is None:
            pending.set_result(token or "")
        elif isinstance(exc, Exception):
            pending.set_exception(exc)
        else:  # KeyboardInterrupt and the like in the worker: the waiters still get an answer
            pending.set_exception(LLMProviderUnavailableError(f"the Google token refresh stopped: {exc!r}"))
