"""Google Vertex AI: Gemini (``vertex:<model>``) and Anthropic's Claude (``vertex_anthropic:<model>``).

The same codecs as the Gemini API and Anthropic's Messages API (``llm_connect.wire.gemini``,
``llm_connect.wire.anthropic_messages``); what differs is where a request goes and how it authenticates:

* host: ``https://{location}-aiplatform.googleapis.com``; the ``global`` location is ``https://aiplatform.googleapis.com``,
  the ``us`` / ``eu`` multi-regions ``https://aiplatform.{us,eu}.rep.googleapis.com``; ``api_base`` replaces it
  (a proxy, the mock server);
* path: ``/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}``. Gemini:
  ``:generateContent``, ``:streamGenerateContent?alt=sse``, ``:countTokens`` (whose body is the request's
  ``contents``, ``systemInstruction``, ``tools`` and ``generationConfig`` themselves). Claude: ``:rawPredict`` and
  ``:streamRawPredict`` with the Messages body less ``model`` plus ``anthropic_version: "vertex-2023-10-16"``,
  and ``models/count-tokens:rawPredict`` for token counts (``model`` kept in the body). Embeddings (Gemini's
  row) go to ``:predict`` in Vertex's own shape (``llm_connect.wire.embeddings``, ``vertex_predict``);
* credentials: ``Authorization: Bearer <OAuth access token>`` from google-auth (providers/_google_auth.py): a
  credentials file (``credentials_file=`` or ``$GOOGLE_APPLICATION_CREDENTIALS``), a google-auth Credentials
  object (``credentials=``), or application default credentials; a static token (``access_token=`` or
  ``api_key=``, e.g. ``gcloud auth print-access-token``) is sent as it is;
* project: ``project=``, else the row's variables (``$GOOGLE_CLOUD_PROJECT``), else the credentials file's
  ``project_id``; location: ``location=`` (or ``region=``), else ``$GOOGLE_CLOUD_LOCATION`` / ``$VERTEX_LOCATION``,
  else ``global``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import LLMConfigurationError
from ..wire import WireRequest
from ._google_auth import GoogleToken, load_credentials_file, require_google_auth
from .http import HTTPAdapter
from .spec import ProviderSpec

if TYPE_CHECKING:
    from yarl import URL

    from ..types import RunConfig

__all__ = ["ANTHROPIC_VERSION", "OPTION_NAMES", "VertexAdapter", "vertex_host"]

#: the ``anthropic_version`` body field Claude on Vertex requires
ANTHROPIC_VERSION = "vertex-2023-10-16"
#: the adapter keywords a Vertex row takes (beside api_key, api_base and BaseAdapter's)
OPTION_NAMES = ("project", "location", "region", "credentials_file", "credentials", "access_token", "refresh_margin")
#: the fields of a GenerateContentRequest that Vertex's countTokens takes
_COUNT_FIELDS = ("contents", "systemInstruction", "tools", "generationConfig")


def vertex_host(location: str) -> str:
    """The documented service endpoint of a Vertex AI location."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    if location in ("us", "eu"):  # multi-region endpoints
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def _first(value: Any, names: tuple[str, ...]) -> str | None:
    if value is not None:
        return str(value).strip() or None
    for var in names:
        found = os.environ.get(var, "").strip()
        if found:
            return found
    return None


def _segment(value: str, what: str, provider: str) -> str:
    """A project or location as one URL path segment (refused if it could change the path)."""
    if not value.isprintable() or any(c in value for c in "/?#") or value in (".", ".."):
        raise LLMConfigurationError(f"{what} for {provider!r} is not a valid Vertex AI {what}: {value!r}")
    return value


