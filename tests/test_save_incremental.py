"""Saving again costs what changed, and writes exactly what a fresh save writes."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import testing
from a3s_nb.errors import CaptureError, SaveConflictError, SecretsFoundError
from a3s_nb.sdk import capture, live
from a3s_nb.store import serde
from tests.conftest import SESSION_FILES

from .fakes import FakeSession

NOW = 1_900_000_000
OPENAI = "sk-" + "proj-" + "Zy3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


@pytest.fixture(autouse=True)
def _fixed_clock_and_no_kept_state(monkeypatch):
    monkeypatch.setattr(capture, "time", types.SimpleNamespace(time=lambda: NOW))
    forget()
    yield
    forget()


def forget() -> None:
    """Empty the in-process caches, as in a new kernel."""
    serde.forget()
    capture._EVENTS_KEPT.clear()


def files(store: Path, sid: str) -> dict[str, bytes]:
    return {
        part: (store / name.format(id=sid)).read_bytes()
        for part, name in SESSION_FILES.items()
        if (store / name.format(id=sid)).exists()
    }


# ------------------------------------------------------------------------ the real SDK


@pytest.mark.sdk
def test_a_save_after_one_more_send_equals_a_fresh_save_byte_for_byte(a3s_code, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    with testing.ScriptedLLM(testing.standard_script()) as llm:
        agent = a3s_code.Agent.create(llm.acl_config())
        session = live.open_session(agent, ws, store_dir=tmp_path / "sdk", session_id="inc-1")
        session.send(testing.WRITE_READ_PROMPT)
        session.send(testing.LARGE_OUTPUT_PROMPT)  # an artifact
        a3s_nb.save(session, store=tmp_path / "a")
        session.send(testing.FAILING_BASH_PROMPT)
        kept = len(capture._EVENTS_KEPT[id(session)][1])
        assert kept == 2  # the two finished runs' events are not read again
        a3s_nb.save(session, store=tmp_path / "a")

        forget()
        a3s_nb.save(session, store=tmp_path / "b")
        live.save_session(session, tmp_path / "sdk")
        session.close()

    incremental, fresh = files(tmp_path / "a", "inc-1"), files(tmp_path / "b", "inc-1")
    assert incremental == fresh
    assert len(json.loads(fresh["runs"])) == 3
    assert len(json.loads(fresh["artifacts"])["artifacts"]) == 1
    # and what the SDK itself wrote for the parts a3s_nb takes as they are
    sdk = files(tmp_path / "sdk", "inc-1")
    for part in ("runs", "traces", "verification", "artifacts"):
        assert fresh[part] == sdk[part], part


# ----------------------------------------------------------------- a fake live session


class CountingSession(FakeSession):
    """A fake session that counts the runs whose events were read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events_read: list[str] = []

    def run_events(self, run_id: str) -> list[dict]:
        self.events_read.append(run_id)
        return super().run_events(run_id)


@pytest.fixture
def fake(fixture_store) -> CountingSession:
    return CountingSession(fixture_store.load("fix-oscar-2-000"), session_id="oscar-live")


def test_events_of_finished_runs_are_read_once(fake, tmp_path):
    n = len(fake._runs)
    a3s_nb.save(fake, store=tmp_path)
    assert len(fake.events_read) == n
    fake.events_read.clear()
    fake.send("one more")
    a3s_nb.save(fake, store=tmp_path)
    assert fake.events_read == [fake._runs[-1]["snapshot"]["id"]]

    fake.events_read.clear()  # a run still going is read every time
    fake._runs[-1]["snapshot"]["status"] = "executing"
    a3s_nb.save(fake, store=tmp_path)
    a3s_nb.save(fake, store=tmp_path)
    assert fake.events_read == [fake._runs[-1]["snapshot"]["id"]] * 2

    other = CountingSession(a3s_nb.open_store(tmp_path).load("oscar-live"))
    a3s_nb.save(other, store=tmp_path / "other")  # another live session: all read
    assert len(other.events_read) == n + 1


