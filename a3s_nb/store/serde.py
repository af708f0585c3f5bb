"""Session values to file text, byte for byte as a3s-code (serde_json) writes them.

Every file a3s_nb writes into a store is produced here: :func:`dumps` for a whole value,
and :class:`PartEncoder` for the parts of a session saved again and again, which validates
and serialises each message, run and trace once and reuses the result while its content is
unchanged.

The layout is serde_json's ``to_string_pretty``: a 2-space indent, ``": "`` after keys, raw
UTF-8 (``/`` and U+2028 unescaped, control characters as lowercase ``\\u001f``), no trailing
newline. pydantic-core's encoder is serde_json itself, so it writes exactly that; only floats
differ: it spells exponents as ``1e+16``/``1e-7`` where serde (ryu) writes ``1e16`` and
``0.0000001``. Those tokens are re-spelled with :func:`serde_float`.
"""

from __future__ import annotations

import json
import operator
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError

from .models import (
    ArtifactManifest,
    Message,
    RunRecord,
    SessionData,
    SubagentTaskSnapshot,
    ToolArtifact,
    TraceEvent,
    VerificationReport,
)

__all__ = [
    "EncodedPart",
    "Entry",
    "PartEncoder",
    "PartError",
    "content_key",
    "dumps",
    "dumps_bytes",
    "serde_float",
]


# =========================================================================== one value


