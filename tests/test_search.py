"""a3s_nb.search: exact against a scan of every loaded session, kept up to date with the
store (new, rewritten, deleted sessions, the v1 layout), careful with its file, and clear
about bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import a3s_nb
from a3s_nb.errors import SearchQueryError
from a3s_nb.frames import _loadcheck, _searchindex
from a3s_nb.frames import search as textsearch

from .conftest import FIXTURE_STORE
from .test_store_v1 import build_v1_store, remove_flat, v1_path, write

pytestmark = pytest.mark.filterwarnings("ignore::a3s_nb.CorruptSessionWarning")

IDS = sorted(p.stem for p in FIXTURE_STORE.glob("*.json"))


def brute(store: object, query: str, **kw: object) -> list[tuple]:
    st = textsearch._open(store)
    matcher = textsearch.Matcher(query, bool(kw.get("regex")))
    return textsearch._brute_force(st, matcher, textsearch._kinds(kw.get("where")))[0]


def rows(df) -> list[tuple]:
    return [
        (r.session_id, r.prompt, r.message, r.kind, r.tool, r.tool_call_id, r.snippet)
        for r in df.astype(object).where(df.notna(), None).itertuples(index=False)
    ]


def expected(store: object, query: str, **kw: object) -> list[tuple]:
    m = textsearch.Matcher(query, bool(kw.get("regex")))
    return [
        (sid, p, msg, kind, tool, call, textsearch._snippet(m, text))
        for sid, p, msg, _b, kind, tool, call, _t, text in brute(store, query, **kw)
    ]


def index_file(root: Path) -> Path:
    return root / ".a3s_nb" / _searchindex.INDEX_FILE


def add_message(root: Path, sid: str, text: str, role: str = "assistant") -> None:
    """Rewrite a session file in place, as the SDK does when a session goes on."""
    path = root / f"{sid}.json"
    doc = json.loads(path.read_text())
    doc["messages"].append({"role": role, "content": [{"type": "text", "text": text}]})
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the fixture store, indexed once, searched read-only by many tests."""
    root = tmp_path_factory.mktemp("search") / "store"
    shutil.copytree(FIXTURE_STORE, root)
    return root


@pytest.fixture(scope="module")
def fixture_texts(shared_store: Path) -> list[str]:
    store = a3s_nb.FileStore(shared_store)
    return [doc[-1] for sid in IDS for doc in _searchindex.documents(store.load(sid)) if doc[-1]]


# ============================================================================ exact


QUERIES = ["rm -rf", "error", "ERROR", "ok", "a", "bash", "Failed to", "src/mod_", "{", '"a AND (']


@pytest.mark.parametrize("query", QUERIES)
def test_literal_hits_equal_a_scan_of_the_loaded_sessions(shared_store, query):
    df = a3s_nb.search(query, shared_store)
    assert rows(df) == expected(shared_store, query)
    assert index_file(shared_store).is_file()  # it was the index that answered


def test_the_fixture_has_hits_of_every_kind_with_prompt_numbers_fork_uses(shared_store):
    from a3s_nb.lab.lineage import prompts

    df = a3s_nb.search("e", shared_store)
    assert set(df["kind"]) == {"prompt", "assistant", "tool_args", "tool_output"}
    store = a3s_nb.FileStore(shared_store)
    for r in df.itertuples():
        p = prompts(r.session_id, store=store)[r.prompt - 1]
        assert p.messages[0] <= r.message < p.messages[1]
        if r.kind == "prompt":  # the prompt's own text, as fork numbers it
            assert store.load(r.session_id).session.messages[r.message].text in p.text or p.run


