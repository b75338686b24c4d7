"""Amazon Bedrock through the Converse API: ``bedrock:<model id>`` (a foundation model such as
``anthropic.claude-3-5-haiku-20241022-v1:0``, a cross-region inference profile such as
``us.anthropic.claude-sonnet-4-20250514-v1:0``, or an ARN).

Auth, per request:

* SigV4 (the default), signed with botocore's signer (the ``bedrock`` extra) over the exact bytes sent;
  credentials from the standard AWS chain, resolved once and lazily (``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, a profile in ``~/.aws/config`` (``profile=`` or
  ``AWS_PROFILE``), an assumed role, SSO, container or instance credentials); refreshable credentials (roles, SSO,
  IMDS) are refreshed by botocore when they near expiry, off the event loop;
* or a Bedrock API key (``api_key=`` or ``AWS_BEARER_TOKEN_BEDROCK``), sent as ``Authorization: Bearer``.

Region: ``region=``, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the profile's, else an ARN model id's.
Endpoint: ``api_base`` (``endpoint=``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ``AWS_ENDPOINT_URL``), else
``https://bedrock-runtime.{region}.amazonaws.com``. Prices: genai-prices' ``aws`` provider, under the model id
(an ARN's resource id; :func:`price_model_id`).
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from yarl import URL

from ..errors import LLMAuthenticationError, LLMConfigurationError
from .http import HTTPAdapter
from .spec import ProviderSpec

if TYPE_CHECKING:
    from ..types import RunConfig

__all__ = ["BedrockAdapter", "price_model_id", "region_of"]

#: the options this adapter takes (removed before BaseAdapter sees them)
_OPTIONS = ("region", "profile", "endpoint", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SERVICE = "bedrock"  # the signing name of bedrock-runtime
_INSTALL = "pip install 'llm-connect[bedrock]'"

#: ``arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic...`` and the foundation-model form
_ARN = re.compile(r"arn:aws[a-z-]*:bedrock:(?P<region>[a-z0-9-]*):(?P<account>\d*):(?P<kind>[a-z-]+)/(?P<id>.+)")


def price_model_id(model: str) -> str:
    """The id genai-prices' ``aws`` provider prices ``model`` under: the model id itself, its geography prefix kept
    (genai-prices matches ``us.`` / ``eu.`` / ``apac.`` ... inference profiles at the regional rate and ``global.``
    ones at the global rate), or an ARN's resource id (``arn:aws:bedrock:us-east-1::foundation-model/<id>``,
    ``...:inference-profile/<id>``). Application inference profiles and provisioned or custom models are priced by
    overrides (their ids name no model)."""
    m = _ARN.fullmatch(model)
    return m.group("id") if m else model


def region_of(model: str) -> str | None:
    """The region an ARN model id names, else None."""
    m = _ARN.fullmatch(model)
    return m.group("region") or None if m else None


def _first_env(*names: str) -> str | None:
    for var in names:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return None


def _endpoint(spec: ProviderSpec, region: str) -> str:
    """The row's endpoint template for ``region`` (the China partition's domain ends in ``.cn``)."""
    url = spec.base_url.format(region=region)
    return url + ".cn" if region.startswith("cn-") else url


def _botocore() -> Any:
    try:
        import botocore.session  # the bedrock extra
    except ImportError as exc:
        raise LLMConfigurationError(
            f"provider 'bedrock' signs requests with botocore, which is not installed ({exc.name}) — install it "
            f"with: {_INSTALL} (or use a Bedrock API key: AWS_BEARER_TOKEN_BEDROCK)",
            provider="bedrock",
        ) from exc
    return botocore


class BedrockAdapter(HTTPAdapter):
    """The Converse codec over the shared transport, SigV4-signed per request (or a Bedrock API key)."""

    def __init__(
        self,
        spec: ProviderSpec,
        model: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        **options: Any,
    ) -> None:
        opts = {k: options.pop(k) for k in _OPTIONS if k in options}
        key = api_key or spec.find_key()
        self._session: Any = None
        self._credentials: Any = None
        self._lock = threading.Lock()
        #: the credentials have been fetched once (a deferred provider fetches on first use: off the loop)
        self._warm = False
        if key is None:
            botocore = _botocore()
            self._session = botocore.session.Session(profile=opts.get("profile") or None)
            access, secret = opts.get("aws_access_key_id"), opts.get("aws_secret_access_key")
            if bool(access) != bool(secret):
                raise LLMConfigurationError("pass both aws_access_key_id and aws_secret_access_key, or neither")
            if access:
                from botocore.credentials import Credentials

                self._credentials = Credentials(access, secret, opts.get("aws_session_token"))
        region = opts.get("region") or _first_env("AWS_REGION", "AWS_DEFAULT_REGION")
        if not region and self._session is not None:
            try:
                region = self._session.get_config_variable("region")
            except Exception as exc:  # botocore's ProfileNotFound, a malformed config file
                raise LLMConfigurationError(f"provider 'bedrock': {type(exc).__name__}: {exc}") from exc
        region = region or region_of(model)
        base = api_base or opts.get("endpoint") or _first_env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL")
        if not region:
            raise LLMConfigurationError(
                "provider 'bedrock' needs a region: pass region=... (config: providers.bedrock.options.region), "
                "or set AWS_REGION",
                provider="bedrock",
                model=model,
            )
        if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d+", region):
            raise LLMConfigurationError(f"bedrock region must look like 'us-east-1', got {region!r}")
        self.region: str = region
        super().__init__(spec, model, api_key=key, api_base=base or _endpoint(spec, region), **options)

    def __repr__(self) -> str:  # never show credentials
        return f"<BedrockAdapter {self.provider}:{self.model} in {self.region} at {self.api_base}>"

    def _price_key(self, model: str | None) -> tuple[str, str]:
        return self.provider, price_model_id(model or self.model)

    async def _frozen_credentials(self) -> Any:
        """Read-only credentials for one signature. The chain is walked once, off the event loop (it may read
        files, run a credential process or ask the instance metadata service); refreshable credentials (roles, SSO,
        instance or container credentials) are refreshed off the loop when botocore says they are due."""
        creds = self._credentials
        if creds is not None and self._warm:
            refresh_needed = getattr(creds, "refresh_needed", None)
            if refresh_needed is None or not refresh_needed():
                return creds.get_frozen_credentials()  # no I/O: nothing is due
        frozen = await asyncio.to_thread(self._frozen_in_thread)
        if frozen is None:
            raise LLMConfigurationError(
                "no AWS credentials for provider 'bedrock': set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE (or profile=), run on a role, or set AWS_BEARER_TOKEN_BEDROCK",
                provider=self.provider,
                model=self.model,
            )
        return frozen

    def _frozen_in_thread(self) -> Any:
        try:
            with self._lock:  # one walk of the chain however many calls start at once (in any event loop)
                if self._credentials is None:
                    self._credentials = self._session.get_credentials()
                creds = self._credentials
            frozen = None if creds is None else creds.get_frozen_credentials()
        except Exception as exc:  # a missing profile, a failing credential process, an expired SSO session
            raise LLMAuthenticationError(
                f"cannot obtain AWS credentials for provider 'bedrock': {type(exc).__name__}: {exc}",
                provider=self.provider,
                model=self.model,
            ) from exc
        self._warm = frozen is not None
        return frozen

    async def _outgoing(
        self, url: str, body: Any, headers: dict[str, str], query: dict[str, str] | None, config: RunConfig
    ) -> tuple[str | URL, Any, dict[str, str], dict[str, str] | None]:
        """SigV4 over the exact bytes, URL and headers sent (the URL kept as encoded: the model id's ``:`` stays
        ``%3A``, as signed), the trace context among the signed headers. With a Bedrock API key: the bearer
        header the constructor set."""
        url, body, headers, query = await super()._outgoing(url, body, headers, query, config)
        if self._session is None and self._credentials is None:
            return url, body, headers, query
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        target = URL(url, encoded=True)
        if query:
            target = target.with_query(query)
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        request = AWSRequest(method="POST", url=str(target), data=data, headers=_to_sign(headers))
        SigV4Auth(await self._frozen_credentials(), _SERVICE, self.region).add_auth(request)
        return target, data, dict(request.headers.items()), None


def _to_sign(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers sent, with the content type the transport adds (so it is signed as sent)."""
    out = {"Content-Type": "application/json"}
    out.update((k, v) for k, v in headers.items() if k.lower() != "content-type")
    return out
