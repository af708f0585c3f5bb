"""Stand-ins for the a3s-code 5.x+ Python SDK, SHAPED FROM ITS SOURCE, not run: releases
after 3.1.0 download their native core at first import, which these machines cannot.

What each piece copies, from the public repository A3S-Lab/Code:

* ``Session.run_events(run_id)`` maps every persisted record through
  ``run_event_envelope_v1(record, run_id, session_id)`` (sdk/python/src/session.rs@06c82e91),
  giving ``{version: 1, type, payload, metadata: {run_id, session_id, sequence,
  timestamp_ms}}`` (core/tests/event_protocol_v1.rs@0473774); payload keys come sorted, as
  a ``serde_json::Value`` without ``preserve_order``.
* ``Session.save()`` saves "to the configured store" and is a no-op without one
  (session.rs@06c82e91); with a ``FileSessionStore`` it always writes a
  ``SessionSnapshotV1`` envelope at ``v1/sessions/id_<base64url(id), no padding>.json``
  (core/src/store/file_store.rs@0473774, session_snapshot.rs@06c82e91; SPEC §1.2b, §1.3,
  §3.15). Every call is recorded in ``save_calls``.
* ``Agent.session()`` and ``Agent.resume_session()`` run ``block_on`` on the SDK's runtime
  themselves, and work from plain Python; called from inside that runtime (a slash-command
  handler) they panic, "Cannot start a runtime from within a runtime" (SPEC §1.2b).
"""

from __future__ import annotations

import copy
import json
import types
from pathlib import Path
from typing import Any

from a3s_nb.store import _envelope
from a3s_nb.store._v1layout import session_path

from .fakes import FakeSession

VERSION = "8.5.6"


class RuntimePanic(BaseException):
    """What a nested ``block_on`` does in the real SDK: a Rust panic."""


_in_runtime = [False]


class FileSessionStore:
    def __init__(self, dir: str):
        self.dir = dir


class PermissionPolicy:
    def __init__(self, default_decision: str = "ask"):
        self.default_decision = default_decision


class SessionOptions:
    def __init__(self) -> None:
        self.session_store: FileSessionStore | None = None
        self.session_id: str | None = None
        self.auto_save = False
        self.permission_policy: PermissionPolicy | None = None
        self.model: str | None = None


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class Session(FakeSession):
    """A 5.x+ session over a bundle's file values (see the module docstring)."""

    def __init__(self, bundle: Any, *, store: str | None = None, **kwargs: Any):
        super().__init__(bundle, **kwargs)
        self.store = store
        self.save_calls: list[Path | None] = []
        self._commands: dict[str, Any] = {}

    def run_events(self, run_id: str) -> list[dict]:
        for run in self._runs:
            if run["snapshot"]["id"] == run_id:
                return [
                    {**env, "payload": _sorted(env["payload"])}
                    for env in (
                        _envelope.envelope_of(rec, run_id, self._id)
                        for rec in copy.deepcopy(run["events"])
                    )
                ]
        return []

    def current_run(self) -> None:
        return None

    def close(self) -> None:
        pass

    def register_command(self, name: str, description: str, handler: Any) -> None:
        self._commands[name] = handler

    def send(self, prompt: str, reply: str = "OK.") -> Any:
        if prompt.startswith("/") and prompt[1:] in self._commands:
            _in_runtime[0] = True  # handlers run inside the SDK's runtime
            try:
                return self._commands[prompt[1:]]("", {"model": "openai/fake-model"})
            finally:
                _in_runtime[0] = False
        return super().send(prompt, reply)

    def snapshot_path(self) -> Path | None:
        if self.store is None:
            return None
        return session_path(Path(self.store), self._id)

    def save(self) -> None:
        path = self.snapshot_path()
        self.save_calls.append(path)
        if path is None:
            return None  # no store configured: a no-op
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot = {
            "schema_version": 1,
            "session": {
                "id": self._id,
                "config": {"name": "", "workspace": self._workspace},
                "messages": self.history(),
            },
            "artifacts": [],
            "retained_artifact_uris": [],
            "trace_events": self.trace_events(),
            "run_records": copy.deepcopy(self._runs),
            "verification_reports": self.verification_reports(),
            "subagent_tasks": [],
        }
        path.write_text(json.dumps(snapshot, indent=2))
        return None


class Agent:
    """``agent.session`` / ``agent.resume_session`` of 5.x+ over sessions held in memory."""

    def __init__(self, bundles: dict[str, Any]):
        self.bundles = bundles  # what a "new" session starts from, by workspace, and saved ones
        self.opened: list[Session] = []

    def _block_on(self) -> None:
        if _in_runtime[0]:
            raise RuntimePanic("Cannot start a runtime from within a runtime")

    def session(self, workspace: str, opts: SessionOptions | None = None) -> Session:
        self._block_on()
        from a3s_nb.store.models import SessionBundle, SessionData

        store = opts.session_store.dir if opts and opts.session_store else None
        sid = (opts.session_id if opts else None) or "fake-5x-session"
        bundle = SessionBundle(
            session=SessionData.model_validate(
                {"id": sid, "config": {"workspace": str(workspace)}, "messages": []}
            )
        )
        session = Session(bundle, store=store)
        self.opened.append(session)
        return session

    def resume_session(self, session_id: str, opts: SessionOptions) -> Session:
        self._block_on()
        session = Session(self.bundles[session_id], store=opts.session_store.dir)
        self.opened.append(session)
        return session


def module(**overrides: Any) -> types.ModuleType:
    """A stand-in ``a3s_code`` module of 5.x+ (install it in ``sys.modules``)."""
    mod = types.ModuleType("a3s_code")
    mod.__version__ = VERSION
    mod.Agent = Agent
    mod.Session = Session
    mod.SessionOptions = SessionOptions
    mod.FileSessionStore = FileSessionStore
    mod.PermissionPolicy = PermissionPolicy
    for name, value in overrides.items():
        setattr(mod, name, value)
    return mod
