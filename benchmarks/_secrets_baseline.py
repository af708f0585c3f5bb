"""Find (and optionally redact) secrets in what is about to be written to a store.

a3s-code writes prompts, model replies and tool output verbatim, so an API key pasted into a
prompt or printed by ``env`` ends up on disk. :func:`scan` walks the JSON of every file of a
session and reports each secret by file part and JSON path, with a masked preview that
never contains the secret itself; :func:`redact` replaces them with ``[REDACTED:<kind>]``.

What counts as a secret: provider API keys (OpenAI, Anthropic, Google), AWS access key ids
and the secret keys written next to them, GitHub and Slack tokens, private key blocks,
JWTs and bearer tokens, and the value (8 characters or more) of every environment variable
whose name says it is secret (``*KEY*``, ``*SECRET*``, ``*TOKEN*``, ``*PASSWORD*``,
``*PASSWD*``, ``*CREDENTIAL*``). The patterns are anchored so that a3s-code's own ids
(``run-<uuid>``, ``call_<hex>``, ``tool-output:bash:<hex>``) never match.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SecretFinding", "format_findings", "redact", "scan", "secret_env_values"]

# A token character on either side would mean we matched inside a longer word.
_L = r"(?<![A-Za-z0-9_\-])"
_R = r"(?![A-Za-z0-9_\-])"

#: (kind, compiled pattern, group holding the secret). Order matters: the first kind that
#: claims a span wins, so the specific ones come before the generic ones.
_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    (
        "private-key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"
        ),
        0,
    ),
    ("anthropic-key", re.compile(_L + r"sk-ant-[A-Za-z0-9_\-]{20,}" + _R), 0),
    ("openai-key", re.compile(_L + r"sk-(?!ant-)[A-Za-z0-9_\-]{20,}" + _R), 0),
    ("github-token", re.compile(_L + r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}" + _R), 0),
    ("github-token", re.compile(_L + r"github_pat_[A-Za-z0-9_]{22,}" + _R), 0),
    ("slack-token", re.compile(_L + r"xox[baprs]-[A-Za-z0-9\-]{10,}" + _R), 0),
    ("google-api-key", re.compile(_L + r"AIza[0-9A-Za-z_\-]{35}" + _R), 0),
    (
        "aws-access-key-id",
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        0,
    ),
    (
        "aws-secret-key",
        re.compile(
            r"(?i:aws)[A-Za-z_\-]{0,20}(?i:secret)[A-Za-z_\-]{0,20}[\"']?\s*[:=]\s*[\"']?"
            r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
        ),
        1,
    ),
    (
        "jwt",
        re.compile(_L + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}" + _R),
        0,
    ),
    ("bearer-token", re.compile(r"(?i:\bbearer)\s+([A-Za-z0-9\-._~+/]{20,}=*)"), 1),
]

_AWS_ID_HINTS = ("akia", "asia", "abia", "acca")

#: Lower-case substrings one of which every match of the pattern at the same index contains.
_HINTS: list[tuple[str, ...]] = [
    ("private key",),
    ("sk-ant-",),
    ("sk-",),
    ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    ("github_pat_",),
    ("xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-"),
    ("aiza",),
    _AWS_ID_HINTS,
    ("secret",),
    ("eyj",),
    ("bearer",),
]

# A 40-character AWS secret key written near an access key id, without a telling name.
_AWS_SECRET_NEAR = re.compile(r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
_AWS_NEAR_CHARS = 200
_PATTERNS_AWS_ID = next(p for k, p, _ in _PATTERNS if k == "aws-access-key-id")

_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_MIN_ENV_VALUE = 8


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


def _mask(kind: str, secret: str) -> str:
    if kind.startswith("env:"):
        return f"value of ${kind[4:]}, {len(secret)} chars"
    return f"{secret[:4]}…, {len(secret)} chars"


def _spans(text: str, env_values: Mapping[str, str]) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, kind) spans of secrets in ``text``, in order."""
    spans: list[tuple[int, int, str]] = []

    def claim(start: int, end: int, kind: str) -> None:
        if end <= start:
            return
        for s, e, _ in spans:
            if start < e and s < end:
                return
        spans.append((start, end, kind))

    lower = text.lower()
    for (kind, pattern, group), hints in zip(_PATTERNS, _HINTS, strict=True):
        # A substring test is far cheaper than a regex scan with look-arounds, and most
        # text (tool output, source code) has none of the hints.
        if not any(h in lower for h in hints):
            continue
        for m in pattern.finditer(text):
            claim(m.start(group), m.end(group), kind)
    aws_ids = _PATTERNS_AWS_ID.finditer(text) if any(h in lower for h in _AWS_ID_HINTS) else ()
    for m in aws_ids:
        lo, hi = max(0, m.start() - _AWS_NEAR_CHARS), m.end() + _AWS_NEAR_CHARS
        for s in _AWS_SECRET_NEAR.finditer(text, lo, min(hi, len(text))):
            value = s.group(1)
            # real secret keys mix cases; this keeps hex digests (git hashes) out
            if any(c.isupper() for c in value) and any(c.islower() for c in value):
                claim(s.start(1), s.end(1), "aws-secret-key")
    # longest values first, so a value that contains another is reported as itself
    for name, value in sorted(env_values.items(), key=lambda kv: -len(kv[1])):
        start = text.find(value)
        while start != -1:
            claim(start, start + len(value), f"env:{name}")
            start = text.find(value, start + len(value))
    spans.sort()
    return spans


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value, with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            yield from _walk(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")


def scan(parts: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> list[SecretFinding]:
    """Find secrets in the JSON values of a session's files, keyed by part name.

    >>> [str(f) for f in scan({"session": {"note": "key sk-" + "a" * 40}}, env={})]
    ['session: note: openai-key (sk-a…, 43 chars)']
    """
    env_values = secret_env_values(env)
    findings: list[SecretFinding] = []
    for part, value in parts.items():
        for path, text in _walk(value, ""):
            for start, end, kind in _spans(text, env_values):
                secret = text[start:end]
                findings.append(
                    SecretFinding(part, path or "<root>", kind, _mask(kind, secret), start, end)
                )
    return findings


def redact(
    parts: Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[SecretFinding]]:
    """A copy of ``parts`` with every secret replaced by ``[REDACTED:<kind>]``, and the findings."""
    env_values = secret_env_values(env)
    findings: list[SecretFinding] = []

    def fix(value: Any, part: str, path: str) -> Any:
        if isinstance(value, str):
            spans = _spans(value, env_values)
            if not spans:
                return value
            out, last = [], 0
            for start, end, kind in spans:
                findings.append(
                    SecretFinding(
                        part, path or "<root>", kind, _mask(kind, value[start:end]), start, end
                    )
                )
                label = "env" if kind.startswith("env:") else kind
                out.append(value[last:start])
                out.append(f"[REDACTED:{label}]")
                last = end
            out.append(value[last:])
            return "".join(out)
        if isinstance(value, dict):
            return {k: fix(v, part, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v, part, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return {part: fix(value, part, "") for part, value in parts.items()}, findings


def format_findings(findings: list[SecretFinding], limit: int = 20) -> str:
    """One indented line per finding (at most ``limit``), for error messages."""
    lines = [f"  {f}" for f in findings[:limit]]
    if len(findings) > limit:
        lines.append(f"  ... and {len(findings) - limit} more")
    return "\n".join(lines)