def test_a_changed_finished_run_is_read_again(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path)
    fake.events_read.clear()
    fake._runs[0]["events"].append(dict(fake._runs[0]["events"][-1], sequence=999))
    fake._runs[0]["snapshot"]["event_count"] += 1
    a3s_nb.save(fake, store=tmp_path)
    assert fake.events_read == [fake._runs[0]["snapshot"]["id"]]
    saved = json.loads((tmp_path / "runs" / "oscar-live.json").read_text())
    assert saved[0]["events"][-1]["sequence"] == 999


def test_incremental_saves_equal_fresh_ones(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path / "a")
    for i in range(3):
        fake.send(f"prompt {i}", f"reply {i}")
        a3s_nb.save(fake, store=tmp_path / "a")
    forget()
    a3s_nb.save(fake, store=tmp_path / "b")
    assert files(tmp_path / "a", "oscar-live") == files(tmp_path / "b", "oscar-live")


def test_a_new_secret_is_found_where_it_is(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path, env={})
    fake.send(f"here: {OPENAI}")
    n = len(fake._messages)
    with pytest.raises(SecretsFoundError) as info:
        a3s_nb.save(fake, store=tmp_path, env={})
    paths = sorted(f"{f.part}: {f.path}" for f in info.value.findings)
    assert paths == [
        f"runs: [{len(fake._runs) - 1}].events[0].event.prompt",
        f"runs: [{len(fake._runs) - 1}].snapshot.prompt",
        f"session: messages[{n - 2}].content[0].text",
    ]


def test_text_that_scanned_clean_is_scanned_again_for_new_secret_values(fake, tmp_path):
    old_text = fake._messages[0]["content"][0]["text"]
    word = max(old_text.split(), key=len)
    assert len(word) >= 8
    a3s_nb.save(fake, store=tmp_path, env={})
    with pytest.raises(SecretsFoundError, match=r"messages\[0\]\.content\[0\]\.text: env:MY_TOKEN"):
        a3s_nb.save(fake, store=tmp_path, env={"MY_TOKEN": word})


def test_a_redacted_save_after_clean_ones_equals_a_fresh_redacted_save(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path / "a", env={})
    fake.send(f"here: {OPENAI}")
    fake.send("and an ordinary prompt")
    a3s_nb.save(fake, store=tmp_path / "a", env={}, redact=True)
    forget()
    a3s_nb.save(fake, store=tmp_path / "b", env={}, redact=True)
    a, b = files(tmp_path / "a", "oscar-live"), files(tmp_path / "b", "oscar-live")
    assert a == b
    assert OPENAI.encode() not in b"".join(a.values())
    assert b"here: [REDACTED:openai-key]" in a["session"]


def test_a_new_message_that_would_not_load_is_refused_and_nothing_changes(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path)
    before = files(tmp_path, "oscar-live")
    fake._messages.append({"role": "user", "content": [{"type": "tool_use", "name": "x"}]})
    n = len(fake._messages) - 1
    with pytest.raises(CaptureError, match=rf"session\.messages\[{n}\]\.content\[0\]"):
        a3s_nb.save(fake, store=tmp_path)
    assert files(tmp_path, "oscar-live") == before


def test_the_saved_version_is_read_for_what_it_keeps_not_loaded(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path)
    doc = json.loads((tmp_path / "oscar-live.json").read_text())
    doc["created_at"] = 1_234_567_890
    doc["config"]["system_prompt"] = "kept"
    doc["future_field"] = {"kept": True}
    (tmp_path / "oscar-live.json").write_text(serde.dumps(doc))
    result = a3s_nb.save(fake, store=tmp_path)
    assert not result.created
    again = json.loads((tmp_path / "oscar-live.json").read_text())
    assert again["created_at"] == 1_234_567_890
    assert again["config"]["system_prompt"] == "kept"
    assert again["future_field"] == {"kept": True}


