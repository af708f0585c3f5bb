"""The hits of :func:`a3s_nb.search` as a widget (``%a3s_search``): a row per hit, and
clicking one opens the transcript of that prompt below the list.

    from a3s_nb.searchview import SearchResults
    view = SearchResults("rm -rf", store="sessions", where="tool_args")
    view.show_hit(0)                      # what clicking the first hit does
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as W

from ..frames.search import hit_line as _line
from ..frames.search import search
from ..store._prompts import _prompts
from ..store.models import SessionBundle
from ..widgets import _CSS, Transcript, _bundle, _button, _StaticMixin, _store_label

__all__ = ["SearchResults", "prompt_bundle"]

#: Hits listed at most (the frame holds them all: ``view.hits``).
SHOWN = 200


def prompt_bundle(bundle: SessionBundle, number: int) -> SessionBundle:
    """The session cut down to one prompt (its messages and its run), for showing it."""

    p = _prompts(bundle)[number - 1]
    start, end = p.messages
    session = bundle.session.model_copy(update={"messages": bundle.session.messages[start:end]})
    runs = [p.run] if p.run is not None else []
    return bundle.model_copy(
        update={"session": session, "runs": runs, "traces": [], "verification": []}
    )


class SearchResults(_StaticMixin, W.VBox):
    """The hits of ``a3s_nb.search(query, store, regex=..., where=..., limit=...)``."""

    def __init__(
        self,
        query: str,
        *,
        store: Any = None,
        regex: bool = False,
        where: Any = None,
        limit: int | None = None,
        **kwargs: Any,
    ):
        self.query = query
        self._store = store
        self.hits = search(query, store, regex=regex, where=where, limit=limit)
        self.rows: list[W.Button] = []
        for i, hit in enumerate(self.hits.head(SHOWN).itertuples(index=False)):
            button = _button(_line(hit), tooltip="open the transcript at this prompt")
            button.add_class("a3s-pick")
            button.on_click(lambda _b, i=i: self.show_hit(i))
            self.rows.append(button)
        self.transcript = W.Box()
        self.header = W.HTML(self._header())
        listing = W.VBox(self.rows)
        listing.add_class("a3s-scroll")
        super().__init__(children=[W.HTML(_CSS), self.header, listing, self.transcript], **kwargs)
        self.add_class("a3s-browser")
        self.opened: int | None = None

    def _header(self) -> str:
        n, m = len(self.hits), self.hits["session_id"].nunique()
        more = f" (the first {SHOWN} listed)" if n > SHOWN else ""
        return (
            f"<b>{n} hit{'s' * (n != 1)}</b> for <code>{html.escape(self.query)}</code> in "
            f"{m} session{'s' * (m != 1)}{more}"
        )

    def show_hit(self, i: int) -> Transcript:
        """Show the transcript of hit ``i``'s prompt (the whole session when the hit has
        no prompt, as an artifact without a known owner)."""
        hit = self.hits.iloc[i]

        bundle, _ = _bundle(hit["session_id"], self._store)
        prompt = hit["prompt"]
        if prompt is not None and prompt == prompt:  # not NA
            bundle = prompt_bundle(bundle, int(prompt))
        view = Transcript(bundle)
        self.transcript.children = [view]
        self.opened = i
        return view

    def to_html(self) -> str:
        items = "".join(
            f"<li><code>{html.escape(_line(h))}</code></li>"
            for h in self.hits.head(SHOWN).itertuples(index=False)
        )
        return f"<div>{self._header()}<ul>{items}</ul></div>"

    def __repr__(self) -> str:
        n = len(self.hits)
        lines = [
            f"SearchResults(query={self.query!r}, store={_store_label(self._store)!r}, "
            f"hits={n}, sessions={self.hits['session_id'].nunique()})"
        ]
        lines += [f"  {_line(h)}" for h in self.hits.head(20).itertuples(index=False)]
        if n > 20:
            lines.append(f"  ... {n - 20} more")
        return "\n".join(lines)
