"""The load check's quick proof (``a3s_nb.frames._fastcheck``) against ``Store.load()`` itself.

``accepts`` may answer True only for a session ``load()`` accepts; the load check's
verdict (``_loadcheck._check``: the quick proof, else ``load()``) must be ``load()``'s on
every file: the real fixture sessions, every bad file of tests/test_store_badfiles.py,
the unknown fields of tests/test_roundtrip_property.py, and fixture files mutated at a
random place in every way a file can go wrong.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import a3s_nb
from a3s_nb.frames import _fastcheck, _loadcheck
from a3s_nb.store import models
from tests import test_store_badfiles as badfiles
from tests.conftest import FIXTURE_STORE, SESSION_FILES
from tests.test_roundtrip_property import extras, json_values

pytestmark = pytest.mark.skipif(_fastcheck.CLASSES is None, reason="needs msgspec")

FIXTURE_IDS = sorted(p.stem for p in FIXTURE_STORE.glob("*.json"))


def load_verdict(store: Any, sid: str) -> dict[str, str] | None:
    """``_check`` as it is without the quick proof: ``load()`` alone."""
    with mock.patch.object(_fastcheck, "accepts", lambda *_: False):
        return _loadcheck._check(store, sid)


def assert_same_verdict(store: Any, sid: str) -> bool:
    """The quick proof never says yes to what load() refuses; the check's verdict is
    load()'s. Returns whether the quick proof decided."""
    strict = load_verdict(store, sid)
    fast = _fastcheck.accepts(store, sid)
    if fast:
        assert strict is None, f"accepted what load() refuses: {strict}"
    assert _loadcheck._check(store, sid) == strict
    return fast


# ============================================================================ real sessions


def test_every_fixture_session_is_proved_valid_without_load(fixture_dir):
    store = a3s_nb.FileStore(fixture_dir)
    assert store.list() == FIXTURE_IDS
    for sid in FIXTURE_IDS:
        assert _fastcheck.accepts(store, sid), sid
        assert assert_same_verdict(store, sid)


def test_the_decoded_mirror_values_are_not_tracked_by_the_cycle_collector():
    """A checked file's value is a tree of mirror instances dropped at once: none of them
    is tracked by the garbage collector (which only costs time on millions of events)."""
    import gc

    decode = _fastcheck._DECODERS["runs"]
    runs = decode((FIXTURE_STORE / "runs" / f"{FIXTURE_IDS[0]}.json").read_bytes())
    assert runs and runs[0].events
    for value in (runs[0], runs[0].snapshot, runs[0].events[0], runs[0].events[0].event):
        assert not gc.is_tracked(value), type(value).__name__
    assert all(not c.__struct_config__.gc for c in _fastcheck.CLASSES.values())


def test_a_memory_store_is_proved_the_same_way(fixture_dir):
    disk = a3s_nb.FileStore(fixture_dir)
    mem = a3s_nb.MemoryStore()
    for sid in FIXTURE_IDS:
        mem.save(disk.load(sid))
        assert assert_same_verdict(mem, sid)


def test_the_load_check_loads_no_valid_fixture_session(fixture_dir, monkeypatch):
    loads: list[str] = []
    real = a3s_nb.FileStore.load
    monkeypatch.setattr(
        a3s_nb.FileStore, "load", lambda self, sid: loads.append(sid) or real(self, sid)
    )
    frames = a3s_nb.all_frames(fixture_dir, progress=False)
    assert loads == []
    assert sorted(frames["sessions"]["session_id"]) == FIXTURE_IDS


def test_a_cold_check_takes_the_store_lock_once_per_batch(fixture_dir, lock_takings):
    # each load() reuses the shared lock its batch holds instead of taking it again
    check = _loadcheck.LoadCheck(a3s_nb.FileStore(fixture_dir))
    assert check.rejected(FIXTURE_IDS) == {}
    assert lock_takings == [True] * math.ceil(len(FIXTURE_IDS) / 3)


@pytest.mark.parametrize("folder", ["plain", "br{ace}s {0}"])
def test_load_reads_the_files_pathlib_names(tmp_path, folder):
    # the session files' names are formatted from templates, not built with pathlib
    root = tmp_path / folder
    shutil.copytree(FIXTURE_STORE, root)
    store = a3s_nb.FileStore(root)
    odd = ["abc", "a/b", "a..b", "x{}y", "{0}", ".", "..", "...", "a\\b", " ", "é", ""]
    for sid in odd:
        for part in _loadcheck.PARTS:
            assert store._file_name(sid, part) == str(store._file(sid, part)), (sid, part)
    for sid in FIXTURE_IDS:
        assert store.load(sid).session.id == sid
        assert _loadcheck._check(store, sid) is None


