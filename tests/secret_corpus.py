"""A planted corpus of secrets and a benign corpus, and a way to plant them in a real bundle.

Every secret is made at import time from a seeded random generator, so no secret-shaped
literal is written in this file. ``PLANTED`` holds one entry per kind: the text a user or a
tool would write, and the secret inside it that must never reach the disk. ``BENIGN`` holds
strings that look a little like secrets and are not. ``plant`` puts a text into one of the
places a3s-code writes text to, in a copy of a fixture session written by the real SDK.

Used by ``tests/test_secrets_corpus.py`` (which asserts on it) and by
``benchmarks/secrets_recall.py`` (which prints recall and false positives, old vs new).
"""

from __future__ import annotations

import base64
import copy
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURE_STORE = Path(__file__).parent / "fixtures" / "a3s-code-3.1.0"
CARRIER = "fix-india-2-004"  # prompts, tool output, text and tool-output deltas
ARTIFACT_CARRIER = "4287140e-de98-4f72-8e72-c616a812fc99"  # has an artifact record

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"


ALPHABETS = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def rnd(n: int, alphabet: str = ALNUM, *, seed: str) -> str:
    """``n`` random characters of ``alphabet``, with every class of it (as real keys have)."""
    gen = random.Random(seed)
    classes = [set(k) & set(alphabet) for k in ALPHABETS if set(k) & set(alphabet)]
    while True:
        s = "".join(gen.choice(alphabet) for _ in range(n))
        if all(set(s) & k for k in classes):
            return s


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _pem(label: str, seed: str) -> str:
    body = base64.b64encode(random.Random(seed).randbytes(600)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


def _jwt(seed: str) -> str:
    head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url(json.dumps({"sub": rnd(12, seed=seed), "exp": 1900000000}).encode())
    return f"{head}.{body}.{_b64url(random.Random(seed).randbytes(32))}"


@dataclass(frozen=True)
class Planted:
    name: str  # the kind of secret, as the corpus calls it
    text: str  # what is written (a prompt, a line of tool output, ...)
    secret: str  # the part of ``text`` that must never be written to disk
    kind: str  # the kind a3s_nb reports
    env: tuple[tuple[str, str], ...] = ()  # the environment the scan runs with


def _p(name: str, template: str, secret: str, kind: str, env=()) -> Planted:
    return Planted(name, template.format(s=secret), secret, kind, tuple(env))


_PW = rnd(14, ALNUM + "!#%^*", seed="pw")
_ENV_VALUE = rnd(24, string.ascii_lowercase + "-", seed="env") + "-q7"

PLANTED: list[Planted] = [
    _p("openai-legacy", "use {s} for the call", "sk-" + rnd(48, seed="oa"), "openai-key"),
    _p(
        "openai-project",
        "export OPENAI_API_KEY={s}",
        "sk-proj-" + rnd(156, B64URL, seed="oap"),
        "openai-key",
    ),
    _p(
        "anthropic",
        "the key is {s}, keep it safe",
        "sk-ant-api03-" + rnd(93, B64URL, seed="an") + "AA",
        "anthropic-key",
    ),
    _p("google-api-key", "maps key={s}&v=3", "AIza" + rnd(35, B64URL, seed="g"), "google-api-key"),
    _p(
        "google-oauth-secret",
        "client secret {s}",
        "GOCSPX-" + rnd(28, B64URL, seed="gc"),
        "google-oauth-secret",
    ),
    _p("github-pat-classic", "token {s}", "ghp_" + rnd(36, seed="ghp"), "github-token"),
    _p("github-oauth", "gh auth: {s}", "gho_" + rnd(36, seed="gho"), "github-token"),
    _p(
        "github-fine-grained",
        "GH={s}",
        "github_pat_" + rnd(22, seed="gpa") + "_" + rnd(59, seed="gpb"),
        "github-token",
    ),
    _p("gitlab-pat", "git push with {s}", "glpat-" + rnd(20, B64URL, seed="gl"), "gitlab-token"),
    _p(
        "slack-bot",
        "SLACK: {s}",
        "xoxb-"
        + rnd(12, string.digits, seed="s1")
        + "-"
        + rnd(13, string.digits, seed="s2")
        + "-"
        + rnd(24, seed="s3"),
        "slack-token",
    ),
    _p(
        "slack-webhook",
        "post to https://{s}",
        "hooks.slack.com/services/T"
        + rnd(10, UPPER_DIGITS, seed="w1")
        + "/B"
        + rnd(10, UPPER_DIGITS, seed="w2")
        + "/"
        + rnd(24, seed="w3"),
        "slack-webhook",
    ),
    _p("stripe-secret", "stripe {s}", "sk_live_" + rnd(24, seed="st"), "stripe-key"),
    _p("stripe-restricted", "restricted: {s}", "rk_live_" + rnd(24, seed="rk"), "stripe-key"),
    _p("twilio", "twilio api key {s}", "SK" + rnd(32, HEX, seed="tw"), "twilio-key"),
    _p(
        "sendgrid",
        "SENDGRID {s}",
        "SG." + rnd(22, B64URL, seed="sg1") + "." + rnd(43, B64URL, seed="sg2"),
        "sendgrid-key",
    ),
    _p(
        "huggingface",
        "huggingface-cli login --token {s}",
        "hf_" + rnd(34, string.ascii_letters, seed="hf"),
        "huggingface-token",
    ),
    _p("npm", "//registry.npmjs.org/:_authToken={s}", "npm_" + rnd(36, seed="npm"), "npm-token"),
    _p(
        "pypi",
        "password = {s}",
        "pypi-AgEIcHlwaS5vcmc" + rnd(70, B64URL, seed="py"),
        "pypi-token",
    ),
    _p("groq", "GROQ {s}", "gsk_" + rnd(52, seed="gq"), "groq-key"),
    _p(
        "aws-access-key-id",
        "aws_access_key_id = {s}",
        "AKIA" + rnd(16, UPPER_DIGITS, seed="ak"),
        "aws-access-key-id",
    ),
    _p(
        "aws-secret-named",
        "aws_secret_access_key = {s}",
        rnd(40, B64, seed="as1"),
        "aws-secret-key",
    ),
    _p(
        "aws-secret-bare",
        "my AWS secret is {s} (do not share)",
        rnd(40, B64, seed="as2"),
        "aws-secret-key",
    ),
    _p(
        "azure-storage",
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};EndpointSuffix=core",
        rnd(86, B64, seed="az") + "==",
        "azure-storage-key",
    ),
    _p("private-key-rsa", "key file:\n{s}\n", _pem("RSA PRIVATE KEY", "pem1"), "private-key"),
    _p(
        "private-key-openssh",
        "{s}",
        _pem("OPENSSH PRIVATE KEY", "pem2"),
        "private-key",
    ),
    _p("jwt", "session cookie: {s}", _jwt("jwt"), "jwt"),
    _p("bearer", "Authorization: Bearer {s}", rnd(40, B64URL, seed="br"), "bearer-token"),
    _p(
        "basic-auth",
        "Authorization: Basic {s}",
        base64.b64encode(f"admin:{_PW}".encode()).decode(),
        "basic-auth",
    ),
    _p(
        "url-postgres",
        "DATABASE_URL=postgres://app:{s}@db.internal:5432/prod",
        rnd(16, seed="u1"),
        "url-credentials",
    ),
    _p(
        "url-https",
        "git clone https://deploy:{s}@git.example.com/team/repo.git",
        rnd(20, seed="u2"),
        "url-credentials",
    ),
    _p("assign-env", "DATABASE_PASSWORD={s}", _PW, "secret-assignment"),
    _p("assign-yaml", "SECRET_KEY: {s}", "django-" + rnd(40, seed="dj"), "secret-assignment"),
    _p(
        "assign-json",
        '{{"user": "app", "password": "{s}"}}',
        rnd(12, seed="jp"),
        "secret-assignment",
    ),
    _p("assign-code", 'client = Client(api_key="{s}")', rnd(32, seed="ck"), "secret-assignment"),
    # kinds added with the gitleaks rule list (docs/secrets.md)
    _p(
        "gcp-oauth-token",
        "curl -H 'x-goog-token: {s}' https://storage.googleapis.com/b",
        "ya29.a0" + rnd(150, B64URL, seed="ya29"),
        "gcp-oauth-token",
    ),
    _p(
        "google-refresh-token",
        "refresh_tok {s} (from gcloud)",
        "1//0" + rnd(99, B64URL, seed="g1"),
        "google-refresh-token",
    ),
    _p(
        "azure-sas",
        "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&ss=b&srt=o&sp=r"
        "&se=2030-01-01T00:00:00Z&spr=https&sig={s}",
        rnd(40, ALNUM, seed="sas") + "%2B" + rnd(3, ALNUM, seed="sas2") + "%3D",
        "azure-sas-token",
    ),
    _p(
        "docker-pat",
        "echo {s} | docker login -u me --password-stdin",
        "dckr_pat_" + rnd(27, B64URL, seed="dk"),
        "docker-token",
    ),
    _p("atlassian", "JIRA {s}", "ATATT3xFfGF0" + rnd(180, B64URL, seed="at"), "atlassian-token"),
    _p("pulumi", "pulumi login with {s}", "pul-" + rnd(40, HEX, seed="pul"), "pulumi-token"),
    _p("newrelic", "NEW_RELIC {s}", "NRAK-" + rnd(27, UPPER_DIGITS, seed="nr"), "newrelic-key"),
    _p("doppler", "doppler run --token {s}", "dp.st.prd." + rnd(43, seed="dp"), "doppler-token"),
    _p("heroku", "heroku auth {s}", "HRKU-AA" + rnd(58, B64URL, seed="hk"), "heroku-key"),
    _p(
        "cloudflare-origin-ca",
        "origin ca {s}",
        "v1.0-" + rnd(24, HEX, seed="cf1") + "-" + rnd(146, HEX, seed="cf2"),
        "cloudflare-origin-ca-key",
    ),
    _p(
        "netrc",
        "$ cat ~/.netrc\nmachine api.example.com\n  login deploy\n  password {s}\n",
        rnd(18, ALNUM + "!#%^*", seed="netrc"),
        "netrc-password",
    ),
    _p(
        "gitlab-runner-reg",
        "register {s}",
        "GR1348941" + rnd(20, B64URL, seed="gr"),
        "gitlab-token",
    ),
    _p("alibaba", "aliyun {s}", "LTAI" + rnd(20, seed="lt"), "alibaba-access-key-id"),
    _p("1password-sa", "OP {s}", "ops_eyJ" + rnd(300, B64, seed="op"), "1password-token"),
    _p(
        "azure-ad-secret",
        "client secret is {s}",
        rnd(3, ALNUM, seed="aad1") + "8Q~" + rnd(34, ALNUM, seed="aad2"),
        "azure-ad-client-secret",
    ),
    _p(
        "dynatrace",
        "DT {s}",
        "dt0c01." + rnd(24, UPPER_DIGITS, seed="dt1") + "." + rnd(64, UPPER_DIGITS, seed="dt2"),
        "dynatrace-token",
    ),
    _p(
        "notion",
        "NOTION {s}",
        "ntn_" + rnd(11, string.digits, seed="nt1") + rnd(35, seed="nt2"),
        "notion-token",
    ),
    _p("planetscale", "pscale {s}", "pscale_pw_" + rnd(43, seed="ps"), "planetscale-token"),
    _p(
        "langsmith",
        "LS {s}",
        "lsv2_pt_" + rnd(32, HEX, seed="ls1") + "_" + rnd(10, HEX, seed="ls2"),
        "langsmith-key",
    ),
    _p("facebook-page", "fb {s}", "EAAC" + rnd(120, seed="fb"), "facebook-token"),
    _p("square-eaaa", "square {s}", "EAAA" + rnd(60, seed="sq"), "square-token"),
    _p(
        "nuget",
        '<add key="ClearTextPassword" value="{s}" />',
        rnd(16, seed="nu"),
        "nuget-password",
    ),
    _p(
        "openshift",
        "oc login --token={s}",
        "sha256~" + rnd(43, B64URL, seed="oc"),
        "openshift-token",
    ),
    _p(
        "teams-webhook",
        "POST https://acme.webhook.office.com/webhookb2/{s}",
        "3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f@0e160abb-b85d-48ef-9234-abcdefabcdef/IncomingWebhook/"
        + rnd(32, HEX, seed="tm")
        + "/7d1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f",
        "teams-webhook",
    ),
    _p(
        "env-value",
        "the service answered for {s}",
        _ENV_VALUE,
        "env:MY_SERVICE_TOKEN",
        env=[("MY_SERVICE_TOKEN", _ENV_VALUE)],
    ),
]

