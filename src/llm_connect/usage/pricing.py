"""USD prices of calls, from the ``genai-prices`` data (pydantic), plus config overrides.

Conventions (identical in ``genai-prices`` and :class:`llm_connect.types.Usage`, so no translation is
needed): ``input_tokens`` includes cache reads and writes; ``output_tokens`` includes reasoning tokens.
A call costs::

    (input - cache_read - cache_write) * input_price + cache_read * cache_read_price
    + cache_write * cache_write_price + (output - reasoning) * output_price + reasoning * reasoning_price

where a price the model does not list falls back to its parent (cache reads/writes to the input price,
reasoning to the output price) — exactly what ``genai_prices.calc_price`` does. Cache writes are priced at
the default (5-minute) write price; tiered prices (long-context tiers) pick the tier by total input tokens;
time-dependent prices (off-peak discounts) use the request time.

Resolution order for ``price(provider, model, usage, requested=..., alias=...)``, where ``model`` is the id the
provider reported (``gpt-4o-mini-2024-07-18``), ``requested`` the id the call asked for (``gpt-4o-mini``) and
``alias`` the config's name for the deployment (``tuned``); reservations, settlement, the ledger and every
response price a call through this one order, so they agree:

1. overrides: ``"provider:<reported>"``, ``"<reported>"``, ``"provider:<requested>"``, ``"<requested>"``,
   ``"<alias>"``, then ``"provider:*"`` (a negotiated price on ``openai:gpt-4o-mini`` applies to the dated id
   the provider answers with);
2. providers ``local`` and ``fake`` cost 0 (they run in-process; documented, explicit);
3. self-hosted providers (``ollama``, ``vllm``, ``lmstudio``, ``llamacpp``, ``tgi``) are unpriced unless an
   override prices them (e.g. ``{"ollama:*": {"input_per_mtok": 0, "output_per_mtok": 0}}``);
4. ``genai-prices`` under the mapped provider id (``gemini`` → ``google``, ``xai`` → ``x-ai``, ...), the
   reported id first, then the requested one; for ``openrouter`` a model ``vendor/name`` it does not list is
   looked up as ``name`` under ``vendor``;
5. otherwise unpriced: ``None``, one warning per (provider, model) per Pricing instance, counted in
   :attr:`Pricing.unpriced`.

The price data is resolved once per (provider, model) and cached on the instance, so the hot path is a dict
look-up and a few Decimal multiplications (a few microseconds). ``genai_prices`` is imported lazily.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import LLMConfigurationError
from ..types import Usage

__all__ = ["FREE_PROVIDERS", "SELF_HOSTED_PROVIDERS", "ModelRate", "Pricing"]

log = logging.getLogger("llm_connect.usage.pricing")

#: providers whose calls cost nothing (in-process models and the test double)
FREE_PROVIDERS = frozenset({"local", "fake"})
#: self-hosted servers: unknown cost, priced only by overrides
SELF_HOSTED_PROVIDERS = frozenset({"ollama", "vllm", "lmstudio", "llamacpp", "llama_cpp", "tgi"})

#: our provider names -> genai-prices provider ids (anything else is passed through as is)
_PROVIDER_IDS: Mapping[str, str] = {
    "gemini": "google",
    "google": "google",
    "vertex": "google",
    "vertex_ai": "google",
    "xai": "x-ai",
    "grok": "x-ai",
    "bedrock": "aws",
    "claude_code": "anthropic",
    "claude-code": "anthropic",
    "together_ai": "together",
    "mistralai": "mistral",
    "moonshot": "moonshotai",
}

_ZERO = Decimal(0)
_MTOK = Decimal(1_000_000)
_THOUSAND = Decimal(1000)
_MAX_CACHE = 4096

_OVERRIDE_KEYS = {
    "input_per_mtok": "input",
    "input_mtok": "input",
    "output_per_mtok": "output",
    "output_mtok": "output",
    "cache_read_per_mtok": "cache_read",
    "cache_read_mtok": "cache_read",
    "cache_write_per_mtok": "cache_write",
    "cache_write_mtok": "cache_write",
    "reasoning_per_mtok": "reasoning",
    "output_reasoning_mtok": "reasoning",
    "per_request": "per_request",
}

#: a price per Mtok, or a tiered price: (base, ((threshold_input_tokens, price), ...)) ascending
Price = Decimal | tuple[Decimal, tuple[tuple[int, Decimal], ...]]


def _pick(price: Price | None, input_tokens: int) -> Decimal | None:
    if price is None or isinstance(price, Decimal):
        return price
    base, tiers = price
    for start, tier_price in reversed(tiers):
        if input_tokens > start:
            return tier_price
    return base


@dataclass(frozen=True, slots=True)
class ModelRate:
    """USD per million tokens for one model (None = not listed, falls back to the parent price)."""

    input: Price | None = None
    output: Price | None = None
    cache_read: Price | None = None
    cache_write: Price | None = None
    reasoning: Price | None = None
    #: flat USD per request
    per_request: Decimal = _ZERO

    def cost(self, usage: Usage) -> Decimal:
        """Exact USD cost of ``usage`` (same arithmetic as genai-prices: price * count / 1e6 per unit)."""
        n_in = usage.input_tokens
        total = self.per_request
        inp = _pick(self.input, n_in)
        leaf_in = n_in
        p = _pick(self.cache_read, n_in)
        if p is not None and usage.cache_read_tokens:
            total += p * usage.cache_read_tokens / _MTOK
        if p is not None:
            leaf_in -= usage.cache_read_tokens
        p = _pick(self.cache_write, n_in)
        if p is not None and usage.cache_write_tokens:
            total += p * usage.cache_write_tokens / _MTOK
        if p is not None:
            leaf_in -= usage.cache_write_tokens
        if inp is not None and leaf_in > 0:
            total += inp * leaf_in / _MTOK
        leaf_out = usage.output_tokens
        p = _pick(self.reasoning, n_in)
        if p is not None:
            if usage.reasoning_tokens:
                total += p * usage.reasoning_tokens / _MTOK
            leaf_out -= usage.reasoning_tokens
        out = _pick(self.output, n_in)
        if out is not None and leaf_out > 0:
            total += out * leaf_out / _MTOK
        return total

    def worst_cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The most a call of this size can cost, for budget reservations: every input token at the dearest
        input-side rate (a cache write costs more than plain input), every output token at the output rate.
        Equal to the larger of :meth:`cost` for plain input and for input written wholly to the cache."""
        total = self.per_request
        inp = _pick(self.input, input_tokens)
        write = _pick(self.cache_write, input_tokens)
        dearest = write if inp is None else inp if write is None else max(inp, write)
        if dearest is not None and input_tokens > 0:
            total += dearest * input_tokens / _MTOK
        out = _pick(self.output, input_tokens)
        if out is not None and output_tokens > 0:
            total += out * output_tokens / _MTOK
        return total

    def per_1k(self) -> Decimal | None:
        """Blended USD per 1000 tokens: mean of the base input and output prices, divided by 1000."""
        inp = _pick(self.input, 0)
        out = _pick(self.output, 0)
        if inp is None and out is None:
            return None
        if inp is None or out is None:
            return (inp if inp is not None else out) / _THOUSAND  # type: ignore[operator]
        return (inp + out) / 2 / _THOUSAND


