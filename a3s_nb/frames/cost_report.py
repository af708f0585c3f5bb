"""What runs cost, summed per model (or per any other ``runs`` column), without turning an
unknown price into a free one.

pandas sums a group of missing values to ``0.0``: ``runs.groupby("model").cost_usd.sum()``
shows a model without a price as costing nothing. :func:`cost_summary` keeps the cost of a
group ``<NA>`` as soon as one of its runs has no price, and says how many runs were priced.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

import a3s_nb.frames as frames

#: The token counts summed per group (a count never reported stays <NA>).
_TOKENS = ("prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens")


def cost_summary(
    source: Any = None,
    *,
    by: str | Iterable[str] = "model",
    ids: Any = None,
    since: Any = None,
    until: Any = None,
    status: Any = None,
) -> pd.DataFrame:
    """Runs, tokens and cost per ``by`` (a ``runs`` column, or a list of them).

    ``source`` is what :func:`a3s_nb.runs` takes (a store, a session, ``None`` for the
    default store), with its filters ``ids``, ``since``, ``until`` and ``status``, or a
    ``runs`` DataFrame already built. One row per group (runs whose ``by`` is unknown
    form a group too), indexed by ``by``:

    - ``runs``, ``priced_runs``, ``unpriced_runs``: how many runs, and how many of them
      have a ``cost_usd``;
    - ``prompt_tokens``, ``completion_tokens``, ``cache_read_tokens``,
      ``cache_write_tokens``: summed; <NA> when no run of the group reported them;
    - ``cost_usd``: the group's cost in US dollars; **<NA> when any run of the group has
      no price** (never 0);
    - ``priced_cost_usd``: what the priced runs of the group cost (<NA> when none is).

    ``df.attrs`` keeps the ``price_table`` and ``unpriced_models`` of the runs.

    >>> a3s_nb.cost_summary()                                    # doctest: +SKIP
    >>> a3s_nb.cost_summary(by=["session_id", "model"], since="2025-11-01")  # doctest: +SKIP
    """
    if isinstance(source, pd.DataFrame):
        if any(v is not None for v in (ids, since, until, status)):
            raise ValueError(
                "cost_summary: ids, since, until and status filter a store; filter the "
                "runs DataFrame itself instead"
            )
        runs = source
    else:
        runs = frames.runs(source, ids=ids, since=since, until=until, status=status)
    keys = [by] if isinstance(by, str) else list(by)
    needed = ["run_id", "cost_usd", *_TOKENS]
    absent = [k for k in [*keys, *needed] if k not in runs.columns]
    if not keys or absent:
        what = f"no column {', '.join(map(repr, absent))}" if absent else "by is empty"
        raise ValueError(
            f"cost_summary: {what} in the runs frame; by is one or more runs columns, "
            "such as 'model', 'provider' or 'session_id' (docs/frames.md#runs)"
        )
    cost = runs["cost_usd"].astype("Float64")
    grouped = runs.assign(
        _priced=cost.notna().astype("Int64"),
        _unpriced=cost.isna().astype("Int64"),
    ).groupby(keys, dropna=False, observed=True, sort=True)
    out = pd.DataFrame(
        {
            "runs": grouped["run_id"].size().astype("Int64"),
            "priced_runs": grouped["_priced"].sum().astype("Int64"),
            "unpriced_runs": grouped["_unpriced"].sum().astype("Int64"),
            **{name: grouped[name].sum(min_count=1).astype("Int64") for name in _TOKENS},
            "priced_cost_usd": grouped["cost_usd"].sum(min_count=1).astype("Float64"),
        }
    )
    out.insert(
        len(out.columns) - 1,
        "cost_usd",
        out["priced_cost_usd"].where(out["unpriced_runs"] == 0, pd.NA).astype("Float64"),
    )
    out.attrs = {
        "price_table": runs.attrs.get("price_table"),
        "unpriced_models": list(runs.attrs.get("unpriced_models") or []),
    }
    return out