#: Strings that must never be flagged (with an empty environment).
BENIGN: list[str] = [
    # git SHAs, hashes, UUIDs, a3s-code's own ids
    "commit " + rnd(40, HEX, seed="sha1"),
    "HEAD is now at " + rnd(7, HEX, seed="sha2") + " fix the parser",
    "sha256:" + rnd(64, HEX, seed="sha3"),
    "md5 " + rnd(32, HEX, seed="md5"),
    "id 3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f and 0e160abb-b85d-98ef-1234-abcdefabcdef",
    "run-3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f call_b7b67b5a362e495826b6e6e0",
    "Session: task-run-task-6c080455-ddbc-409d-b7c2-bb60c7c55867",
    "chatcmpl-4cbff44e1487de65b50a",
    # images and encoded data
    "data:image/png;base64," + base64.b64encode(random.Random("png").randbytes(3000)).decode(),
    '<img src="data:image/jpeg;base64,'
    + base64.b64encode(random.Random("jpg").randbytes(900)).decode()
    + '">',
    "integrity sha512-" + base64.b64encode(random.Random("i1").randbytes(64)).decode(),
    '"integrity": "sha1-' + base64.b64encode(random.Random("i2").randbytes(20)).decode() + '"',
    # public keys and certificates
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + rnd(43, B64, seed="ed") + " me@laptop",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + rnd(300, B64, seed="rsa") + " ci@build",
    "-----BEGIN PUBLIC KEY-----\n" + rnd(64, B64, seed="pk") + "\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + rnd(64, B64, seed="ce") + "\n-----END CERTIFICATE-----",
    # ordinary identifiers and text
    "sk-learn-compatible-estimator-wrapper",
    "pip install sk-video-toolkit-for-researchers",
    "ask-anything-about-the-codebase-you-like and task-based-scheduling-module",
    "the bearer token is sent in the Authorization header",
    "a secret, a password, and a token walk into a bar",
    "if password != confirm_password:\n    raise ValueError('passwords differ')",
    "def login(username: str, password: str, token: str | None = None) -> Session:",
    "password = getpass.getpass()\ntoken = os.environ['GITHUB_TOKEN']\nsecret = settings.SECRET_KEY",
    "SECRET_KEY = os.environ.get('DJANGO_SECRET_KEY')",
    "api_key: Optional[SecretStr] = Field(default=None)",
    "self.api_key = api_key\nself.access_token = access_token",
    "max_tokens=4096, total_tokens: 512, prompt_tokens=12",
    '{"prompt_tokens": 606, "completion_tokens": 51, "token_type": "bearer", "expires_in": 3600}',
    "csrf_token = request.cookies.get('csrftoken')",
    "GOOGLE_APPLICATION_CREDENTIALS=/home/me/.config/gcloud/key.json",
    "KEY_FILE=./secrets/service.pem",
    "compass: north-west-by-north",
    "bypass: enabled-for-tests",
    # placeholders
    "export OPENAI_API_KEY=sk-...",
    "OPENAI_API_KEY=YOUR_API_KEY",
    'api_key = "YOUR_API_KEY_HERE"',
    "ANTHROPIC_API_KEY=<your-key>",
    "DATABASE_PASSWORD=${DB_PASSWORD}",
    "password: changeme",
    "password = '********'",
    'token = "xxxxxxxxxxxxxxxx"',
    "Authorization: Bearer $TOKEN",
    "Authorization: Bearer <token>",
    "Authorization: Bearer YOUR_ACCESS_TOKEN",
    "postgres://user:${PGPASSWORD}@localhost/db",
    "https://user:<password>@example.com",
    "AKIAXXXXXXXXXXXXXXXX",
    "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "api_key = sk-scripted",
    # look like the formats above and are not secrets
    "uuid4 " + "-".join(rnd(n, HEX, seed=f"u{n}") for n in (8, 4, 4, 4, 12)),
    "sha256 " + rnd(64, HEX, seed="sha4") + " sha1 " + rnd(40, HEX, seed="sha5"),
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA"
    + "A" * 40
    + base64.b64encode(random.Random("png2").randbytes(2000)).decode(),
    "!function(e,t){var n=e.a3s||{};n.k=function(r){return r.split('|')[0]};"
    "e.a3s=n}(window,document);var a=[1,2,3].map(function(x){return x*2}),b=a.join('-us');",
    "-----BEGIN CERTIFICATE-----\n"
    + "\n".join(
        base64.b64encode(random.Random("cert").randbytes(600)).decode()[i : i + 64]
        for i in range(0, 800, 64)
    )
    + "\n-----END CERTIFICATE-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + rnd(43, B64, seed="ed2") + " ops@host",
    "export GOOGLE_TOKEN=ya29.xxxx",
    "GCP_TOKEN=ya29.<YOUR_TOKEN>",
    "DOCKER_TOKEN=dckr_pat_xxxxx",
    "PULUMI_ACCESS_TOKEN=pul-<YOUR_TOKEN>",
    "machine api.example.com login me password <YOUR_TOKEN>",
    "the machine learning model uses a password manager",
    "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=<signature>",
    "v1.0-release-notes and NRAK-tracking and HRKU-ticket-123",
    "a time of 1700000000123456|abc in the log",
    # URLs and paths
    "http://127.0.0.1:43731/v1/chat/completions",
    "see https://docs.python.org/3/library/re.html#re.ASCII and git@github.com:org/repo.git",
    "ssh://git@github.com:22/org/repo.git",
    "/home/demo/projects/fix-oscar-2-000/docs/echo_0_1.md",
    "/usr/local/lib/python3.11/site-packages/SomePackage2/SubModule/Deep/Path/file.py",
    "C:\\Users\\Me\\AppData\\Local\\Programs\\Python\\Python311\\Lib\\site-packages",
    "a3s://tool-output/bash/9a401fda1c4f5e08 tool-output:bash:9a401fda1c4f5e08",
    # numbers and long words
    "A" * 64 + " " + "0" * 40 + " " + "ab" * 30,
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor",
]


