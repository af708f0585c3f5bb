"""Property: whatever a newer a3s-code adds to a session, load -> save writes it back.

Starting from real SDK-written sessions, hypothesis adds unknown fields at every level a
newer release could extend (session, config, message, content block, run snapshot, run
event, trace, verification check, artifact), unknown event and block types, and arbitrary
Unicode text. The store must load it and save it back byte for byte.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import a3s_nb
from a3s_nb.store import dumps
from tests.conftest import FIXTURE_STORE

SESSIONS = ("fix-oscar-2-000", "explore-lima-2-001", "dc488148-a475-4c5d-b553-2ee4179ae7fc")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12).filter(
        lambda f: "e" not in repr(f)
    )  # serde and Python spell exponents differently
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
new_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).map(
    lambda k: f"future_{k}"
)
extras = st.dictionaries(new_keys, json_values, min_size=1, max_size=3)


def _read(root: Path, sid: str) -> dict[str, object]:
    return {
        "session": json.loads((root / f"{sid}.json").read_text()),
        "runs": json.loads((root / "runs" / f"{sid}.json").read_text()),
        "traces": json.loads((root / "traces" / f"{sid}.json").read_text()),
        "verification": json.loads((root / "verification" / f"{sid}.json").read_text()),
        "artifacts": json.loads((root / "artifacts" / sid / "artifacts.json").read_text()),
    }


def _write(root: Path, sid: str, docs: dict) -> None:
    paths = {
        "session": root / f"{sid}.json",
        "runs": root / "runs" / f"{sid}.json",
        "traces": root / "traces" / f"{sid}.json",
        "verification": root / "verification" / f"{sid}.json",
        "artifacts": root / "artifacts" / sid / "artifacts.json",
    }
    for part, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(docs[part]))  # serde's layout (tests/test_serde_floats.py)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sid=st.sampled_from(SESSIONS),
    data=st.data(),
    text=st.text(max_size=40),
    # serde writes an internally tagged enum's tag first
    new_event=st.tuples(new_keys, json_values).map(lambda t: {"type": t[0], "payload": t[1]}),
    new_block=st.tuples(new_keys, json_values).map(lambda t: {"type": t[0], "body": t[1]}),
)
def test_unknown_fields_and_any_text_survive_load_and_save(
    tmp_path_factory, sid, data, text, new_event, new_block
):
    docs = _read(FIXTURE_STORE, sid)
    session = docs["session"]
    session.update(data.draw(extras, "session extras"))
    session["config"].update(data.draw(extras, "config extras"))
    message = data.draw(st.sampled_from(session["messages"]), "message")
    message.update(data.draw(extras, "message extras"))
    block = data.draw(st.sampled_from(message["content"]), "block")
    block.update(data.draw(extras, "block extras"))
    session["messages"].append({"role": "user", "content": [{"type": "text", "text": text}]})
    session["messages"].append({"role": "assistant", "content": [new_block]})
    run = data.draw(st.sampled_from(docs["runs"]), "run")
    run["snapshot"].update(data.draw(extras, "snapshot extras"))
    event = data.draw(st.sampled_from(run["events"]), "event")
    event["event"].update(data.draw(extras, "event extras"))
    run["events"].append({"sequence": len(run["events"]), "timestamp_ms": 1, "event": new_event})
    run["snapshot"]["event_count"] = len(run["events"])
    if docs["traces"]:
        docs["traces"][0].update(data.draw(extras, "trace extras"))
    for report in docs["verification"]:
        for check in report["checks"]:
            check.update(data.draw(extras, "check extras"))

    root = tmp_path_factory.mktemp("in")
    _write(root, sid, docs)
    out = tmp_path_factory.mktemp("out")
    a3s_nb.open_store(out).save(a3s_nb.open_store(root).load(sid))
    for name in ("", "runs", "traces", "verification"):
        src = (root / name / f"{sid}.json") if name else root / f"{sid}.json"
        dst = (out / name / f"{sid}.json") if name else out / f"{sid}.json"
        assert dst.read_bytes() == src.read_bytes(), name or "session"
    art = Path("artifacts") / sid / "artifacts.json"
    assert (out / art).read_bytes() == (root / art).read_bytes()
    shutil.rmtree(root)
    shutil.rmtree(out)
