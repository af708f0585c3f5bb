"""The contract every store backend keeps. New backends join the ``store`` fixture."""

from __future__ import annotations

import pytest

import a3s_nb
from a3s_nb.store.models import (
    LlmConfigData,
    LoopCheckpoint,
    Message,
    RunRecord,
    RunSnapshot,
    SessionBundle,
    SessionConfig,
    SessionData,
    StepOutcome,
    TextBlock,
    TokenUsage,
    TraceEvent,
    WorkflowCheckpoint,
    WorkflowStep,
)


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path) -> a3s_nb.Store:
    if request.param == "file":
        return a3s_nb.open_store(tmp_path / "s")
    return a3s_nb.open_store(":memory:")


def make_bundle(session_id: str = "s-1", n: int = 1) -> SessionBundle:
    messages = [
        Message(role="user" if i % 2 == 0 else "assistant", content=[TextBlock(text=f"m{i}")])
        for i in range(n)
    ]
    runs = [
        RunRecord(
            snapshot=RunSnapshot(
                id=f"run-{i}",
                session_id=session_id,
                status="completed",
                prompt=f"p{i}",
                created_at_ms=1_700_000_000_000 + i,
                updated_at_ms=1_700_000_000_010 + i,
                result_text="ok",
                event_count=0,
            )
        )
        for i in range(n)
    ]
    traces = [
        TraceEvent(
            kind="tool_execution",
            name="bash",
            success=True,
            exit_code=0,
            duration_ms=3,
            output_bytes=10,
        )
    ]
    session = SessionData(
        id=session_id,
        config=SessionConfig(workspace="/w"),
        messages=messages,
        model_name="openai/m",
        llm_config=LlmConfigData(provider="openai", model="m", api_key="sk-secret-never-written"),
        created_at=1_700_000_000,
        updated_at=1_700_000_100,
    )
    return SessionBundle(session=session, runs=runs, traces=traces)


def test_save_then_load_gives_equal_models(store):
    bundle = make_bundle(n=3)
    store.save(bundle)
    loaded = store.load("s-1")
    assert loaded.session.model_dump() == bundle.session.model_dump()
    assert loaded.runs == bundle.runs
    assert loaded.traces == bundle.traces
    assert loaded.subagent_tasks is None


def test_save_writes_timestamps_as_given(store):
    store.save(make_bundle())
    s = store.load("s-1").session
    assert (s.created_at, s.updated_at) == (1_700_000_000, 1_700_000_100)


def test_api_key_is_never_written(store):
    store.save(make_bundle())
    assert "sk-secret-never-written" not in str(store.read_raw("s-1", "session"))
    assert store.load("s-1").session.llm_config.api_key is None


def test_list_exists_delete(store):
    assert store.list() == []
    for sid in ["b", "a", "c"]:
        store.save(make_bundle(sid))
    assert store.list() == ["a", "b", "c"]
    assert store.exists("b") and not store.exists("zz")
    store.delete("b")
    assert store.list() == ["a", "c"]
    assert not store.exists("b")
    assert store.read_raw("b", "runs") is None
    with pytest.raises(a3s_nb.SessionNotFoundError):
        store.delete("b")


def test_saving_again_replaces(store):
    store.save(make_bundle(n=1))
    store.save(make_bundle(n=4))
    loaded = store.load("s-1")
    assert len(loaded.session.messages) == 4
    assert len(loaded.runs) == 4
    assert store.list() == ["s-1"]


def test_unknown_id_suggests_close_ones(store):
    store.save(make_bundle("fix-oscar-000"))
    with pytest.raises(a3s_nb.SessionNotFoundError, match="did you mean 'fix-oscar-000'") as e:
        store.load("fix-oscar-00")
    assert isinstance(e.value, KeyError)
    assert str(e.value).startswith("no session 'fix-oscar-00'")


def test_resolve_prefix(store):
    for sid in ["abc-1", "abd-2", "xyz"]:
        store.save(make_bundle(sid))
    assert store.resolve("x") == "xyz"
    assert store.resolve("abc") == "abc-1"
    assert store.resolve("abd-2") == "abd-2"
    with pytest.raises(a3s_nb.AmbiguousSessionIdError, match="abc-1, abd-2") as e:
        store.resolve("ab")
    assert e.value.candidates == ["abc-1", "abd-2"]
    with pytest.raises(a3s_nb.SessionNotFoundError):
        store.resolve("q")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/b",
        "a\\b",
        "..",
        "a..b",
        "../etc/passwd",
        "a\nb",
        "a\x00b",
        ".hidden",
        " pad",
        "x" * 201,
    ],
)
def test_unsafe_ids_are_refused(store, bad):
    with pytest.raises(a3s_nb.InvalidSessionIdError):
        store.save(make_bundle(bad))
    assert store.list() == []


