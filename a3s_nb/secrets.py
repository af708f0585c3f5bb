"""Find (and optionally redact) secrets in what is about to be written to a store.

a3s-code writes prompts, model replies, tool input and tool output verbatim, so an API key
pasted into a prompt or printed by ``env`` ends up on disk. :func:`scan` walks the JSON of
every file of a session (values and object keys) and reports each secret by file part and
JSON path, with a masked preview that never contains the secret itself; :func:`redact`
replaces them with ``[REDACTED:<kind>]``.

What counts as a secret (the full table, and how it compares with gitleaks and
detect-secrets, is in ``docs/secrets.md``):

* provider keys and tokens by their format: OpenAI (``sk-``, ``sk-proj-``), Anthropic,
  Google API keys and OAuth client secrets, GitHub, GitLab, Slack (tokens and webhooks),
  Stripe, Twilio, SendGrid, Hugging Face, npm, PyPI, AWS access key ids, Azure storage
  keys, Groq, xAI, Perplexity, Replicate, Databricks, DigitalOcean, Shopify, Vault, Age,
  Square, Linear, Sentry, Postman, Grafana, Telegram bots, private key blocks, JWTs, GCP
  OAuth access and refresh tokens, Azure SAS signatures, Docker, Atlassian, Pulumi, New
  Relic, Doppler, Heroku, Cloudflare origin CA keys, and every other gitleaks rule with a
  telling prefix or structure (``docs/secrets.md`` lists them rule by rule);
* ``.netrc`` passwords (``machine <host> login <user> password <password>``);
* AWS secret access keys: written under a telling name, or a 40-character key within 200
  characters of an access key id or of the words ``aws`` / ``secret``;
* credentials in URLs (``postgres://user:pass@host``: the password);
* ``Authorization: Bearer ...`` / ``Basic ...`` values;
* the value assigned to a secret-named key: ``DATABASE_PASSWORD=...``, ``SECRET_KEY: ...``,
  ``"password": "..."``, ``apiKey = "..."``, and in parsed JSON the string under such a key;
* the value (8 characters or more) of every environment variable whose name says it is
  secret (``*KEY*``, ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``, ``*PASSWD*``,
  ``*CREDENTIAL*``).

Streamed run events (``text_delta``, ``tool_output_delta``, ``tool_input_delta``, ...)
are also scanned joined, per run and stream, so a secret split across two deltas is found;
it is redacted consistently in the pieces (the label in the first, nothing in the rest).
Format rules check that the random part looks random, so ordinary identifiers
(``sk-learn-compatible-estimator-wrapper``), placeholders (``sk-...``, ``YOUR_API_KEY``) and
a3s-code's own ids (``run-<uuid>``, ``call_<hex>``, ``task-run-task-<uuid>``) never match.

Speed: each file is cut into units (a message, a run, a trace, ...). A unit's compact JSON
is searched for the literal anchors of every rule at C speed, and only units with an anchor
are walked string by string. A unit found clean is remembered (a keyed digest of its JSON,
in a bounded in-process cache keyed also by the rule set and the secret environment values),
so saving a long session again rescans only what changed. The rules' regular expressions
are compiled by the first scan that needs them (``_Lazy``), not by ``import a3s_nb``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SecretFinding",
    "clear_cache",
    "format_findings",
    "redact",
    "scan",
    "secret_env_values",
]

#: Bumped whenever a rule changes, so cached "clean" verdicts of older rules are not reused.
RULES_VERSION = "3"

_A = re.ASCII


class _Lazy:
    """A regular expression compiled where it is first used.

    The scanner holds about 130 of them; compiling them all cost every ``import a3s_nb``
    about 40 ms, though most kernels never scan (they read, or save nothing). The first
    method asked of one compiles it and keeps the compiled pattern's methods on this
    object, where later calls find them at once (no call through ``__getattr__`` again).
    ``pattern`` is there from the start: anchors join their checks' patterns unread.
    """

    def __init__(self, pattern: Any, flags: int = 0) -> None:
        self.pattern = pattern
        self._flags = flags

    def __getattr__(self, name: str) -> Any:  # only for what is not on the object yet
        if name.startswith("__"):
            raise AttributeError(name)
        compiled = re.compile(self.pattern, self._flags)
        value = getattr(compiled, name)
        for method in ("search", "match", "fullmatch", "finditer", "findall", "sub", "split"):
            self.__dict__[method] = getattr(compiled, method)
        return value


# A token character on either side would mean we matched inside a longer word.
_L = r"(?<![A-Za-z0-9_\-])"
_R = r"(?![A-Za-z0-9_\-])"

# ----------------------------------------------------------------------------- checks


def _entropy(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values()) if n else 0.0


def _random(s: str, classes: int = 2) -> bool:
    """True when ``s`` looks machine-made: mixed character classes and high entropy."""
    kinds = any(c.isupper() for c in s) + any(c.islower() for c in s) + any(c.isdigit() for c in s)
    if kinds < classes or len(s) < 8:
        return False
    return _entropy(s) >= min(3.0, 0.75 * math.log2(len(s)))


def _wordy(s: str) -> bool:
    """Words glued together (AllowEc2InstancesWithEncryptedEbsVolumes): a name, not a key."""
    return sum(map(len, _WORDS.findall(s))) > 0.4 * len(s)


_WORDS = _Lazy(r"[a-z]{5,}", _A)


_PLACEHOLDER = _Lazy(
    r"(?i)(?:x{3,}|\*{3,}|\.{3,}|-{3,}|_{3,}|#{3,}|0{4,}|"
    r"0?123456789?\d*|qwerty\d*|(?:dead)?beef\w*|#[0-9a-f]{3,8}|"
    r"change_?(?:me|it)|replace_?me|pass(?:word|wd)?\d*|secret|token|pwd|"
    r"none|null|nil|true|false|undefined|empty|required|optional|unset|"
    r"str|string|bytes|int|secretstr|secretbytes|any|object|"
    r"bearer|basic|todo|tbd|n/a|redacted|hidden|masked|"
    r"(?:example|sample|dummy|fake|mock|test|placeholder|foo|bar|baz)\S*|"
    r"(?:your|my|the|some|insert|enter|put)[_\- ]?[\w\-]*|"
    r"\w*(?:_here|xxx\w*)|"
    r".*\.\.\.|.*(?:…|\*\*\*|xxxx).*|"
    # templates and references: <...>, {{...}}, ${...}, $(...), $VAR, %s, {name}, [...]
    r"<.*|\{.*|:.*|.*\{[^}]*\}.*|.*<[A-Za-z][\w \-]*(?:>.*)?|\$\{.*|\$\(.*|\$[A-Za-z_]\w*|%\(?\w*\)?[sd]|\[.*\]?)"
)
# A name rather than a value: next_token, NextToken, page_token, WebTest.COOKIE_SECRET
_NAME_LIKE = _Lazy(
    r"[A-Za-z]+(?:_[A-Za-z]+)+|[A-Za-z][a-z]+(?:[A-Z][a-z]+)+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"
    r"|[A-Za-z_]\w*(?:\.\w+)+:[A-Za-z_]\w*"  # module.path:Name
    r"|[a-z]+\??",  # one lower-case word: a type ("string?"), a keyword, a marker
    _A,
)


def _placeholder(v: str) -> bool:
    return bool(_PLACEHOLDER.fullmatch(v)) or "redacted" in v.lower()


def _group_random(group: int | str = 0, skip: int = 0, classes: int = 2) -> Callable:
    def check(m: re.Match[str], text: str) -> bool:
        return _random(m.group(group)[skip:], classes)

    return check


# ------------------------------------------------------------------- secret-named keys

_NAME_WORD = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret(?:[_\-]?key)?|token|api[_\-]?key|apikey|access[_\-]?key|"
    r"private[_\-]?key|auth[_\-]?key|credentials?)"
)
# A secret word ending a key name, starting the name or after a separator or a camelCase
# hump: DATABASE_PASSWORD, SECRET_KEY, apiKey, client-secret; not compass, bypass, tokens.
_NAME = (
    r"(?:[A-Za-z0-9_.\-]{0,60}?(?:[_.\-]|(?-i:(?<=[a-z0-9])(?=[A-Z]))))?"
    + _NAME_WORD
    + r"(?![A-Za-z0-9])"
)
_NAME_RE = _Lazy(r"(?i)" + _NAME, _A)
# Words that make a secret-named key something else: next_token, input_token,
# publicKeyToken, csrf_token, max_tokens, token_type (the last ones end in no secret word).
_NOT_SECRET_WORDS = frozenset(
    [
        "csrf",
        "xsrf",
        "public",
        "publishable",
        "page",
        "continuation",
        "sort",
        "cancel",
        "cancellation",
        "max",
        "min",
        "num",
        "next",
        "input",
        "output",
        "marker",
        "type",
        "count",
        "limit",
    ]
)
_NAME_PARTS = _Lazy(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", _A)


def _name_not_secret(name: str) -> bool:
    return any(w.lower() in _NOT_SECRET_WORDS for w in _NAME_PARTS.findall(name))


# Anchored on the secret word (a regex that starts with the name would be tried at every
# position); the rest of the name is read backwards by _check_assign.
_ASSIGN = _Lazy(
    r"(?i)(?P<word>" + _NAME_WORD + r")(?![A-Za-z0-9])(?P<q>[\"'\]\\]{0,3})"
    r"(?P<s1>[ \t]{0,3})(?P<sep>:=|=>|=|:)(?P<s2>[ \t]{0,3})"
    # the value: in quotes, in escaped quotes (JSON inside a string), or bare
    r"(?:\"(?P<dq>[^\"\n]{1,300})\"|'(?P<sq>[^'\n]{1,300})'|"
    r"\\\"(?P<eq>[^\"\\\n]{1,300})\\\"|"
    r"(?P<bare>[^\s\"'`,;&)\]}>\\\x85\xa0\u2028\u2029]{1,300}))",
    _A,
)
_NAME_HEAD = _Lazy(r"[A-Za-z0-9_.\-]{0,60}\Z", _A)
_IDENT = _Lazy(r"[A-Za-z_]\w*", _A)
_DOTTED = _Lazy(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", _A)
_PATHLIKE = _Lazy(
    r"(?:~|\.{1,2})?/[^/\s].*|[A-Za-z]:\\.*|.*\.(?:json|pem|key|crt|cer|p12|pfx|txt|ya?ml|env|ini|toml)",
    _A | re.IGNORECASE,
)


def _classes(v: str) -> int:
    return (
        any(c.islower() for c in v)
        + any(c.isupper() for c in v)
        + any(c.isdigit() for c in v)
        + any(not c.isalnum() and c not in "-_." for c in v)
    )


def _secret_value(v: str, *, quoted: bool, env_style: bool = False, tight: bool = True) -> bool:
    """Is ``v``, assigned to a secret-named key, a real value (not code, a path or a stub)?"""
    if len(v) < 6 or any(c.isspace() for c in v) or _placeholder(v):
        return False
    if "://" in v or _PATHLIKE.fullmatch(v):
        return False
    if _NAME_LIKE.fullmatch(v):
        return False
    if quoted:
        return True
    if "(" in v or "[" in v or _DOTTED.fullmatch(v):  # code: a call, an index, an attribute
        return False
    if env_style:  # a literal in an env file, YAML, INI
        return True
    if "*" in v or re.match(r"[A-Za-z_]\w*=", v):  # an expression, a keyword argument
        return False
    if _IDENT.fullmatch(v):  # a bare word is a name in code, unless NAME=word2 with digits
        return tight and any(c.isdigit() for c in v) and any(c.isalpha() for c in v)
    return _classes(v) >= 2


def _check_assign(m: re.Match[str], text: str) -> bool:
    start = m.start("word")
    head = _NAME_HEAD.search(text, max(0, start - 60), start)
    head_text = head.group(0) if head else ""
    if head_text[:1] in ("n", "t", "r") and head and text[head.start() - 1 : head.start()] == "\\":
        head_text = head_text[1:]  # an escaped line break before the name: \nDB_PASSWORD=
    name = head_text + m.group("word")
    if not _NAME_RE.fullmatch(name) or _name_not_secret(name):
        return False
    if m.group("bare") is None:
        return _secret_value(m.group("dq") or m.group("sq") or m.group("eq"), quoted=True)
    if m.group("sep") == ":" and re.match(r"\s*=(?!=)", text[m.end() : m.end() + 8]):
        return False  # a type annotation: NAME: Type = ...
    # NAME=value or NAME: value under an upper-case name: an env file, YAML, INI
    upper = not any(c.islower() for c in name)
    tight = not m.group("s1") and (not m.group("s2") or m.group("sep") == ":")
    return _secret_value(m.group("bare"), quoted=False, env_style=upper and tight, tight=tight)


def _secret_key(key: str) -> bool:
    return bool(_NAME_RE.fullmatch(key)) and not _name_not_secret(key)


# ------------------------------------------------------------------------ other checks

_AWS_CONTEXT = _Lazy(r"(?i:aws|secret)|(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}", _A)
_AWS_NEAR_CHARS = 200


def _check_aws_near(m: re.Match[str], text: str) -> bool:
    v = m.group(0)
    if not _random(v, classes=3) or _wordy(v) or v.count("/") > 3 or "//" in v:
        return False
    lo, hi = max(0, m.start() - _AWS_NEAR_CHARS), m.end() + _AWS_NEAR_CHARS
    return any(
        c.end() <= m.start() or c.start() >= m.end() for c in _AWS_CONTEXT.finditer(text, lo, hi)
    )


def _check_azure_near(m: re.Match[str], text: str) -> bool:
    lo, hi = max(0, m.start() - _AWS_NEAR_CHARS), m.end() + _AWS_NEAR_CHARS
    return "azure" in text[lo:hi].lower() and _random(m.group(0), classes=3)


def _check_url(m: re.Match[str], text: str) -> bool:
    return not _placeholder(m.group("pw"))


def _check_bearer(m: re.Match[str], text: str) -> bool:
    v = m.group(1)
    return not _placeholder(v) and _classes(v) >= 2


# ------------------------------------------------------------------------------ anchors
#
# Every rule has literal anchors, one of which each of its matches contains. They are
# searched in a unit's compact JSON, where a string's characters appear as they are except
# `"`, `\` and control characters, which no anchor contains. Case-exact formats are searched
# in the JSON itself, the others in its lower-cased copy. An anchor that is common in
# ordinary text carries checks: regexes one of which must match at (or search around) the
# anchor. Checks are looser than the rules (they also accept JSON escapes such as `\n` where
# a rule accepts white space), so a unit with no checked anchor cannot hold a match.


@dataclass(frozen=True, eq=False)
class _Check:
    regex: re.Pattern[bytes]
    back: int = 0  # matched from this many bytes before the anchor (search: window start)
    ahead: int = 0  # searched up to this many bytes after the anchor's end
    search: bool = False  # search the window instead of matching at its start


@dataclass(frozen=True, eq=False)
class _Anchor:
    text: bytes
    lower: bool  # searched in the lower-cased text (the anchor is lower case)
    checks: tuple[_Check, ...] = ()

    def __post_init__(self) -> None:
        # Checks matched at the anchor start with it: one regex search finds the first
        # checked occurrence (the regex engine scans for a literal prefix at C speed).
        scan = None
        if not self.checks:
            scan = _Lazy(re.escape(self.text))
        elif all(not c.search and not c.back for c in self.checks):
            scan = _Lazy(b"|".join(c.regex.pattern for c in self.checks))
        object.__setattr__(self, "scan", scan)

    def found(self, raw: bytes, low: bytes, lo: int = 0, hi: int | None = None) -> int:
        """The position of the first checked occurrence in ``[lo, hi)``, or -1."""
        buf = low if self.lower else raw
        hi = len(buf) if hi is None else hi
        scan: re.Pattern[bytes] | None = self.scan  # type: ignore[attr-defined]
        if scan is not None:
            m = scan.search(buf, lo, hi)
            return -1 if m is None else m.start()
        text, checks = self.text, self.checks
        at = buf.find(text, lo, hi)
        while at != -1:
            for c in checks:
                start = max(lo, at - c.back)
                if c.search:
                    if c.regex.search(buf, start, min(hi, at + len(text) + c.ahead)):
                        return at
                elif c.regex.match(buf, start, hi):
                    return at
            at = buf.find(text, at + 1, hi)
        return -1


def _a(text: bytes, lower: bool = False, *checks: _Check) -> _Anchor:
    return _Anchor(text, lower, checks)


def _m(regex: bytes, back: int = 0) -> _Check:
    """A check matched where the anchor starts (``back`` bytes before it)."""
    return _Check(_Lazy(regex), back)


def _s(regex: bytes, back: int, ahead: int) -> _Check:
    """A check searched from ``back`` bytes before the anchor to ``ahead`` after it."""
    return _Check(_Lazy(regex), back, ahead, search=True)


def _raw(*texts: bytes) -> tuple[_Anchor, ...]:
    return tuple(_a(t) for t in texts)


# JSON writes white space inside strings as \n, \t, ... and other controls as \u00XX.
_ESC_B = rb"(?:(?<=\\[bfnrt])|(?<=\\u00[0-9a-f]{2}))"
_SEP_B = rb"(?:[\"'\]\\ \t]|\\[nrt]){0,12}(?::=|=>|=|:)"
_AFTER_NAME_B = rb"(?![a-z0-9])" + _SEP_B
_NEAR = _AWS_NEAR_CHARS


def _run_check(run: bytes) -> _Check:
    """A bounded run of key characters within reach of a telling word."""
    return _s(
        rb"(?:(?<![a-z0-9/+=_\-])|" + _ESC_B + rb")" + run + rb"(?![a-z0-9/+=_\-])",
        _NEAR + 50,
        _NEAR + 50,
    )


_RUN40 = _run_check(rb"[a-z0-9/+]{40}")
_SK = _a(
    b"sk-",
    False,
    _m(
        rb"sk-(?:(?<![a-z0-9_\-]sk-)|(?<=\\[bfnrt]sk-)|(?<=\\u00[0-9a-f]{2}sk-))"
        rb"[A-Za-z0-9_\-]{20}"
    ),
)
_GH = _a(b"gh", False, _m(rb"gh[pousr]_[A-Za-z0-9]{36}"))
_GL = _a(
    b"gl",
    False,
    _m(rb"gl(?:(?:pat|dt|rt|ptt|cbt|ft|imt|oas|soat|agent|ffct)-|(?:sa|c)_)"),
)
_STRIPE = _a(b"k_", False, _m(rb"k_(?<=[sr]k_)(?:live|test|prod)_"))
_AWS_ID = _a(b"IA", False, _m(rb"IA(?<=(?:AK|AS|AB)IA)[A-Z0-9]{16}"))
_AWS_ID2 = _a(b"ACCA", False, _m(rb"ACCA[A-Z0-9]{16}"))
_AWS_ID3 = _a(b"A3T", False, _m(rb"A3T[A-Z0-9]{17}"))
_AWS_WORD = _a(b"aws", True, _RUN40)
_SECRET = _a(  # one anchor for the three rules that start from the word "secret"
    b"secret",
    True,
    _m(rb"secret[a-z_\-.]{0,20}" + _SEP_B),
    _RUN40,
)
_KEY = _a(
    b"key",
    True,
    _m(
        rb"key(?:(?:"
        + b"|".join(
            b"(?<=" + w + sep + b"key)"
            for w in (b"api", b"access", b"private", b"auth", b"secret")
            for sep in (b"", b"_", b"-")
        )
        + rb")"
        + _AFTER_NAME_B
        + rb"|(?<=accountkey))"
    ),
)
_ASSIGN_ANCHORS = (
    *(_a(w, True, _m(w + rb"[a-z]{0,6}" + _SEP_B)) for w in (b"pass", b"pwd", b"credential")),
    _a(b"token", True, _m(b"token" + _AFTER_NAME_B)),
    _SECRET,
    _KEY,
)

# ---------------------------------------------------------------------------- rules


@dataclass(frozen=True, eq=False)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    anchors: tuple[_Anchor, ...]
    group: int | str = 0
    check: Callable[[re.Match[str], str], bool] | None = None


def _rule(
    kind: str,
    regex: str,
    anchors: tuple[_Anchor, ...],
    group: int | str = 0,
    check: Callable | None = None,
) -> _Rule:
    return _Rule(kind, _Lazy(regex, _A), anchors, group, check)


def _token(
    kind: str,
    prefix: str,
    body: str,
    anchors: tuple[_Anchor, ...],
    skip: int = 0,
    classes: int = 2,
) -> _Rule:
    """A token made of a literal prefix and a random body, bounded on both sides."""
    return _rule(
        kind, _L + f"(?:{prefix}){body}" + _R, anchors, check=_group_random(0, skip, classes)
    )


# Token boundaries that also exclude base64's "+" and "/", for formats that could otherwise
# start or end inside a base64 blob (images, certificates, key material).
_L64 = r"(?<![A-Za-z0-9_\-+/])"
_R64 = r"(?![A-Za-z0-9_\-+/])"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _check_value(group: int | str) -> Callable[[re.Match[str], str], bool]:
    """The value in ``group`` is a literal, not a placeholder (``<password>``, ``$PASS``)."""

    def check(m: re.Match[str], text: str) -> bool:
        return not _placeholder(m.group(group))

    return check


_SAS_VERSION = _Lazy(r"(?<![A-Za-z0-9_])sv=\d{4}-\d{2}-\d{2}", _A)


def _check_sas(m: re.Match[str], text: str) -> bool:
    """An Azure SAS signature: ``sig=`` in a query string that also has ``sv=<date>``."""
    lo, hi = max(0, m.start() - 600), m.end() + 600
    query = (
        re.split(r"[\s\"'<>]", text[lo : m.start()])[-1]
        + re.split(r"[\s\"'<>]", text[m.start() : hi])[0]
    )
    return bool(_SAS_VERSION.search(query)) and _random(m.group(1), classes=2)


# Anchors shared by several rules (one pass over a unit's JSON each).
_EYJ = _a(b"eyJ")
_V1 = _a(b"_v1_")
_NR = _a(b"NR", False, _m(rb"NR(?:AK|II|JS)-"))
_EAA = _a(
    b"EAA",
    False,
    _m(rb"EAA(?:[MC][A-Za-z0-9]{100}|A[A-Za-z0-9_\-]{22,60}(?![A-Za-z0-9_\-+/]))"),
)

# Rules for gitleaks' formats with a telling prefix or structure, and a few more
# (docs/secrets.md lists each gitleaks rule and the kind that covers it).
_PROVIDER_RULES: list[_Rule] = [
    # Google: OAuth access tokens and refresh tokens
    _token("gcp-oauth-token", r"ya29\.", r"[A-Za-z0-9_\-]{30,}", _raw(b"ya29."), skip=5),
    _token("google-refresh-token", "1//0", r"[A-Za-z0-9_\-]{40,}", _raw(b"1//0"), skip=4),
    _rule(
        "azure-sas-token",
        r"(?<![A-Za-z0-9_])sig=([A-Za-z0-9%+/]{20,}={0,2})",
        (_a(b"sig=", True, _s(rb"sv=\d{4}-\d\d-\d\d", 700, 700)),),
        1,
        _check_sas,
    ),
    _rule(
        "azure-ad-client-secret",
        r"(?<![A-Za-z0-9_~.\-])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}(?![A-Za-z0-9_~.\-])",
        (_a(b"Q~", False, _m(rb"Q~(?<=[0-9]Q~)[A-Za-z0-9_~.\-]{31}")),),
        check=_group_random(0, 0, 3),
    ),
    _rule(
        "azure-shir-key",
        _L + r"IR@[0-9a-zA-Z\-]{36}@[^@\s]{1,100}@[0-9a-zA-Z\-=]*@([A-Za-z0-9+/=]{44})",
        _raw(b"IR@"),
        1,
    ),
    _token("docker-token", r"dckr_(?:pat|oat)_", r"[A-Za-z0-9_\-]{20,}", _raw(b"dckr_"), skip=9),
    _token("atlassian-token", "ATATT3", r"[A-Za-z0-9_\-=]{150,}", _raw(b"ATATT3"), skip=6),
    _token(
        "pulumi-token",
        "pul-",
        r"[a-f0-9]{40}",
        (_a(b"pul-", False, _m(rb"pul-[a-f0-9]{40}")),),
        skip=4,
    ),
    _token("newrelic-key", "NRAK-", r"[A-Za-z0-9]{27}", (_NR,), skip=5),
    _token("newrelic-key", "NRII-", r"[A-Za-z0-9\-]{32}", (_NR,), skip=5),
    _token("newrelic-key", "NRJS-", r"[a-f0-9]{19}", (_NR,), skip=5),
    _token(
        "doppler-token",
        r"dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_\-]{1,40}\.)?",
        r"[A-Za-z0-9]{40,}",
        (_a(b"dp.", False, _m(rb"dp\.(?:pt|st|sa|ct|scim|audit)\.")),),
        skip=6,
    ),
    _token("heroku-key", "HRKU-", r"[A-Za-z0-9_\-]{58,}", _raw(b"HRKU-"), skip=5),
    _token(
        "cloudflare-origin-ca-key",
        r"v1\.0-",
        r"[a-f0-9]{24}-[a-f0-9]{146}",
        (_a(b"v1.0-", False, _m(rb"v1\.0-[a-f0-9]{24}-")),),
        skip=5,
    ),
    _token(
        "1password-key",
        "A3-",
        r"[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",
        (_a(b"A3-", False, _m(rb"A3-[A-Z0-9]{6}-")),),
        skip=3,
    ),
    _token("1password-token", "ops_eyJ", r"[A-Za-z0-9+/]{250,}={0,3}", (_EYJ,), skip=4),
    _token("adobe-client-secret", "p8e-", r"[A-Za-z0-9]{32}", _raw(b"p8e-"), skip=4),
    _token(
        "adyen-key",
        r"AQE[a-z0-9]{5,}\.",
        r"[A-Za-z0-9_=\-]{50,80}",
        (_a(b"AQE", False, _m(rb"AQE[a-z0-9]{5,}\.")),),
    ),
    _token(
        "alibaba-access-key-id",
        "LTAI",
        r"[A-Za-z0-9]{20}",
        (_a(b"LTAI", False, _m(rb"LTAI[A-Za-z0-9]{20}(?![A-Za-z0-9+/])")),),
        skip=4,
    ),
    _token(
        "artifactory-token",
        "AKCp",
        r"[A-Za-z0-9]{69}",
        (_a(b"AKCp", False, _m(rb"AKCp[A-Za-z0-9]{69}(?![A-Za-z0-9+/])")),),
        skip=4,
    ),
    _rule(
        "artifactory-token",
        _L64 + r"cmVmd[A-Za-z0-9]{59}" + _R64 + r"(?!=)",
        (_a(b"cmVmd", False, _m(rb"cmVmd[A-Za-z0-9]{59}(?![A-Za-z0-9+/=])")),),
        check=_group_random(0, 5, 3),
    ),
    _token(
        "authress-key",
        r"(?:sc|ext|scauth|authress)_",
        r"[A-Za-z0-9]{5,30}\.[A-Za-z0-9]{4,6}\.acc[_\-][A-Za-z0-9\-]{10,32}\.[A-Za-z0-9+/_=\-]{30,120}",
        (_a(b".acc", False, _m(rb"\.acc[_\-]")),),
    ),
    _token(
        "braintree-token",
        r"access_token\$(?:production|sandbox)\$",
        r"[a-z0-9]{16}",
        _raw(b"access_token$"),
        skip=21,
    ),
    _token("castai-key", "castai_v1_", r"[A-Za-z0-9]{64}_[A-Za-z0-9]{8}", (_V1,), skip=10),
    _token(
        "chieftools-token",
        "ct[por]_",
        r"[A-Za-z0-9]{30,248}",
        (_a(b"ct", False, _m(rb"ct[por]_[A-Za-z0-9]{30}")),),
        skip=4,
    ),
    _rule(
        "claude-session-url",
        r"(?i:https?://claude\.ai/code/)(session_[A-Za-z0-9]{16,})",
        (_a(b"claude.ai/code/session_", True),),
        1,
    ),
    _token(
        "clickhouse-key",
        "4b1d",
        r"[A-Za-z0-9]{38}",
        (_a(b"4b1d", False, _m(rb"4b1d[A-Za-z0-9]{38}(?![A-Za-z0-9])")),),
        skip=4,
        classes=3,
    ),
    _token("clojars-token", "(?i:CLOJARS_)", r"[A-Za-z0-9]{60}", (_a(b"clojars_", True),), skip=8),
    _token(
        "definednetworking-token",
        "dnkey-",
        r"[A-Za-z0-9=_\-]{26}-[A-Za-z0-9=_\-]{52}",
        _raw(b"dnkey-"),
        skip=6,
    ),
    _token(
        "django-secret-key",
        "django-insecure-",
        r"[^\s\"'`]{20,250}",
        _raw(b"django-insecure-"),
        skip=16,
    ),
    _token(
        "dropbox-token",
        r"sl\.(?:u\.)?",
        r"[A-Za-z0-9\-=_]{135,}",
        (_a(b"sl.", False, _m(rb"sl\.(?:u\.)?[A-Za-z0-9\-=_]{135}")),),
        skip=3,
    ),
    _token(
        "duffel-token", r"duffel_(?:test|live)_", r"[A-Za-z0-9_\-=]{43}", _raw(b"duffel_"), skip=12
    ),
    _token(
        "dynatrace-token",
        r"dt0c01\.",
        r"[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}",
        _raw(b"dt0c01."),
        skip=7,
    ),
    _token(
        "easypost-token",
        "EZ[AT]K",
        r"[A-Za-z0-9]{54}",
        (_a(b"EZ", False, _m(rb"EZ[AT]K[A-Za-z0-9]{54}")),),
        skip=4,
    ),
    _rule(
        "facebook-token",
        r"(?<![0-9])[0-9]{15,16}(?:\||%7[Cc])[0-9A-Za-z_\-]{27,40}" + _R,
        (
            _a(b"|", False, _m(rb"\|(?<=[0-9]{15}\|)[0-9A-Za-z_\-]{27}")),
            _a(b"%7c", True, _m(rb"%7c(?<=[0-9]{15}%7c)[0-9a-z_\-]{27}")),
        ),
        check=lambda m, text: _random(re.split(r"\||%7[Cc]", m.group(0))[1]),
    ),
    _rule(  # Facebook page tokens (EAAM, EAAC) and Square access tokens (EAAA)
        "facebook-token",
        _L64 + r"EAA[MC][A-Za-z0-9]{100,}" + _R64,
        (_EAA,),
        check=_group_random(0, 4, 3),
    ),
    _token(
        "flutterwave-key",
        r"FLWSECK(?:_TEST)?-",
        r"[A-Za-z0-9]{12,32}(?:-X)?",
        _raw(b"FLWSECK"),
        skip=13,
    ),
    _token("flyio-token", "fo1_", r"[A-Za-z0-9_\-]{43}", _raw(b"fo1_"), skip=4),
    _token(
        "flyio-token",
        r"fm(?:1[ar]|2)_",
        r"[A-Za-z0-9+/]{100,}={0,3}",
        (_a(b"fm", False, _m(rb"fm(?:1[ar]|2)_[A-Za-z0-9+/]{100}")),),
        skip=5,
    ),
    _token("frameio-token", "fio-u-", r"[A-Za-z0-9_\-=]{64}", _raw(b"fio-u-"), skip=6),
    _token("gitlab-token", "GR1348941", r"[A-Za-z0-9_\-]{20,}", _raw(b"GR1348941"), skip=9),
    _rule(
        "gitlab-token",
        r"_gitlab_session=([0-9a-z]{32})" + _R,
        _raw(b"_gitlab_session="),
        1,
        _group_random(1),
    ),
    _token("grafana-token", "eyJrIjoi", r"[A-Za-z0-9]{70,400}={0,3}", (_EYJ,), skip=8),
    _token(
        "harness-token",
        r"(?:pat|sat)\.",
        r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{20}",
        (_a(b"at.", False, _m(rb"at\.(?<=[ps]at\.)[A-Za-z0-9_\-]{22}\.")),),
        skip=4,
    ),
    _rule(
        "terraform-token",
        _L + r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70}" + _R,
        _raw(b".atlasv1."),
        check=_group_random(0, 23),
    ),
    _token(
        "infracost-token",
        "ico-",
        r"[A-Za-z0-9]{32}",
        (_a(b"ico-", False, _m(rb"ico-[A-Za-z0-9]{32}")),),
        skip=4,
    ),
    _token("intra42-secret", r"s-s4t2(?:ud|af)-", r"[a-f0-9]{64}", _raw(b"s-s4t2"), skip=9),
    _rule(
        "jwt",
        _L64
        + r"ZXlK(?:aGJHY2lPaU|aGNIVWlPaU|aGNIWWlPaU|aGRXUWlPaU|aU5qUWlP|amNtbDBJanBi|amRIa2lPaU|"
        r"bGNHc2lPbn|bGJtTWlPaU|cWEzVWlPaU|cWQyc2lPb|cGMzTWlPaU|cGRpSTZJ|cmFXUWlP|"
        r"clpYbGZiM0J6SWpwY|cmRIa2lPaUp|dWIyNWpaU0k2|d01tTWlP|d01uTWlPaU|d2NIUWlPaU|emRXSWlPaU|"
        r"emRuUWlP|MFlXY2lPaU|MGVYQWlPaUp|MWNtd2l|MWMyVWlPaUp|MlpYSWlPaU|MlpYSnphVzl1SWpv|NElqb2|"
        r"NE5XTWlP|NE5YUWlPaU|NE5YUWpVekkxTmlJNkl|NE5YVWlPaU|NmFYQWlPaU)[A-Za-z0-9/_+\-]{40,}={0,2}",
        _raw(b"ZXlK"),
    ),
    _token(
        "langsmith-key", r"lsv2_(?:pt|sk)_", r"[a-z0-9]{32}_[a-z0-9]{10}", _raw(b"lsv2_"), skip=8
    ),
    _rule(
        "mailchimp-key",
        _L + r"[a-f0-9]{32}-us[0-9]{1,2}" + _R,
        (_a(b"-us", False, _m(rb"-us(?<=[a-f0-9]{32}-us)[0-9]")),),
        check=_group_random(0),
    ),
    _token("maxmind-key", r"[A-Za-z0-9]{6}_", r"[A-Za-z0-9]{29}_mmk", _raw(b"_mmk"), skip=7),
    _rule(
        "teams-webhook",
        r"(?i:https://[a-z0-9]+\.webhook\.office\.com/webhookb2/)"
        r"([a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}@[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}"
        r"/IncomingWebhook/[a-z0-9]{32}/[a-z0-9]{8}-(?:[a-z0-9]{4}-){3}[a-z0-9]{12}(?:/[A-Za-z0-9_\-]+)?)",
        (_a(b"webhookb2/", True),),
        1,
    ),
    _rule(
        "nuget-password",
        r"(?i:<add\s+key=\"(?:ClearText)?Password\"\s+value=\")([^\"]{1,300})\"",
        (_a(b"<add key=", True),),
        1,
        _check_value(1),
    ),
    _token("notion-token", "ntn_", r"[0-9]{11}[A-Za-z0-9]{35}", _raw(b"ntn_"), skip=4),
    _token("octopus-key", "API-", r"[A-Z0-9]{26}", _raw(b"API-"), skip=4),
    _token("openshift-token", "sha256~", r"[A-Za-z0-9_\-]{43}", _raw(b"sha256~"), skip=7),
    _rule(
        "plaid-token",
        _L + r"access-(?:sandbox|development|production)-" + _UUID + _R,
        (_a(b"access-", False, _m(rb"access-(?:sandbox|development|production)-")),),
    ),
    _token(
        "planetscale-token",
        r"pscale_(?:tkn|oauth|pw)_",
        r"[A-Za-z0-9_=.\-]{32,64}",
        _raw(b"pscale_"),
        skip=10,
    ),
    _token("prefect-token", "pnu_", r"[A-Za-z0-9]{36}", _raw(b"pnu_"), skip=4),
    _token("readme-token", "rdme_", r"[a-z0-9]{70}", _raw(b"rdme_"), skip=5),
    _token("rubygems-token", "rubygems_", r"[a-f0-9]{48}", _raw(b"rubygems_"), skip=9),
    _token("scalingo-token", "tk-us-", r"[A-Za-z0-9_\-]{48}", _raw(b"tk-us-"), skip=6),
    _token(
        "sendinblue-key", "xkeysib-", r"[a-f0-9]{64}-[A-Za-z0-9]{16}", _raw(b"xkeysib-"), skip=8
    ),
    _token(
        "settlemint-token",
        r"sm_(?:aat|pat|sat)_",
        r"[A-Za-z0-9]{16}",
        (_a(b"sm_", False, _m(rb"sm_(?:aat|pat|sat)_")),),
        skip=7,
    ),
    _token("shippo-token", r"shippo_(?:live|test)_", r"[a-fA-F0-9]{40}", _raw(b"shippo_"), skip=12),
    _rule(
        "sidekiq-secret",
        r"(?i:BUNDLE_(?:ENTERPRISE|GEMS)__CONTRIBSYS__COM)[\"'\]]{0,2}\s{0,3}(?::=|=>|=|:)\s{0,3}"
        r"[\"']?([a-f0-9]{8}:[a-f0-9]{8})" + _R,
        (_a(b"__contribsys__com", True),),
        1,
    ),
    _token(
        "sourcegraph-token",
        r"sgp_(?:[a-fA-F0-9]{16}_|local_)?",
        r"[a-fA-F0-9]{40}",
        _raw(b"sgp_"),
        skip=4,
    ),
    _rule(
        "square-token",
        _L64 + r"EAAA[A-Za-z0-9_\-]{22,60}" + _R64,
        (_EAA,),
        check=_group_random(0, 4, 3),
    ),
    _token("typeform-token", "tfp_", r"[A-Za-z0-9_.=\-]{59}", _raw(b"tfp_"), skip=4),
    _rule(
        "twitter-bearer-token",
        r"(?<![A-Za-z0-9_\-+/%])A{22}([A-Za-z0-9%]{80,100})(?![A-Za-z0-9_\-+/%])",
        (_a(b"A" * 22, False, _m(re.escape(b"A" * 22) + rb"[A-Za-z0-9%]{80}")),),
        check=_group_random(1, 0, 3),
    ),
    _token(
        "yandex-key",
        "AQVN",
        r"[A-Za-z0-9_\-]{35,38}",
        (_a(b"AQVN", False, _m(rb"AQVN[A-Za-z0-9_\-]{35}")),),
        skip=4,
    ),
    _rule(
        "ansible-vault",
        r"\$ANSIBLE_VAULT;[0-9]\.[0-9];AES256(?:;[\w\-]+)?[ \t]*\r?\n((?:[ \t]*[0-9a-f]{20,80}[ \t]*(?:\r?\n|$))+)",
        _raw(b"$ANSIBLE_VAULT;"),
        1,
    ),
    _rule(  # ~/.netrc: machine <host> login <user> password <password>
        "netrc-password",
        r"(?<![A-Za-z0-9_\-])machine[ \t]+\S+(?:\s+(?:login|account|port)\s+\S+)*\s+password\s+(\S+)",
        (_a(b"machine", True, _s(rb"(?:\s|\\[nrt])password(?:\s|\\[nrt])", 0, 400)),),
        1,
        _check_value(1),
    ),
]

#: Order matters: the first rule that claims a span wins, so specific ones come first.
_RULES: list[_Rule] = [
    _rule(
        "private-key",
        r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:\s|\\[nr])*"
        r"(?:[A-Za-z-]+:[^\n\\]*(?:\s|\\[nr])+)*[A-Za-z0-9+/=]{24}"
        r"[\s\S]*?(?:-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|\Z)",
        _raw(b"-----BEGIN"),
    ),
    _token("anthropic-key", "sk-ant-", r"[A-Za-z0-9_\-]{20,}", (_SK,), skip=7),
    _token("openai-key", r"sk-(?!ant-)", r"[A-Za-z0-9_\-]{20,}", (_SK,), skip=3),
    _token("stripe-key", r"(?:sk|rk)_(?:live|test|prod)_", r"[A-Za-z0-9]{10,}", (_STRIPE,), skip=8),
    _token("stripe-key", "whsec_", r"[A-Za-z0-9+/=]{24,}", _raw(b"whsec_"), skip=6),
    _token("github-token", "gh[pousr]_", r"[A-Za-z0-9]{36,}", (_GH,), skip=4),
    _token("github-token", "github_pat_", r"[A-Za-z0-9_]{22,}", _raw(b"github_pat_"), skip=11),
    _token(
        "gitlab-token",
        r"gl(?:pat|dt|rt|ptt|cbt|ft|imt|oas|soat|agent|ffct)-",
        r"[\w\-]{20,}",
        (_GL,),
    ),
    _token("slack-token", r"xox[abposre]-", r"[A-Za-z0-9\-]{10,}", _raw(b"xox")),
    _token("slack-token", r"xapp-\d-", r"[A-Za-z0-9\-]{10,}", _raw(b"xapp-")),
    _rule(
        "slack-webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_\-]{20,}",
        _raw(b"hooks.slack.com/"),
    ),
    _token("google-api-key", "AIza", r"[0-9A-Za-z_\-]{35}", _raw(b"AIza")),
    _token("google-oauth-secret", "GOCSPX-", r"[A-Za-z0-9_\-]{28}", _raw(b"GOCSPX-")),
    _rule(
        "aws-access-key-id",
        r"(?<![A-Z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
        (_AWS_ID, _AWS_ID2, _AWS_ID3),
        check=_group_random(0, 4),
    ),
    _rule(
        "aws-secret-key",
        r"(?i:aws[A-Za-z_\-.]{0,20}secret[A-Za-z_\-.]{0,20}|secret[_\-]?access[_\-]?key)"
        r"[\"'\]]{0,2}\s{0,3}(?::=|=>|=|:)\s{0,3}[\"']?"
        r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        (_SECRET,),
        1,
    ),
    _rule(  # a key near "aws", "secret" or an access key id (the ids' anchors are shared)
        "aws-secret-key",
        r"(?<![A-Za-z0-9/+=_\-.])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_\-]|\.\w)",
        (_AWS_WORD, _SECRET, _AWS_ID, _AWS_ID2),
        check=_check_aws_near,
    ),
    _rule(
        "azure-storage-key",
        r"(?i:AccountKey)\s*=\s*([A-Za-z0-9+/]{86}==)",
        (_KEY,),
        1,
    ),
    _rule(
        "azure-storage-key",
        r"(?<![A-Za-z0-9+/=\-])[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])",
        (_a(b"azure", True, _run_check(rb"[a-z0-9/+]{86}==")),),
        check=_check_azure_near,
    ),
    _token(
        "twilio-key", "SK", r"[0-9a-fA-F]{32}", (_a(b"SK", False, _m(rb"SK[0-9a-fA-F]{32}")),), 2
    ),
    _token(
        "sendgrid-key",
        r"SG\.",
        r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}",
        _raw(b"SG."),
        skip=3,
    ),
    _token(
        "huggingface-token",
        "hf_",
        r"[A-Za-z0-9]{30,40}",
        (_a(b"hf_", False, _m(rb"hf_[A-Za-z0-9]{30}")),),
        skip=3,
    ),
    _token("huggingface-token", "api_org_", r"[A-Za-z0-9]{30,40}", _raw(b"api_org_"), skip=8),
    _token("npm-token", "npm_", r"[A-Za-z0-9]{36}", _raw(b"npm_"), skip=4),
    _token("pypi-token", "pypi-", r"AgE[A-Za-z0-9_\-]{50,}", _raw(b"pypi-AgE"), skip=5, classes=1),
    _token("groq-key", "gsk_", r"[A-Za-z0-9]{48,}", _raw(b"gsk_"), skip=4),
    _token("xai-key", "xai-", r"[A-Za-z0-9]{60,}", _raw(b"xai-"), skip=4),
    _token("perplexity-key", "pplx-", r"[A-Za-z0-9]{40,}", _raw(b"pplx-"), skip=5),
    _token("replicate-token", "r8_", r"[A-Za-z0-9]{30,}", _raw(b"r8_"), skip=3),
    _token("databricks-token", "dapi", r"[a-f0-9]{32}(?:-\d)?", _raw(b"dapi"), skip=4, classes=1),
    _token("digitalocean-token", r"do[opr]_v1_", r"[a-f0-9]{64}", (_V1,), skip=7, classes=1),
    _token(
        "shopify-token",
        r"shp(?:at|ca|pa|ss)_",
        r"[a-fA-F0-9]{32}",
        _raw(b"shp"),
        skip=6,
        classes=1,
    ),
    _token(
        "vault-token",
        r"hv[sb]\.",
        r"[A-Za-z0-9_\-]{90,}",
        (_a(b"hv", False, _m(rb"hv[sb]\.")),),
        skip=4,
    ),
    _token(
        "age-secret-key",
        "AGE-SECRET-KEY-1",
        r"[0-9A-Z]{58}",
        _raw(b"AGE-SECRET-KEY-1"),
        skip=16,
        classes=1,
    ),
    _token("square-token", r"sq0(?:atp|csp)-", r"[A-Za-z0-9_\-]{22,}", _raw(b"sq0"), skip=7),
    _token("linear-key", "lin_api_", r"[A-Za-z0-9]{40}", _raw(b"lin_api_"), skip=8),
    _token("sentry-token", r"sntry[us]_", r"[A-Za-z0-9_+/=]{40,}", _raw(b"sntry"), skip=7),
    _token(
        "postman-key",
        "PMAK-",
        r"[a-fA-F0-9]{24}-[a-fA-F0-9]{34}",
        _raw(b"PMAK-"),
        skip=5,
        classes=1,
    ),
    _token("grafana-token", r"gl(?:sa|c)_", r"[A-Za-z0-9_+/=]{32,}", (_GL,), skip=4),
    _rule(
        "telegram-bot-token",
        r"(?<![0-9])[0-9]{8,10}:AA[A-Za-z0-9_\-]{33}" + _R,
        (_a(b":AA", False, _m(rb":AA(?<=[0-9]{8}:AA)[A-Za-z0-9_\-]{33}")),),
        check=_group_random(0, 11),
    ),
    *_PROVIDER_RULES,
    _rule(
        "jwt",
        _L + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}" + _R,
        (_EYJ,),
    ),
    _rule(
        "url-credentials",
        r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{1,30}://"
        r"(?P<user>[^\s:/?#@\"'<>\[\]]{0,100}):(?P<pw>[^\s/?#@\"'<>]{1,200})@"
        r"(?=[A-Za-z0-9\[._\-])",
        (_a(b"://", True, _m(rb"://[^\s/@]{0,100}:[^\s/@]{1,200}@")),),
        "pw",
        _check_url,
    ),
    _rule(
        "bearer-token",
        r"(?i:\bbearer)\s+([A-Za-z0-9\-._~+/]{20,}=*)",
        (_a(b"bearer", True, _m(rb"bearer(?:\s|\\[nrt])+[a-z0-9\-._~+/]{20}")),),
        1,
        _check_bearer,
    ),
    _rule(
        "basic-auth",
        r"(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?i:basic)\s+([A-Za-z0-9+/]{12,}={0,2})",
        (_a(b"authorization", True),),
        1,
    ),
    _Rule("secret-assignment", _ASSIGN, _ASSIGN_ANCHORS, "v", _check_assign),
]

_ANCHORS: list[_Anchor] = list({id(a): a for r in _RULES for a in r.anchors}.values())
_ALL = frozenset(range(len(_ANCHORS)))
_RULE_ANCHORS = [frozenset(_ANCHORS.index(a) for a in r.anchors) for r in _RULES]
_DELTA_SUFFIX = "_delta"

# ----------------------------------------------------------------------------- public


@dataclass(frozen=True)
class SecretFinding:
    """One secret: where it is and what kind. ``preview`` is masked, never the secret."""

    part: str  # session | runs | traces | verification | artifacts | subagent_tasks
    path: str  # JSON path inside that file, e.g. messages[3].content[0].text
    kind: str  # openai-key, aws-access-key-id, ..., or env:NAME
    preview: str
    start: int  # character span inside the string at ``path``
    end: int

    def __str__(self) -> str:
        return f"{self.part}: {self.path}: {self.kind} ({self.preview})"


_SECRET_NAME = _Lazy(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_ENV_VALUE = 8


def secret_env_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values of environment variables whose names mark them as secret, by name.

    Values shorter than 8 characters, with white space, or naming an existing path (such
    as ``GOOGLE_APPLICATION_CREDENTIALS=/path/key.json``) are left out: they are not the
    secret, and flagging them would refuse ordinary saves.
    """
    env = os.environ if env is None else env
    found: dict[str, str] = {}
    for name, value in env.items():
        if not _SECRET_NAME.search(name) or not isinstance(value, str):
            continue
        if len(value) < _MIN_ENV_VALUE or any(c.isspace() for c in value):
            continue
        if os.sep in value and os.path.exists(value):
            continue
        found[name] = value
    return found


