"""USD prices of calls, from the ``genai-prices`` data (pydantic), plus config overrides.

Conventions (identical in ``genai-prices`` and :class:`llm_connect.types.Usage`, so no translation is
needed): ``input_tokens`` includes cache reads and writes; ``output_tokens`` includes reasoning tokens.
A call costs::

    (input - cache_read - cache_write) * input_price + cache_read * cache_read_price
    + cache_write * cache_write_price + (output - reasoning) * output_price + reasoning * reasoning_price

where a price the model does not list falls back to its parent (cache reads/writes to the input price,
reasoning to the output price) — exactly what ``genai_prices.calc_price`` does. The detail kinds of Usage
(1-hour cache writes, audio / image / video input, cache reads and output) are priced the same way, each token
at the most specific kind the model has a price for (genai-prices' unit lattice, :data:`_UNITS`); a 1-hour
cache write on a model without a 1-hour price costs 2x its input price (Anthropic's multiplier). Tiered prices
(long-context tiers) pick the tier by total input tokens; time-dependent prices (off-peak discounts) use the
request time; a ``service_tier`` the response names is priced at genai-prices' variant for it, where the model
has one (docs/usage-normalisation.md).

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
4. ``genai-prices`` under the mapped provider id (the registry row's ``prices_id``: ``gemini`` → ``google``,
   ``xai`` → ``x-ai``, ``nebius`` → ``huggingface_nebius``, ...; a row with none is unpriced), the
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import LLMConfigurationError
from ..types import Usage

__all__ = ["FREE_PROVIDERS", "INPUT_KINDS", "SELF_HOSTED_PROVIDERS", "ModelRate", "Pricing"]

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

#: a price per Mtok, or a tiered price: (base, ((threshold_input_tokens, price), ...)) ascending
Price = Decimal | tuple[Decimal, tuple[tuple[int, Decimal], ...]]

#: every priced token unit: (ModelRate field, Usage field, genai-prices price key, dimensions) — genai-prices'
#: unit lattice cut down to the kinds Usage has. A unit's tokens are counted in every unit whose dimensions
#: are a subset of its own (a cached audio read is input, a cache read and audio input).
_UNITS: tuple[tuple[str, str, str, frozenset[str]], ...] = (
    ("input", "input_tokens", "input_mtok", frozenset({"in"})),
    ("cache_read", "cache_read_tokens", "cache_read_mtok", frozenset({"in", "read"})),
    ("cache_write", "cache_write_tokens", "cache_write_mtok", frozenset({"in", "write"})),
    ("cache_write_1h", "cache_write_1h_tokens", "cache_write_1h_mtok", frozenset({"in", "write", "1h"})),
    ("input_audio", "input_audio_tokens", "input_audio_mtok", frozenset({"in", "audio"})),
    ("input_image", "input_image_tokens", "input_image_mtok", frozenset({"in", "image"})),
    ("input_video", "input_video_tokens", "input_video_mtok", frozenset({"in", "video"})),
    ("cache_audio_read", "cache_audio_read_tokens", "cache_audio_read_mtok", frozenset({"in", "read", "audio"})),
    ("cache_image_read", "cache_image_read_tokens", "cache_image_read_mtok", frozenset({"in", "read", "image"})),
    ("cache_video_read", "cache_video_read_tokens", "cache_video_read_mtok", frozenset({"in", "read", "video"})),
    ("output", "output_tokens", "output_mtok", frozenset({"out"})),
    ("reasoning", "reasoning_tokens", "output_reasoning_mtok", frozenset({"out", "reasoning"})),
    ("output_audio", "output_audio_tokens", "output_audio_mtok", frozenset({"out", "audio"})),
    ("output_image", "output_image_tokens", "output_image_mtok", frozenset({"out", "image"})),
    ("output_video", "output_video_tokens", "output_video_mtok", frozenset({"out", "video"})),
)
_MODALITIES = ("audio", "image", "video")
#: the input-side kinds a request can make dearer than plain input; :meth:`ModelRate.worst_cost` always counts
#: a (5-minute) cache write, the rest only when the request may bill them (see ``llm_connect.usage.kinds``)
INPUT_KINDS = frozenset({"cache_write_1h", "input_audio", "input_image", "input_video"})
#: a kind the model does not price is billed at this one's price (cache_write_1h: see _ONE_HOUR_WRITE)
_PARENT = {"cache_write": "input", "cache_write_1h": "cache_write", **{f"input_{m}": "input" for m in _MODALITIES}}
#: Anthropic bills a 1-hour cache write at 2x the base input price
#: (https://platform.claude.com/docs/en/build-with-claude/prompt-caching#pricing): the price of a 1-hour write
#: for a model whose price list has none (only the Anthropic Messages format reports 1-hour writes)
_ONE_HOUR_WRITE = Decimal(2)

_OVERRIDE_KEYS = {
    **{f"{name}_per_mtok": name for name, _, _, _ in _UNITS},
    **{genai_key: name for name, _, genai_key, _ in _UNITS},
    "per_request": "per_request",
}


def _pick(price: Price | None, input_tokens: int) -> Decimal | None:
    if price is None or isinstance(price, Decimal):
        return price
    base, tiers = price
    for start, tier_price in reversed(tiers):
        if input_tokens > start:
            return tier_price
    return base


def _scaled(price: Price, factor: Decimal) -> Price:
    if isinstance(price, Decimal):
        return price * factor
    base, tiers = price
    return base * factor, tuple((start, p * factor) for start, p in tiers)


#: one priced unit of a rate: (Usage field, price, indexes of the earlier entries that are its sub-units)
_Step = tuple[str, Price, tuple[int, ...]]


def _side(prices: list[Price]) -> Any:
    """worst_cost's prices of one side: their maximum when none is tiered, else all of them, None if none."""
    if not prices:
        return None
    if all(isinstance(p, Decimal) for p in prices):
        return max(prices)  # type: ignore[type-var]
    return tuple(prices)


