"""serde: the fast writer is byte for byte the serde_json layout, and the part encoder
validates each item once and writes what Store.save writes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import a3s_nb
from a3s_nb.store import PARTS, serde
from a3s_nb.store.models import SessionBundle
from tests.conftest import FIXTURE_STORE

GOLDEN = Path(__file__).parent / "data" / "serde_json_f64.tsv"


# The standard library's encoder with every float re-spelled, the reference the fast one
# must match: serde_json's layout, proved on the golden table and the fixture files.
def reference_dumps(value) -> str:
    def mark(v):
        if isinstance(v, float):
            return f"\ue000{serde.serde_float(v)}\ue000"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps(mark(value), indent=2, ensure_ascii=False)
    return re.sub('"\ue000([^"\ue000]*)\ue000"', r"\1", text)


def _golden() -> list[tuple[float, str]]:
    rows = []
    for line in GOLDEN.read_text().splitlines():
        if line and not line.startswith("#"):
            py, spelled = line.split("\t")
            rows.append((float(py), spelled))
    return rows


def _fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURE_STORE.rglob("*.json"))


def test_every_golden_float_is_spelled_as_serde_json_spells_it_in_any_position():
    rows = _golden()
    assert [serde.dumps(v) for v, _ in rows] == [s for _, s in rows]
    doc = {"list": [v for v, _ in rows], "nested": {"k": [{"x": v} for v, _ in rows[:50]]}}
    expected = reference_dumps(doc)
    assert serde.dumps(doc) == expected
    assert "e+" not in expected  # the table covers the spellings that differ


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: str(p.relative_to(FIXTURE_STORE)))
def test_fixture_files_are_written_back_byte_for_byte(path):
    raw = path.read_bytes()
    assert serde.dumps_bytes(json.loads(raw)) == raw
    assert serde.dumps(json.loads(raw)).encode() == raw


def test_what_serde_json_escapes_and_what_it_does_not():
    text = "".join(map(chr, range(0x20))) + '\x7f/\\"\u2028\u2029é😀'
    out = serde.dumps({"k": text})
    assert "\\u001f" in out and "\\u001F" not in out  # lowercase hex
    assert "\\n" in out and "\\t" in out and "\\b" in out and "\\f" in out
    assert "/" in out and "\\/" not in out
    assert "\u2028" in out and "é😀" in out  # raw UTF-8, no \u escapes
    assert out == reference_dumps({"k": text})


def test_look_alikes_of_exponents_in_text_are_left_alone():
    doc = {
        "id": "run-4e5f6a7b-8e-4c",
        "1e+5": "8e-4",
        'key": 1e+5': ["1e+5", 'x": 1e-7,'],
        "n": [1e16, 1e-7, 2.5e-5, -1e300],
    }
    out = serde.dumps(doc)
    assert out == reference_dumps(doc)
    assert json.loads(out) == doc


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_the_fast_writer_equals_the_reference_on_any_json_value(value):
    assert serde.dumps(value) == reference_dumps(value)


# ---------------------------------------------------------------------------- the encoder


def _parts(sid: str) -> dict:
    store = a3s_nb.open_store(FIXTURE_STORE)
    return {p: v for p in PARTS if (v := store.read_raw(sid, p)) is not None}


@pytest.mark.parametrize("sid", sorted(p.stem for p in FIXTURE_STORE.glob("*.json")))
def test_the_encoder_writes_what_store_save_writes(sid, tmp_path):
    fixture = a3s_nb.open_store(FIXTURE_STORE)
    store = a3s_nb.open_store(tmp_path)
    store.save(fixture.load(sid))
    encoded = serde.PartEncoder().encode(_parts(sid))
    for part, e in encoded.items():
        assert e.text == store._read(sid, part), part


def test_unchanged_items_are_reused_and_new_ones_validated():
    sid = "fix-oscar-2-000"
    parts = _parts(sid)
    enc = serde.PartEncoder()
    first = enc.encode(parts)
    assert first["runs"].new == list(range(len(parts["runs"])))
    again = enc.encode(parts)
    assert all(e.new == [] for e in again.values())
    assert {p: e.text for p, e in again.items()} == {p: e.text for p, e in first.items()}

    message = {"role": "user", "content": [{"type": "text", "text": "one more"}]}
    parts["session"]["messages"].append(message)
    grown = enc.encode(parts)
    n = len(parts["session"]["messages"])
    assert grown["session"].new == [n - 1]
    assert grown["session"].text == serde.PartEncoder().encode(parts)["session"].text

    parts["session"]["messages"][0]["content"] = "not a list of blocks"
    with pytest.raises(serde.PartError) as err:
        enc.encode(parts)
    assert err.value.describe().startswith("session.messages[0].content:")


def test_an_item_is_written_in_its_model_form():
    parts = _parts("fix-oscar-2-000")
    trace = parts["traces"][0]
    trace["metadata_keys"] = []  # a3s-code never writes an empty list here
    trace["details"] = None  # nor a null here
    text = serde.PartEncoder().encode(parts)["traces"].text
    written = json.loads(text)[0]
    assert "metadata_keys" not in written and "details" not in written


def test_only_the_last_encodings_items_are_kept():
    parts = _parts("fix-oscar-2-000")
    enc = serde.PartEncoder()
    enc.encode(parts)
    first_run = parts["runs"][0]
    parts["runs"] = parts["runs"][1:]
    enc.encode(parts)
    parts["runs"].insert(0, first_run)
    assert enc.encode(parts)["runs"].new == [0]  # forgotten, so validated again


def test_the_same_item_in_two_parts_is_written_for_each_part(tmp_path):
    """Models keep unknown fields, so one value can be a message and a verification report;
    each part writes it in its own form and indent, as Store.save does."""
    parts = _parts("fix-oscar-2-000")
    both = {"role": "user", "content": [], "subject": "s", "status": "passed"}
    parts["session"]["messages"].append(dict(both))
    parts["verification"] = [dict(both)]
    encoded = serde.PartEncoder().encode(parts)
    store = a3s_nb.open_store(tmp_path)
    store.save(SessionBundle.model_validate(parts))
    for part, e in encoded.items():
        assert e.text == store._read("fix-oscar-2-000", part), part
    assert json.loads(encoded["verification"].text)[0]["schema"] == "a3s.verification_report.v1"


@pytest.mark.parametrize(
    "values",
    [
        (None, float("nan"), float("inf"), float("-inf")),  # all "null" as JSON to msgspec
        (1, 1.0, True, "1"),
        (0.0, -0.0, 0, False),
        (2**70, float(2**70), -(2**64)),  # beyond MessagePack's integers: the JSON key
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # the order of keys is written
    ],
)
def test_items_are_told_apart_as_their_text_tells_them_apart(values):
    parts = _parts("fix-oscar-2-000")
    enc = serde.PartEncoder()
    for value in (*values, *reversed(values)):
        parts["traces"][0]["details"] = {"x": value}
        kept = enc.encode(parts)["traces"]
        fresh = serde.PartEncoder().encode(parts)["traces"]
        assert kept.text == fresh.text, value


def test_keys_of_the_two_kinds_never_meet():
    key = serde.key_function()
    assert key(2**70).startswith(b"\xc1")  # the JSON fallback
    assert all(not key(v).startswith(b"\xc1") for v in (None, 1, "x", [1], {"a": 1}, 1.5))
    assert b"a3s://x" in serde.content_key({"t": ["see a3s://x"]})


def test_without_msgspec_items_are_keyed_by_their_json_and_written_alike(monkeypatch):
    parts = _parts("fix-oscar-2-000")
    expected = {p: e.text for p, e in serde.PartEncoder().encode(parts).items()}
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec fails
    enc = serde.PartEncoder()
    assert enc._key({"a": 1}) == b'\xc1{"a":1}'
    for _ in range(2):  # validated, then reused
        assert {p: e.text for p, e in enc.encode(parts).items()} == expected
    assert all(e.new == [] for e in enc.encode(parts).values())
