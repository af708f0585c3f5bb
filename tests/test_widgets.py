"""The widgets without a browser: set values, click buttons, check the store and namespace.

Expectations are computed from the store files through the models, not from the frames the
widgets are built on, so a widget that shows the wrong rows cannot agree with itself.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import ipywidgets  # noqa: F401 - the widgets need it: missing, the suite fails loudly
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import a3s_nb
from a3s_nb import render
from a3s_nb.frames import spans
from a3s_nb.saved import SavedSession
from a3s_nb.store.models import SessionBundle, TextBlock, ToolResultBlock
from a3s_nb.widgets import WIDGET_VIEW, RunTimeline, SessionBrowser, Transcript

from .fakes import FakeSession

OSCAR = "fix-oscar-2-000"
OSCAR_FIRST_PROMPT = "Create docs/echo_0_1.md with a short heading and then show me its contents."
WITH_ARTIFACT = "4287140e-de98-4f72-8e72-c616a812fc99"


# --------------------------------------------------------------------------- helpers


def _bundles(store) -> dict[str, SessionBundle]:
    return {sid: store.load(sid) for sid in store.list()}


def _last_run_status(bundle: SessionBundle) -> str:
    runs = sorted(bundle.runs, key=lambda r: r.snapshot.created_at_ms)
    return runs[-1].snapshot.status if runs else "(no runs)"


def _shown(browser: SessionBrowser) -> list[str]:
    return browser.shown["session_id"].tolist()


def _visible_rows(browser: SessionBrowser) -> list[str]:
    """The ids on the row slots the page shows, as the front end would draw them."""
    return [
        b.description
        for b, row in zip(browser._row_buttons, browser._rows, strict=True)
        if row.layout.display != "none" and "a3s-row" in row._dom_classes
    ]


def _click_row(browser: SessionBrowser, session_id: str) -> None:
    for b, row in zip(browser._row_buttons, browser._rows, strict=True):
        if b.description == session_id and row.layout.display != "none":
            b.click()
            return
    raise AssertionError(f"{session_id} is not on the page: {_visible_rows(browser)}")


def _n_spans(markup: str) -> int:
    return len(re.findall(r'<g class="a3s-span"', markup))


# --------------------------------------------------------------------------- browser: table


def test_browser_lists_every_session(fixture_store, fixture_dir):
    browser = SessionBrowser(fixture_dir)
    ids = fixture_store.list()
    assert len(ids) == 8
    assert sorted(_shown(browser)) == ids
    assert sorted(_visible_rows(browser)) == ids
    assert repr(browser) == (
        f"SessionBrowser(store={str(fixture_dir)!r}, sessions=8, shown=8, selected=None)"
    )
    assert "1\u20138 of 8 sessions" in browser.page_label.value
    assert browser.prev_button.disabled and browser.next_button.disabled
    # nothing selected: the actions are off and the detail hidden
    assert browser.resume_button.disabled and browser.delete_button.disabled
    assert browser.detail.layout.display == "none"


def test_a_missing_store_is_an_error_not_a_new_directory(tmp_path):
    with pytest.raises(a3s_nb.StoreError, match=r"no store at .*nowhere"):
        SessionBrowser(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(a3s_nb.StoreError, match="a3s_sessions"):
        SessionBrowser()  # the default store, ./a3s_sessions, does not exist either
    empty = SessionBrowser(a3s_nb.MemoryStore())
    assert repr(empty) == "SessionBrowser(store='<memory>', sessions=0, shown=0, selected=None)"
    assert _visible_rows(empty) == [] and "0 sessions" in empty.page_label.value


def test_repr_uses_the_store_as_given(fixture_dir, monkeypatch):
    monkeypatch.chdir(fixture_dir.parent)
    assert repr(SessionBrowser("store")).startswith("SessionBrowser(store='store', sessions=8")


def test_text_filter_matches_id_workspace_and_prompts(fixture_store, fixture_dir):
    bundles = _bundles(fixture_store)
    browser = SessionBrowser(fixture_dir)

    browser.filter.value = "FIX-OSCAR"  # case-insensitive, on the id
    assert _shown(browser) == [OSCAR]
    assert _visible_rows(browser) == [OSCAR]
    assert "filtered from 8" in browser.page_label.value
    assert repr(browser).endswith("sessions=8, shown=1, selected=None)")

    browser.filter.value = "race condition"  # in a prompt that is not the first one
    expected = sorted(
        sid
        for sid, b in bundles.items()
        if any("race condition" in r.snapshot.prompt.lower() for r in b.runs)
    )
    assert expected and OSCAR in expected
    assert sorted(_shown(browser)) == expected

    workspace = bundles[OSCAR].session.config.workspace
    browser.filter.value = workspace
    assert _shown(browser) == [OSCAR]

    browser.filter.value = "oscar"  # ids, workspaces and prompts at once
    assert sorted(_shown(browser)) == sorted(
        sid
        for sid, b in bundles.items()
        if "oscar" in sid
        or "oscar" in b.session.config.workspace
        or any("oscar" in r.snapshot.prompt.lower() for r in b.runs)
    )

    browser.filter.value = "no such text anywhere"
    assert _shown(browser) == [] and _visible_rows(browser) == []
    assert "0 sessions" in browser.page_label.value

    browser.filter.value = ""
    assert len(_shown(browser)) == 8


def test_model_and_status_dropdowns(fixture_store, fixture_dir):
    bundles = _bundles(fixture_store)
    browser = SessionBrowser(fixture_dir)
    models = sorted({b.session.model_name for b in bundles.values()})
    assert list(browser.model_filter.options) == ["(all)", *models]

    browser.model_filter.value = "openai/fake-model-large"
    assert sorted(_shown(browser)) == sorted(
        sid for sid, b in bundles.items() if b.session.model_name == "openai/fake-model-large"
    )

    browser.model_filter.value = "(all)"
    failed = sorted(sid for sid, b in bundles.items() if _last_run_status(b) == "failed")
    assert failed  # the fixture store has sessions whose last run failed
    assert "failed" in browser.status_filter.options
    browser.status_filter.value = "failed"
    assert sorted(_shown(browser)) == failed

    # both at once
    browser.model_filter.value = "openai/fake-model-large"
    assert sorted(_shown(browser)) == sorted(
        sid for sid in failed if bundles[sid].session.model_name == "openai/fake-model-large"
    )


def test_sorting(fixture_store, fixture_dir):
    bundles = _bundles(fixture_store)
    browser = SessionBrowser(fixture_dir)
    sortable = [v for _, v in browser.sort_by.options]
    assert {"updated_at", "n_messages", "session_id"} <= set(sortable)

    browser.sort_by.value = "n_messages"
    counts = [len(bundles[s].session.messages) for s in _shown(browser)]
    assert counts == sorted(counts, reverse=True)
    assert browser.descending.description == "desc"

    browser.descending.value = False
    counts = [len(bundles[s].session.messages) for s in _shown(browser)]
    assert counts == sorted(counts)
    assert browser.descending.description == "asc"
    assert _visible_rows(browser) == _shown(browser)  # the page follows the order

    browser.sort_by.value = "session_id"
    assert _shown(browser) == sorted(bundles)


def test_pagination(fixture_store, fixture_dir):
    browser = SessionBrowser(fixture_dir, page_size=3)
    browser.sort_by.value = "session_id"
    browser.descending.value = False
    ids = fixture_store.list()
    assert browser.pages == 3 and len(browser._rows) == 3
    assert _visible_rows(browser) == ids[:3]
    assert browser.prev_button.disabled and not browser.next_button.disabled

    browser.next_button.click()
    assert browser.page == 1 and _visible_rows(browser) == ids[3:6]
    browser.next_button.click()
    assert _visible_rows(browser) == ids[6:]  # a short last page hides the spare slots
    assert browser.next_button.disabled
    assert "7\u20138 of 8" in browser.page_label.value

    browser.prev_button.click()
    browser.prev_button.click()
    assert browser.page == 0

    browser.value = ids[-1]  # selecting a session turns to its page
    assert browser.page == 2 and ids[-1] in _visible_rows(browser)

    browser.filter.value = ids[0]  # filtering goes back to a page that exists
    assert browser.page == 0 and _visible_rows(browser) == [ids[0]]


# --------------------------------------------------------------------------- selection


def test_clicking_a_row_selects_it_and_shows_transcript_and_runs(fixture_store, fixture_dir):
    browser = SessionBrowser(fixture_dir)
    _click_row(browser, OSCAR)
    assert browser.value == OSCAR
    assert repr(browser).endswith(f"selected={OSCAR!r})")
    selected_rows = [r for r in browser._rows if "a3s-selected" in r._dom_classes]
    assert len(selected_rows) == 1
    assert selected_rows[0].children[0].description == OSCAR

    assert browser.detail.layout.display != "none"
    assert html.escape(OSCAR_FIRST_PROMPT) in browser.transcript.html.value
    assert isinstance(browser.transcript, Transcript)
    assert browser.transcript.session_id == OSCAR
    bundle = fixture_store.load(OSCAR)
    assert browser.runs_html.value.count('class="a3s-run-row"') == len(bundle.runs)
    assert browser.timeline.spans.equals(spans(bundle))
    assert not browser.resume_button.disabled and not browser.delete_button.disabled

    assert browser.transcript_pane.children == (browser.transcript,)
    assert browser.timeline_box.children == (browser.timeline,)

    # selecting another session replaces the detail (closing the old widgets); None clears it
    old = (browser.transcript, browser.timeline)
    browser.select("explore-lima")  # a unique prefix
    assert browser.value == "explore-lima-2-001"
    assert html.escape(OSCAR_FIRST_PROMPT) not in browser.transcript.html.value
    assert all(w.comm is None for w in old)
    browser.value = None
    assert browser.detail.layout.display == "none" and browser.resume_button.disabled
    assert not [r for r in browser._rows if "a3s-selected" in r._dom_classes]


def test_selecting_an_unknown_id_is_refused(fixture_dir):
    browser = SessionBrowser(fixture_dir)
    browser.value = OSCAR
    with pytest.raises(a3s_nb.A3sNbError, match="no session 'nope'"):
        browser.value = "nope"
    assert browser.value == OSCAR
    with pytest.raises(a3s_nb.SessionNotFoundError):
        browser.select("nope")


def test_a_corrupt_session_is_reported_and_the_browser_keeps_working(fixture_dir, recwarn):
    (fixture_dir / "runs" / f"{OSCAR}.json").write_text('[{"snapshot": ')
    browser = SessionBrowser(fixture_dir)
    assert OSCAR not in _shown(browser) and len(_shown(browser)) == 7
    assert [e["session_id"] for e in browser.skipped] == [OSCAR]
    assert f"1 unreadable session skipped: {OSCAR}" in browser.page_label.value
    assert "not valid JSON" in browser.page_label.value  # the problem, in the tooltip
    from a3s_nb.frames import CorruptSessionWarning

    # said once, in the widget, not as warnings in the cell's output
    assert not [w for w in recwarn.list if issubclass(w.category, CorruptSessionWarning)]
    browser.value = "explore-lima-2-001"
    assert "explore-lima-2-001" in browser.transcript.html.value


# --------------------------------------------------------------------------- actions


def test_resume_without_agent_binds_a_saved_session(fixture_dir):
    ns: dict = {}
    browser = SessionBrowser(fixture_dir, namespace=ns)
    _click_row(browser, OSCAR)
    browser.resume_button.click()
    assert isinstance(ns["session"], SavedSession)
    assert ns["session"].id == OSCAR
    assert "read-only" in browser.message.value

    browser.name_text.value = "older"
    browser.resume_button.click()
    assert ns["older"].id == OSCAR and set(ns) == {"session", "older"}

    browser.name_text.value = "not a name"
    browser.resume_button.click()  # a click shows the problem instead of raising
    assert "not a Python variable name" in browser.message.value
    assert set(ns) == {"session", "older"}


def test_resume_passes_the_agent_to_the_public_api(fixture_dir, monkeypatch):
    calls = []

    def fake_resume(id, agent=None, *, store=None, **options):
        calls.append((id, agent, store))
        return f"live {id}"

    monkeypatch.setattr(a3s_nb.api, "resume", fake_resume)
    agent = object()
    ns: dict = {}
    browser = SessionBrowser(fixture_dir, agent=agent, namespace=ns, name="s")
    browser.value = OSCAR
    assert browser.resume() == f"live {OSCAR}"
    assert ns == {"s": f"live {OSCAR}"}
    ((sid, got_agent, store),) = calls
    assert sid == OSCAR and got_agent is agent and store is browser.store
    assert "live" in browser.message.value


def test_resume_binds_in_the_ipython_namespace_by_default(ip, fixture_dir):
    browser = SessionBrowser(fixture_dir)
    browser.value = OSCAR
    browser.resume_button.click()
    assert isinstance(ip.user_ns["session"], SavedSession)
    assert browser.namespace == {}


def test_resume_needs_a_selection(fixture_dir):
    browser = SessionBrowser(fixture_dir, namespace={})
    with pytest.raises(a3s_nb.A3sNbError, match="select a session first"):
        browser.resume()


def test_delete_asks_then_deletes(fixture_store, fixture_dir):
    browser = SessionBrowser(fixture_dir)
    files = [p for p in fixture_store.session_files(OSCAR).values() if p.exists()]
    assert len(files) >= 5

    _click_row(browser, OSCAR)
    browser.delete_button.click()
    assert browser.confirm_button.layout.display != "none"
    assert browser.cancel_button.layout.display != "none"
    assert "cannot be undone" in browser.message.value
    assert all(p.exists() for p in files)  # asking deletes nothing

    browser.confirm_button.click()
    assert not any(p.exists() for p in files)
    assert not (fixture_dir / "artifacts" / OSCAR).exists()
    assert OSCAR not in fixture_store.list() and len(fixture_store.list()) == 7
    assert OSCAR not in _shown(browser) and len(_visible_rows(browser)) == 7
    assert browser.value is None
    assert browser.confirm_button.layout.display == "none"
    assert f"deleted {OSCAR}" in browser.message.value


def test_cancel_deletes_nothing(fixture_store, fixture_dir):
    def files():  # the session files, not a3s_nb's own index in .a3s_nb/
        return {
            p: p.read_bytes()
            for p in fixture_dir.rglob("*.json")
            if ".a3s_nb" not in p.relative_to(fixture_dir).parts
        }

    before = files()
    browser = SessionBrowser(fixture_dir)
    _click_row(browser, OSCAR)
    browser.delete_button.click()
    browser.cancel_button.click()
    assert browser.confirm_button.layout.display == "none"
    assert "cancelled" in browser.message.value
    assert files() == before
    assert len(_shown(browser)) == 8 and browser.value == OSCAR

    # changing the selection also withdraws the question
    browser.delete_button.click()
    browser.value = "explore-lima-2-001"
    assert browser.confirm_button.layout.display == "none"
    with pytest.raises(a3s_nb.A3sNbError, match="click Delete first"):
        browser.confirm_delete()
    assert len(fixture_store.list()) == 8


def test_refresh_sees_sessions_saved_elsewhere(fixture_store, fixture_dir, tmp_path):
    browser = SessionBrowser(fixture_dir)
    other = a3s_nb.FileStore(tmp_path / "other")
    bundle = fixture_store.load(OSCAR)
    fixture_store.delete(OSCAR)
    assert len(_shown(browser)) == 8  # not yet
    browser.refresh_button.click()
    assert OSCAR not in _shown(browser)
    fixture_store.save(bundle)
    other.save(bundle)
    browser.refresh()
    assert OSCAR in _shown(browser)


# --------------------------------------------------------------------------- escaping, scale


def _bundle_with_text(bundle: SessionBundle, sid: str, text: str) -> SessionBundle:
    data = bundle.model_copy(deep=True)
    data.session.id = sid
    data.session.messages[0].content = [TextBlock(text=text)]
    for r in data.runs:
        r.snapshot.session_id = sid
        r.snapshot.prompt = text
    return data


def test_sessions_without_model_or_runs(fixture_store):
    bare = fixture_store.load(OSCAR).model_copy(deep=True)
    bare.session.id = "bare"
    bare.session.model_name = None
    bare.session.llm_config = None
    bare.runs = []
    store = a3s_nb.MemoryStore()
    store.save(bare)
    store.save(fixture_store.load("explore-lima-2-001"))
    browser = SessionBrowser(store, namespace={})
    assert sorted(_shown(browser)) == ["bare", "explore-lima-2-001"]
    assert "(no runs)" in browser.status_filter.options
    browser.model_filter.value = "openai/fake-model"  # a missing model is not a match
    assert _shown(browser) == ["explore-lima-2-001"]
    browser.model_filter.value = "(all)"
    browser.status_filter.value = "(no runs)"
    assert _shown(browser) == ["bare"]
    browser.status_filter.value = "(all)"
    browser.sort_by.value = "model"
    assert _shown(browser)[-1] == "bare"  # missing values sort last, both ways
    browser.descending.value = not browser.descending.value
    assert _shown(browser)[-1] == "bare"
    browser.value = "bare"
    assert browser.timeline.spans.empty and "(no spans)" in browser.timeline.html.value
    assert "(no runs)" in browser.runs_html.value


def test_session_text_is_escaped_everywhere(fixture_store):
    evil = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    bundle = _bundle_with_text(fixture_store.load(OSCAR), "evil", evil)
    for msg in bundle.session.messages:
        for block in msg.content:
            if isinstance(block, ToolResultBlock):
                block.content = evil
    store = a3s_nb.MemoryStore()
    store.save(bundle)
    browser = SessionBrowser(store, namespace={})
    browser.value = "evil"
    browser.timeline.run_id = bundle.runs[0].snapshot.id
    markup = [
        *(c.value for c in browser._row_cells),
        browser.transcript.html.value,
        browser.timeline.html.value,
        browser.to_html(),
        Transcript(bundle).to_html(),
    ]
    for m in markup:
        assert "<script" not in m and "<img" not in m
    assert html.escape(evil) in browser.transcript.html.value


def _write_many(src: Path, dest: Path, n: int) -> list[str]:
    """``n`` sessions in the a3s-code layout, cloned from the fixture files (fast: no
    validation, no fsync; the store reads them as it reads any SDK-written store)."""
    import json

    bases = sorted(p.stem for p in src.glob("*.json"))
    for part in ("runs", "traces"):
        (dest / part).mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        base = bases[i % len(bases)]
        sid = f"s{i:04d}-{base[:8]}"
        session = json.loads((src / f"{base}.json").read_text())
        session["id"] = sid
        (dest / f"{sid}.json").write_text(json.dumps(session))
        runs = json.loads((src / "runs" / f"{base}.json").read_text())
        for r in runs:
            r["snapshot"]["session_id"] = sid
        (dest / "runs" / f"{sid}.json").write_text(json.dumps(runs))
        ids.append(sid)
    return ids


@pytest.mark.slow
def test_five_thousand_sessions_stay_responsive(fixture_dir, tmp_path, monkeypatch):
    # Responsive means: the store is read once, and filtering, sorting, paging and
    # selecting work on the frame in memory with the same 20 row widgets. Counted, not
    # timed (speed is measured in benchmarks/).
    from a3s_nb import widgets

    ids = _write_many(fixture_dir, tmp_path / "big", 5000)
    reads = []
    real = widgets.sessions_with_prompts
    monkeypatch.setattr(
        widgets, "sessions_with_prompts", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    browser = SessionBrowser(tmp_path / "big", namespace={})
    assert len(reads) == 1
    assert len(browser.shown) == 5000 and len(browser._rows) == 20  # 20 row widgets, reused
    assert len(_visible_rows(browser)) == 20 and browser.pages == 250
    rows = list(browser._rows)

    browser.filter.value = "s4321"
    assert _shown(browser) == [ids[4321]]
    browser.filter.value = ""
    browser.sort_by.value = "session_id"
    browser.descending.value = False
    browser.next_button.click()
    assert _visible_rows(browser) == ids[20:40]
    browser.value = ids[2500]
    assert browser.page == 125 and ids[2500] in _visible_rows(browser)
    assert len(reads) == 1, "an interaction read the store again"
    assert all(a is b for a, b in zip(browser._rows, rows, strict=True))  # none rebuilt


# --------------------------------------------------------------------------- transcript


def test_transcript_of_a_saved_session(fixture_store):
    bundle = fixture_store.load(OSCAR)
    for source, kwargs in (
        (bundle, {}),
        (SavedSession(bundle), {}),
        (OSCAR, {"store": fixture_store}),
        ("fix-osc", {"store": fixture_store.path}),
    ):
        t = Transcript(source, **kwargs)
        assert repr(t) == f"Transcript(session={OSCAR!r}, messages=20, runs=5)"
        assert not t.live and not hasattr(t, "refresh_button")
        value = t.html.value
        assert value == t.to_html()
        assert html.escape(OSCAR_FIRST_PROMPT) in value

    # user/assistant text, every tool call (folded) with its result, errors marked
    markup = t.html.value
    n_calls = sum(1 for m in bundle.session.messages for b in m.content if b.type == "tool_use")
    errors = sum(
        1
        for m in bundle.session.messages
        for b in m.content
        if isinstance(b, ToolResultBlock) and b.is_error
    )
    assert markup.count('<details class="a3s-tool-call"') == n_calls
    assert markup.count('class="a3s-tool-result a3s-error"') == errors >= 1
    assert markup.count('class="a3s-tool-result"') == n_calls - errors
    assert "a3s-msg a3s-user" in markup and "a3s-msg a3s-assistant" in markup


def test_transcript_links_artifacts_and_shows_failed_runs(fixture_store):
    bundle = fixture_store.load(WITH_ARTIFACT)
    (art,) = bundle.artifacts.artifacts
    markup = Transcript(bundle).html.value
    anchor = re.search(r'<details id="(a3s-[0-9a-f]+)" class="a3s-artifact"', markup).group(1)
    assert f'href="#{anchor}"' in markup
    assert html.escape(art.artifact_uri) in markup

    failing = next(
        sid
        for sid in fixture_store.list()
        if any(r.snapshot.status == "failed" for r in fixture_store.load(sid).runs)
    )
    b = fixture_store.load(failing)
    (failed_run, *_) = [r for r in b.runs if r.snapshot.status == "failed"]
    markup = Transcript(b).html.value
    assert "failed run (not in history)" in markup
    assert html.escape(failed_run.snapshot.prompt) in markup


def test_transcript_of_a_live_session_refreshes(fixture_store):
    live = FakeSession(fixture_store.load(OSCAR))
    t = Transcript(live)
    assert t.live and repr(t).endswith("runs=5, live)")
    live.send("Is the <heading> still there?", reply="Yes & it is.")
    assert "still there" not in t.html.value
    t.refresh_button.click()
    assert html.escape("Is the <heading> still there?") in t.html.value
    assert repr(t) == f"Transcript(session={OSCAR!r}, messages=22, runs=6, live)"


def test_transcript_refuses_what_it_cannot_show():
    with pytest.raises(TypeError, match="cannot show a int"):
        Transcript(42)


# --------------------------------------------------------------------------- timeline


def test_timeline_has_one_bar_per_span(fixture_store):
    bundle = fixture_store.load(OSCAR)
    frame = spans(bundle)
    tl = RunTimeline(bundle)
    assert _n_spans(tl.html.value) == len(frame) > 0
    assert repr(tl) == f"RunTimeline(session={OSCAR!r}, run=None, spans={len(frame)})"
    run_ids = [r.snapshot.id for r in bundle.runs]
    assert [v for _, v in tl.run_picker.options] == ["", *run_ids]

    for rid in run_ids:
        tl.run_picker.value = rid  # what choosing in the dropdown does
        expected = frame[frame["run_id"] == rid]
        assert tl.run_id == rid and len(tl.spans) == len(expected)
        markup = tl.html.value
        assert _n_spans(markup) == len(expected)
        for kind, n in expected["kind"].value_counts().items():
            assert markup.count(f'data-kind="{kind}"') == n
        for status, n in expected["status"].value_counts().items():
            assert markup.count(f'data-status="{status}"') == n
    tl.run_id = None
    assert tl.run_picker.value == "" and _n_spans(tl.html.value) == len(frame)


def test_timeline_from_an_id_a_frame_and_a_live_session(fixture_store):
    bundle = fixture_store.load(OSCAR)
    rid = bundle.runs[1].snapshot.id
    by_id = RunTimeline(OSCAR, store=fixture_store, run_id=rid)
    assert by_id.run_id == rid and by_id.run_picker.value == rid
    assert "run 2: " + html.escape(bundle.runs[1].snapshot.prompt[:20]) in by_id.html.value

    many = spans(fixture_store)
    from_frame = RunTimeline(many, run_id=rid)
    assert len(from_frame.spans) == len(by_id.spans)
    assert (
        repr(from_frame) == f"RunTimeline(session={OSCAR!r}, run={rid!r}, spans={len(by_id.spans)})"
    )
    everything = RunTimeline(many)
    assert repr(everything) == f"RunTimeline(session=None, run=None, spans={len(many)})"
    assert "8 sessions" in everything.html.value

    live = RunTimeline(FakeSession(bundle))
    assert len(live.spans) == len(spans(bundle))

    with pytest.raises(ValueError, match="no run 'run-nope'"):
        by_id.run_id = "run-nope"
    assert by_id.run_id == rid


def test_timeline_marks_failures_and_cuts_idle_time(fixture_store):
    failing = next(
        sid
        for sid in fixture_store.list()
        if any(r.snapshot.status == "failed" for r in fixture_store.load(sid).runs)
    )
    frame = spans(fixture_store.load(failing))
    markup = render.timeline_html(frame)
    n_error = int((frame["status"] == "error").sum())
    assert n_error and markup.count('data-status="error"') == n_error
    assert render.SPAN_COLORS["error"] in markup

    # two runs a day apart: the day is cut out of the axis and marked as idle time
    bundle = fixture_store.load(OSCAR)
    shifted = spans(bundle)
    late = shifted["run_id"] == bundle.runs[-1].snapshot.id
    shifted.loc[late, "start"] += __import__("pandas").Timedelta(days=1)
    shifted.loc[late, "end"] += __import__("pandas").Timedelta(days=1)
    markup = render.timeline_html(shifted)
    assert markup.count('class="a3s-break"') == 1
    assert re.search(r"<title>idle (23 h 59 min|24 h 00 min)</title>", markup)
    assert render.timeline_html(shifted.iloc[:0]).count("no spans") == 1


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("make", ["browser", "transcript", "timeline"])
def test_outputs_have_widget_view_plain_text_and_static_html(fixture_store, fixture_dir, make):
    if make == "browser":
        w = SessionBrowser(fixture_dir)
        w.value = OSCAR
    elif make == "transcript":
        w = Transcript(OSCAR, store=fixture_store)
    else:
        w = RunTimeline(OSCAR, store=fixture_store)
    bundle = w._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == w.model_id  # JupyterLab still shows the widget
    assert bundle["text/plain"] == repr(w)
    assert "model_id" not in repr(w) and "layout=" not in repr(w)
    static = bundle["text/html"]
    assert static == w.to_html()
    assert OSCAR in static
    if make != "timeline":
        assert html.escape(OSCAR_FIRST_PROMPT) in static
    else:
        assert _n_spans(static) == len(w.spans)
    w.close()
    assert w._repr_mimebundle_ is None  # ipywidgets' own behaviour for closed widgets


def test_static_html_through_nbconvert(fixture_dir, tmp_path):
    """A notebook saved with widget outputs (no widget state) shows the static HTML."""
    import nbconvert
    import nbformat

    browser = SessionBrowser(fixture_dir)
    browser.value = OSCAR
    data = browser._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "browser",
            outputs=[nbformat.v4.new_output("display_data", data=data)],
        )
    )
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    assert html.escape(OSCAR_FIRST_PROMPT) in body
    assert 'class="a3s-session-row"' in body


def test_plain_text_repr_is_deterministic(fixture_dir):
    a, b = SessionBrowser(fixture_dir), SessionBrowser(fixture_dir)
    assert a._repr_mimebundle_()["text/plain"] == b._repr_mimebundle_()["text/plain"]
    assert a.to_html() == b.to_html()


# --------------------------------------------------------------------------- package


def test_importing_a3s_nb_does_not_import_ipywidgets():
    code = (
        "import sys, a3s_nb\n"
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'\n"
        "assert 'a3s_nb.widgets' not in sys.modules\n"
        "from a3s_nb import SessionBrowser, Transcript, RunTimeline\n"
        "assert 'ipywidgets' in sys.modules\n"
        "import a3s_nb.widgets as w\n"
        "assert SessionBrowser is w.SessionBrowser and RunTimeline is w.RunTimeline\n"
        "assert Transcript is w.Transcript\n"
        "assert {'SessionBrowser', 'Transcript', 'RunTimeline'} <= set(a3s_nb.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- magics


def test_sessions_browse_magic(ip, fixture_dir):
    browser = ip.run_line_magic("a3s_sessions", f"--browse --store {fixture_dir}")
    assert isinstance(browser, SessionBrowser)
    assert len(browser.shown) == 8 and browser.agent is None

    agent = object()
    ip.user_ns["agent"] = agent
    browser = ip.run_line_magic("a3s_sessions", f"--browse --agent agent --store {fixture_dir}")
    assert browser.agent is agent
    browser.value = OSCAR
    browser.resume_button.click()  # resumes through the public API, which checks the agent
    assert "not an a3s-code Agent" in browser.message.value

    with pytest.raises(UsageError, match="--limit --model cannot go with --browse"):
        ip.run_line_magic("a3s_sessions", f"--browse --limit 3 --model x --store {fixture_dir}")
    with pytest.raises(UsageError, match="--agent goes with --browse"):
        ip.run_line_magic("a3s_sessions", f"--agent agent --store {fixture_dir}")
    with pytest.raises(UsageError, match="no variable 'nope'"):
        ip.run_line_magic("a3s_sessions", f"--browse --agent nope --store {fixture_dir}")
    with pytest.raises(UsageError, match="no store at"):
        ip.run_line_magic("a3s_sessions", f"--browse --store {fixture_dir / 'nowhere'}")


def test_resume_magic_shows_the_transcript_widget_in_a_kernel(ip, fixture_dir, monkeypatch):
    monkeypatch.setattr(ip, "kernel", object(), raising=False)  # what ipykernel's shell has
    with capture_output(display=True) as cap:
        ip.run_line_magic("a3s_resume", f"fix-oscar --as old --store {fixture_dir}")
    assert cap.stdout.startswith("old: read-only saved session fix-oscar-2-000")
    [shown] = cap.outputs
    assert WIDGET_VIEW in shown.data
    assert shown.data["text/plain"] == f"Transcript(session={OSCAR!r}, messages=20, runs=5)"
    assert html.escape(OSCAR_FIRST_PROMPT) in shown.data["text/html"]

    monkeypatch.delattr(ip, "kernel")  # a terminal: the plain-text transcript, no widget
    with capture_output(display=True) as cap:
        ip.run_line_magic("a3s_resume", f"fix-oscar --as old --store {fixture_dir}")
    [shown] = cap.outputs
    assert WIDGET_VIEW not in shown.data
    assert shown.data["text/plain"].startswith("[user] Create docs/echo_0_1.md")