_FREE_RATE = ModelRate(_ZERO, _ZERO, _ZERO, _ZERO, _ZERO)


def _dec(key: str, value: Any) -> Decimal:
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise LLMConfigurationError(f"pricing override {key!r}: {value!r} is not a number") from exc
    if not d.is_finite() or d < 0:
        raise LLMConfigurationError(f"pricing override {key!r}: {value!r} must be a finite number >= 0")
    return d


def _rate_from_override(name: str, spec: Mapping[str, Any]) -> ModelRate:
    if not isinstance(spec, Mapping):
        raise LLMConfigurationError(f"pricing override {name!r} must be a mapping of prices")
    fields: dict[str, Decimal] = {}
    for key, value in spec.items():
        target = _OVERRIDE_KEYS.get(key)
        if target is None:
            raise LLMConfigurationError(
                f"pricing override {name!r}: unknown key {key!r} (use {sorted(set(_OVERRIDE_KEYS))})"
            )
        fields[target] = _dec(f"{name}.{key}", value)
    if "input" not in fields and "output" not in fields:
        raise LLMConfigurationError(f"pricing override {name!r} needs input_per_mtok and/or output_per_mtok")
    return ModelRate(**fields)  # type: ignore[arg-type]


def _convert_price(value: Any) -> Price | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None)
    if isinstance(base, Decimal) and tiers is not None:
        return base, tuple((int(t.start), t.price) for t in tiers)
    raise TypeError(f"unsupported price value {value!r}")