def test_run_of_another_session_is_refused_and_nothing_written(store):
    bundle = make_bundle()
    bundle.runs[0].snapshot.session_id = "other"
    with pytest.raises(a3s_nb.InvalidBundleError, match="belongs to session 'other'"):
        store.save(bundle)
    assert store.list() == []


def test_unknown_fields_survive(store):
    bundle = make_bundle()
    data = bundle.model_dump(mode="json", by_alias=True)
    data["session"]["from_the_future"] = {"x": [1, 2]}
    data["session"]["messages"][0]["content"][0]["trust"] = "external"
    data["session"]["messages"].append({"role": "user", "content": [{"type": "hologram", "z": 1}]})
    data["runs"][0]["events"] = [
        {"sequence": 0, "timestamp_ms": 5, "event": {"type": "warp_drive", "speed": 9}},
        {"sequence": 1, "timestamp_ms": 6, "event": {"type": "turn_start", "turn": 1, "new": True}},
    ]
    store.save(SessionBundle.model_validate(data))
    raw = store.read_raw("s-1", "session")
    assert raw["from_the_future"] == {"x": [1, 2]}
    assert raw["messages"][0]["content"][0]["trust"] == "external"
    assert raw["messages"][-1]["content"][0] == {"type": "hologram", "z": 1}
    events = store.read_raw("s-1", "runs")[0]["events"]
    assert events[0]["event"] == {"type": "warp_drive", "speed": 9}
    assert events[1]["event"] == {"type": "turn_start", "turn": 1, "new": True}


def test_subagent_tasks_written_only_when_present(store):
    bundle = make_bundle()
    store.save(bundle)
    assert store.read_raw("s-1", "subagent_tasks") is None
    bundle.subagent_tasks = []
    store.save(bundle)
    assert store.read_raw("s-1", "subagent_tasks") == []
    assert store.load("s-1").subagent_tasks == []


def test_loop_and_workflow_checkpoints(store):
    cp = LoopCheckpoint(
        schema_version=1,
        run_id="run-7",
        session_id="s-1",
        turn=2,
        messages=[Message(role="user", content=[TextBlock(text="hi")])],
        total_usage=TokenUsage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        tool_calls_count=1,
        checkpoint_ms=1,
    )
    assert store.load_loop_checkpoint("run-7") is None
    store.save_loop_checkpoint(cp)
    assert store.load_loop_checkpoint("run-7") == cp
    store.delete_loop_checkpoint("run-7")
    store.delete_loop_checkpoint("run-7")  # idempotent
    assert store.load_loop_checkpoint("run-7") is None

    wf = WorkflowCheckpoint(
        schema_version=1,
        workflow_id="wf-1",
        steps=[
            WorkflowStep(
                task_id="t1",
                outcome=StepOutcome(
                    task_id="t1",
                    session_id="task-run-t1",
                    agent="general",
                    output="o",
                    success=True,
                ),
            )
        ],
        checkpoint_ms=2,
    )
    store.save_workflow_checkpoint(wf)
    assert store.load_workflow_checkpoint("wf-1") == wf
    store.save_workflow_checkpoint(wf.model_copy(update={"schema_version": 2}))
    with pytest.raises(a3s_nb.CorruptFileError, match="schema_version 2 is newer"):
        store.load_workflow_checkpoint("wf-1")
    # deleting a session never touches checkpoints keyed by run or workflow id
    store.save_workflow_checkpoint(wf)
    store.save(make_bundle())
    store.delete("s-1")
    assert store.load_workflow_checkpoint("wf-1") == wf
    store.delete_workflow_checkpoint("wf-1")
    assert store.load_workflow_checkpoint("wf-1") is None


def test_a_bundle_mutated_into_an_invalid_shape_is_not_written(store):
    store.save(make_bundle(n=2))
    bundle = make_bundle(n=3)
    bundle.session.config.workspace = None  # assignment is not validated by pydantic
    with pytest.raises(
        a3s_nb.InvalidBundleError, match=r"its session would not load back: config\.workspace"
    ):
        store.save(bundle)
    assert len(store.load("s-1").session.messages) == 2


# ---- save(guard=...): a check of what is stored, under the writer's lock ------------------


def test_guard_sees_none_for_a_new_id_and_the_stored_bundle_after(store):
    seen = []
    store.save(make_bundle(n=1), guard=seen.append)
    assert seen == [None]
    store.save(make_bundle(n=3), guard=seen.append)
    assert len(seen) == 2
    assert isinstance(seen[1], SessionBundle)
    assert len(seen[1].runs) == 1  # what was stored before this save, not the bundle given
    assert len(store.load("s-1").runs) == 3