def scan(
    parts: Mapping[str, Any], *, env: Mapping[str, str] | None = None, cache: bool = True
) -> list[SecretFinding]:
    """Find secrets in the JSON values of a session's files, keyed by part name.

    ``cache=False`` reads everything again, even what an earlier scan found clean.

    >>> key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    >>> [str(f) for f in scan({"session": {"note": "key " + key}}, env={})]
    ['session: note: openai-key (sk-p…, 40 chars)']
    """
    return _Scanner(env, cache).run(parts, redact=False)[1]


def redact(
    parts: Mapping[str, Any], *, env: Mapping[str, str] | None = None, cache: bool = True
) -> tuple[dict[str, Any], list[SecretFinding]]:
    """A copy of ``parts`` with every secret replaced by ``[REDACTED:<kind>]``, and the findings.

    The input is not modified; what holds no secret is shared between input and output.
    """
    out, findings = _Scanner(env, cache).run(parts, redact=True)
    assert out is not None
    return out, findings


def format_findings(findings: list[SecretFinding], limit: int = 20) -> str:
    """One indented line per finding (at most ``limit``), for error messages."""
    lines = [f"  {f}" for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more")
    return "\n".join(lines)


def clear_cache() -> None:
    """Forget which units were found clean (the next scan reads everything again)."""
    with _CACHE_LOCK:
        _CLEAN.clear()


# ----------------------------------------------------------------------------- cache

_CACHE_MAX = 200_000  # 16-byte digests: some 20 MB at most
_CLEAN: dict[bytes, None] = {}
_CACHE_LOCK = threading.Lock()


def _remember(digests: list[bytes]) -> None:
    with _CACHE_LOCK:
        for d in digests:
            _CLEAN[d] = None
        excess = len(_CLEAN) - _CACHE_MAX
        if excess > 0:  # drop the oldest (a dict keeps insertion order), a tenth at a time
            for d in list(_CLEAN)[: max(excess, _CACHE_MAX // 10)]:
                del _CLEAN[d]


def _dumps_std(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def _encoders() -> dict[str, Callable[[Any], bytes]]:
    """The JSON encoders at hand, fastest first: orjson, msgspec (a3s-nb[all]), json."""
    found: dict[str, Callable[[Any], bytes]] = {}
    try:
        import orjson

        found["orjson"] = orjson.dumps
    except ImportError:
        pass
    try:
        import msgspec

        found["msgspec"] = msgspec.json.Encoder().encode
    except ImportError:
        pass
    found["json"] = _dumps_std
    return found


ENCODERS = _encoders()


def _with_fallback(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    def dumps(value: Any) -> bytes:
        try:
            return encode(value)
        except (TypeError, ValueError, OverflowError):  # big ints, odd keys, lone surrogates
            return _dumps_std(value)

    return dumps


_dumps: Callable[[Any], bytes] = _with_fallback(next(iter(ENCODERS.values())))


def _set_encoder(name: str) -> None:
    """Write unit JSON with the encoder ``name`` (one of ``ENCODERS``; for tests, benchmarks)."""
    global _dumps
    _dumps = _with_fallback(ENCODERS[name])


# ----------------------------------------------------------------------------- units


class _Units:
    """The units of a session's parts: each message, run, trace, ... is read and cached whole.

    A long session has thousands of units, so there is no object per unit (allocating
    them would wake the garbage collector over the whole session): ``contents`` holds each
    unit's value, ``groups`` each run of units from one container, as (first index, part,
    kind, key). Kinds: ``item`` (a list part's element), ``list`` (an element of a list
    held in a dict part under ``key``), ``member`` (the value of ``key`` in a dict part),
    ``whole`` (a part that is neither list nor dict).
    """

    def __init__(self, parts: Mapping[str, Any]):
        self.contents: list[Any] = []
        self.groups: list[tuple[int, str, str, Any]] = []
        self.starts: list[int] = []
        for part, value in parts.items():
            if isinstance(value, list):
                self._group(part, "item", None)
                self.contents += value
            elif isinstance(value, dict):
                for k, v in value.items():
                    if (
                        isinstance(v, list)
                        and isinstance(k, str)
                        and _SAFE_KEY.fullmatch(k)
                        and not _secret_key(k)
                    ):
                        self._group(part, "list", k)
                        self.contents += v
                    else:
                        self._group(part, "member", k)
                        self.contents.append(v)
            else:
                self._group(part, "whole", None)
                self.contents.append(value)

    def _group(self, part: str, kind: str, key: Any) -> None:
        self.groups.append((len(self.contents), part, kind, key))
        self.starts.append(len(self.contents))

    def __len__(self) -> int:
        return len(self.contents)

    def where(self, i: int) -> tuple[str, str, Any, str]:
        """(part, kind, key, path) of unit ``i``."""
        first, part, kind, key = self.groups[bisect.bisect_right(self.starts, i) - 1]
        path = (
            f"[{i - first}]" if kind == "item" else f"{key}[{i - first}]" if kind == "list" else ""
        )
        return part, kind, key, path

    def dump(self, i: int) -> tuple[bytes, bytes] | None:
        """(salt, JSON) of unit ``i``; None when it is not JSON."""
        _, _, kind, key = self.groups[bisect.bisect_right(self.starts, i) - 1]
        try:
            if kind == "member":
                return b"m", _dumps([key, self.contents[i]])
            return b"i", _dumps(self.contents[i])
        except (TypeError, ValueError, OverflowError):  # not JSON: always read, never cached
            return None

    def rebuild(self, parts: Mapping[str, Any], new: dict[int, Any]) -> dict[str, Any]:
        """``parts`` with the units in ``new`` replaced; containers copied, clean units shared."""
        out: dict[str, Any] = {}
        contents = self.contents
        ends = [*self.starts[1:], len(contents)]
        for (first, part, kind, key), end in zip(self.groups, ends, strict=True):
            if kind == "item":
                out[part] = [new.get(i, contents[i]) for i in range(first, end)]
            elif kind == "whole":
                out[part] = new.get(first, contents[first])
            else:
                d = out.setdefault(part, {})
                if kind == "list":
                    d[key] = [new.get(i, contents[i]) for i in range(first, end)]
                else:
                    k2, v2 = new.get(first, (key, contents[first]))
                    while k2 in d:  # two redacted keys must not collide
                        k2 = f"{k2}#"
                    d[k2] = v2
        return {p: out[p] if p in out else type(v)() for p, v in parts.items()}


_SAFE_KEY = _Lazy(r"[A-Za-z_][A-Za-z0-9_]{0,40}", _A)


def _delta_field(item: Any) -> str | None:
    """The text field of a streamed delta event (``delta`` or ``text``), else None."""
    ev = item.get("event") if isinstance(item, dict) else None
    if isinstance(ev, dict):
        kind = ev.get("type")
        if isinstance(kind, str) and kind.endswith(_DELTA_SUFFIX):
            for field in ("delta", "text"):
                if isinstance(ev.get(field), str):
                    return field
    return None


def _joined_deltas(value: Any) -> list[str]:
    """The joined text of each stream of two or more deltas of a run (for the prefilter)."""
    events = value.get("events") if value.__class__ is dict else None
    if events.__class__ is not list:
        return []
    groups: dict[tuple[str, str], list[str]] = {}
    for item in events:
        ev = item.get("event") if item.__class__ is dict else None
        if ev.__class__ is not dict:
            continue
        kind = ev.get("type")
        if kind.__class__ is not str or not kind.endswith(_DELTA_SUFFIX):
            continue
        text = ev.get("delta")
        if text.__class__ is not str:
            text = ev.get("text")
            if text.__class__ is not str:
                continue
        key = (kind, str(ev.get("id") or ""))
        got = groups.get(key)
        if got is None:
            groups[key] = [text]
        else:
            got.append(text)
    return ["".join(g) for g in groups.values() if len(g) > 1]


def _delta_streams(value: Any) -> list[list[tuple[int, str]]]:
    """(event index, text field) of the deltas of each stream of a run.

    A stream is the deltas of one type (and tool call id, when they carry one).
    """
    events = value.get("events") if isinstance(value, dict) else None
    if not isinstance(events, list):
        return []
    groups: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for i, item in enumerate(events):
        field = _delta_field(item)
        if field is not None:
            ev = item["event"]
            groups.setdefault((ev["type"], str(ev.get("id") or "")), []).append((i, field))
    return list(groups.values())


# ----------------------------------------------------------------------------- scanner


def _mask(kind: str, secret: str) -> str:
    if kind.startswith("env:"):
        return f"value of ${kind[4:]}, {len(secret)} chars"
    return f"{secret[:4]}…, {len(secret)} chars"


def _label(kind: str) -> str:
    return "[REDACTED:env]" if kind.startswith("env:") else f"[REDACTED:{kind}]"


def _encode(text: str) -> tuple[bytes, bytes]:
    raw = text.encode("utf-8", "surrogatepass")
    return raw, raw.lower()


class _Scanner:
    """One scan (or redaction) of a session's parts, with one environment."""

    def __init__(self, env: Mapping[str, str] | None, cache: bool):
        self.env = sorted(secret_env_values(env).items(), key=lambda kv: -len(kv[1]))
        self.cache = cache
        fingerprint = json.dumps([RULES_VERSION, self.env]).encode("utf-8", "surrogatepass")
        self.key = hashlib.blake2b(fingerprint, digest_size=32).digest()
        self.env_anchors = [_a(_dumps_std(v)[1:-1].lower(), lower=True) for _, v in self.env]
        self.findings: list[SecretFinding] = []
        self.active: list[tuple[_Rule, frozenset[int]]] = []  # rules anchored in this unit
        self.keys_active = False  # values under secret-named keys are checked

    # ---- text

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, kind) spans of secrets in ``text``, in order."""
        spans: list[tuple[int, int, str]] = []
        if len(text) < 6:
            return spans

        def claim(start: int, end: int, kind: str) -> None:
            if end <= start:
                return
            for s, e, _ in spans:
                if start < e and s < end:
                    return
            spans.append((start, end, kind))

        if self.active:
            raw, low = _encode(text)
            hit: dict[int, bool] = {}
            for rule, ids in self.active:
                for j in ids:
                    if j not in hit:
                        hit[j] = _ANCHORS[j].found(raw, low) != -1
                    if hit[j]:
                        break
                else:
                    continue
                for m in rule.pattern.finditer(text):
                    if rule.check is not None and not rule.check(m, text):
                        continue
                    g = rule.group
                    if g == "v":  # the assignment rule: whichever value group matched
                        g = next(n for n in ("dq", "sq", "eq", "bare") if m.group(n) is not None)
                    claim(m.start(g), m.end(g), rule.kind)
        # longest values first, so a value that contains another is reported as itself
        for name, value in self.env:
            start = text.find(value)
            while start != -1:
                claim(start, start + len(value), f"env:{name}")
                start = text.find(value, start + len(value))
        spans.sort()
        return spans

    def record(self, part: str, path: str, kind: str, secret: str, start: int, end: int) -> None:
        self.findings.append(
            SecretFinding(part, path or "<root>", kind, _mask(kind, secret), start, end)
        )

    def fix_text(self, part: str, path: str, text: str) -> str:
        spans = self.spans(text)
        if not spans:
            return text
        out, last = [], 0
        for start, end, kind in spans:
            self.record(part, path, kind, text[start:end], start, end)
            out += [text[last:start], _label(kind)]
            last = end
        out.append(text[last:])
        return "".join(out)

    # ---- JSON

    def fix(self, part: str, path: str, value: Any, deltas: dict[int, str] | None = None) -> Any:
        """``value`` with its secrets replaced (a new object only where something changed)."""
        if isinstance(value, str):
            return self.fix_text(part, path, value)
        if isinstance(value, list):
            new = [self.fix(part, f"{path}[{i}]", v) for i, v in enumerate(value)]
            return value if all(a is b for a, b in zip(new, value, strict=True)) else new
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            changed = False
            for k, v in value.items():
                if deltas is not None and k == "events" and isinstance(v, list):
                    k2, v2 = (
                        k,
                        self.fix_events(part, f"{path}.events" if path else "events", v, deltas),
                    )
                else:
                    k2, v2 = self.fix_member(part, path, k, v)
                changed = changed or k2 is not k or v2 is not v
                while k2 in out:  # two redacted keys must not collide
                    k2 = f"{k2}#"
                out[k2] = v2
            return out if changed else value
        return value

    def fix_member(self, part: str, path: str, key: Any, value: Any) -> tuple[Any, Any]:
        if isinstance(key, str):  # a secret as an object key: reported, shown redacted
            key = self.fix_text(part, f"{path}.<key>" if path else "<key>", key)
        sub = f"{path}.{key}" if path else str(key)
        if (
            self.keys_active
            and isinstance(value, str)
            and isinstance(key, str)
            and _secret_key(key)
            and not self.spans(value)
            and _secret_value(value, quoted=True)
        ):
            self.record(part, sub, "secret-assignment", value, 0, len(value))
            return key, _label("secret-assignment")
        return key, self.fix(part, sub, value)

    def scan_deltas(self, part: str, path: str, run: dict) -> dict[int, str]:
        """Each delta stream of a run scanned joined: the new delta text by event index.

        A secret found in the join is reported at the delta where it starts; redacted, its
        label goes there and its characters are cut from the deltas it runs on into.
        """
        events = run["events"]
        out: dict[int, str] = {}
        for stream in _delta_streams(run):
            idx = [i for i, _ in stream]
            pieces = [events[i]["event"][f] for i, f in stream]
            starts = [0]
            for p in pieces:
                starts.append(starts[-1] + len(p))
            joined = "".join(pieces)
            edits: dict[int, list[tuple[int, int, str]]] = {}
            for s, e, kind in self.spans(joined):
                first = bisect.bisect_right(starts, s) - 1
                j = first
                while j < len(pieces) and (starts[j] < e or j == first):
                    lo = max(s, starts[j]) - starts[j]
                    hi = min(e, starts[j + 1]) - starts[j]
                    edits.setdefault(j, []).append((lo, hi, _label(kind) if j == first else ""))
                    j += 1
                where = f"{path}.events[{idx[first]}].event.{stream[first][1]}".lstrip(".")
                end = min(e, starts[first + 1]) - starts[first]
                self.record(part, where, kind, joined[s:e], s - starts[first], end)
            for j, p in enumerate(pieces):
                buf, last = [], 0
                for lo, hi, rep in edits.get(j, []):
                    buf += [p[last:lo], rep]
                    last = hi
                out[idx[j]] = "".join(buf) + p[last:] if buf else p
        return out

    def fix_events(self, part: str, path: str, events: list, deltas: dict[int, str]) -> list:
        new = []
        for i, item in enumerate(events):
            if i not in deltas:
                new.append(self.fix(part, f"{path}[{i}]", item))
                continue
            # the delta was scanned in its stream; the rest of the event as usual
            ev = item["event"]
            field = _delta_field(item)
            rest = self.fix(part, f"{path}[{i}].event", {k: v for k, v in ev.items() if k != field})
            ev2 = {k: (deltas[i] if k == field else rest[k]) for k in ev}
            if all(ev2[k] is ev[k] for k in ev):
                ev2 = ev
            others = self.fix(part, f"{path}[{i}]", {k: v for k, v in item.items() if k != "event"})
            item2 = {k: (ev2 if k == "event" else others[k]) for k in item}
            new.append(item if all(item2[k] is item[k] for k in item) else item2)
        return new if any(a is not b for a, b in zip(new, events, strict=True)) else events

    def fix_unit(self, units: _Units, i: int) -> Any:
        """Unit ``i`` redacted (``(key, value)`` for a member of a dict part)."""
        part, kind, key, path = units.where(i)
        content = units.contents[i]
        streams = _delta_streams(content)
        if kind != "member":
            deltas = self.scan_deltas(part, path, content) if streams else None
            return self.fix(part, path, content, deltas)
        if not streams:
            return self.fix_member(part, "", key, content)
        key = self.fix_text(part, "<key>", key) if isinstance(key, str) else key
        deltas = self.scan_deltas(part, str(key), content)
        return key, self.fix(part, str(key), content, deltas)

    # ---- units, anchors and the cache

    def run(
        self, parts: Mapping[str, Any], *, redact: bool
    ) -> tuple[dict[str, Any] | None, list[SecretFinding]]:
        units = _Units(parts)
        blobs = [units.dump(i) for i in range(len(units))]
        key, blake2b = self.key, hashlib.blake2b
        digests = [
            None if b is None else blake2b(b[1], digest_size=16, key=key, salt=b[0]).digest()
            for b in blobs
        ]
        if self.cache:
            todo = [i for i, d in enumerate(digests) if d is None or d not in _CLEAN]
        else:
            todo = list(range(len(units)))
        hits = self.prefilter(units, blobs, todo)
        new: dict[int, Any] = {}
        clean: list[bytes] = []
        for i in todo:
            ids = hits.get(i)
            d = digests[i]
            if ids:
                self.active = [
                    (r, a & ids) for r, a in zip(_RULES, _RULE_ANCHORS, strict=True) if a & ids
                ]
                self.keys_active = any(r is _RULES[-1] for r, _ in self.active)
                if self.active or self.env:
                    before = len(self.findings)
                    value = self.fix_unit(units, i)
                    if len(self.findings) > before:
                        new[i] = value
                        continue
            if d is not None:
                clean.append(d)
        self.active = []
        if self.cache and clean:
            _remember(clean)
        if not redact:
            return None, self.findings
        return units.rebuild(parts, new), self.findings

    def prefilter(
        self, units: _Units, blobs: list[tuple[bytes, bytes] | None], todo: list[int]
    ) -> dict[int, frozenset[int]]:
        """The anchors (by index; env values after the rules' ones) found in each unit."""
        hits: dict[int, set[int]] = {i: set(_ALL) for i in todo if blobs[i] is None}
        segments: list[bytes] = []
        owners: list[int] = []
        for i in todo:
            b = blobs[i]
            if b is None:
                continue
            segments.append(b[1])
            owners.append(i)
            for joined in _joined_deltas(units.contents[i]):
                segments.append(_dumps(joined))
                owners.append(i)
        if segments:
            raw = b"\x00".join(segments)
            low = raw.lower()
            starts = [0]
            for seg in segments:
                starts.append(starts[-1] + len(seg) + 1)
            anchors = [*_ANCHORS, *self.env_anchors]
            for j, anchor in enumerate(anchors):
                at = anchor.found(raw, low)
                while at != -1:
                    seg = bisect.bisect_right(starts, at) - 1
                    hits.setdefault(owners[seg], set()).add(j)
                    # one hit is enough for this unit: go on after its last segment
                    nxt = seg + 1
                    while nxt < len(owners) and owners[nxt] == owners[seg]:
                        nxt += 1
                    if nxt >= len(owners):
                        break
                    at = anchor.found(raw, low, starts[nxt])
        return {i: frozenset(h) for i, h in hits.items()}