def _rate_from_model_price(mp: Any) -> ModelRate:
    """genai-prices ModelPrice -> ModelRate (token prices, per-request price; other units have no usage)."""
    per_request = getattr(mp, "requests_kcount", None)
    return ModelRate(
        input=_convert_price(getattr(mp, "input_mtok", None)),
        output=_convert_price(getattr(mp, "output_mtok", None)),
        cache_read=_convert_price(getattr(mp, "cache_read_mtok", None)),
        cache_write=_convert_price(getattr(mp, "cache_write_mtok", None)),
        reasoning=_convert_price(getattr(mp, "output_reasoning_mtok", None)),
        per_request=(per_request / _THOUSAND) if isinstance(per_request, Decimal) else _ZERO,
    )


class _Resolved:
    """A cached look-up: a fixed rate, or a genai-prices model whose price depends on the request time."""

    __slots__ = ("model_info", "rate", "source")

    def __init__(self, rate: ModelRate | None, model_info: Any = None, source: str = "") -> None:
        self.rate = rate
        self.model_info = model_info
        self.source = source


_UNPRICED = _Resolved(None, None, "unpriced")


class Pricing:
    """Prices calls in USD. Thread-safe; keep one instance per process (it caches look-ups).

    ``overrides`` maps ``"provider:model"``, ``"model"`` or ``"provider:*"`` to prices per million tokens:
    ``input_per_mtok``, ``output_per_mtok``, ``cache_read_per_mtok``, ``cache_write_per_mtok``,
    ``reasoning_per_mtok``, ``per_request`` (USD). Missing cache/reasoning prices fall back to input/output.
    """

    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._overrides: dict[str, ModelRate] = {
            str(name).lower(): _rate_from_override(str(name), spec) for name, spec in (overrides or {}).items()
        }
        self._cache: dict[tuple[str, str, str | None, str | None], _Resolved] = {}
        self._rate_by_price: dict[int, tuple[Any, ModelRate]] = {}
        self._lock = threading.Lock()
        #: (provider, model) -> number of calls that could not be priced
        self.unpriced: dict[tuple[str, str], int] = {}

    @property
    def unpriced_count(self) -> int:
        """Total calls that returned None since this instance was made."""
        with self._lock:
            return sum(self.unpriced.values())

    # -- public API ---------------------------------------------------------------------------------

    def price(
        self,
        provider: str,
        model: str,
        usage: Usage,
        *,
        at: datetime | None = None,
        estimate: bool = False,
        requested: str | None = None,
        alias: str | None = None,
    ) -> Decimal | None:
        """USD cost of ``usage`` on ``provider``/``model``, or None if no price is known.

        ``model`` is the id the provider reported; ``requested`` / ``alias`` are looked up after it (see the
        module docstring). ``estimate=True`` (e.g. a budget reservation) does not count or warn about an
        unpriced model.
        """
        key = (provider, model, requested, alias)
        res = self._cache.get(key)
        if res is None:
            res = self._resolve(key)
        rate = res.rate
        if rate is None:
            if res.model_info is None:
                if not estimate:
                    self._count_unpriced(provider, model)
                return None
            rate = self._timed_rate(res.model_info, at)
        return rate.cost(usage)

    def price_per_1k(
        self, provider: str, model: str, *, at: datetime | None = None, alias: str | None = None
    ) -> Decimal | None:
        """Blended USD per 1000 tokens ((input + output) / 2, base tier), or None if unpriced.

        Used by routing's ``max_cost_per_1k``; unpriced models are not counted as unpriced calls here.
        """
        key = (provider, model, None, alias)
        res = self._cache.get(key) or self._resolve(key)
        rate = res.rate
        if rate is None:
            if res.model_info is None:
                return None
            rate = self._timed_rate(res.model_info, at)
        return rate.per_1k()

    def rate(
        self,
        provider: str,
        model: str,
        *,
        at: datetime | None = None,
        requested: str | None = None,
        alias: str | None = None,
    ) -> ModelRate | None:
        """The per-Mtok prices used for ``provider``/``model`` (None if unpriced), in :meth:`price`'s order."""
        key = (provider, model, requested, alias)
        res = self._cache.get(key) or self._resolve(key)
        if res.rate is not None or res.model_info is None:
            return res.rate
        return self._timed_rate(res.model_info, at)

    def source(self, provider: str, model: str, *, requested: str | None = None, alias: str | None = None) -> str:
        """Where the price comes from: ``override:<key>``, ``free``, ``genai-prices:<provider>/<model>``
        or ``unpriced``."""
        key = (provider, model, requested, alias)
        return (self._cache.get(key) or self._resolve(key)).source

    # -- internals ----------------------------------------------------------------------------------

    def _count_unpriced(self, provider: str, model: str) -> None:
        key = (provider, model)
        with self._lock:
            n = self.unpriced.get(key, 0)
            self.unpriced[key] = n + 1
        if n == 0:
            log.warning("no price known for %s:%s; its cost is recorded as unknown (None)", provider, model)

    def _timed_rate(self, model_info: Any, at: datetime | None) -> ModelRate:
        mp = model_info.get_prices(at or datetime.now(UTC))
        hit = self._rate_by_price.get(id(mp))
        if hit is not None and hit[0] is mp:
            return hit[1]
        rate = _rate_from_model_price(mp)
        self._rate_by_price[id(mp)] = (mp, rate)
        return rate

    def _resolve(self, key: tuple[str, str, str | None, str | None]) -> _Resolved:
        res = self._lookup(*key)
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[key] = res
        return res

    def _lookup(self, provider: str, model: str, requested: str | None, alias: str | None) -> _Resolved:
        prov = (provider or "").lower()
        ids = list(dict.fromkeys(m.lower() for m in (model, requested) if m))  # reported, then requested
        keys = [k for mdl in ids for k in (f"{prov}:{mdl}", mdl)]
        for key in [*keys, *([alias.lower()] if alias else []), f"{prov}:*"]:
            rate = self._overrides.get(key)
            if rate is not None:
                return _Resolved(rate, None, f"override:{key}")
        if prov in FREE_PROVIDERS:
            return _Resolved(_FREE_RATE, None, "free")
        if prov in SELF_HOSTED_PROVIDERS or not ids:
            return _UNPRICED
        genai_id = _PROVIDER_IDS.get(prov, prov)
        found = None
        for mdl in ids:
            found = _genai_find(genai_id or None, mdl)
            if found is None and "/" in mdl and genai_id == "openrouter":
                vendor, _, name = mdl.partition("/")
                found = _genai_find(_PROVIDER_IDS.get(vendor, vendor), name)
            if found is not None:
                break
        if found is None:
            return _UNPRICED
        gp, info = found
        src = f"genai-prices:{gp.id}/{info.id}"
        if isinstance(info.prices, list):  # time-dependent prices
            return _Resolved(None, info, src)
        return _Resolved(_rate_from_model_price(info.prices), None, src)


def _genai_find(provider_id: str | None, model: str) -> tuple[Any, Any] | None:
    """(provider, model_info) from the bundled genai-prices snapshot, or None."""
    from genai_prices import data_snapshot  # lazy: loading the price data takes ~0.2 s

    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