class VertexAdapter(HTTPAdapter):
    """An :class:`HTTPAdapter` whose requests go to Vertex AI's publisher paths with an OAuth bearer token."""

    def __init__(
        self, spec: ProviderSpec, model: str, *, api_key: str | None = None, api_base: str | None = None, **options: Any
    ) -> None:
        """``api_key`` is a static access token; ``options``: :data:`OPTION_NAMES`, then HTTPAdapter's."""
        vertex = spec.vertex
        assert vertex is not None
        name = spec.name
        project = options.pop("project", None)
        location, region = options.pop("location", None), options.pop("region", None)
        location = location if location is not None else region
        creds_file = options.pop("credentials_file", None)
        credentials = options.pop("credentials", None)
        access_token = options.pop("access_token", None) or api_key
        margin = options.pop("refresh_margin", 300.0)
        if not isinstance(margin, int | float) or isinstance(margin, bool) or margin < 0:
            raise LLMConfigurationError(f"refresh_margin for {name!r} must be a number of seconds >= 0")
        self._static: str | None = None
        self._token: GoogleToken | None = None
        file_project = None
        if access_token is not None:
            if not isinstance(access_token, str) or not access_token.strip().isprintable() or not access_token.strip():
                raise LLMConfigurationError(f"access_token for {name!r} must be a printable token string")
            self._static = access_token.strip()
        else:
            require_google_auth(name)
            path = _first(creds_file, () if creds_file is not None else vertex.credentials_env)
            if credentials is None and path is not None:
                credentials, file_project = load_credentials_file(path, name)
            elif credentials is not None and not hasattr(credentials, "refresh"):
                raise LLMConfigurationError(f"credentials for {name!r} must be google-auth Credentials")
            self._token = GoogleToken(credentials, provider=name, margin=float(margin))
        project = _first(project, vertex.project_env) or file_project or getattr(credentials, "project_id", None)
        if not project:
            raise LLMConfigurationError(
                f"provider {name!r} needs a Google Cloud project: set {' or '.join(vertex.project_env)}, or pass "
                "project= (config: providers.<name>.options.project)",
                provider=name,
                model=model,
            )
        location = _first(location, vertex.location_env) or vertex.default_location
        self.project = _segment(str(project), "project", name)
        self.location = _segment(location, "location", name)
        base = (api_base or vertex_host(self.location)).strip().rstrip("/")
        base = base.removesuffix("/v1")  # a base copied with the API version (ANTHROPIC_VERTEX_BASE_URL's form)
        super().__init__(spec, model, api_base=base, **options)
        self._prefix = f"/v1/projects/{self.project}/locations/{self.location}/publishers/{vertex.publisher}/models/"

    def __repr__(self) -> str:  # never show the token
        return f"<VertexAdapter {self.provider}:{self.model} {self.project}/{self.location} at {self.api_base}>"

    async def _outgoing(
        self, url: str, body: Any, headers: dict[str, str], query: dict[str, str] | None, config: RunConfig
    ) -> tuple[str | URL, Any, dict[str, str], dict[str, str] | None]:
        """The OAuth bearer token (refreshed before it expires) on top of the trace context."""
        url, body, headers, query = await super()._outgoing(url, body, headers, query, config)
        token = self._static if self._token is None else await self._token.token()
        return url, body, headers | {"Authorization": f"Bearer {token}"}, query

    def _located(self, req: WireRequest, stream: bool) -> WireRequest:
        if self.spec.wire == "gemini":
            return self._gemini(req)
        return self._anthropic(req, stream)

    def _gemini(self, req: WireRequest) -> WireRequest:
        """``/v1beta/models/{model}:{method}`` → the publisher path; countTokens takes the request's fields."""
        target = req.path.rpartition("/models/")[2]
        body = req.body
        inner = body.get("generateContentRequest")
        if target.endswith(":countTokens") and isinstance(inner, Mapping):
            body = {k: inner[k] for k in _COUNT_FIELDS if k in inner}
        return WireRequest(self._prefix + target, body, req.query, req.headers)

    def _anthropic(self, req: WireRequest, stream: bool) -> WireRequest:
        """``/v1/messages`` → ``{model}:rawPredict`` / ``:streamRawPredict`` without ``model``;
        ``/v1/messages/count_tokens`` → ``count-tokens:rawPredict``; ``anthropic_version`` in the body."""
        body = dict(req.body)
        body.setdefault("anthropic_version", ANTHROPIC_VERSION)
        headers = {k: v for k, v in req.headers.items() if k.lower() != "anthropic-version"}
        if req.path.endswith("/count_tokens"):
            path = self._prefix + "count-tokens:rawPredict"
        else:
            model = str(body.pop("model", None) or self.model)
            path = self._prefix + quote(model, safe="@") + (":streamRawPredict" if stream else ":rawPredict")
        return WireRequest(path, body, req.query, headers)
