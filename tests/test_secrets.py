"""The secret scanner and redactor: every kind found, ids and hashes left alone."""

from __future__ import annotations

import json

import pytest

from a3s_nb import secrets
from a3s_nb.secrets import redact, scan, secret_env_values

# Built from pieces so that this file itself holds no secret-shaped literal.
OPENAI = "sk-" + "proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
ANTHROPIC = "sk-ant-" + "api03-" + "Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp"
AWS_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstu"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKl"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
JWT = (
    "eyJ"
    + "hbGciOiJIUzI1NiJ9.eyJ"
    + "zdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
PEM = (
    "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234567890abcdef\nQWERTY==\n"
    "-----END RSA " + "PRIVATE KEY-----"
)

KINDS = [
    (OPENAI, "openai-key"),
    (ANTHROPIC, "anthropic-key"),
    (AWS_ID, "aws-access-key-id"),
    (GITHUB, "github-token"),
    (GITHUB_PAT, "github-token"),
    (SLACK, "slack-token"),
    (GOOGLE, "google-api-key"),
    (JWT, "jwt"),
    (PEM, "private-key"),
]


def parts_with(text: str) -> dict:
    return {
        "session": {"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    }


@pytest.mark.parametrize(("secret", "kind"), KINDS, ids=[k for _, k in KINDS])
def test_each_kind_is_found_with_its_place_and_a_masked_preview(secret, kind):
    findings = scan(parts_with(f"here it is: {secret} (keep it safe)"), env={})
    assert [(f.part, f.path, f.kind) for f in findings] == [
        ("session", "messages[0].content[0].text", kind)
    ]
    f = findings[0]
    assert secret not in str(f) and secret not in f.preview
    assert f"{len(secret)} chars" in f.preview
    assert "here it is: " + secret == f"here it is: {secret} (keep it safe)"[: f.end]


def test_aws_secret_key_found_by_its_name_and_next_to_an_access_key_id():
    named = scan(parts_with(f"aws_secret_access_key = {AWS_SECRET}"), env={})
    assert [f.kind for f in named] == ["aws-secret-key"]
    near = scan(parts_with(f"id {AWS_ID}\nsecret {AWS_SECRET}"), env={})
    assert sorted(f.kind for f in near) == ["aws-access-key-id", "aws-secret-key"]
    alone = scan(parts_with(f"a random 40-char string {AWS_SECRET}"), env={})
    assert alone == []


def test_bearer_token_is_found_but_not_the_word_bearer():
    findings = scan(parts_with("Authorization: Bearer abcdefghijklmnopqrstuvwx0123"), env={})
    assert [f.kind for f in findings] == ["bearer-token"]
    assert scan(parts_with("the bearer token is sent in a header"), env={}) == []


@pytest.mark.parametrize(
    "text",
    [
        "run-3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f",
        "call_b7b67b5a362e495826b6e6e0",
        "tool-output:bash:9a401fda1c4f5e08 a3s://tool-output/bash/9a401fda1c4f5e08",
        "commit 3f1c2a9e8d7b4c6a9e5f1a2b3c4d5e6f7a8b9c0d near AKIA? no",
        "task-run-task-d38a2803-54f2-4906-9b4b-c34115ba4b92",
        "api_key = sk-scripted",  # the scripted server's key: too short to be a real one
        "chatcmpl-4cbff44e1487de65b50a",
        "http://127.0.0.1:43731/v1/chat/completions",
        "ask-anything-about-the-codebase-you-like",
    ],
)
def test_no_false_positives_on_a3s_ids_and_ordinary_text(text):
    assert scan(parts_with(text), env={}) == []


def test_the_fixture_store_written_by_the_sdk_has_no_secrets(fixture_store):
    from a3s_nb.sdk.capture import bundle_to_parts

    for sid in fixture_store.list():
        assert scan(bundle_to_parts(fixture_store.load(sid)), env={}) == [], sid


def test_secret_environment_values_by_name():
    env = {
        "OPENAI_API_KEY": "not-a-pattern-but-secret",
        "MY_SERVICE_TOKEN": "tok12345678",
        "DB_PASSWORD": "hunter2hunter2",
        "SHORT_KEY": "abc",  # too short to look for
        "HOME": "/root",  # not a secret name
        "GOOGLE_APPLICATION_CREDENTIALS": "/",  # an existing path, not the secret itself
        "SPACED_SECRET": "two words here",
    }
    assert secret_env_values(env) == {
        "OPENAI_API_KEY": "not-a-pattern-but-secret",
        "MY_SERVICE_TOKEN": "tok12345678",
        "DB_PASSWORD": "hunter2hunter2",
    }
    findings = scan(
        {"runs": [{"events": [{"event": {"output": "pw=hunter2hunter2 and tok12345678"}}]}]},
        env=env,
    )
    assert [(f.part, f.path, f.kind) for f in findings] == [
        ("runs", "[0].events[0].event.output", "env:DB_PASSWORD"),
        ("runs", "[0].events[0].event.output", "env:MY_SERVICE_TOKEN"),
    ]
    assert all("hunter2" not in str(f) and "tok123" not in str(f) for f in findings)
    assert findings[0].preview == "value of $DB_PASSWORD, 14 chars"


def test_scan_uses_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("A3S_NB_TEST_SECRET", "s3cr3t-value-42")
    assert [f.kind for f in scan(parts_with("echo s3cr3t-value-42"))] == ["env:A3S_NB_TEST_SECRET"]


def test_redact_replaces_every_secret_and_counts_them():
    parts = {
        "session": {"messages": [{"content": [{"text": f"a {OPENAI} b {GITHUB} c"}]}]},
        "runs": [{"events": [{"event": {"output": f"{PEM}\nrest", "exit_code": 0}}]}],
        "traces": [{"name": "bash", "duration_ms": 3}],
    }
    original = json.dumps(parts)
    out, findings = redact(parts, env={})
    assert json.dumps(parts) == original  # the input is not modified
    assert len(findings) == 3
    assert out["session"]["messages"][0]["content"][0]["text"] == (
        "a [REDACTED:openai-key] b [REDACTED:github-token] c"
    )
    assert out["runs"][0]["events"][0]["event"] == {
        "output": "[REDACTED:private-key]\nrest",
        "exit_code": 0,
    }
    assert out["traces"] == parts["traces"]
    assert scan(out, env={}) == []


def test_redact_env_values_names_no_variable():
    out, findings = redact(parts_with("pw=hunter2hunter2"), env={"DB_PASSWORD": "hunter2hunter2"})
    assert out["session"]["messages"][0]["content"][0]["text"] == "pw=[REDACTED:env]"
    assert [f.kind for f in findings] == ["env:DB_PASSWORD"]


def test_format_findings_caps_the_list():
    findings = scan(parts_with(" ".join([OPENAI] * 25)), env={})
    text = secrets.format_findings(findings, limit=20)
    assert len(findings) == 25
    assert text.count("openai-key") == 20 and text.endswith("... and 5 more")
    assert OPENAI not in text


# ---- what was missed before: one example each (the corpus test has every kind and place)

STRIPE = "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dcXy"
AWS_ALONE = "Zk3pQ8rT2vX6yB1nM5cF9hJ0kL4wE7sA/uG+dR2q"


@pytest.mark.parametrize(
    ("text", "kind", "secret"),
    [
        (f"STRIPE_KEY is {STRIPE}", "stripe-key", STRIPE),
        ("rk_" + "live_" + "51HqLyjWDarjtT1zdp7dc", "stripe-key", None),
        ("db at postgres://app:Xq7pL2mN9vR4@db.internal/prod", "url-credentials", "Xq7pL2mN9vR4"),
        ("git clone https://bob:t0pS3cret99@git.example.com/r.git", "url-credentials", None),
        (f"my AWS secret key is {AWS_ALONE}", "aws-secret-key", AWS_ALONE),
        ("DATABASE_PASSWORD=Hunter2Hunter2", "secret-assignment", "Hunter2Hunter2"),
        ("SECRET_KEY: dj4ngo-1nsecure-k3y-v4lue", "secret-assignment", None),
        ('{"user": "app", "password": "pa55w0rd-for-db"}', "secret-assignment", None),
        # JSON inside a string (tool input), with its escapes
        ('{"content": "DEBUG=1\\nDB_PASSWORD=s3cr3t-Pw\\n"}', "secret-assignment", "s3cr3t-Pw"),
        ('{\\"password\\": \\"Tr0ub4dor-3\\"}', "secret-assignment", "Tr0ub4dor-3"),
    ],
)
def test_what_was_missed_before_is_found(text, kind, secret):
    findings = scan(parts_with(text), env={})
    assert [f.kind for f in findings] == [kind]
    if secret:
        f = findings[0]
        assert text[f.start : f.end] == secret and secret not in str(f)


def test_a_secret_split_across_two_deltas_is_found_and_redacted_in_both():
    events = [
        {"sequence": 0, "event": {"type": "text_delta", "text": "the key: " + OPENAI[:10]}},
        {"sequence": 1, "event": {"type": "text_delta", "text": OPENAI[10:] + " ok"}},
        {"sequence": 2, "event": {"type": "tool_output_delta", "id": "c1", "delta": GITHUB[:5]}},
        {"sequence": 3, "event": {"type": "tool_output_delta", "id": "c2", "delta": "zzz "}},
        {"sequence": 4, "event": {"type": "tool_output_delta", "id": "c1", "delta": GITHUB[5:]}},
    ]
    parts = {"runs": [{"snapshot": {"id": "run-1"}, "events": events}]}
    findings = scan(parts, env={})
    assert [(f.path, f.kind) for f in findings] == [
        ("[0].events[0].event.text", "openai-key"),
        ("[0].events[2].event.delta", "github-token"),
    ]
    assert (findings[0].start, findings[0].end) == (9, 19)
    out, _ = redact(parts, env={})
    got = [e["event"].get("text", e["event"].get("delta")) for e in out["runs"][0]["events"]]
    assert got == ["the key: [REDACTED:openai-key]", " ok", "[REDACTED:github-token]", "zzz ", ""]
    assert out["runs"][0]["snapshot"] is parts["runs"][0]["snapshot"]  # clean parts shared


def test_a_secret_used_as_an_object_key_is_found_redacted_and_never_shown():
    parts = {"session": {"messages": [{"input": {OPENAI: 1, GITHUB: 2, "ok": OPENAI}}]}}
    findings = scan(parts, env={})
    assert [(f.path, f.kind) for f in findings] == [
        ("messages[0].input.<key>", "openai-key"),
        ("messages[0].input.<key>", "github-token"),
        ("messages[0].input.ok", "openai-key"),
    ]
    assert not any(OPENAI in str(f) or GITHUB in str(f) for f in findings)
    out, _ = redact(parts, env={})
    assert out["session"]["messages"][0]["input"] == {
        "[REDACTED:openai-key]": 1,
        "[REDACTED:github-token]": 2,
        "ok": "[REDACTED:openai-key]",
    }
    twice = {"session": {"messages": [{"input": {OPENAI: 1, OPENAI + "x": 2}}]}}
    out, _ = redact(twice, env={})  # two keys redacted alike do not collide
    assert list(out["session"]["messages"][0]["input"].values()) == [1, 2]


def test_values_under_secret_named_keys_of_parsed_json():
    parts = parts_with("x")
    parts["session"]["messages"][0]["content"][0]["input"] = {
        "password": "Tr0ub4dor-and-3",
        "db_password": "${DB_PASSWORD}",  # a placeholder
        "token_count": "12345678",  # not a secret-named key
        "apiKey": "q8Zr2LmX0pVb7",
    }
    findings = scan(parts, env={})
    assert [(f.path.rsplit(".", 1)[1], f.kind) for f in findings] == [
        ("password", "secret-assignment"),
        ("apiKey", "secret-assignment"),
    ]


# ---- speed without losing recall: what was found clean is not read again


@pytest.fixture
def spy(monkeypatch):
    """The indexes of the units each scan had to read (not in the cache)."""
    read: list[list[int]] = []
    real = secrets._Scanner.prefilter

    def prefilter(self, units, blobs, todo):
        read.append(list(todo))
        return real(self, units, blobs, todo)

    secrets.clear_cache()
    monkeypatch.setattr(secrets._Scanner, "prefilter", prefilter)
    yield read
    secrets.clear_cache()


def _long_parts(fixture_store):
    from a3s_nb.sdk.capture import bundle_to_parts

    return bundle_to_parts(fixture_store.load("fix-india-2-004"))


def test_a_rescan_reads_only_what_changed(fixture_store, spy):
    parts = _long_parts(fixture_store)
    assert scan(parts, env={}) == []
    assert scan(parts, env={}) == []
    assert len(spy[0]) > 30 and spy[1] == []
    messages = parts["session"]["messages"]
    messages.append({"role": "user", "content": [{"type": "text", "text": f"now {OPENAI}"}]})
    found = scan(parts, env={})
    assert [(f.path, f.kind) for f in found] == [
        (f"messages[{len(messages) - 1}].content[0].text", "openai-key")
    ]
    assert len(spy[2]) == 1
    assert scan(parts, env={}) == found  # a unit with a secret is never taken as clean
    assert len(spy[3]) == 1
    scan(parts, env={}, cache=False)
    assert len(spy[4]) == len(spy[0]) + 1


def test_a_changed_environment_rescans(spy):
    parts = parts_with("the service said: tok-alpha-bravo-charlie")
    assert scan(parts, env={}) == []
    assert [f.kind for f in scan(parts, env={"SVC_TOKEN": "tok-alpha-bravo-charlie"})] == [
        "env:SVC_TOKEN"
    ]
    assert spy[1] == spy[0] == [0]


def test_the_cache_is_bounded(spy, monkeypatch):
    monkeypatch.setattr(secrets, "_CACHE_MAX", 40)
    parts = {"runs": [{"n": i, "text": f"line {i}"} for i in range(300)]}
    assert scan(parts, env={}) == []
    assert 0 < len(secrets._CLEAN) <= 40


def test_every_json_encoder_gives_the_same_findings(fixture_store):
    parts = _long_parts(fixture_store)
    parts["runs"][0]["events"][0]["event"]["huge"] = 2**70  # beyond orjson's integers
    parts["runs"][0]["events"][0]["event"]["note"] = f"x {GITHUB} y"
    parts["session"]["messages"][0]["content"][0]["text"] += f" {PEM}"
    found = {}
    try:
        for name in secrets.ENCODERS:
            secrets._set_encoder(name)
            found[name] = scan(parts, env={}, cache=False)
    finally:
        secrets._set_encoder(next(iter(secrets.ENCODERS)))
    assert "json" in found and len(found) >= 2  # msgspec comes with a3s-nb[all]
    assert all(f == found["json"] for f in found.values())
    assert [f.kind for f in found["json"]] == ["private-key", "github-token"]