# ---------------------------------------------------------------------------- places

PLACES = ("prompt", "tool-output", "artifact", "run-event", "object-key")


def load_parts(sid: str = CARRIER) -> dict[str, Any]:
    import a3s_nb
    from a3s_nb.sdk.capture import bundle_to_parts

    return bundle_to_parts(a3s_nb.FileStore(FIXTURE_STORE).load(sid))


def _first(items, pred):
    return next(i for i, x in enumerate(items) if pred(x))


def plant(
    parts: dict[str, Any], place: str, text: str, secret: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``parts`` with ``text`` written where a3s-code writes ``place``.

    Returns the copy and the JSON paths (``part:path``) where the text went.
    """
    p = copy.deepcopy(parts)
    msgs = p["session"]["messages"]
    runs = p["runs"]
    where: list[str] = []
    if place == "prompt":  # the user's message, the run's prompt, the agent_start event
        i = _first(msgs, lambda m: m["role"] == "user" and m["content"][0]["type"] == "text")
        msgs[i]["content"][0]["text"] += "\n" + text
        where.append(f"session:messages[{i}].content[0].text")
        snap = runs[0]["snapshot"]
        snap["prompt"] += "\n" + text
        where.append("runs:[0].snapshot.prompt")
        e = _first(runs[0]["events"], lambda e: e["event"]["type"] == "agent_start")
        runs[0]["events"][e]["event"]["prompt"] += "\n" + text
        where.append(f"runs:[0].events[{e}].event.prompt")
    elif place == "tool-output":  # the tool_result block and the tool_end event
        i = _first(
            msgs,
            lambda m: m["role"] == "user" and m["content"][0]["type"] == "tool_result",
        )
        block = msgs[i]["content"][0]
        block["content"] = f"{block['content']}\n{text}"
        where.append(f"session:messages[{i}].content[0].content")
        for r, run in enumerate(runs):
            ends = [k for k, e in enumerate(run["events"]) if e["event"]["type"] == "tool_end"]
            if ends:
                ev = run["events"][ends[0]]["event"]
                ev["output"] = f"{ev['output']}\n{text}"
                where.append(f"runs:[{r}].events[{ends[0]}].event.output")
                break
    elif place == "artifact":
        art = copy.deepcopy(load_parts(ARTIFACT_CARRIER)["artifacts"]["artifacts"][0])
        art["content"] = "line 1\n" + text + "\nline 3\n"
        art["original_bytes"] = art["shown_bytes"] = len(art["content"])
        p["artifacts"]["artifacts"] = [art]
        where.append("artifacts:artifacts[0].content")
    elif place == "run-event":  # split across two streamed deltas, text and tool output
        for kind in ("text_delta", "tool_output_delta"):
            r, k = _consecutive(runs, kind)
            first, second = runs[r]["events"][k]["event"], runs[r]["events"][k + 1]["event"]
            half = len(text) // 2
            if secret:  # cut the secret itself in two
                half = text.index(secret) + len(secret) // 2
            field = "text" if kind == "text_delta" else "delta"
            first[field] = first[field] + "\n" + text[:half]
            second[field] = text[half:] + "\n" + second[field]
            where.append(f"runs:[{r}].events[{k}].event.{field}")
    elif place == "object-key":  # the secret as a key of tool input and of event metadata
        i = _first(
            msgs,
            lambda m: m["role"] == "assistant" and m["content"][0]["type"] == "tool_use",
        )
        msgs[i]["content"][0]["input"][text] = "value"
        where.append(f"session:messages[{i}].content[0].input.<key>")
    else:
        raise ValueError(place)
    return p, where


def _consecutive(runs: list, kind: str) -> tuple[int, int]:
    for r, run in enumerate(runs):
        ev = run["events"]
        for k in range(len(ev) - 1):
            a, b = ev[k]["event"], ev[k + 1]["event"]
            if a["type"] == b["type"] == kind and a.get("id") == b.get("id"):
                return r, k
    raise LookupError(kind)