def test_case_is_ignored_and_the_snippet_shows_the_text_as_written(shared_store):
    low, up = a3s_nb.search("failed to", shared_store), a3s_nb.search("FAILED TO", shared_store)
    assert len(low) > 0 and rows(low) == rows(up)
    assert all("Failed to" in s or "failed to" in s for s in low["snippet"])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_substrings_and_words_of_the_fixture(shared_store, fixture_texts, data):
    text = data.draw(st.sampled_from(fixture_texts))
    if data.draw(st.booleans()):
        words = re.findall(r"\w+", text) or [text]
        query = data.draw(st.sampled_from(words))
    else:
        start = data.draw(st.integers(0, len(text) - 1))
        query = text[start : start + data.draw(st.integers(1, 12))]
    if data.draw(st.booleans()):
        query = query.swapcase()
    df = a3s_nb.search(query, shared_store)
    assert rows(df) == expected(shared_store, query)
    assert len(df) > 0 or query.lower() not in text.lower()


def _literal(s: str) -> str:
    return re.escape(s)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_regexes_equal_pythons_re(shared_store, fixture_texts, data):
    text = data.draw(st.sampled_from(fixture_texts))
    words = re.findall(r"\w{2,}", text) or ["ok"]
    a, b = data.draw(st.sampled_from(words)), data.draw(st.sampled_from(words))
    shape = data.draw(
        st.sampled_from(
            [
                "{a}",
                "{a}.{{0,20}}{b}",
                "(?i){a}",
                "{a}|{b}",
                r"\b{a}\b",
                "^{a}",
                "{a}\\d+",
                "[{c}]{a}",
            ]
        )
    )
    query = shape.format(a=_literal(a), b=_literal(b), c=re.escape(a[:1]))
    df = a3s_nb.search(query, shared_store, regex=True)
    assert rows(df) == expected(shared_store, query, regex=True)
    docs = [
        (sid, d)
        for sid in IDS
        for d in _searchindex.documents(a3s_nb.FileStore(shared_store).load(sid))
    ]
    by_re = {(sid, d[1], d[2]) for sid, d in docs if re.search(query, d[-1])}
    assert {(r[0], r[2]) for r in brute(shared_store, query, regex=True)} == {
        (s, m) for s, m, _ in by_re
    }


def test_the_prefilter_is_used_for_regexes_with_literals(shared_store):
    assert textsearch.Matcher(r"Failed to\s+\w+", regex=True).grams() == ["fai", "led", " to"]
    assert textsearch.Matcher(r"(?i)Failed", regex=True).grams() is None
    assert textsearch.Matcher(r"ab|cd", regex=True).grams() is None


def test_where_narrows_the_kinds(shared_store):
    df = a3s_nb.search("ok", shared_store, where=["tool_output"])
    assert len(df) > 0 and set(df["kind"]) == {"tool_output"}
    assert rows(df) == expected(shared_store, "ok", where="tool_output")
    assert len(a3s_nb.search("ok", shared_store, limit=2)) == 2


# ============================================================================ bad input


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"query": "a(b", "regex": True}, r"'a\(b' is not a valid regular expression: missing \)"),
        ({"query": ""}, "the query is empty"),
        ({"query": "x", "where": "tool_outputs"}, "did you mean 'tool_output'"),
        ({"query": "x", "limit": -1}, "limit must be"),
    ],
)
def test_bad_input_is_a_clear_error_and_nothing_is_written(fixture_dir, kw, message):
    query = kw.pop("query")
    with pytest.raises(SearchQueryError, match=message) as err:
        a3s_nb.search(query, fixture_dir, **kw)
    assert isinstance(err.value, ValueError)
    assert not (fixture_dir / ".a3s_nb").exists()


def test_fts_syntax_in_a_query_is_plain_text(fixture_dir):
    add_message(fixture_dir, IDS[0], 'he said "a AND ( NOT b* OR c:"')
    for query in ['"a AND (', "NOT b*", "OR c:", '"']:
        df = a3s_nb.search(query, fixture_dir)
        assert IDS[0] in set(df["session_id"]), query
        assert rows(df) == expected(fixture_dir, query)


# ============================================================================ up to date