def test_the_conflict_check_loads_the_store_only_when_something_else_wrote(
    fake, tmp_path, monkeypatch
):
    a3s_nb.save(fake, store=tmp_path)
    loads: list[str] = []
    load = a3s_nb.FileStore.load
    monkeypatch.setattr(
        a3s_nb.FileStore, "load", lambda self, sid: loads.append(sid) or load(self, sid)
    )
    fake.send("one more")
    a3s_nb.save(fake, store=tmp_path)
    assert loads == []  # this session wrote what is stored: nothing to compare

    other = CountingSession(a3s_nb.open_store(tmp_path).load("oscar-live"))
    other.send("elsewhere")
    a3s_nb.save(other, store=tmp_path)  # another handle: checked, and it extends the store
    loads.clear()
    fake.send("and here")
    with pytest.raises(SaveConflictError, match="1 run"):
        a3s_nb.save(fake, store=tmp_path)
    assert loads == ["oscar-live"]


def test_a_finding_path_not_understood_falls_back_to_scanning_everything(
    fake, tmp_path, monkeypatch
):
    a3s_nb.save(fake, store=tmp_path, env={})
    fake.send(f"here: {OPENAI}")
    monkeypatch.setattr(serde, "item_path", lambda part, path, where: None)
    with pytest.raises(SecretsFoundError) as info:
        a3s_nb.save(fake, store=tmp_path, env={})
    n = len(fake._messages)
    assert f"session: messages[{n - 2}].content[0].text" in {
        f"{f.part}: {f.path}" for f in info.value.findings
    }
    line = a3s_nb.save(fake, store=tmp_path / "r", env={}, redact=True)
    assert line.redacted == 3
    assert OPENAI.encode() not in b"".join(files(tmp_path / "r", "oscar-live").values())


# ------------------------------------------------ what the previous save wrote, kept in memory


def count_session_parses(monkeypatch) -> list[str]:
    """The session documents parsed whole, by id."""
    parsed: list[str] = []
    parse = a3s_nb.FileStore._parse_json

    def counting(self, sid, part, text):
        if part == "session":
            parsed.append(sid)
        return parse(self, sid, part, text)

    monkeypatch.setattr(a3s_nb.FileStore, "_parse_json", counting)
    return parsed


def test_the_session_document_this_process_wrote_is_not_parsed_again(fake, tmp_path, monkeypatch):
    parsed = count_session_parses(monkeypatch)
    a3s_nb.save(fake, store=tmp_path)
    assert parsed == []  # nothing stored yet
    for i in range(2):
        fake.send(f"prompt {i}")
        a3s_nb.save(fake, store=tmp_path)
    assert parsed == []  # the stored document is the one written: its head is kept
    forget()  # a new kernel: read as usual
    fake.send("one more")
    a3s_nb.save(fake, store=tmp_path)
    assert parsed == ["oscar-live"]


def test_a_session_document_another_writer_changed_is_read_again(fake, tmp_path, monkeypatch):
    """Even when the change keeps the file's size and modification time."""
    a3s_nb.save(fake, store=tmp_path)
    path = tmp_path / "oscar-live.json"
    before = os.stat(path)
    text = path.read_text()
    created = json.loads(text)["created_at"]
    changed = text.replace(f'"created_at": {created}', f'"created_at": {created - 1}', 1)
    assert len(changed) == len(text) and changed != text
    path.write_text(changed)  # in place: the same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    parsed = count_session_parses(monkeypatch)
    fake.send("one more")
    a3s_nb.save(fake, store=tmp_path)
    assert parsed == ["oscar-live"]
    assert json.loads(path.read_text())["created_at"] == created - 1  # kept, as it is read


def test_a_same_size_change_by_another_writer_is_caught_by_the_conflict_check(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path)
    path = tmp_path / "oscar-live.json"
    doc = json.loads(path.read_text())
    first = doc["messages"][0]["content"][0]
    first["text"] = first["text"][::-1]  # same length, other text: a rewritten transcript
    before = path.stat()
    path.write_text(serde.dumps(doc))
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    fake.send("one more")
    with pytest.raises(SaveConflictError, match="differ from message 0 on"):
        a3s_nb.save(fake, store=tmp_path)


