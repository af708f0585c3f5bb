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