@dataclass(frozen=True, slots=True)
class ModelRate:
    """USD per million tokens for one model (None = not listed: billed at the parent kind's price — cache
    reads and writes and modality input at the input price, reasoning and modality output at the output
    price, a 1-hour cache write at 2x the input price)."""

    input: Price | None = None
    output: Price | None = None
    cache_read: Price | None = None
    cache_write: Price | None = None
    reasoning: Price | None = None
    #: flat USD per request
    per_request: Decimal = _ZERO
    cache_write_1h: Price | None = None
    input_audio: Price | None = None
    input_image: Price | None = None
    input_video: Price | None = None
    cache_audio_read: Price | None = None
    cache_image_read: Price | None = None
    cache_video_read: Price | None = None
    output_audio: Price | None = None
    output_image: Price | None = None
    output_video: Price | None = None
    _plan: tuple[_Step, ...] = field(init=False, repr=False, compare=False, hash=False)
    #: input kinds -> the prices worst_cost compares (their maximum when none is tiered), built on first use
    _worst: dict[frozenset[str], tuple[Any, Any]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", self._make_plan())
        object.__setattr__(self, "_worst", {})

    def _price_of(self, name: str) -> Price | None:
        price: Price | None = getattr(self, name)
        if price is None and name == "cache_write_1h" and self.input is not None:
            price = _scaled(self.input, _ONE_HOUR_WRITE)
        return price

    def _make_plan(self) -> tuple[_Step, ...]:
        """The priced units, most specific first, each with its priced sub-units: what cost() walks."""
        priced = [
            (usage_field, price, dims)
            for name, usage_field, _, dims in _UNITS
            if (price := self._price_of(name)) is not None
        ]
        priced.sort(key=lambda u: -len(u[2]))
        return tuple(
            (usage_field, price, tuple(j for j in range(i) if priced[j][2] > dims))
            for i, (usage_field, price, dims) in enumerate(priced)
        )

    def cost(self, usage: Usage) -> Decimal:
        """Exact USD cost of ``usage``: each token at the price of the most specific kind it belongs to that
        the model prices (genai-prices' arithmetic: price * count / 1e6 per unit, tier by input tokens)."""
        n_in = usage.input_tokens
        total = self.per_request
        leaves: list[int] = []
        for usage_field, price, sub in self._plan:
            leaf = getattr(usage, usage_field)
            for j in sub:
                leaf -= leaves[j]
            leaves.append(leaf)
            if leaf > 0:
                p = price if isinstance(price, Decimal) else _pick(price, n_in)
                total += p * leaf / _MTOK  # type: ignore[operator]
        return total

    def _effective(self, name: str) -> Price | None:
        """The price one token of kind ``name`` is billed at (its own, else its parent's), before tiers."""
        price = self._price_of(name)
        while price is None and name in _PARENT:
            name = _PARENT[name]
            price = self._price_of(name)
        return price

    def _worst_prices(self, kinds: frozenset[str]) -> tuple[Any, Any]:
        """(input side, output side) for worst_cost: a Decimal (the maximum) when no candidate is tiered,
        else the candidates to pick by tier per call; None when the side has no price."""
        hit = self._worst.get(kinds)
        if hit is None:
            names = ("input", "cache_write", *sorted(kinds & INPUT_KINDS))
            ins = [p for n in names if (p := self._effective(n)) is not None]
            names = ("output", "reasoning", *(f"output_{m}" for m in _MODALITIES))
            outs = [p for n in names if (p := getattr(self, n)) is not None]
            hit = (_side(ins), _side(outs))
            if len(self._worst) < 64:
                self._worst[kinds] = hit
        return hit

    def worst_cost(self, input_tokens: int, output_tokens: int, kinds: frozenset[str] = frozenset()) -> Decimal:
        """The most a call of this size can cost, for budget reservations: every input token at the dearest
        input-side price it may be billed at — plain input, a cache write, and the ``kinds`` the request may
        bill (``INPUT_KINDS``: 1-hour cache writes, audio, image, video input) — and every output token at the
        dearest output-side price the model lists (reasoning, audio, image, video output are not asked for)."""
        total = self.per_request
        ins, outs = self._worst_prices(kinds)
        if ins is not None and input_tokens > 0:
            price = ins if isinstance(ins, Decimal) else max(_pick(p, input_tokens) for p in ins)
            total += price * input_tokens / _MTOK
        if outs is not None and output_tokens > 0:
            price = outs if isinstance(outs, Decimal) else max(_pick(p, input_tokens) for p in outs)
            total += price * output_tokens / _MTOK
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
            known = sorted(k for k in _OVERRIDE_KEYS if k.endswith("_per_mtok") or k == "per_request")
            raise LLMConfigurationError(f"pricing override {name!r}: unknown key {key!r} (use {known})")
        fields[target] = _dec(f"{name}.{key}", value)
    if "input" not in fields and "output" not in fields:
        raise LLMConfigurationError(f"pricing override {name!r} needs input_per_mtok and/or output_per_mtok")
    for m in _MODALITIES:
        # a cached audio token is both a cache read and audio input: with both priced, say which price it has
        if f"input_{m}" in fields and "cache_read" in fields and f"cache_{m}_read" not in fields:
            raise LLMConfigurationError(
                f"pricing override {name!r} prices input_{m}_per_mtok and cache_read_per_mtok: "
                f"give cache_{m}_read_per_mtok too (the price of a cached {m} token)"
            )
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
        **{name: _convert_price(getattr(mp, genai_key, None)) for name, _, genai_key, _ in _UNITS},
        per_request=(per_request / _THOUSAND) if isinstance(per_request, Decimal) else _ZERO,
    )