def dumps(value: Any) -> str:
    """Serialise like serde_json's ``to_string_pretty``: 2-space indent, raw UTF-8.

    Floats are spelled as serde_json spells them (see :func:`serde_float`), so a file the
    SDK wrote and a3s_nb saves back unchanged stays byte-identical.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    try:
        return _pretty(value).decode("utf-8")
    except pydantic_core.PydanticSerializationError:
        return _dumps_stdlib(value)  # e.g. a lone surrogate: fails later, as it always did


def dumps_bytes(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    try:
        return _pretty(value)
    except pydantic_core.PydanticSerializationError:
        return _dumps_stdlib(value).encode("utf-8")


def _pretty(value: Any) -> bytes:
    return _fix_exponents(pydantic_core.to_json(value, indent=2))


# Digits masked to '0', so that one substring search finds every digit-e-sign-digit run.
_MASK_DIGITS = bytes.maketrans(b"123456789", b"000000000")
# One line of pretty JSON holding a number: indent, an optional key, the number, a comma.
# Strings never hold a raw newline, so a line is a safe unit to parse.
_NUMBER_LINE = re.compile(
    rb'( *(?:"(?:[^"\\]|\\.)*": )?)(-?[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+)(,?)'
)


def _fix_exponents(data: bytes) -> bytes:
    """Re-spell the floats written with an exponent as serde_json writes them."""
    masked = data.translate(_MASK_DIGITS)
    if b"0e+0" not in masked and b"0e-0" not in masked:
        return data  # the common case: no float with an exponent (nor a look-alike)
    lines: set[int] = set()
    for needle in (b"0e+0", b"0e-0"):
        i = masked.find(needle)
        while i != -1:
            lines.add(data.rfind(b"\n", 0, i) + 1)
            i = masked.find(needle, i + 1)
    out: list[bytes] = []
    last = 0
    for start in sorted(lines):
        end = data.find(b"\n", start)
        end = len(data) if end == -1 else end
        m = _NUMBER_LINE.fullmatch(data, start, end)
        if m is None:  # a look-alike inside a string (a UUID, a hex digest)
            continue
        out.append(data[last : m.start(2)])
        out.append(serde_float(float(m.group(2))).encode())
        last = m.end(2)
    if not out:
        return data
    out.append(data[last:])
    return b"".join(out)


def serde_float(value: float) -> str:
    """A finite float as serde_json (ryu) writes it: ``1e-7``, ``0.00001``, ``1.5e16``.

    Both pick the same shortest round-trip digits; they differ in layout: ryu writes plain
    decimals for decimal exponents from -5 up to 16, and exponents without ``+`` or leading
    zeros. Checked against serde_json on 5,946 values (``tests/data``).
    """
    text = repr(value)
    if "e" not in text and "inf" not in text and "nan" not in text:
        return text
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exp = text.lstrip("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    k = int(exp or 0) - len(frac)  # value = int(digits) * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    kk = n + k  # value = 0.<digits> * 10**kk
    if k >= 0 and kk <= 16:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * -kk + digits
    elif n == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


# The standard library's encoder, for what pydantic-core refuses (text that is not Unicode).
_EXPONENT = re.compile(r"\de[+-]\d")
_FLOAT_MARK = "\ue000float:"
_MARKED = re.compile('"' + _FLOAT_MARK + '([^"\ue000]*)\ue000"')


def _dumps_stdlib(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if _EXPONENT.search(text) and _FLOAT_MARK not in text:
        text = json.dumps(_mark_floats(value), indent=2, ensure_ascii=False)
        text = _MARKED.sub(lambda m: m.group(1), text)
    return text


def _mark_floats(value: Any) -> Any:
    if isinstance(value, float):
        text = repr(value)
        return f"{_FLOAT_MARK}{serde_float(value)}\ue000" if "e" in text else value
    if isinstance(value, dict):
        return {k: _mark_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_floats(v) for v in value]
    return value


# =========================================================================== a session's parts


class PartError(ValueError):
    """A part of a session that would not load back; :meth:`describe` says where and why."""

    def __init__(self, loc: tuple[str | int, ...], error: ValidationError):
        super().__init__(f"{loc}: {error}")
        self.loc = loc  # part, then the key and index of the item (when it is one)
        self.error = error

    def describe(self, limit: int = 3) -> str:
        """'session.messages[3].content[0].id: Field required' for the first few problems."""
        items = []
        for err in self.error.errors()[:limit]:
            path = ""
            for loc in (*self.loc, *err["loc"]):
                path += f"[{loc}]" if isinstance(loc, int) else (f".{loc}" if path else str(loc))
            items.append(f"{path}: {err['msg']}")
        more = self.error.error_count() - limit
        return "; ".join(items) + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True)
class _Layout:
    """Where a part keeps its items: a list at the top, or a list under one key."""

    item: TypeAdapter[Any]
    key: str | None = None  # the list is value[key]; the rest is validated by ``head``
    head: TypeAdapter[Any] | None = None

    @property
    def indent(self) -> bytes:
        return b"\n    " if self.key else b"\n  "


_LAYOUTS: dict[str, _Layout] = {
    "session": _Layout(TypeAdapter(Message), "messages", TypeAdapter(SessionData)),
    "runs": _Layout(TypeAdapter(RunRecord)),
    "traces": _Layout(TypeAdapter(TraceEvent)),
    "verification": _Layout(TypeAdapter(VerificationReport)),
    "artifacts": _Layout(TypeAdapter(ToolArtifact), "artifacts", TypeAdapter(ArtifactManifest)),
    "subagent_tasks": _Layout(TypeAdapter(SubagentTaskSnapshot)),
}


@dataclass(eq=False)
class Entry:
    """One validated item: its text, indented for its place, and what scanned it clean."""

    text: bytes
    clean_under: set[Any] = field(default_factory=set)  # secret-scan settings


_TEXT = operator.attrgetter("text")


@dataclass
class EncodedPart:
    """A part's items (validated) and its file's bytes, with the items that were not cached.

    ``entries`` are the kept items, in order (one entry per content). ``head`` is the text
    of the part without its items (``"messages": []``), for a part that keeps them under a
    key.
    """

    data: bytes  # the file, as UTF-8
    items: list[Any]  # the content key of each item, in order
    new: list[int]  # indexes of the items validated by this call
    entries: list[Entry] = field(default_factory=list, repr=False)
    head: bytes | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def key_function(*, shared: bool = False) -> Callable[[Any], bytes]:
    """What identifies a value by its content: its MessagePack encoding (msgspec, about 5x
    pydantic-core's JSON encoder), else its compact JSON.

    MessagePack keeps apart what JSON text would merge (``None``, ``NaN`` and ``inf`` are
    all ``null`` to msgspec's JSON encoder; 1, 1.0 and True stay apart too), and the keys
    from the fallback start with ``0xc1``, a byte MessagePack never uses, so no two kinds of
    key meet. Equal keys mean equal JSON values, written alike. Strings are in a key as
    UTF-8, so a substring test finds text in it. ``shared``: a function safe to call from
    any thread (else it has an encoder of its own, for one caller at a time).
    """
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec comes with a3s-nb[all]
        msgpack = None
    else:
        msgpack = msgspec.msgpack.encode if shared else msgspec.msgpack.Encoder().encode

    def key(value: Any) -> bytes:
        if msgpack is not None:
            try:
                return msgpack(value)
            except (TypeError, ValueError, OverflowError, RecursionError):
                pass  # big ints, types msgspec does not know, lone surrogates, deep nesting
        return b"\xc1" + pydantic_core.to_json(value)

    return key


#: :func:`key_function` for any thread.
content_key = key_function(shared=True)


class PartEncoder:
    """Validates and serialises the parts of one session, reusing unchanged items.

    An item (a message, a run record, a trace event, ...) is identified by its content (see
    :func:`key_function`; a run record by its events' key and the rest's). The first time
    an item is seen it is validated against the models exactly as :meth:`Store.load` will
    read it back, and its pretty text is kept; later calls with the same content reuse
    both. So saving a session again costs about what changed since the last save, not its
    whole history. Only the items of the latest call are kept, each part's apart.

    An item whose model form differs from the value given (an alias, a field a3s_nb never
    writes) is written in the model form, as :meth:`Store.save` writes a bundle.
    """

    def __init__(self) -> None:
        self._items: dict[str, dict[Any, Entry]] = {}  # by part (each has its indent)
        self._lock = threading.Lock()
        self._key = key_function()  # an encoder of its own: encode() holds the lock
        self._written: tuple[bytes, bytes | None] | None = None

    def encode(
        self, parts: Mapping[str, Any], *, run_keys: Sequence[bytes] | None = None
    ) -> dict[str, EncodedPart]:
        """The text of each part; raises :class:`PartError` for one that would not load.

        ``run_keys`` are the content keys of the runs' events (``content_key(run["events"])``
        for each run, in order), when the caller has them: then only the rest of each run
        record is keyed here, not its events again (see :func:`a3s_nb.sdk.capture.capture_parts`).
        A wrong one writes a run as it was when that key was taken: pass keys only for
        events that cannot have changed since.
        """
        with self._lock:
            seen: dict[str, dict[Any, Entry]] = {}
            out = {
                part: self._encode_part(
                    part, value, seen.setdefault(part, {}), run_keys if part == "runs" else None
                )
                for part, value in parts.items()
            }
            self._items = seen
            return out

    def wrote(self, data: bytes, head: bytes | None) -> None:
        """Remember the session document just written to the store (its bytes, and its head
        as :attr:`EncodedPart.head`), for :meth:`head_written_as`."""
        self._written = (data, head)

    def head_written_as(self, data: bytes) -> bytes | None:
        """The head of the session document last written, if ``data`` is exactly that
        document (else None): what parsing ``data`` would give, without its messages."""
        written = self._written
        return written[1] if written is not None and written[0] == data else None

    # ---- internals ---------------------------------------------------------------------

    def _encode_part(
        self,
        part: str,
        value: Any,
        seen: dict[Any, Entry],
        events_keys: Sequence[bytes] | None = None,
    ) -> EncodedPart:
        layout = _LAYOUTS[part]
        if layout.key is None:
            items, head = value, None
        else:
            items = value[layout.key]
            head = {k: ([] if k == layout.key else v) for k, v in value.items()}
        if part == "runs":
            if events_keys is None or len(events_keys) != len(items):
                events_keys = [None] * len(items)  # type: ignore[list-item]
            keys = list(map(self._run_key, items, events_keys))
        else:
            keys = list(map(self._key, items))
        entries: list[Entry | None] = list(map(self._items.get(part, {}).get, keys))
        new: list[int] = []
        if None in entries:  # Entry compares by identity: this test runs at C speed
            fresh: dict[bytes, Entry] = {}
            for i, entry in enumerate(entries):
                if entry is None:
                    entry = fresh.get(keys[i])
                    if entry is None:
                        loc = (part, layout.key, i) if layout.key else (part, i)
                        entry = fresh[keys[i]] = Entry(self._item_text(loc, layout, items[i]))
                        new.append(i)
                    entries[i] = entry
        seen.update(zip(keys, entries, strict=True))  # type: ignore[arg-type]
        # "[", the items with commas between, the closing line: joined once, since every
        # large bytes object built on the way costs a fresh allocation (page faults)
        chunks = [b","] * (2 * len(entries) + 1) if entries else [b"[]"]
        if entries:
            chunks[1::2] = map(_TEXT, entries)
            chunks[0], chunks[-1] = b"[", layout.indent[:-2] + b"]"
        if head is None:
            return EncodedPart(b"".join(chunks), keys, new, entries)  # type: ignore[arg-type]
        head_text = self._head_text((part,), layout, head)
        marker = b'\n  "' + layout.key.encode() + b'": []'
        at = head_text.index(marker) + len(marker) - 2
        data = b"".join([head_text[:at], *chunks, head_text[at + 2 :]])
        return EncodedPart(data, keys, new, entries, head_text)  # type: ignore[arg-type]

    def _run_key(self, run: Any, events_key: bytes | None) -> Any:
        """A run record's key: the key of the record without its events (their place
        kept), paired with the key of its events, given (computed when they were read) or
        computed here. A pair never equals a bytes key, so the kinds never meet."""
        if type(run) is not dict or "events" not in run:
            return self._key(run)
        if events_key is None:
            events_key = self._key(run["events"])
        return (self._key({**run, "events": None}), events_key)

    def _item_text(self, loc: tuple[Any, ...], layout: _Layout, item: Any) -> bytes:
        """Validate one item (from its JSON, as a load reads it); its indented text."""
        compact = pydantic_core.to_json(item)
        try:
            model = layout.item.validate_json(compact)
        except ValidationError as e:
            raise PartError(loc, e) from None
        if layout.item.dump_json(model, by_alias=True) == compact:
            text = _pretty(item)  # what was given is what the models write
        else:
            data = layout.item.dump_python(model, mode="json", by_alias=True)
            try:
                layout.item.validate_python(data)
            except ValidationError as e:
                raise PartError(loc, e) from None
            text = _pretty(data)
        return layout.indent + text.replace(b"\n", layout.indent)

    def _head_text(self, loc: tuple[Any, ...], layout: _Layout, head: dict[str, Any]) -> bytes:
        assert layout.head is not None
        try:
            model = layout.head.validate_python(head)
            data = layout.head.dump_python(model, mode="json", by_alias=True)
            layout.head.validate_python(data)
        except ValidationError as e:
            raise PartError(loc, e) from None
        return _pretty(data)


def item_key(part: str) -> str | None:
    """The key under which a part keeps its items (None: the part is the list)."""
    return _LAYOUTS[part].key


_ITEM_PATH = re.compile(r"(?:([A-Za-z_]+))?\[(\d+)\]")


def item_index(part: str, path: str) -> int | None:
    """The index of the item a JSON path inside ``part`` falls in (``messages[3].x`` -> 3)."""
    m = _ITEM_PATH.match(path)
    if m is None or m.group(1) != _LAYOUTS[part].key:
        return None
    return int(m.group(2))


def item_path(part: str, path: str, where: list[int]) -> str | None:
    """``path`` inside item ``j`` of a list holding the items ``where`` of the part, as
    the path inside item ``where[j]`` of the whole part; None if it is not such a path."""
    m = _ITEM_PATH.match(path)
    if m is None or m.group(1) != _LAYOUTS[part].key or int(m.group(2)) >= len(where):
        return None
    return f"{m.group(1) or ''}[{where[int(m.group(2))]}]{path[m.end() :]}"


def in_head(part: str, path: str) -> bool:
    """Whether a JSON path inside ``part`` is outside its items (``config.workspace``)."""
    key = _LAYOUTS[part].key
    return key is not None and re.split(r"[.\[]", path, maxsplit=1)[0] != key


_ENCODERS: OrderedDict[Any, PartEncoder] = OrderedDict()
_ENCODERS_LOCK = threading.Lock()
_MAX_ENCODERS = 8


def encoder_for(key: Any) -> PartEncoder:
    """The encoder kept for one saved session (by store and id); the last few are kept."""
    with _ENCODERS_LOCK:
        enc = _ENCODERS.pop(key, None) or PartEncoder()
        _ENCODERS[key] = enc
        while len(_ENCODERS) > _MAX_ENCODERS:
            _ENCODERS.popitem(last=False)
        return enc


def forget(predicate: Callable[[Any], bool] | None = None) -> None:
    """Drop kept encoders (all, or those whose key matches)."""
    with _ENCODERS_LOCK:
        for key in [k for k in _ENCODERS if predicate is None or predicate(k)]:
            del _ENCODERS[key]