def test_a_rejected_session_is_still_loaded_for_its_message(fixture_dir):
    badfiles._bad_session_huge_int(fixture_dir)
    with pytest.warns(a3s_nb.CorruptSessionWarning, match=badfiles.VICTIM):
        frames = a3s_nb.all_frames(fixture_dir, progress=False)
    (err,) = frames["runs"].attrs["errors"]
    assert err["session_id"] == badfiles.VICTIM and "integer too long" in err["problem"]


def test_the_mirror_names_every_field_and_event_type_of_the_models():
    """A field the models gain is refused by the mirror until it is described there (still
    correct, only slower); this keeps the two in step."""
    classes = _fastcheck.CLASSES
    assert classes is not None
    for name, model in vars(models).items():
        if not (isinstance(model, type) and issubclass(model, models.A3sModel)):
            continue
        if model in (models.A3sModel, models.AgentEvent, models.UnknownEvent, models.OtherBlock):
            continue
        if name in ("LoopCheckpoint", "WorkflowCheckpoint", "StepOutcome", "WorkflowStep"):
            continue  # checkpoints: not a part of a session that load() reads
        mirror = classes[name]
        expected: set[str] = set()
        for field, info in model.model_fields.items():
            expected.add(field)  # populate_by_name: the field's own name is read too
            if isinstance(info.alias, str):
                expected.add(info.alias)
            if isinstance(info.validation_alias, models.AliasChoices):
                expected.update(c for c in info.validation_alias.choices if isinstance(c, str))
        expected.discard("type")  # the tag of events and blocks
        got = set(mirror.__struct_fields__) - {"type"}
        assert got == expected, name
    tags = {
        c.__struct_config__.tag
        for n, c in classes.items()
        if n not in ("Ev", "Block")  # the bases of the tagged classes
        and isinstance(c.__struct_config__.tag, str)
        and c.__struct_config__.tag_field == "type"
    }
    assert set(models._EVENT_TYPES) | models._BLOCK_TAGS == tags


# ============================================================================ bad files


BAD_FILES = [
    badfiles._bad_session_deep,
    badfiles._bad_session_huge_int,
    badfiles._bad_runs_deep,
    badfiles._bad_run_event_huge_int,
    badfiles._bad_traces_dir,
    badfiles._bad_artifacts_dangling,
    badfiles._bad_session_self_link,
    badfiles._bad_session_fifo,
]


@pytest.mark.parametrize("make", BAD_FILES, ids=lambda f: f.__name__)
def test_every_bad_file_gets_loads_verdict(fixture_dir, make):
    make(fixture_dir)
    store = a3s_nb.FileStore(fixture_dir)
    assert load_verdict(store, badfiles.VICTIM) is not None
    assert not assert_same_verdict(store, badfiles.VICTIM)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  \n",
        "{",
        "null",
        "[]",
        '{"id": "fix-oscar-2-000"}',
        '\ufeff{"id": "x"}',
        '{"id": "another-session", "config": {"workspace": "/w"}}',
    ],
)
def test_a_session_document_of_the_wrong_shape_gets_loads_verdict(fixture_dir, text):
    (fixture_dir / f"{badfiles.VICTIM}.json").write_text(text)
    store = a3s_nb.FileStore(fixture_dir)
    assert not assert_same_verdict(store, badfiles.VICTIM)


# ============================================================================ mutations


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fastcheck") / "store"
    shutil.copytree(FIXTURE_STORE, root)
    return root


@contextlib.contextmanager
def rewritten(path: Path, text: str) -> Iterator[None]:
    old = path.read_bytes()
    path.write_text(text, encoding="utf-8")
    try:
        yield
    finally:
        path.write_bytes(old)


def _paths(value: Any, at: tuple = ()) -> Iterator[tuple]:
    """The path of every value in a JSON document (the document itself first)."""
    yield at
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*at, i))