def _service_tiers(provider: Any, info: Any) -> frozenset[str]:
    """The service tiers genai-prices has a price variant for on this model. Like ``calc_price``, a model found
    through a fallback provider (not one of ``provider``'s own) is priced without variants."""
    if not any(info is m for m in provider.models):
        return frozenset()
    return frozenset(
        tier
        for v in getattr(info, "price_variants", None) or ()
        if len(v.when) == 1 and isinstance(tier := v.when.get("service_tier"), str)
    )


class _Resolved:
    """A cached look-up: a fixed rate, or a genai-prices model whose price depends on the request time;
    ``tiers`` are the service tiers with their own prices (``tier_info`` the model that has them)."""

    __slots__ = ("model_info", "rate", "source", "tier_info", "tiers")

    def __init__(
        self,
        rate: ModelRate | None,
        model_info: Any = None,
        source: str = "",
        tier_info: Any = None,
        tiers: frozenset[str] = frozenset(),
    ) -> None:
        self.rate = rate
        self.model_info = model_info
        self.source = source
        self.tier_info = tier_info
        self.tiers = tiers


_UNPRICED = _Resolved(None, None, "unpriced")


class Pricing:
    """Prices calls in USD. Thread-safe; keep one instance per process (it caches look-ups).

    ``overrides`` maps ``"provider:model"``, ``"model"`` or ``"provider:*"`` to prices per million tokens:
    ``input_per_mtok``, ``output_per_mtok``, ``cache_read_per_mtok``, ``cache_write_per_mtok``,
    ``reasoning_per_mtok``, ``per_request`` (USD), and for the detail kinds of :class:`Usage`
    ``cache_write_1h_per_mtok``, ``input_{audio,image,video}_per_mtok``, ``cache_{audio,image,video}_read_per_mtok``,
    ``output_{audio,image,video}_per_mtok`` (genai-prices' ``*_mtok`` names are accepted too). A price not
    given falls back as :class:`ModelRate` says. Overrides do not vary by service tier.
    """

    def __init__(self, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._overrides: dict[str, ModelRate] = {
            str(name).lower(): _rate_from_override(str(name), spec) for name, spec in (overrides or {}).items()
        }
        self._cache: dict[tuple[str, str, str | None, str | None], _Resolved] = {}
        self._rate_by_price: dict[int, tuple[Any, ModelRate]] = {}
        self._rate_by_tier: dict[tuple[int, str, tuple[int, ...]], tuple[Any, ModelRate]] = {}
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
        service_tier: str | None = None,
    ) -> Decimal | None:
        """USD cost of ``usage`` on ``provider``/``model``, or None if no price is known.

        ``model`` is the id the provider reported; ``requested`` / ``alias`` are looked up after it (see the
        module docstring). ``service_tier`` is the tier the provider says it served the call at (OpenAI's
        ``service_tier``): priced at that tier's genai-prices variant where it has one, else at the standard
        price. ``estimate=True`` (e.g. a budget reservation) does not count or warn about an unpriced model.
        """
        key = (provider, model, requested, alias)
        res = self._cache.get(key)
        if res is None:
            res = self._resolve(key)
        rate = res.rate
        if service_tier is not None and service_tier in res.tiers:
            rate = self._tier_rate(res.tier_info, service_tier, at)
        elif rate is None:
            if res.model_info is None:
                if not estimate:
                    self._count_unpriced(provider, model)
                return None
            rate = self._timed_rate(res.model_info, at)
        return rate.cost(usage)

    def worst_cost(
        self,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        kinds: frozenset[str] = frozenset(),
        service_tier: str | None = None,
        at: datetime | None = None,
        requested: str | None = None,
        alias: str | None = None,
    ) -> Decimal | None:
        """The most a call can cost (:meth:`ModelRate.worst_cost`, with the input ``kinds`` it may bill), at
        the larger of the standard price and the price of the ``service_tier`` it asks for: a call asking for
        ``priority`` is billed at priority, one asking for ``flex`` may be served at the standard tier.
        None if unpriced."""
        key = (provider, model, requested, alias)
        res = self._cache.get(key) or self._resolve(key)
        rate = self._rate_for(res, at, None)
        if rate is None:
            return None
        worst = rate.worst_cost(input_tokens, output_tokens, kinds)
        if service_tier is not None and service_tier in res.tiers:
            tiered = self._tier_rate(res.tier_info, service_tier, at)
            worst = max(worst, tiered.worst_cost(input_tokens, output_tokens, kinds))
        return worst

    def price_per_1k(
        self, provider: str, model: str, *, at: datetime | None = None, alias: str | None = None
    ) -> Decimal | None:
        """Blended USD per 1000 tokens ((input + output) / 2, base tier), or None if unpriced.

        Used by routing's ``max_cost_per_1k``; unpriced models are not counted as unpriced calls here.
        """
        key = (provider, model, None, alias)
        rate = self._rate_for(self._cache.get(key) or self._resolve(key), at, None)
        return None if rate is None else rate.per_1k()

    def rate(
        self,
        provider: str,
        model: str,
        *,
        at: datetime | None = None,
        requested: str | None = None,
        alias: str | None = None,
        service_tier: str | None = None,
    ) -> ModelRate | None:
        """The per-Mtok prices used for ``provider``/``model`` (None if unpriced), in :meth:`price`'s order."""
        key = (provider, model, requested, alias)
        return self._rate_for(self._cache.get(key) or self._resolve(key), at, service_tier)

    def service_tiers(
        self, provider: str, model: str, *, requested: str | None = None, alias: str | None = None
    ) -> frozenset[str]:
        """The service tiers priced apart for ``provider``/``model`` (empty: one price for every tier)."""
        key = (provider, model, requested, alias)
        return (self._cache.get(key) or self._resolve(key)).tiers

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

    def _rate_for(self, res: _Resolved, at: datetime | None, service_tier: str | None) -> ModelRate | None:
        if service_tier is not None and service_tier in res.tiers:
            return self._tier_rate(res.tier_info, service_tier, at)
        if res.rate is not None or res.model_info is None:
            return res.rate
        return self._timed_rate(res.model_info, at)

    def _tier_rate(self, info: Any, tier: str, at: datetime | None) -> ModelRate:
        """The rate of ``tier`` (genai-prices' ``price_context={"service_tier": tier}``) at time ``at``, cached
        by the standard prices in force and the tier's variants active then."""
        at = at or datetime.now(UTC)
        std = info.get_prices(at)
        when = {"service_tier": tier}
        active = tuple(
            i
            for i, v in enumerate(info.price_variants or ())
            if v.when == when and (v.constraint is None or v.constraint.active(at))
        )
        key = (id(std), tier, active)
        hit = self._rate_by_tier.get(key)
        if hit is not None and hit[0] is std:
            return hit[1]
        rate = _rate_from_model_price(info.get_prices(at, when))
        self._rate_by_tier[key] = (std, rate)
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
        row_id = _row_prices_id(prov)
        if row_id is None:  # a provider row genai-prices has no prices for (DeepInfra, self-hosted servers)
            return _UNPRICED
        genai_id = _PROVIDER_IDS.get(prov) or row_id or prov
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
        tiers = _service_tiers(gp, info)
        tier_info = info if tiers else None
        if isinstance(info.prices, list):  # time-dependent prices
            return _Resolved(None, info, src, tier_info, tiers)
        return _Resolved(_rate_from_model_price(info.prices), None, src, tier_info, tiers)


def _row_prices_id(provider: str) -> str | None:
    """The genai-prices id a provider row names (registry ``ProviderSpec.prices_id``); "" for no row."""
    from ..registry import provider_prices_id  # lazy: the registry imports the adapter layer

    return provider_prices_id(provider)


def _genai_find(provider_id: str | None, model: str) -> tuple[Any, Any] | None:
    """(provider, model_info) from the bundled genai-prices snapshot, or None."""
    from genai_prices import data_snapshot  # lazy: loading the price data takes ~0.2 s

    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None
