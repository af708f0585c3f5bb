"""Run events in the two shapes a3s-code gives them.

* The **record**, what every a3s-code release persists (``RunEventRecord``, in run files and
  in the ``run_records`` of a 5.x+ snapshot), and what 3.x's ``Session.run_events()``
  returns::

      {"sequence": 7, "timestamp_ms": 1700000000000, "event": {"type": "text_delta", "text": "hello"}}

* The **envelope v1**, what ``Session.run_events()`` returns from 5.0 on: a projection of
  that record made on the way out (``run_event_envelope_v1`` in the SDK's core; its Python
  binding maps every record through it), never written to a store::

      {"version": 1, "type": "text_delta", "payload": {"text": "hello"},
       "metadata": {"run_id": "run-1", "session_id": "session-1", "sequence": 7,
                    "timestamp_ms": 1700000000000}}

The event names are the same in both (the envelope's ``type`` is the serde tag of the
record's ``event``), and the payload is the event's fields without ``type``; an event type
a3s_nb does not know keeps its name and payload. An envelope of another protocol version
is refused, as the SDK refuses it ("expected 1").

a3s_nb works on records: :func:`record_of` turns an envelope into the record it was
projected from, so a capture writes what the SDK itself persists, and every reader (the
frames, the models) sees one shape.
"""

from __future__ import annotations

from typing import Any

from ..errors import EventProtocolError

#: The run event protocol version a3s-code 5.x-9.x speak.
ENVELOPE_VERSION = 1

_RECORD_META = ("sequence", "timestamp_ms")


def is_envelope(item: Any) -> bool:
    """Whether a run event is an envelope: an object without ``event`` that has a
    ``version`` or a ``payload``."""
    return type(item) is dict and "event" not in item and ("version" in item or "payload" in item)


def check_version(item: dict[str, Any]) -> None:
    """Refuse an envelope whose ``version`` is not 1 (:class:`EventProtocolError`)."""
    version = item.get("version")
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise EventProtocolError(
            f"run event envelope of protocol version {version!r}, expected "
            f"{ENVELOPE_VERSION}: a3s_nb reads the version {ENVELOPE_VERSION} events of "
            "a3s-code 5.x-9.x; upgrade a3s_nb to read this SDK's runs"
        )


def event_of(item: dict[str, Any]) -> dict[str, Any]:
    """The event of an envelope, as a record holds it: ``type`` first, then the payload's
    fields (a payload that is not an object is kept whole under ``payload``)."""
    event: dict[str, Any] = {"type": item.get("type")}
    payload = item.get("payload")
    if type(payload) is dict:
        for key, value in payload.items():
            if key != "type":
                event[key] = value
    elif "payload" in item:
        event["payload"] = payload
    return event


def record_of(item: Any) -> Any:
    """The record of a run event given in either shape (a record, or anything else that
    is not an envelope, is returned as it is). ``sequence`` and ``timestamp_ms`` come
    from the envelope's metadata, and are left out when it has none."""
    if not is_envelope(item):
        return item
    check_version(item)
    record: dict[str, Any] = {}
    meta = item.get("metadata")
    if type(meta) is dict:
        for key in _RECORD_META:
            if key in meta:
                record[key] = meta[key]
    record["event"] = event_of(item)
    return record


def records_of(items: Any) -> list[Any]:
    """:func:`record_of` of every item of a run's events."""
    return [record_of(item) for item in items]


def envelope_of(
    record: dict[str, Any], run_id: str | None = None, session_id: str | None = None
) -> dict[str, Any]:
    """The envelope the SDK's ``run_events()`` gives for ``record`` (its
    ``run_event_envelope_v1``); without ``run_id`` the metadata holds only what the record
    has."""
    event = dict(record["event"])
    kind = event.pop("type")
    meta: dict[str, Any] = {}
    if run_id is not None:
        meta["run_id"] = run_id
    if session_id is not None:
        meta["session_id"] = session_id
    for key in _RECORD_META:
        if key in record:
            meta[key] = record[key]
    out: dict[str, Any] = {"version": ENVELOPE_VERSION, "type": kind, "payload": event}
    if meta:
        out["metadata"] = meta
    return out
