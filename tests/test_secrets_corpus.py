"""Recall and false positives of the secret scanner, measured on a real bundle.

Each planted secret (``tests/secret_corpus.py``, 35 kinds) is written into each place
a3s-code writes text to, in a session written by the real SDK: a prompt, tool output, an
artifact, run events (split across two streamed deltas) and an object key. It must be found
at that place with its kind, and after ``redact`` nothing of it may be left in any file the
store writes. Each benign string, in each place, must be flagged nowhere.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from a3s_nb import FileStore, secrets
from a3s_nb.sdk.capture import bundle_from_parts
from a3s_nb.secrets import redact, scan

from .conftest import blocks
from .secret_corpus import BENIGN, PLACES, PLANTED, Planted, load_parts, plant


@pytest.fixture(autouse=True)
def _fresh_cache():
    if hasattr(secrets, "clear_cache"):
        secrets.clear_cache()


@cache
def carrier() -> str:
    return json.dumps(load_parts())


def carrier_parts() -> dict:
    return json.loads(carrier())


def written_text(store: Path) -> str:
    """Every string (keys too) of every JSON file under ``store``, joined."""
    out: list[str] = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for k, x in v.items():
                out.append(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for f in sorted(store.rglob("*.json")):
        raw = f.read_text()
        out.append(raw)
        walk(json.loads(raw))
    return "\x00".join(out)


def windows(secret: str, n: int = 10) -> set[str]:
    if len(secret) <= n:
        return {secret}
    return {secret[i : i + n] for i in range(len(secret) - n + 1) if "\n" not in secret[i : i + n]}


def test_the_corpus_is_big_enough():
    assert len({p.kind for p in PLANTED}) >= 20 and len(PLANTED) >= 30
    assert len(BENIGN) >= 50


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("item", PLANTED, ids=[p.name for p in PLANTED])
def test_a_planted_secret_is_found_where_it_is_and_never_written(
    item: Planted, place: str, tmp_path: Path
):
    parts, where = plant(carrier_parts(), place, item.text, item.secret)
    bundle_from_parts(parts)  # still the a3s-code shape
    env = dict(item.env)

    findings = scan(parts, env=env)
    found = {f"{f.part}:{f.path}" for f in findings}
    assert set(where) <= found, (where, [str(f) for f in findings])
    assert {f.kind for f in findings} == {item.kind}
    assert all(item.secret not in str(f) for f in findings)

    out, redacted = redact(parts, env=env)
    assert len(redacted) == len(findings)
    store = FileStore(tmp_path / "store")
    store.save(bundle_from_parts(out))
    text = written_text(tmp_path / "store")
    left = [w for w in windows(item.secret) if w in text]
    assert not left, f"{item.name} in {place}: {left[:3]} left on disk"
    assert scan(out, env=env) == []


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("text", BENIGN, ids=range(len(BENIGN)))
def test_a_benign_string_is_flagged_nowhere(text: str, place: str):
    parts, _ = plant(carrier_parts(), place, text)
    assert [str(f) for f in scan(parts, env={})] == []


@pytest.mark.parametrize(
    "around", ["", " ", "\n", "\t", '"', "\\", "\x01", "=", "(", "é", "\u2028", "\\n"]
)
def test_the_prefilter_never_hides_a_match(around: str, monkeypatch: pytest.MonkeyPatch):
    """Every corpus text, in odd surroundings, gives the same findings as a full read."""
    texts = [p.text for p in PLANTED] + BENIGN
    envs = [dict(p.env) for p in PLANTED] + [{}] * len(BENIGN)
    parts_list = [{"session": {"messages": [{"t": f"{around}{t}{around}"}]}} for t in texts]
    fast = [[str(f) for f in scan(p, env=e)] for p, e in zip(parts_list, envs, strict=True)]
    everything = secrets._ALL  # every anchor counts as found in every unit
    monkeypatch.setattr(
        secrets._Scanner,
        "prefilter",
        lambda self, units, blobs, todo: {
            i: everything | frozenset(range(len(secrets._ANCHORS), 99)) for i in todo
        },
    )
    monkeypatch.setattr(
        secrets._Anchor, "found", lambda self, raw, low, lo=0, hi=None: lo if lo < len(raw) else -1
    )
    secrets.clear_cache()
    full = [[str(f) for f in scan(p, env=e)] for p, e in zip(parts_list, envs, strict=True)]
    assert fast == full
    if around != "(":  # "PASSWORD=value(" reads as code: a call, not a value
        assert all(fast[: len(PLANTED)])


# ------------------------------------------------------- the store, the dataset, OpenTelemetry


def exported_text(store: Path, tmp_path: Path) -> str:
    """Every string the store, ``export_dataset`` and ``to_otel(content=True)`` write."""
    import pyarrow.parquet as pq

    import a3s_nb

    out = [written_text(store)]
    a3s_nb.export_dataset(store, tmp_path / "dataset", progress=False)
    for f in sorted((tmp_path / "dataset").rglob("*.parquet")):
        out.append(json.dumps(pq.read_table(f).to_pylist(), default=str))
    a3s_nb.to_otel(store, tmp_path / "otel.jsonl", content=True)
    out.append((tmp_path / "otel.jsonl").read_text())
    return "\x00".join(out)


def left_on_disk(text: str) -> list[str]:
    return [p.name for p in PLANTED if any(w in text for w in windows(p.secret))]


@pytest.mark.parametrize("place", PLACES)
def test_every_planted_secret_is_gone_from_the_store_the_dataset_and_otel(
    place: str, tmp_path: Path
):
    """All planted secrets at once, saved redacted: none in any file a3s_nb writes."""
    text = "\n\n".join(p.text for p in PLANTED)
    env = {k: v for p in PLANTED for k, v in p.env}
    parts, _ = plant(carrier_parts(), place, text)
    out, findings = redact(parts, env=env)
    assert findings
    store = tmp_path / "store"
    FileStore(store).save(bundle_from_parts(out))
    assert left_on_disk(exported_text(store, tmp_path)) == []


SDK_SECRETS = [  # the kinds a real session kept on disk before (issue: Secrets)
    p
    for p in PLANTED
    if p.kind
    in {
        "gcp-oauth-token",
        "google-refresh-token",
        "azure-sas-token",
        "docker-token",
        "atlassian-token",
        "pulumi-token",
        "newrelic-key",
        "doppler-token",
        "heroku-key",
        "cloudflare-origin-ca-key",
        "netrc-password",
    }
]


@pytest.mark.sdk
def test_a_real_session_saved_redacted_keeps_no_new_kind_anywhere(a3s_code, tmp_path: Path):
    """A real SDK session: the secrets in a prompt and in a tool's output (``cat``), saved
    with ``redact=True``: none of them in the store, the Parquet dataset or OTLP."""
    import a3s_nb
    from a3s_nb import testing
    from a3s_nb.sdk import live

    assert len(SDK_SECRETS) == 11
    ws = tmp_path / "ws"
    ws.mkdir()
    creds = "\n".join(p.text for p in SDK_SECRETS) + "\n"
    (ws / "creds.txt").write_text(creds)
    prompt = "Check these credentials:\n" + creds
    script = [
        testing.Rule(
            match="Check these credentials",
            replies=(
                testing.Reply(tool_calls=(testing.ToolCall("bash", {"command": "cat creds.txt"}),)),
                testing.Reply(text="They are all there."),
            ),
        )
    ]
    with testing.ScriptedLLM(script) as llm:
        agent = a3s_code.Agent.create(llm.acl_config())
        session = live.open_session(agent, ws, store_dir=tmp_path / "sdk", session_id="leaky")
        session.send(prompt)
        outputs = [b["content"] for b in blocks(session.history(), "tool_result")]
        assert any(SDK_SECRETS[0].secret in o for o in outputs)  # the tool did print them
        result = a3s_nb.save(session, store=tmp_path / "store", env={}, redact=True)
        session.close()
    assert result.redacted >= 2 * len(SDK_SECRETS)
    text = exported_text(tmp_path / "store", tmp_path)
    left = [p.name for p in SDK_SECRETS if any(w in text for w in windows(p.secret))]
    assert left == []
    assert "[REDACTED:netrc-password]" in text and "[REDACTED:azure-sas-token]" in text
