"""What runs cost in US dollars, from the ``genai-prices`` table.

``genai-prices`` (PyPI) is a maintained table of model prices, with the date each price
applies from, cache-read and cache-write prices and per-request fees; a3s_nb only maps
a3s-code's token counts onto it. Two things make that mapping easy to get wrong, and both
are handled here:

- a3s-code reports tokens as its provider client receives them. Its Anthropic client
  (providers ``anthropic`` and ``claude``) puts Anthropic's ``input_tokens`` in
  ``prompt_tokens``, which *excludes* the tokens read from and written to the prompt
  cache; every other client is OpenAI-compatible, whose ``prompt_tokens`` *includes* the
  cached tokens. The table wants the total input, so the cache counts are added back for
  Anthropic only: cached tokens are priced once, at the cache price, never twice and never
  at the full input price.
- a3s-code 3.1 drops the cache counts from ``agent_end.usage`` while each ``turn_end`` keeps
  them, so a run is priced model call by model call (which also puts each call in its own
  price tier). Tokens the run total has beyond its turns are priced as one more call.

A model the table does not know costs ``None`` (a missing value in the frames), never 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from numbers import Integral
from typing import Any

#: Providers whose a3s-code client is the Anthropic one (``prompt_tokens`` excludes cache).
ANTHROPIC_CLIENTS = frozenset({"anthropic", "claude"})

_MTOK = 1_000_000


#: ``dist -> (sys.path as searched, the .dist-info folder found, its version)``.
_DIST_INFO: dict[str, tuple[tuple[str, ...], str, str]] = {}


def _dist_info_version(dist: str) -> str | None:
    """The version of ``dist`` as its ``<name>-<version>.dist-info`` folder on ``sys.path``
    names it (the first one, as ``importlib.metadata`` finds it), or None.

    The folder found is remembered while ``sys.path`` is the same and the folder is still
    there (an upgrade removes it): a frame call asks several times."""
    path = tuple(sys.path)
    found = _DIST_INFO.get(dist)
    if found is not None and found[0] == path and os.path.isdir(found[1]):
        return found[2]
    prefix = dist.replace("-", "_").lower() + "-"
    for entry in path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a folder gone
            continue
        for name in names:
            if name.endswith(".dist-info") and name.lower().startswith(prefix):
                version = name[len(prefix) : -len(".dist-info")]
                if version and "-" not in version:
                    _DIST_INFO[dist] = (path, os.path.join(entry or ".", name), version)
                    return version
    return None


def price_table() -> str | None:
    """``"genai-prices X.Y.Z"``, or None when the package is not installed.

    It keys the caches of every frame call, so it reads the version from the name of the
    installed distribution's ``.dist-info`` folder (a listing of the ``sys.path`` folders)
    rather than importing the package (its HTTP client behind it: about 50 ms in a new
    kernel) or ``importlib.metadata`` (about 30 ms); those are the fallbacks."""
    module = sys.modules.get("genai_prices")
    if module is None:
        version = _dist_info_version("genai-prices")
        if version is not None:
            return f"genai-prices {version}"
        from importlib import metadata

        try:
            return f"genai-prices {metadata.version('genai-prices')}"
        except metadata.PackageNotFoundError:
            pass
        try:
            import genai_prices as module
        except ImportError:
            return None
    return f"genai-prices {module.__version__}"


def split_model(model: str | None, provider: str | None) -> tuple[str | None, str | None]:
    """``("gpt-4o", "openai")`` from ``"openai/gpt-4o"`` (a3s-code's ``provider/model``)."""
    if not model:
        return None, provider
    if "/" in model:
        prefix, name = model.split("/", 1)
        return name, provider or prefix
    return model, provider


def table_usage(usage: dict, provider: str | None) -> dict[str, int]:
    """An a3s-code usage dict in the price table's terms (input includes cached tokens)."""
    prompt = _n(usage.get("prompt_tokens"))
    read = _n(usage.get("cache_read_tokens"))
    write = _n(usage.get("cache_write_tokens"))
    if (provider or "").lower() in ANTHROPIC_CLIENTS:
        total_input = prompt + read + write
    else:
        total_input = max(prompt, read + write)
    return {
        "input_tokens": total_input,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
        "output_tokens": _n(usage.get("completion_tokens")),
    }


def _n(value: Any) -> int:
    """A token count (a JSON int, or a numpy one from a frame); anything else counts 0."""
    if isinstance(value, Integral) and not isinstance(value, bool) and value > 0:
        return int(value)
    return 0


class _Linear:
    """A model price without tiers: cost = fee + a per-token price for each kind."""

    __slots__ = ("fee", "per")

    def __init__(self, model_price: Any):
        from genai_prices import Usage

        def calc(**counts: int) -> Decimal:
            return model_price.calc_price(Usage(**counts))["total_price"]

        self.fee = calc()
        # each kind's price from the table itself, so its own rules (e.g. a cache-write
        # price missing: those tokens pay the input price) decide, not a copy of them
        self.per = (
            (calc(input_tokens=_MTOK) - self.fee) / _MTOK,
            (calc(input_tokens=_MTOK, cache_read_tokens=_MTOK) - self.fee) / _MTOK,
            (calc(input_tokens=_MTOK, cache_write_tokens=_MTOK) - self.fee) / _MTOK,
            (calc(output_tokens=_MTOK) - self.fee) / _MTOK,
        )

    def __call__(self, u: dict[str, int]) -> Decimal:
        uncached = u["input_tokens"] - u["cache_read_tokens"] - u["cache_write_tokens"]
        p_in, p_read, p_write, p_out = self.per
        return (
            self.fee
            + p_in * uncached
            + p_read * u["cache_read_tokens"]
            + p_write * u["cache_write_tokens"]
            + p_out * u["output_tokens"]
        )


class Pricer:
    """Prices runs; remembers model look-ups, so one pricer serves a whole frame."""

    def __init__(self) -> None:
        try:
            from genai_prices import data_snapshot
        except ImportError:
            self._snapshot = None
        else:
            self._snapshot = data_snapshot.get_snapshot()
        self._models: dict[tuple[str, str | None], Any] = {}
        self._prices: dict[int, tuple[Any, Any]] = {}

    @property
    def available(self) -> bool:
        return self._snapshot is not None

    def _model_info(self, name: str, provider: str | None) -> Any:
        key = (name.lower(), (provider or "").lower() or None)
        if key in self._models:
            return self._models[key]
        info = None
        # the provider a3s-code named first; a custom name (an OpenAI-compatible gateway)
        # the table does not know falls back to matching the model name alone
        for provider_id in (key[1], None) if key[1] else (None,):
            try:
                _, info = self._snapshot.find_provider_model(name, None, provider_id, None)
                break
            except LookupError:
                continue
        self._models[key] = info
        return info

    def _price_fn(self, info: Any, at_ms: int | None) -> Any:
        when = datetime.fromtimestamp(at_ms / 1000, UTC) if at_ms is not None else datetime.now(UTC)
        # prices can change by date (and time of day); the table returns one of its stored
        # price objects, so the pricing function built for it is kept by identity
        model_price = info.get_prices(when)
        cached = self._prices.get(id(model_price))
        if cached is not None and cached[0] is model_price:
            return cached[1]
        from genai_prices import Usage
        from genai_prices.types import TieredPrices

        if any(isinstance(v, TieredPrices) for v in vars(model_price).values()):

            def fn(u: dict[str, int]) -> Decimal:
                return model_price.calc_price(Usage(**u))["total_price"]

        else:
            fn = _Linear(model_price)
        self._prices[id(model_price)] = (model_price, fn)
        return fn

    def run_cost(
        self,
        model: str | None,
        provider: str | None,
        calls: Iterable[Any],
        total: Any = None,
        at_ms: int | None = None,
    ) -> float | None:
        """Dollars for a run: each model call's usage (``turn_end.usage``) priced on its own,
        plus what the run total (``agent_end.usage``) has beyond them. None when the model
        has no price."""
        if self._snapshot is None:
            return None
        name, provider = split_model(model, provider)
        if not name:
            return None
        info = self._model_info(name, provider)
        if info is None:
            return None
        price = self._price_fn(info, at_ms)
        cost = Decimal(0)
        seen = {"prompt_tokens": 0, "completion_tokens": 0}
        seen_cache = {"cache_read_tokens": 0, "cache_write_tokens": 0}
        for usage in calls:
            if type(usage) is not dict:
                continue
            cost += price(table_usage(usage, provider))
            for k in seen:
                seen[k] += _n(usage.get(k))
            for k in seen_cache:
                seen_cache[k] += _n(usage.get(k))
        if type(total) is dict:
            rest = {k: max(0, _n(total.get(k)) - v) for k, v in seen.items()}
            for k, v in seen_cache.items():
                rest[k] = max(0, _n(total.get(k)) - v)
            if any(rest.values()):
                cost += price(table_usage(rest, provider))
        return float(cost)


_default: Pricer | None = None


def default_pricer() -> Pricer:
    """One pricer per process: the table is loaded and each model looked up once."""
    global _default
    if _default is None:
        _default = Pricer()
    return _default