def clone(root: Path, src: str, new: str) -> None:
    """A copy of session ``src`` under the id ``new``, as a save would write it."""
    for part in ("", "runs/", "traces/", "verification/"):
        path = root / f"{part}{src}.json"
        if path.exists():
            (root / f"{part}{new}.json").write_text(path.read_text().replace(src, new))


def test_a_new_session_costs_that_session_only(fixture_dir, no_racy_window, monkeypatch):
    a3s_nb.search("warm", fixture_dir)
    read = []
    real = _searchindex.SearchIndex._docs_of
    monkeypatch.setattr(
        _searchindex.SearchIndex, "_docs_of", lambda self, sid: read.append(sid) or real(self, sid)
    )
    a3s_nb.search("warm", fixture_dir)
    assert read == []  # unchanged store: nothing read
    clone(fixture_dir, IDS[1], "brand-new")
    add_message(fixture_dir, "brand-new", "zebracorn appears")
    df = a3s_nb.search("zebracorn", fixture_dir)
    assert read == ["brand-new"]
    assert list(df["session_id"]) == ["brand-new"]


def _written(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements every index connection runs from now on, values filled in."""
    statements: list[str] = []
    real = _searchindex._connect

    def traced(path: Path) -> sqlite3.Connection:
        conn = real(path)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(_searchindex, "_connect", traced)
    return statements


@pytest.mark.parametrize("others", [0, 24])
def test_what_a_new_session_writes_does_not_grow_with_the_store(
    fixture_dir, no_racy_window, monkeypatch, others
):
    # what the index writes besides the new session's own rows (its texts, their pieces)
    # is the same in a store of 8 sessions as in one of 32: no record is rewritten whole
    for n in range(others):
        clone(fixture_dir, IDS[n % len(IDS)], f"other-{n:03d}")
    a3s_nb.search("warm", fixture_dir)
    clone(fixture_dir, IDS[1], "brand-new")
    statements = _written(monkeypatch)
    a3s_nb.search("warm", fixture_dir)
    writes = [
        s
        for s in statements
        if s.split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE")
        and not s.startswith(("INSERT INTO docs", "INSERT INTO ft"))
    ]
    assert writes, statements
    assert sum(map(len, writes)) < 600, [w[:60] for w in writes]


def test_a_session_that_grew_adds_only_its_new_text(fixture_dir, no_racy_window, monkeypatch):
    a3s_nb.search("warm", fixture_dir)
    add_message(fixture_dir, IDS[2], "one more ocelot")
    statements = _written(monkeypatch)
    assert list(a3s_nb.search("ocelot", fixture_dir)["session_id"]) == [IDS[2]]
    changed = [s for s in statements if s.startswith(("INSERT INTO docs", "DELETE FROM docs"))]
    assert len(changed) == 1 and "one more ocelot" in changed[0], changed
    assert rows(a3s_nb.search("e", fixture_dir)) == expected(fixture_dir, "e")


def test_a_session_rewritten_in_place_is_found_as_it_is_now(fixture_dir, no_racy_window):
    add_message(fixture_dir, IDS[2], "first quokka words")
    assert len(a3s_nb.search("quokka", fixture_dir)) == 1
    path = fixture_dir / f"{IDS[2]}.json"
    doc = json.loads(path.read_text())
    doc["messages"][-1]["content"][0]["text"] = "second wombat words"
    path.write_text(json.dumps(doc))
    assert len(a3s_nb.search("quokka", fixture_dir)) == 0
    assert len(a3s_nb.search("wombat", fixture_dir)) == 1
    assert b"quokka" not in index_file(fixture_dir).read_bytes()


def test_a_deleted_session_leaves_no_text_in_the_index_file(fixture_dir, no_racy_window):
    # a character no other text has: its bytes in the file would be the deleted text or
    # the FTS index's pieces of it (terms are stored prefix-compressed, so a piece of
    # plain ASCII could hide in its neighbours)
    marker = "xylophoneǂǂǂmark"
    add_message(fixture_dir, IDS[3], f"the {marker} sentence")
    assert list(a3s_nb.search(marker, fixture_dir)["session_id"]) == [IDS[3]]
    assert "ǂ".encode() in index_file(fixture_dir).read_bytes()
    a3s_nb.FileStore(fixture_dir).delete(IDS[3])
    assert a3s_nb.search(marker, fixture_dir).empty
    data = index_file(fixture_dir).read_bytes()
    assert "ǂ".encode() not in data
    assert b"xylophone" not in data


def test_the_v1_layout_and_a_move_into_it_are_followed(tmp_path, no_racy_window):
    root = build_v1_store(tmp_path / "v1store", sealed=False)
    for q in ("ok", "Failed to", "bash"):
        assert rows(a3s_nb.search(q, root)) == expected(root, q)
    # a flat session moved into v1 by the SDK, with a new text
    sid = IDS[-1]
    parts = {
        "session": json.loads((root / f"{sid}.json").read_text()),
        "runs": json.loads((root / "runs" / f"{sid}.json").read_text()),
    }
    parts["session"]["messages"].append(
        {"role": "assistant", "content": [{"type": "text", "text": "moved narwhal"}]}
    )
    remove_flat(root, sid)
    write(v1_path(root, sid), parts["session"])
    write(v1_path(root, sid, "runs"), parts["runs"])
    df = a3s_nb.search("narwhal", root)
    assert list(df["session_id"]) == [sid]
    assert rows(a3s_nb.search("ok", root)) == expected(root, "ok")


def test_a_session_load_rejects_is_left_out_and_reported(fixture_dir, no_racy_window):
    a3s_nb.search("ok", fixture_dir)
    path = fixture_dir / f"{IDS[4]}.json"
    doc = json.loads(path.read_text())
    doc["id"] = "someone-else"
    path.write_text(json.dumps(doc))
    with pytest.warns(a3s_nb.CorruptSessionWarning):
        df = a3s_nb.search("e", fixture_dir)
    assert IDS[4] not in set(df["session_id"])
    assert [e["session_id"] for e in df.attrs["errors"]] == [IDS[4]]
    assert rows(df) == expected(fixture_dir, "e")


# ============================================================================ the build


def test_the_build_reads_each_session_once_without_validating_its_run_events(
    fixture_dir, monkeypatch
):
    from a3s_nb.store.store import FileStore

    loads, runs = [], []
    real_load, real_validate = FileStore.load, FileStore._validate
    monkeypatch.setattr(
        FileStore, "load", lambda self, sid: loads.append(sid) or real_load(self, sid)
    )
    monkeypatch.setattr(
        FileStore,
        "_validate",
        lambda self, key, part, text: (
            (part != "runs" or not runs.append(key)) and real_validate(self, key, part, text)
        ),
    )
    assert rows(a3s_nb.search("ok", fixture_dir)) == expected(fixture_dir, "ok")
    assert loads[: -len(IDS)] == []  # (``expected`` loads every session once, last)
    assert runs[: -len(IDS)] == []


def test_the_build_reads_sessions_under_a_lock_taken_once_per_chunk(fixture_dir, monkeypatch):
    from a3s_nb.store import store as store_mod

    held, real = [], _searchindex.SearchIndex._docs_of

    def docs_of(self, sid):
        lock = store_mod._held_locks().get(str(self.store.path))
        held.append(None if lock is None else id(lock))
        return real(self, sid)

    monkeypatch.setattr(_searchindex.SearchIndex, "_docs_of", docs_of)
    monkeypatch.setattr(_loadcheck, "LOCK_BATCH", 3)
    a3s_nb.search("ok", fixture_dir)
    # already held when a session is read, the same taking for each run of 3 sessions
    assert len(held) == len(IDS) and None not in held
    assert [len(set(held[i : i + 3])) for i in range(0, len(IDS), 3)] == [1, 1, 1]


def _documents_both_ways(root: Path) -> None:
    store = a3s_nb.FileStore(root)
    for sid in store.list():
        bundle = _searchindex.searchable(store, sid)
        assert bundle is not None
        assert _searchindex.documents(bundle) == _searchindex.documents(store.load(sid)), sid


def test_the_texts_read_for_the_index_are_those_of_a_load(tmp_path):
    root = tmp_path / "store"
    shutil.copytree(FIXTURE_STORE, root)
    runs = json.loads((root / "runs" / f"{IDS[0]}.json").read_text())
    # read without the models: a planned run (a prompt per step) and a failed one
    planned = json.loads(json.dumps(runs[0]))
    planned["snapshot"]["created_at_ms"] += 1
    planned["events"][:0] = [
        {"sequence": 0, "timestamp_ms": 1, "event": {"type": "planning_start", "prompt": "p"}},
        {
            "sequence": 0,
            "timestamp_ms": 1,
            "event": {
                "type": "step_start",
                "step_id": "s1",
                "description": "d",
                "step_number": 1,
                "total_steps": 2,
            },
        },
        {
            "sequence": 0,
            "timestamp_ms": 1,
            "event": {
                "type": "step_start",
                "step_id": "s2",
                "description": "d",
                "step_number": 2,
                "total_steps": 2,
            },
        },
    ]
    failed = json.loads(json.dumps(runs[0]))
    failed["snapshot"].update(status="failed", created_at_ms=0)
    (root / "runs" / f"{IDS[0]}.json").write_text(json.dumps([failed, *runs, planned]))
    assert _searchindex._runs_view((root / "runs" / f"{IDS[0]}.json").read_text()) is not None
    # validated with the models: a time the models take as a float, event envelopes
    loose = json.loads((root / "runs" / f"{IDS[1]}.json").read_text())
    loose[0]["snapshot"]["created_at_ms"] = float(loose[0]["snapshot"]["created_at_ms"])
    (root / "runs" / f"{IDS[1]}.json").write_text(json.dumps(loose))
    assert _searchindex._runs_view((root / "runs" / f"{IDS[1]}.json").read_text()) is None
    from a3s_nb.store import _envelope

    enveloped = json.loads((root / "runs" / f"{IDS[2]}.json").read_text())
    for run in enveloped:
        snap = run["snapshot"]
        run["events"] = [
            _envelope.envelope_of(r, snap["id"], snap["session_id"]) for r in run["events"]
        ]
    (root / "runs" / f"{IDS[2]}.json").write_text(json.dumps(enveloped))
    assert _searchindex._runs_view((root / "runs" / f"{IDS[2]}.json").read_text()) is None
    _documents_both_ways(root)
    assert rows(a3s_nb.search("e", root)) == expected(root, "e")


def test_the_texts_read_for_the_index_in_the_v1_layout_are_those_of_a_load(tmp_path):
    _documents_both_ways(build_v1_store(tmp_path / "v1store", sealed=False))


# ============================================================================ the file


def test_a_link_in_place_of_the_index_is_never_followed(fixture_dir, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    meta = fixture_dir / ".a3s_nb"
    meta.mkdir()
    os.symlink(outside, meta / _searchindex.INDEX_FILE)
    os.symlink(tmp_path / "planted", meta / f"{_searchindex.INDEX_FILE}-journal")
    assert rows(a3s_nb.search("ok", fixture_dir)) == expected(fixture_dir, "ok")
    assert outside.read_text() == "keep me"
    assert not (tmp_path / "planted").exists()
    assert not os.path.islink(meta / _searchindex.INDEX_FILE)
    assert not os.path.lexists(meta / f"{_searchindex.INDEX_FILE}-journal")


def test_a_linked_meta_folder_is_not_written_into(fixture_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (fixture_dir / ".a3s_nb").symlink_to(elsewhere)
    assert rows(a3s_nb.search("ok", fixture_dir)) == expected(fixture_dir, "ok")
    assert not (elsewhere / _searchindex.INDEX_FILE).exists()


def test_an_update_cut_short_is_rebuilt_not_trusted(fixture_dir, no_racy_window):
    a3s_nb.search("ok", fixture_dir)
    with sqlite3.connect(index_file(fixture_dir)) as conn:  # as if a process died mid-update
        conn.execute("UPDATE meta SET value = 'dirty' WHERE key = 'state'")
        conn.execute("DELETE FROM docs")
    assert rows(a3s_nb.search("ok", fixture_dir)) == expected(fixture_dir, "ok")


def test_a_damaged_index_is_rebuilt(fixture_dir):
    meta = fixture_dir / ".a3s_nb"
    meta.mkdir()
    index_file(fixture_dir).write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    assert rows(a3s_nb.search("ok", fixture_dir)) == expected(fixture_dir, "ok")


# ============================================================================ faces


def test_list_sessions_contains_matches_content_as_well_as_ids(fixture_dir):
    add_message(fixture_dir, IDS[5], "only here: Pangolin")
    assert list(a3s_nb.list_sessions(fixture_dir, contains="pangolin")["session_id"]) == [IDS[5]]
    assert list(a3s_nb.list_sessions(fixture_dir, contains=IDS[6][:12])["session_id"]) == [IDS[6]]


def test_magic_sessions_contains_matches_content(ip, fixture_dir):
    from .test_magics import run

    add_message(fixture_dir, IDS[5], "only here: Pangolin")
    df, _ = run(ip, "a3s_sessions", f"--store {fixture_dir} --contains pangolin")
    assert list(df["session_id"]) == [IDS[5]]


def test_magic_search_shows_hits_that_open_their_prompt(ip, fixture_dir):
    from .test_magics import run

    view, _ = run(ip, "a3s_search", f"failed to --in tool_output --store {fixture_dir}")
    shown = view._repr_mimebundle_()["text/plain"]
    hits = a3s_nb.search("failed to", fixture_dir, where="tool_output")
    assert len(view.rows) == len(hits) > 0
    first = hits.iloc[0]
    assert shown.splitlines()[0] == (
        f"SearchResults(query='failed to', store={str(fixture_dir)!r}, hits={len(hits)}, "
        f"sessions={hits['session_id'].nunique()})"
    )
    assert shown.splitlines()[1].startswith(f"  {first['session_id']}  prompt {first['prompt']}")
    view.rows[0].click()
    transcript = view.transcript.children[0]
    assert transcript.session_id == first["session_id"]
    messages = a3s_nb.FileStore(fixture_dir).load(first["session_id"]).session.messages
    from a3s_nb.lab.lineage import prompts

    start, end = prompts(first["session_id"], store=a3s_nb.FileStore(fixture_dir))[
        first["prompt"] - 1
    ].messages
    assert transcript.bundle.session.messages == messages[start:end]
    assert "Failed to read file" in transcript.to_html()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("'a(' --regex", "not a valid regular expression"),
        ("x --in tool", "did you mean 'tool_args'"),
    ],
)
def test_magic_search_bad_input_is_a_usage_error(ip, fixture_dir, line, message):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        ip.run_line_magic("a3s_search", f"{line} --store {fixture_dir}")
    assert not (fixture_dir / ".a3s_nb").exists()


def test_cli_search_prints_hits_and_exits_2_on_bad_input(fixture_dir, capsys):
    from a3s_nb import cli

    assert (
        cli.main(["search", "failed to", "--in", "tool_output", "--store", str(fixture_dir)]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    hits = a3s_nb.search("failed to", fixture_dir, where="tool_output")
    assert out == [textsearch.hit_line(h) for h in hits.itertuples(index=False)]
    assert cli.main(["search", "a(", "--regex", "--store", str(fixture_dir)]) == 2
    assert "not a valid regular expression" in capsys.readouterr().err