@pytest.mark.parametrize("existing", [False, True])
def test_a_guard_that_raises_writes_nothing(store, existing):
    if existing:
        store.save(make_bundle(n=2))

    class Refused(Exception):
        pass

    def refuse(stored):
        raise Refused("no")

    with pytest.raises(Refused):
        store.save(make_bundle(n=5), guard=refuse)
    if existing:
        assert len(store.load("s-1").runs) == 2
        assert store.list() == ["s-1"]
    else:
        assert store.list() == []
        assert not store.exists("s-1")


def test_a_guard_may_read_and_write_the_store_without_deadlock(store):
    """The guard runs under the exclusive lock; reading inside it must not wait on itself."""
    import threading

    store.save(make_bundle("other", n=1))
    store.save(make_bundle(n=1))
    seen = {}

    def guard(stored):
        seen["load"] = len(store.load("s-1").runs)
        seen["list"] = store.list()
        seen["other"] = store.read_raw("other", "session")["id"]
        store.save(make_bundle("third"))  # a nested write, too

    done = threading.Event()

    def work():
        store.save(make_bundle(n=4), guard=guard)
        done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=30)
    assert done.is_set(), "save(guard=...) deadlocked on its own lock"
    assert seen == {"load": 1, "list": ["other", "s-1"], "other": "other"}
    assert len(store.load("s-1").runs) == 4
    assert store.list() == ["other", "s-1", "third"]


def test_a_stored_session_that_cannot_load_is_not_given_to_the_guard(store):
    store.save(make_bundle(n=1))
    store._commit("s-1", {"runs": "[{"})  # damage the stored runs file
    calls = []
    with pytest.raises(a3s_nb.CorruptFileError, match="not valid JSON"):
        store.save(make_bundle(n=3), guard=calls.append)
    assert calls == []
    assert store.read_raw("s-1", "session")["messages"][0]["content"][0]["text"] == "m0"
    store.save(make_bundle(n=3))  # without a guard: a deliberate overwrite
    assert len(store.load("s-1").runs) == 3


# ---- ids: invisible characters, Unicode normalisation, lookups with impossible ids --------


def _invisible_characters() -> list[str]:
    """Every code point that is a control, format, surrogate, line or paragraph separator."""
    import sys
    import unicodedata

    return [
        chr(c)
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]


def test_every_invisible_character_is_refused_in_an_id():
    from a3s_nb.store import validate_session_id

    chars = _invisible_characters()
    assert {"\x85", "\u2028", "\u2029", "\u202e", "\u200b", "\u200d", "\ufeff"} <= set(chars)
    assert len(chars) > 300
    accepted = []
    for c in chars:
        try:
            validate_session_id(f"fix{c}1")
        except a3s_nb.InvalidSessionIdError as e:
            assert f"U+{ord(c):04X}" in str(e)
        else:
            accepted.append(f"U+{ord(c):04X}")
    assert accepted == []


@pytest.mark.parametrize("bad", ["fix\u202e1", "a\u200bb", "x\x85y", "line\u2028sep", "\ufeffbom"])
def test_an_id_with_an_invisible_character_is_not_saved(store, bad):
    with pytest.raises(a3s_nb.InvalidSessionIdError, match="character U\\+"):
        store.save(make_bundle(bad))
    assert store.list() == []


def test_ids_are_saved_in_nfc_and_found_by_either_spelling(store):
    import unicodedata

    nfc, nfd = "caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9")
    with pytest.raises(a3s_nb.InvalidSessionIdError, match="NFC") as e:
        store.save(make_bundle(nfd))
    assert repr(nfc) in str(e.value)
    assert store.list() == []
    store.save(make_bundle(nfc, n=2))
    assert store.list() == [nfc]
    assert store.exists(nfd)
    assert store.load(nfd).session.id == nfc
    assert store.resolve(nfd) == nfc
    assert store.resolve("caf") == nfc
    store.delete(nfd)
    assert store.list() == []


@pytest.mark.parametrize("bad", ["x" * 300, "a\x00b", "a\ud800b", 5, None, b"s-1", ""], ids=repr)
@pytest.mark.parametrize("method", ["load", "delete", "exists", "resolve", "read_raw"])
def test_looking_up_an_impossible_id_is_an_invalid_session_id_error(store, bad, method):
    store.save(make_bundle())
    args = (bad, "session") if method == "read_raw" else (bad,)
    with pytest.raises(a3s_nb.InvalidSessionIdError):
        getattr(store, method)(*args)
    assert store.list() == ["s-1"]


@pytest.mark.parametrize("bad", ["x" * 300, "a\x00b", "a\ud800b", 5, None])
def test_checkpoint_lookups_with_an_impossible_key_are_invalid_session_id_errors(store, bad):
    with pytest.raises(a3s_nb.InvalidSessionIdError):
        store.load_loop_checkpoint(bad)
    with pytest.raises(a3s_nb.InvalidSessionIdError):
        store.delete_workflow_checkpoint(bad)
