"""A stand-in for a live ``a3s_code.Session``: the same read methods, served from data.

It answers exactly as the real SDK does (plain dicts and lists equal to the files, see
a3s-format/OBSERVED-3.1.0.md §8), so capture and the magics can be tested without the SDK;
the end-to-end tests use the real one.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from a3s_nb.sdk.capture import bundle_to_parts
from a3s_nb.store.models import SessionBundle

_turns = itertools.count(1)


class FakeSession:
    """Read methods of ``a3s_code.Session`` over a session's file values."""

    def __init__(self, bundle: SessionBundle, *, session_id: str | None = None):
        parts = bundle_to_parts(bundle)
        self._id = session_id or bundle.session.id
        self._workspace = parts["session"]["config"]["workspace"]
        self._messages: list[dict] = parts["session"]["messages"]
        self._tool_names: list[str] = parts["session"]["tool_names"]
        self._runs: list[dict] = parts["runs"]
        self._traces: list[dict] = parts["traces"]
        self._verification: list[dict] = parts["verification"]
        self._artifacts = {a["artifact_uri"]: a for a in parts["artifacts"]["artifacts"]}

    @property
    def session_id(self) -> str:
        return self._id

    @property
    def workspace(self) -> str:
        return self._workspace

    def history(self) -> list[dict]:
        return copy.deepcopy(self._messages)

    def tool_names(self) -> list[str]:
        return list(self._tool_names)

    def runs(self) -> list[dict]:
        return [copy.deepcopy(r["snapshot"]) for r in self._runs]

    def run_events(self, run_id: str) -> list[dict]:
        for r in self._runs:
            if r["snapshot"]["id"] == run_id:
                return copy.deepcopy(r["events"])
        return []

    def trace_events(self) -> list[dict]:
        return copy.deepcopy(self._traces)

    def verification_reports(self) -> list[dict]:
        return copy.deepcopy(self._verification)

    def get_artifact(self, uri: str) -> dict | None:
        artifact = self._artifacts.get(uri)
        return copy.deepcopy(artifact) if artifact else None

    # ---- growing it, as send() would ----------------------------------------------------

    def send(self, prompt: str, reply: str = "OK.") -> None:
        """Append one completed run with a user prompt and a text reply (2 messages)."""
        n = next(_turns)
        self._messages += [
            {"role": "user", "content": [{"type": "text", "text": prompt}]},
            {"role": "assistant", "content": [{"type": "text", "text": reply}]},
        ]
        t = 1_800_000_000_000 + n * 1000
        events = [
            {"sequence": 0, "timestamp_ms": t, "event": {"type": "agent_start", "prompt": prompt}},
            {
                "sequence": 1,
                "timestamp_ms": t + 1,
                "event": {
                    "type": "agent_end",
                    "text": reply,
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
                },
            },
        ]
        self._runs.append(
            {
                "snapshot": {
                    "id": f"run-00000000-0000-4000-8000-{n:012d}",
                    "session_id": self._id,
                    "status": "completed",
                    "prompt": prompt,
                    "created_at_ms": t,
                    "updated_at_ms": t + 1,
                    "result_text": reply,
                    "event_count": len(events),
                },
                "events": events,
            }
        )


def fake_session(store_dir: Any, session_id: str, **kwargs: Any) -> FakeSession:
    """A fake live session holding what the fixture store has for ``session_id``."""
    from a3s_nb import FileStore

    return FakeSession(FileStore(store_dir).load(session_id), **kwargs)
