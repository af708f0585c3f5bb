"""Notebook widgets: a session browser, a transcript, a run timeline and a session diff.

Composites of stock ipywidgets 8 (no front-end extension), so they work in JupyterLab 4,
Notebook 7, VS Code, on Binder and in nbconvert. Each one is driven by the public API (the
store, the frames, :func:`a3s_nb.resume`) and can be used from code as well as by clicking::

    from a3s_nb.widgets import SessionBrowser, Transcript, RunTimeline
    browser = SessionBrowser("sessions")            # or %a3s_sessions --browse
    browser.filter.value = "parse_date"             # what typing in the filter box does
    browser.value = "fix-oscar-2-000"               # what clicking a row does
    browser.resume()                                # binds `session` in the namespace

Outputs carry, besides the live widget, a deterministic ``text/plain`` line (for nbval and
plain consoles) and a ``text/html`` snapshot of what the widget showed when it was displayed
(for GitHub, nbconvert, and any front end without the widget manager); ``to_html()`` gives
the snapshot of the current state.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, MutableMapping
from typing import Any

import ipywidgets as W
import pandas as pd
import traitlets

from . import api, render
from .errors import A3sNbError, CorruptSessionWarning
from .frames import all_frames
from .frames import runs as runs_frame
from .frames import spans as spans_frame
from .lab.lineage import diff
from .sdk.capture import capture, is_session_like
from .store.models import SessionBundle
from .store.store import FileStore, Store, open_store

__all__ = ["DiffView", "RunTimeline", "SessionBrowser", "Transcript"]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# One <style> for the live widgets (scoped by the a3s- class names). Static HTML does not
# need it: render.py styles inline.
_CSS = """<style>
.a3s-browser .a3s-row { border-bottom: 1px solid var(--jp-border-color2, #e1e4e8); }
.a3s-browser .a3s-row:hover { background: var(--jp-layout-color2, #f6f8fa); }
.a3s-browser .a3s-row.a3s-selected { background: var(--jp-brand-color3, #dbeafe); }
.a3s-browser .a3s-row button.a3s-pick { text-align: left; padding-left: 6px;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.a3s-browser .a3s-cells, .a3s-browser .a3s-head { display: grid; align-items: center;
  column-gap: 8px; font-size: 12px; white-space: nowrap; overflow: hidden; }
.a3s-browser .a3s-cells > div, .a3s-browser .a3s-head > div { overflow: hidden;
  text-overflow: ellipsis; }
.a3s-browser .a3s-head { color: var(--jp-ui-font-color2, #59636e); font-weight: 600; }
.a3s-browser .a3s-num { text-align: right; font-variant-numeric: tabular-nums; }
.a3s-scroll { max-height: 32em; overflow-y: auto; }
</style>"""


def _store_label(store: Any) -> str:
    """How a store appears in a repr: the path as the user gave it, so outputs do not
    depend on the machine."""
    if isinstance(store, str | os.PathLike):
        return os.fspath(store)
    if isinstance(store, FileStore):
        return store.path.name
    return str(store)


def _open_existing(store: Any) -> Store:
    """The store to browse; a path that does not exist is an error, not a new empty store."""
    return open_store(store, create=False)


def _bundle(source: Any, store: Any = None) -> tuple[SessionBundle, bool]:
    """(bundle, is_live) for a bundle, a SavedSession, a live session, or an id in a store."""
    if isinstance(source, SessionBundle):
        return source, False
    if isinstance(getattr(source, "bundle", None), SessionBundle):  # SavedSession
        return source.bundle, False
    if isinstance(source, str):
        st = open_store(store)
        return st.load(st.resolve(source)), False
    if is_session_like(source):
        return capture(source), True
    raise TypeError(
        f"cannot show a {type(source).__name__}: give a session id (with store=), a "
        "SessionBundle, a saved session from a3s_nb.resume(), or a live a3s-code session"
    )


class _StaticMixin:
    """text/plain from __repr__ and a text/html snapshot next to the widget view."""

    def to_html(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if data is None:  # closed widget
            return None
        data["text/plain"] = repr(self)
        data["text/html"] = self.to_html()
        return data


def _button(description: str, **kwargs: Any) -> W.Button:
    kwargs.setdefault("layout", W.Layout(width="auto"))
    return W.Button(description=description, **kwargs)


# =========================================================================== transcript


class Transcript(_StaticMixin, W.VBox):
    """A session rendered as a conversation.

    ``source`` is a session id (looked up in ``store``), a :class:`SessionBundle`, a saved
    session returned by :func:`a3s_nb.resume`, or a live a3s-code session (then a *Refresh*
    button re-reads it).

    >>> Transcript("fix-oscar-2-000", store="sessions")      # doctest: +SKIP
    """

    def __init__(self, source: Any, *, store: Any = None, max_chars: int = 4000, **kwargs: Any):
        self._source = source
        self._store = store
        self.max_chars = max_chars
        self.bundle, self.live = _bundle(source, store)
        self.html = W.HTML(layout=W.Layout(width="100%"))
        self.html.add_class("a3s-transcript-html")
        children: list[W.Widget] = [self.html]
        if self.live:
            self.refresh_button = _button("Refresh", icon="refresh", tooltip="re-read the session")
            self.refresh_button.on_click(lambda _b: self.refresh())
            children.insert(0, self.refresh_button)
        super().__init__(children=children, **kwargs)
        self.add_class("a3s-transcript-widget")
        self._render()

    def refresh(self) -> None:
        """Re-read the session (a live one may have moved on) and redraw."""
        self.bundle, self.live = _bundle(self._source, self._store)
        self._render()

    def _render(self) -> None:
        self.html.value = self.to_html()

    def to_html(self) -> str:
        return render.transcript_html(self.bundle, max_chars=self.max_chars)

    @property
    def session_id(self) -> str:
        return self.bundle.session.id

    def __repr__(self) -> str:
        b = self.bundle
        return (
            f"Transcript(session={b.session.id!r}, messages={len(b.session.messages)}, "
            f"runs={len(b.runs)}{', live' if self.live else ''})"
        )


# =========================================================================== timeline


class RunTimeline(_StaticMixin, W.VBox):
    """The spans of a session, or of one of its runs, as a waterfall.

    ``source`` is a session id (looked up in ``store``), a :class:`SessionBundle`, a saved
    or live session, or a frame from :func:`a3s_nb.spans` (possibly of many sessions).
    ``run_id`` picks one run; the dropdown switches between the runs and all of them.

    >>> RunTimeline("fix-oscar-2-000", store="sessions", run_id="run-26bd...")  # doctest: +SKIP
    """

    run_id = traitlets.Unicode(None, allow_none=True)

    def __init__(
        self,
        source: Any,
        run_id: str | None = None,
        *,
        store: Any = None,
        labels: dict[str, str] | None = None,
        width: int = 900,
        **kwargs: Any,
    ):
        if isinstance(source, pd.DataFrame):
            self.all_spans = source
            self.labels = dict(labels or {})
        else:
            bundle, _live = _bundle(source, store)
            self.all_spans = spans_frame(bundle)
            self.labels = {
                r.snapshot.id: f"run {i}: {r.snapshot.prompt}" for i, r in enumerate(bundle.runs, 1)
            } | dict(labels or {})
        self.width = width
        self.run_picker = W.Dropdown(
            options=[("all runs", ""), *self._runs()],
            value="",
            description="run",
            layout=W.Layout(width="min(100%, 640px)"),
            style={"description_width": "32px"},
        )
        self.html = W.HTML(layout=W.Layout(width="100%"))
        self.html.add_class("a3s-timeline-html")
        super().__init__(children=[self.run_picker, self.html], **kwargs)
        self.add_class("a3s-timeline-widget")
        self.run_picker.observe(self._on_pick, "value")
        self.observe(self._on_run_id, "run_id")
        if run_id is not None:
            self.run_id = run_id
        else:
            self._render()

    # ---- data -----------------------------------------------------------------------

    def _runs(self) -> list[tuple[str, str]]:
        df = self.all_spans
        if df.empty:
            return []
        runs = df[df["kind"] == "run"].sort_values("start", kind="stable")
        out = []
        for rec in runs.to_dict("records"):
            rid = str(rec["run_id"])
            status = "" if pd.isna(rec["status"]) else f" [{rec['status']}]"
            label = self.labels.get(rid, rid) + status
            out.append((render._shorten(label, 90), rid))
        return out

    @property
    def spans(self) -> pd.DataFrame:
        """The spans drawn now: the chosen run's, or all of them."""
        df = self.all_spans
        if self.run_id:
            return df[df["run_id"] == self.run_id]
        return df

    # ---- events ---------------------------------------------------------------------

    def _on_pick(self, change: dict[str, Any]) -> None:
        self.run_id = change["new"] or None

    def _on_run_id(self, change: dict[str, Any]) -> None:
        value = change["new"] or ""
        known = [v for _, v in self.run_picker.options]
        if value not in known:
            self.run_id = change["old"]
            raise ValueError(f"no run {value!r} in these spans; runs: {known[1:]}")
        self.run_picker.value = value
        self._render()

    def _render(self) -> None:
        self.html.value = self.to_html()

    def to_html(self) -> str:
        return render.timeline_html(
            self.spans, labels=self.labels, width=self.width, title=self._title()
        )

    def _title(self) -> str:
        sids = self.spans["session_id"].unique()
        what = str(sids[0]) if len(sids) == 1 else f"{len(sids)} sessions"
        return f"{what} \u00b7 {self.run_id}" if self.run_id else what

    def __repr__(self) -> str:
        df = self.spans
        sids = df["session_id"].unique()
        session = str(sids[0]) if len(sids) == 1 else None
        return f"RunTimeline(session={session!r}, run={self.run_id!r}, spans={len(df)})"


# =========================================================================== browser

# Columns of the table after the id button: frame column, heading, CSS width, numeric.
_TABLE = [
    ("updated_at", "updated (UTC)", "132px", False),
    ("model", "model", "170px", False),
    ("last_run_status", "last run", "72px", False),
    ("n_messages", "msgs", "40px", True),
    ("n_runs", "runs", "36px", True),
    ("n_tool_calls", "tools", "40px", True),
    ("n_tool_errors", "errors", "44px", True),
    ("first_prompt", "first prompt", "minmax(160px, 1fr)", False),
]
_ID_WIDTH = "290px"
_NO_RUNS = "(no runs)"
_ALL = "(all)"


class SessionBrowser(_StaticMixin, W.VBox):
    """The sessions of a store: filter, sort, pick one, read it, resume it or delete it.

    ``agent`` makes *Resume* return a live session (else a read-only saved session);
    ``namespace`` is where *Resume* binds it (default: the IPython user namespace, else
    ``self.namespace``). Everything a click does has a method twin for code and tests:
    ``value`` (the selected id), ``filter``/``model_filter``/``status_filter``/``sort_by``/
    ``descending`` (the controls), ``page``, ``resume()``, ``delete()`` (asks),
    ``confirm_delete()``, ``cancel_delete()`` and ``refresh()``.

    >>> browser = SessionBrowser("sessions")                 # doctest: +SKIP
    >>> browser.filter.value = "oscar"; browser.shown.session_id.tolist()   # doctest: +SKIP
    ['fix-oscar-2-000']
    """

    value = traitlets.Unicode(None, allow_none=True)
    page = traitlets.Int(0)

    def __init__(
        self,
        store: str | os.PathLike[str] | Store | None = None,
        *,
        agent: Any = None,
        namespace: MutableMapping[str, Any] | None = None,
        name: str = "session",
        page_size: int = 20,
        **kwargs: Any,
    ):
        self.store = _open_existing(store)
        self._label = _store_label(store if store is not None else self.store)
        self.agent = agent
        self.namespace: MutableMapping[str, Any] = namespace if namespace is not None else {}
        self._explicit_namespace = namespace is not None
        self.page_size = page_size
        self.sessions = pd.DataFrame()
        self.shown = pd.DataFrame()
        self._prompts = pd.DataFrame()
        self._pending_delete: str | None = None
        self.skipped: list[dict[str, Any]] = []
        self.last_resumed: Any = None

        # ---- controls
        self.filter = W.Text(
            placeholder="filter: id, workspace or prompt",
            continuous_update=True,
            layout=W.Layout(width="240px"),
        )
        self.model_filter = W.Dropdown(
            options=[_ALL], value=_ALL, description="model", layout=W.Layout(width="230px")
        )
        self.status_filter = W.Dropdown(
            options=[_ALL], value=_ALL, description="last run", layout=W.Layout(width="190px")
        )
        self.model_filter.style.description_width = "44px"
        self.status_filter.style.description_width = "56px"
        self.sort_by = W.Dropdown(description="sort", layout=W.Layout(width="190px"))
        self.sort_by.style.description_width = "32px"
        self.descending = W.ToggleButton(
            value=True,
            description="desc",
            icon="arrow-down",
            tooltip="sort order",
            layout=W.Layout(width="76px"),
        )
        self.refresh_button = _button("", icon="refresh", tooltip="re-read the store")
        controls = W.HBox(
            [
                self.filter,
                self.model_filter,
                self.status_filter,
                self.sort_by,
                self.descending,
                self.refresh_button,
            ],
            layout=W.Layout(flex_flow="row wrap", align_items="center"),
        )

        # ---- table: a header and page_size reusable row slots
        template = " ".join(w for _, _, w, _ in _TABLE)
        self._template = template
        head_cells = "".join(
            f'<div class="{"a3s-num" if num else ""}">{render.esc(h)}</div>'
            for _, h, _, num in _TABLE
        )
        self.header = W.HTML(
            _CSS + f'<div class="a3s-head" style="grid-template-columns:{_ID_WIDTH} {template}">'
            f"<div>session</div>{head_cells}</div>"
        )
        self._row_buttons: list[W.Button] = []
        self._row_cells: list[W.HTML] = []
        self._rows: list[W.HBox] = []
        for i in range(page_size):
            b = W.Button(
                layout=W.Layout(width=_ID_WIDTH, min_width=_ID_WIDTH, height="26px", margin="1px 0")
            )
            b.add_class("a3s-pick")
            b.on_click(lambda _b, i=i: self._pick_slot(i))
            # the fixed columns keep their width; the prompt column takes what is left
            cells = W.HTML(layout=W.Layout(flex="1 1 auto", min_width="780px", margin="0 0 0 8px"))
            row = W.HBox([b, cells], layout=W.Layout(align_items="center", display="none"))
            row.add_class("a3s-row-empty")
            self._row_buttons.append(b)
            self._row_cells.append(cells)
            self._rows.append(row)
        self.table = W.VBox([self.header, *self._rows], layout=W.Layout(overflow="auto"))
        self.table.add_class("a3s-table")

        # ---- pager
        self.prev_button = _button("\u2039 prev")
        self.next_button = _button("next \u203a")
        self.page_label = W.HTML()
        self.page_label.add_class("a3s-page-label")
        pager = W.HBox(
            [self.prev_button, self.page_label, self.next_button],
            layout=W.Layout(align_items="center"),
        )

        # ---- actions on the selected session
        self.selected_label = W.HTML()
        self.selected_label.add_class("a3s-selected-label")
        self.name_text = W.Text(
            value=name,
            description="as",
            layout=W.Layout(width="170px"),
            tooltip="variable that Resume binds",
        )
        self.name_text.style.description_width = "20px"
        self.resume_button = _button("Resume", icon="play", button_style="primary")
        self.delete_button = _button("Delete", icon="trash", button_style="danger")
        self.confirm_button = _button("Confirm delete", button_style="danger")
        self.cancel_button = _button("Cancel")
        for b in (self.confirm_button, self.cancel_button):
            b.layout.display = "none"
        self.message = W.HTML()
        self.message.add_class("a3s-message")
        self.actions = W.HBox(
            [
                self.selected_label,
                self.name_text,
                self.resume_button,
                self.delete_button,
                self.confirm_button,
                self.cancel_button,
            ],
            layout=W.Layout(align_items="center", flex_flow="row wrap"),
        )

        # ---- detail: transcript | runs and timeline
        self.runs_html = W.HTML()
        self.runs_html.add_class("a3s-runs-html")
        self.timeline_box = W.VBox()
        self.transcript_pane = W.Box()
        self.transcript_pane.add_class("a3s-scroll")
        self.detail = W.Tab(
            children=[self.transcript_pane, W.VBox([self.runs_html, self.timeline_box])],
            titles=("Transcript", "Runs & timeline"),
        )
        self.detail.layout.display = "none"

        super().__init__(
            children=[controls, self.table, pager, self.actions, self.message, self.detail],
            **kwargs,
        )
        self.add_class("a3s-browser")

        self.filter.observe(self._on_filter, "value")
        self.model_filter.observe(self._on_filter, "value")
        self.status_filter.observe(self._on_filter, "value")
        self.sort_by.observe(self._on_filter, "value")
        self.descending.observe(self._on_filter, "value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.prev_button.on_click(lambda _b: self._turn(-1))
        self.next_button.on_click(lambda _b: self._turn(+1))
        self.resume_button.on_click(lambda _b: self._guard(self.resume))
        self.delete_button.on_click(lambda _b: self._guard(self.delete))
        self.confirm_button.on_click(lambda _b: self._guard(self.confirm_delete))
        self.cancel_button.on_click(lambda _b: self.cancel_delete())
        self.observe(self._on_value, "value")
        self.observe(lambda _c: self._draw_page(), "page")

        self.transcript: Transcript | None = None
        self.timeline: RunTimeline | None = None
        self.refresh()
        self._show_detail()

    # ---- data ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the store (after saves from elsewhere) and redraw, keeping the filters."""
        # a progress bar for a big store on the first load; clicks stay quiet
        first = self.sessions.empty and not self.sessions.columns.size
        self.sessions, self._prompts = sessions_with_prompts(
            self.store, progress=None if first else False
        )
        df = self.sessions
        self.skipped = list(df.attrs.get("errors", []))
        with self.hold_trait_notifications():
            self._set_options(self.model_filter, df.get("model"))
            self._set_options(self.status_filter, df.get("last_run_status"))
            sortable = [c for c, *_ in _TABLE if c in df.columns] + [
                c for c in ("created_at", "session_id", "workspace") if c in df.columns
            ]
            options = [(f"{c.replace('_', ' ')}", c) for c in dict.fromkeys(sortable)]
            current = self.sort_by.value
            self.sort_by.options = options
            if current in sortable:
                self.sort_by.value = current
            elif sortable:
                self.sort_by.value = sortable[0]
        if self.value is not None and self.value not in set(df.get("session_id", [])):
            self.value = None
        self._apply()

    @staticmethod
    def _set_options(dd: W.Dropdown, column: pd.Series | None) -> None:
        values = []
        if column is not None:
            values = sorted({str(v) for v in column.dropna().unique()})
        current = dd.value
        dd.options = [_ALL, *values]
        dd.value = current if current in dd.options else _ALL

    def _apply(self) -> None:
        """Filter and sort into ``shown``, then draw the page holding the selection."""
        df = self.sessions
        if df.empty:
            self.shown = df
        else:
            mask = pd.Series(True, index=df.index)
            text = self.filter.value.strip().lower()
            if text:
                hit = pd.Series(False, index=df.index)
                for col in ("session_id", "workspace"):
                    hit |= df[col].str.lower().str.contains(text, regex=False).fillna(False)
                p = self._prompts
                in_prompt = p.loc[
                    p["prompt"].str.contains(text, regex=False).fillna(False), "session_id"
                ]
                hit |= df["session_id"].isin(in_prompt.unique())
                mask &= hit
            for dd, col in ((self.model_filter, "model"), (self.status_filter, "last_run_status")):
                if dd.value != _ALL and col in df.columns:
                    mask &= (df[col].astype("string") == dd.value).fillna(False)
            shown = df[mask]
            key = self.sort_by.value
            if key in shown.columns:
                shown = shown.sort_values(
                    [key, "session_id"],
                    ascending=[not self.descending.value, True],
                    na_position="last",
                    kind="stable",
                )
            self.shown = shown.reset_index(drop=True)
        self.descending.description = "desc" if self.descending.value else "asc"
        self.descending.icon = "arrow-down" if self.descending.value else "arrow-up"
        page = self.page
        if self.value is not None and self.value in set(self.shown.get("session_id", [])):
            pos = int(self.shown.index[self.shown["session_id"] == self.value][0])
            page = pos // self.page_size
        page = min(page, max(0, self.pages - 1))
        if page != self.page:
            self.page = page  # draws
        else:
            self._draw_page()

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.shown) // self.page_size))

    def _page_rows(self) -> pd.DataFrame:
        start = self.page * self.page_size
        return self.shown.iloc[start : start + self.page_size]

    def _draw_page(self) -> None:
        rows = self._page_rows().to_dict("records")
        columns = [c for c, *_ in _TABLE]
        for i, row in enumerate(self._rows):
            if i < len(rows):
                rec = rows[i]
                sid = str(rec["session_id"])
                cells = render.session_cells(rec, columns)
                self._row_buttons[i].description = sid
                self._row_buttons[i].tooltip = f"show {sid}"
                self._row_cells[i].value = (
                    f'<div class="a3s-cells" style="grid-template-columns:{self._template}">'
                    + "".join(
                        f'<div class="{"a3s-num" if num else ""}">{cell}</div>'
                        for (_, _, _, num), cell in zip(_TABLE, cells, strict=True)
                    )
                    + "</div>"
                )
                row.layout.display = "flex"
                row.remove_class("a3s-row-empty")
                row.add_class("a3s-row")
                if sid == self.value:
                    row.add_class("a3s-selected")
                    self._row_buttons[i].button_style = "info"
                else:
                    row.remove_class("a3s-selected")
                    self._row_buttons[i].button_style = ""
            else:
                row.layout.display = "none"
                row.remove_class("a3s-row")
                row.remove_class("a3s-selected")
                row.add_class("a3s-row-empty")
        n = len(self.shown)
        start = self.page * self.page_size
        shown_part = f"{start + 1}\u2013{start + len(rows)} of {n:,}" if n else "0"
        total = len(self.sessions)
        of_total = f" (filtered from {total:,})" if n != total else ""
        skipped = ""
        if self.skipped:
            detail = "\n".join(f"{e['path']}: {e['problem']}" for e in self.skipped)
            skipped = (
                f' \u00b7 <span class="a3s-skipped" style="color:#c62828" '
                f'title="{render.esc(detail)}">{len(self.skipped)} unreadable session'
                f"{'s' if len(self.skipped) > 1 else ''} skipped: "
                f"{render.esc(', '.join(e['session_id'] for e in self.skipped))}</span>"
            )
        self.page_label.value = (
            f'<span style="padding:0 8px">{shown_part} sessions{of_total}'
            f" \u00b7 page {self.page + 1} of {self.pages}{skipped}</span>"
        )
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1

    def _turn(self, step: int) -> None:
        self.page = min(max(0, self.page + step), self.pages - 1)

    # ---- selection ------------------------------------------------------------------

    def _pick_slot(self, i: int) -> None:
        rows = self._page_rows()
        if i < len(rows):
            self.value = str(rows["session_id"].iloc[i])

    def select(self, session_id: str | None) -> None:
        """Select a session by id or unique prefix (None clears the selection)."""
        self.value = None if session_id is None else self.store.resolve(session_id)

    def _on_value(self, change: dict[str, Any]) -> None:
        sid = change["new"]
        self._hide_confirm()
        self.message.value = ""
        if sid is not None and sid not in set(self.sessions.get("session_id", [])):
            self.value = change["old"]
            raise A3sNbError(f"no session {sid!r} in {self._label}")
        self._apply()
        self._show_detail()

    def _show_detail(self) -> None:
        sid = self.value
        # the previous session's widgets go, front-end models included
        for w in (self.transcript, self.timeline):
            if w is not None:
                w.close()
        self.transcript = self.timeline = None
        self.runs_html.value = ""
        if sid is None:
            self.detail.layout.display = "none"
            self.selected_label.value = '<span style="padding:0 8px">no session selected</span>'
            self.transcript_pane.children = ()
            self.timeline_box.children = ()
            for b in (self.resume_button, self.delete_button):
                b.disabled = True
            return
        for b in (self.resume_button, self.delete_button):
            b.disabled = False
        self.selected_label.value = (
            f'<span style="padding:0 8px">selected <code>{render.esc(sid)}</code></span>'
        )
        self.detail.layout.display = "flex"
        try:
            bundle = self.store.load(sid)
        except A3sNbError as e:  # a corrupt session: say so, keep the browser usable
            problem = W.HTML(
                f'<div style="color:#c62828">cannot load {render.esc(sid)}: {render.esc(e)}</div>'
            )
            self.transcript_pane.children = (problem,)
            self.timeline_box.children = ()
            return
        self.transcript = Transcript(bundle)
        self.timeline = RunTimeline(bundle)
        self.transcript_pane.children = (self.transcript,)
        self.runs_html.value = _runs_table_html(bundle)
        self.timeline_box.children = (self.timeline,)

    # ---- actions --------------------------------------------------------------------

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a button's action; show a domain error in the message line, not a trace."""
        try:
            action()
        except A3sNbError as e:
            self._say(str(e), error=True)

    def _say(self, text: str, *, error: bool = False) -> None:
        color = "#c62828" if error else "var(--jp-ui-font-color1, #1f2328)"
        self.message.value = f'<div style="color:{color};padding:2px 8px">{render.esc(text)}</div>'

    def _target_namespace(self) -> MutableMapping[str, Any]:
        if self._explicit_namespace:
            return self.namespace
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython comes with ipywidgets
            return self.namespace
        ip = get_ipython()
        return ip.user_ns if ip is not None else self.namespace

    def resume(self) -> Any:
        """Resume the selected session (live with ``agent``, read-only without) and bind
        it under the name in the *as* box. Returns the session."""
        sid = self._require_selection()
        name = self.name_text.value.strip() or "session"
        if not name.isidentifier():
            raise A3sNbError(f"{name!r} is not a Python variable name")
        session = api.resume(sid, agent=self.agent, store=self.store)
        self._target_namespace()[name] = session
        self.last_resumed = session
        how = "live" if self.agent is not None else "read-only (pass agent= to continue it)"
        self._say(f"resumed {sid} as `{name}`, {how}")
        return session

    def delete(self) -> None:
        """Ask to delete the selected session: shows *Confirm delete* and *Cancel*."""
        sid = self._require_selection()
        self._pending_delete = sid
        self.confirm_button.layout.display = "inline-flex"
        self.cancel_button.layout.display = "inline-flex"
        self.delete_button.disabled = True
        self._say(
            f"Delete session {sid} with its runs, traces, verification and artifacts? "
            "This cannot be undone."
        )

    def confirm_delete(self) -> None:
        """Delete the session that ``delete()`` asked about, then refresh."""
        sid = self._pending_delete
        if sid is None:
            raise A3sNbError("nothing to delete: click Delete first")
        self._hide_confirm()
        self.store.delete(sid)
        if self.value == sid:
            self.value = None
        self.refresh()
        self._say(f"deleted {sid}")

    def cancel_delete(self) -> None:
        self._hide_confirm()
        self._say("delete cancelled")

    def _hide_confirm(self) -> None:
        self._pending_delete = None
        self.confirm_button.layout.display = "none"
        self.cancel_button.layout.display = "none"
        self.delete_button.disabled = self.value is None

    def _require_selection(self) -> str:
        if self.value is None:
            raise A3sNbError("select a session first")
        return self.value

    def _on_filter(self, _change: dict[str, Any]) -> None:
        self.page = 0
        self._apply()

    # ---- display --------------------------------------------------------------------

    def to_html(self) -> str:
        table = render.sessions_table_html(
            self.shown,
            selected=self.value,
            max_rows=self.page_size,
            caption=f"{len(self.shown):,} of {len(self.sessions):,} sessions in {self._label}",
        )
        detail = self.transcript.to_html() if self.transcript is not None else ""
        return f"<div>{table}{detail}</div>"

    def __repr__(self) -> str:
        return (
            f"SessionBrowser(store={self._label!r}, sessions={len(self.sessions)}, "
            f"shown={len(self.shown)}, selected={self.value!r})"
        )


def sessions_with_prompts(
    store: Any, *, progress: bool | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the browser shows and searches: the sessions frame plus ``first_prompt`` and
    ``last_run_status`` from the runs frame, and the prompts of every run
    (``session_id``, ``prompt``) for the text filter.

    Sessions skipped because a file is corrupt are listed in ``df.attrs["errors"]`` (as in
    every frame) instead of being warned about: the browser shows them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptSessionWarning)
        frames = all_frames(store, ["sessions", "runs"], progress=progress)  # one pass
    df, r = frames["sessions"], frames["runs"]
    errors = {e["session_id"]: e for e in [*df.attrs.get("errors", []), *r.attrs.get("errors", [])]}
    r = r.sort_values(["session_id", "created_at", "run_index"], kind="stable")
    g = r.groupby("session_id", sort=False, observed=True)
    extra = pd.DataFrame(
        {
            "first_prompt": g["prompt"].first(),
            "last_run_status": g["status"].last().astype("string"),
        }
    )
    extra.index = extra.index.astype("string")
    out = df.merge(extra, left_on="session_id", right_index=True, how="left")
    out = out[~out["session_id"].isin(list(errors))].reset_index(drop=True)
    out["first_prompt"] = out["first_prompt"].astype("string")
    out["last_run_status"] = out["last_run_status"].astype("string").fillna(_NO_RUNS)
    out.attrs = {"errors": list(errors.values())}
    prompts = pd.DataFrame(
        {"session_id": r["session_id"], "prompt": r["prompt"].str.lower()}
    ).reset_index(drop=True)
    return out, prompts


def _runs_table_html(bundle: SessionBundle) -> str:
    """The runs of a session: status, prompt, duration, events (from the runs frame)."""
    df = runs_frame(bundle)
    return render.runs_table_html(df)


def browse(store: Any = None, **kwargs: Any) -> SessionBrowser:
    """``SessionBrowser(store, **kwargs)``: what ``%a3s_sessions --browse`` shows."""
    return SessionBrowser(store, **kwargs)


# =========================================================================== diff


class DiffView(_StaticMixin, W.VBox):
    """Two sessions side by side, prompt by prompt and tool call by tool call.

    ``a`` and ``b`` are what :func:`a3s_nb.diff` takes (session ids, looked up in
    ``store`` and ``store_b``, saved or live sessions, bundles), or ``a`` is a ready diff
    frame. The prompts both share at the start (a fork and its parent) are collapsed; the
    *Show shared prompts* button (``toggle_shared()``, or ``show_shared = True``) unfolds
    them; *Changes only* (``changes_only = True``) hides every row that is the same.

    >>> DiffView("fix-1", "fix-1-fork-1", store="sessions")        # doctest: +SKIP
    """

    show_shared = traitlets.Bool(False)
    changes_only = traitlets.Bool(False)

    def __init__(
        self, a: Any, b: Any = None, *, store: Any = None, store_b: Any = None, **kwargs: Any
    ):
        self.df = a if isinstance(a, pd.DataFrame) else diff(a, b, store=store, store_b=store_b)
        self.shared = render.shared_prefix(self.df)
        self.shared_button = _button("", icon="eye")
        self.shared_button.add_class("a3s-diff-shared-button")
        self.shared_button.disabled = self.shared == 0
        self.changes_toggle = W.ToggleButton(
            value=False, description="Changes only", icon="filter", layout=W.Layout(width="auto")
        )
        self.changes_toggle.add_class("a3s-diff-changes-toggle")
        self.html = W.HTML(layout=W.Layout(width="100%"))
        self.html.add_class("a3s-diff-html")
        controls = W.HBox([self.shared_button, self.changes_toggle])
        super().__init__(children=[controls, self.html], **kwargs)
        self.add_class("a3s-diff-widget")
        self.shared_button.on_click(lambda _b: self.toggle_shared())
        self.changes_toggle.observe(lambda c: setattr(self, "changes_only", c["new"]), "value")
        self.observe(self._render, ["show_shared", "changes_only"])
        self._render()

    def toggle_shared(self) -> None:
        """Show the shared prompts if they are hidden, hide them if they are shown."""
        self.show_shared = not self.show_shared

    def _render(self, _change: Any = None) -> None:
        self.changes_toggle.value = self.changes_only
        n = self.shared
        plural = "s" if n != 1 else ""
        self.shared_button.description = (
            f"Hide {n} shared prompt{plural}"
            if self.show_shared
            else f"Show {n} shared prompt{plural}"
        )
        self.html.value = render.diff_html(
            self.df, show_shared=self.show_shared, changes_only=self.changes_only, static=False
        )

    def to_html(self) -> str:
        return render.diff_html(
            self.df, show_shared=self.show_shared, changes_only=self.changes_only, static=True
        )

    def __repr__(self) -> str:
        prompts = self.df[self.df["kind"] == "prompt"]["change"].value_counts()
        tools = self.df[self.df["kind"] == "tool"]["change"].value_counts()
        counts = ", ".join(
            f"{c}={int(prompts.get(c, 0))}" for c in ("same", "changed", "only_a", "only_b")
        )
        tool_changes = int(len(self.df[self.df["kind"] == "tool"]) - tools.get("same", 0))
        return (
            f"DiffView(a={self.df.attrs.get('a')!r}, b={self.df.attrs.get('b')!r}, prompts: "
            f"{counts}; shared={self.shared}, tool calls that differ={tool_changes})"
        )