def test_the_conflict_check_knows_its_own_write_after_many_other_saves(
    fake, fixture_store, tmp_path, monkeypatch
):
    a3s_nb.save(fake, store=tmp_path)
    others = [
        FakeSession(fixture_store.load("fix-oscar-2-000"), session_id=f"other-{i}")
        for i in range(12)  # more sessions than are kept with their bytes
    ]
    for other in others:
        a3s_nb.save(other, store=tmp_path)
    loads: list[str] = []
    load = a3s_nb.FileStore.load
    monkeypatch.setattr(
        a3s_nb.FileStore, "load", lambda self, sid: loads.append(sid) or load(self, sid)
    )
    fake.send("one more")
    a3s_nb.save(fake, store=tmp_path)  # its digest is kept: nothing to compare
    assert loads == []


def test_saves_of_text_beyond_ascii_are_written_as_fresh_ones(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path / "a")
    for i, text in enumerate(
        ("café — naïve", "日本語のテキスト", "emoji 🚀✨ and \u2028 a separator")
    ):
        fake.send(f"{text} {i}", f"réponse {text}")
        a3s_nb.save(fake, store=tmp_path / "a")
    forget()
    a3s_nb.save(fake, store=tmp_path / "b")
    a, b = files(tmp_path / "a", "oscar-live"), files(tmp_path / "b", "oscar-live")
    assert a == b
    assert "🚀✨".encode() in a["session"]
    assert a3s_nb.open_store(tmp_path / "a").load("oscar-live").session.messages[-1].text == (
        "réponse emoji 🚀✨ and \u2028 a separator"
    )


def test_a_memory_store_is_saved_into_as_a_directory_is(fake, tmp_path):
    memory = a3s_nb.open_store(":memory:")
    a3s_nb.save(fake, store=memory)
    fake.send("émoji 🚀")
    a3s_nb.save(fake, store=memory)
    a3s_nb.save(fake, store=tmp_path)
    for part, data in files(tmp_path, "oscar-live").items():
        assert memory._read("oscar-live", part) == data.decode("utf-8"), part


def test_the_events_of_finished_runs_are_keyed_once(fake, tmp_path, monkeypatch):
    """A save after one more send reads, keys and writes the new run's events, not all."""
    keyed: list[int] = []  # events in each list of events given a content key

    def counting(key):
        def counted(value):
            first = value[0] if isinstance(value, list) and value else None
            if isinstance(first, dict) and "event" in first and "sequence" in first:
                keyed.append(len(value))
            return key(value)

        return counted

    real = serde.key_function
    monkeypatch.setattr(serde, "key_function", lambda **kw: counting(real(**kw)))
    monkeypatch.setattr(capture, "content_key", counting(serde.content_key))
    a3s_nb.save(fake, store=tmp_path / "a")
    assert sum(keyed) == sum(len(r["events"]) for r in fake._runs)  # each run's, once
    keyed.clear()
    fake.send("one more")
    a3s_nb.save(fake, store=tmp_path / "a")
    assert keyed == [len(fake._runs[-1]["events"])]
    forget()
    a3s_nb.save(fake, store=tmp_path / "b")
    assert files(tmp_path / "a", "oscar-live") == files(tmp_path / "b", "oscar-live")


def test_a_redacting_save_keeps_what_it_knows_of_the_runs(fake, tmp_path):
    a3s_nb.save(fake, store=tmp_path / "a", env={})
    fake.send(f"here: {OPENAI}")  # in a message and in the new run
    result = a3s_nb.save(fake, store=tmp_path / "a", env={}, redact=True)
    assert result.redacted == 3
    # the redacted parts were keyed from their events; the next save's keys taken when the
    # events were read meet them: only the run holding the secret and the new one are new
    encoder = serde.encoder_for((str(tmp_path / "a"), "oscar-live"))
    fake.send("and an ordinary prompt")
    run_keys: list[bytes] = []
    parts = capture.capture_parts(fake, session_id="oscar-live", run_keys=run_keys)
    assert len(run_keys) == len(parts["runs"])
    encoded = encoder.encode(parts, run_keys=run_keys)
    assert encoded["runs"].new == [len(fake._runs) - 2, len(fake._runs) - 1]