def _get(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


RAW = "\x00RAW{}\x00"  # a placeholder for JSON text json.dumps cannot write


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


#: Replacement values: JSON values, or ``RAW`` texts for what json.dumps cannot write.
WRONG_VALUES = (
    st.sampled_from(
        [
            None,
            True,
            False,
            0,
            1,
            -1,
            2**63 - 1,
            2**63,
            2**64,
            -(2**63) - 1,
            10**30,
            10**400,
            1.0,
            1.5,
            -0.0,
            1e308,
            "",
            "1",
            "true",
            "zzz-unknown",
            "null",
            [],
            [1, "a"],
            {},
            {"type": "zzz"},
            {"nested": {"junk": [1, [2, [3, {"x": None}]]]}},
        ]
        + [RAW.format(t) for t in ("1e400", "-1e400", "1E2", "1.0e0", "NaN", "Infinity")]
        + [RAW.format(_deep(d)) for d in (5, 6, 7, 8, 50, 190, 199, 200, 201, 250)]
        + [RAW.format('"\\ud800"'), RAW.format('"\\udc00x"'), RAW.format('"\\u0000"')]
    )
    | json_values
)


def _dump(doc: Any) -> str:
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    # a placeholder string went through json.dumps as "\u0000RAW...\u0000"
    return text.replace('"\\u0000RAW', "").replace('\\u0000"', "")


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, str]:
    """``(session id, part, text)``: one fixture file changed at one place."""
    sid = draw(st.sampled_from(FIXTURE_IDS))
    part = draw(st.sampled_from(sorted(SESSION_FILES)))
    path = FIXTURE_STORE / SESSION_FILES[part].format(id=sid)
    doc = json.loads(path.read_text(encoding="utf-8"))
    where = draw(st.sampled_from(list(_paths(doc))))
    kind = draw(
        st.sampled_from(
            [
                "replace",
                "drop",
                "add key",
                "alias key",
                "duplicate key",
                "wrap",
                "empty container",
                "change tag",
            ]
        )
    )
    target = _get(doc, where)
    if kind == "replace" or not where:
        value = draw(WRONG_VALUES)
        if not where:
            return sid, part, _dump(value)
        _get(doc, where[:-1])[where[-1]] = value
    elif kind == "drop":
        parent = _get(doc, where[:-1])
        del parent[where[-1]]
    elif kind == "add key":
        obj = target if isinstance(target, dict) else _get(doc, where[:-1])
        if isinstance(obj, dict):
            obj.update(draw(extras | st.fixed_dictionaries({"deep": WRONG_VALUES})))
    elif kind == "alias key":
        obj = target if isinstance(target, dict) else _get(doc, where[:-1])
        if isinstance(obj, dict):
            name = draw(st.sampled_from(["schema_", "schema", "todos", "description", "type"]))
            obj[name] = draw(WRONG_VALUES)
    elif kind == "duplicate key":
        obj = target if isinstance(target, dict) else _get(doc, where[:-1])
        if isinstance(obj, dict) and obj:
            key = draw(st.sampled_from(sorted(obj)))
            bad = f"{json.dumps(key)}: {_dump(draw(WRONG_VALUES))}"
            good = f"{json.dumps(key)}: {json.dumps(obj[key])}"
            obj[key] = marker = "\x00DUP\x00"
            # the same key written twice, the bad value first or last
            pair = f"{bad}, {good}" if draw(st.booleans()) else f"{good}, {bad}"
            return sid, part, _dump(doc).replace(f"{json.dumps(key)}: {json.dumps(marker)}", pair)
    elif kind == "wrap":
        _get(doc, where[:-1])[where[-1]] = draw(st.sampled_from([[target], {"v": target}]))
    elif kind == "empty container":
        if isinstance(target, (list, dict)) and where:
            _get(doc, where[:-1])[where[-1]] = type(target)()
    elif kind == "change tag":
        obj = target if isinstance(target, dict) else _get(doc, where[:-1])
        if isinstance(obj, dict) and "type" in obj:
            tags = sorted(models._EVENT_TYPES) + sorted(models._BLOCK_TAGS)
            obj["type"] = draw(st.sampled_from([*tags, "zzz_unknown", "Text", 1, None]))
    return sid, part, _dump(doc)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=mutated())
def test_a_mutated_fixture_file_gets_loads_verdict(scratch, case):
    sid, part, text = case
    path = scratch / SESSION_FILES[part].format(id=sid)
    with rewritten(path, text):
        assert_same_verdict(a3s_nb.FileStore(scratch), sid)


def test_the_mutations_reach_both_answers(scratch):
    """The property above is not vacuous: among mutations, the quick proof says yes to
    some and leaves others to load(), which refuses some of them."""
    seen = {"proved": 0, "refused": 0}

    @settings(max_examples=150, deadline=None, database=None)
    @given(case=mutated())
    def run(case):
        sid, part, text = case
        path = scratch / SESSION_FILES[part].format(id=sid)
        with rewritten(path, text):
            store = a3s_nb.FileStore(scratch)
            seen["proved"] += assert_same_verdict(store, sid)
            seen["refused"] += load_verdict(store, sid) is not None

    run()
    assert seen["proved"] > 0 and seen["refused"] > 0, seen


@pytest.mark.parametrize(
    ("part", "edit"),
    [
        # numbers pydantic takes in lax mode: load() decides
        ("runs", lambda d: d[0]["snapshot"].__setitem__("created_at_ms", 1.0)),
        ("runs", lambda d: d[0]["snapshot"].__setitem__("created_at_ms", "123")),
        ("runs", lambda d: d[0]["snapshot"].__setitem__("created_at_ms", 10**30)),
        ("traces", lambda d: d[0].__setitem__("success", 1)),
        ("session", lambda d: d.__setitem__("total_cost", math.pi)),
        # an event or block type this version does not know: kept by load()
        ("runs", lambda d: d[0]["events"][0]["event"].__setitem__("type", "future_event")),
        # the other spelling of an aliased field
        ("session", lambda d: d.__setitem__("todos", [{"id": 1}])),
        ("traces", lambda d: d[0].__setitem__("schema_", 5)),
        ("session", lambda d: d.__setitem__("context_usage", None)),
    ],
)
def test_pinned_edge_cases_get_loads_verdict(fixture_dir, part, edit):
    path = fixture_dir / SESSION_FILES[part].format(id=badfiles.VICTIM)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    assert_same_verdict(a3s_nb.FileStore(fixture_dir), badfiles.VICTIM)


def _schema_paths() -> dict[tuple[str, tuple], tuple[str, tuple]]:
    """Every place a value sits in the fixture files, list positions folded
    (``(part, ("messages", "*", "content", "*", "type"))``), with one real place of it (in
    the smallest file that has it)."""
    out: dict[tuple[str, tuple], tuple[str, tuple]] = {}
    for part, pattern in SESSION_FILES.items():
        files = {sid: FIXTURE_STORE / pattern.format(id=sid) for sid in FIXTURE_IDS}
        for sid in sorted(files, key=lambda s: files[s].stat().st_size):  # smallest first
            doc = json.loads(files[sid].read_text())
            for path in _paths(doc):
                folded = tuple("*" if isinstance(p, int) else p for p in path)
                out.setdefault((part, folded), (sid, path))
    return out


EVERYWHERE = [
    None,
    "zzz_unknown",
    1.5,
    True,
    2**64,
    -(2**63) - 1,
    {},
    [],
    RAW.format(_deep(201)),
    RAW.format("1e400"),
    RAW.format('"\\ud800"'),
]


def test_every_place_of_every_fixture_file_with_every_wrong_value():
    """Exhaustive over the places values sit in real files (hypothesis above samples
    places): each replaced by each wrong value, or dropped, part by part, the quick
    decode accepts only what the models accept."""
    from a3s_nb.store.store import _ADAPTERS

    docs: dict[tuple[str, str], Any] = {}
    checked = proved = 0
    for (part, _folded), (sid, path) in _schema_paths().items():
        if not path:
            continue
        if (sid, part) not in docs:
            docs[sid, part] = (FIXTURE_STORE / SESSION_FILES[part].format(id=sid)).read_text()
        for value in [*EVERYWHERE, "drop"]:
            doc = json.loads(docs[sid, part])
            parent = _get(doc, path[:-1])
            if value == "drop":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            text = _dump(doc)
            try:
                _fastcheck._DECODERS[part](text)  # type: ignore[index]
            except Exception:
                fast = False
            else:
                fast = True
            if fast:
                _ADAPTERS[part].validate_json(text)  # raises if the models refuse it
                proved += 1
            checked += 1
    assert checked > 1000 and proved > 0, (checked, proved)
