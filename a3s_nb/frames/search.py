"""Search inside saved sessions: prompts, answers, tool calls, tool outputs, artifacts.

``a3s_nb.search(query)`` (this module's ``search``; the module is not named ``search`` so
that importing it never hides the function on the package) returns a row per matching
text. What matches:

* a plain query matches a text that contains it, ignoring case: ``query.lower() in
  text.lower()`` (Python's ``str.lower``), spaces and punctuation included, so
  ``"a AND ("`` is just those characters;
* ``regex=True``: ``re.compile(query).search(text)``, exactly Python's ``re`` (add
  ``(?i)`` for case-insensitive).

A directory store is searched through its index (``_searchindex``), brought up to date
first; results are confirmed against the texts themselves, so they are exactly what
``_brute_force`` (every loaded session, scanned) returns. Sessions ``Store.load()``
rejects are left out and listed in ``df.attrs["errors"]``, as the frames do.
"""

from __future__ import annotations

import difflib
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..config import default_store_path
from ..errors import CorruptFileError, SearchQueryError, SessionNotFoundError
from ..store.store import FileStore, MemoryStore, Store
from ._engine import _report as report
from ._searchindex import Doc, SearchIndex, documents, trigrams

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: The kinds of text a match is in (``where``).
KINDS = ("prompt", "assistant", "tool_args", "tool_output", "artifact")
COLUMNS = ["session_id", "prompt", "message", "kind", "tool", "tool_call_id", "time", "snippet"]
#: Characters of context on each side of the match in ``snippet``.
SNIPPET_CONTEXT = 40


# ============================================================================ the query


class Matcher:
    """One query: whether a text matches, where, and what the index can prefilter by."""

    def __init__(self, query: Any, regex: bool = False):
        if not isinstance(query, str):
            raise SearchQueryError(f"the query must be text, not {type(query).__name__}")
        if query == "":
            raise SearchQueryError("the query is empty: give the text to look for")
        self.query = query
        self.regex = bool(regex)
        if self.regex:
            try:
                self.pattern: re.Pattern[str] = re.compile(query)
            except re.error as e:
                raise SearchQueryError(
                    f"{query!r} is not a valid regular expression: {e}; "
                    "fix it, or search for the text itself without regex"
                ) from None
            self.needle = ""
        else:
            self.needle = query.lower()

    def span(self, text: str) -> tuple[int, int] | None:
        """Where the first match in ``text`` is, or None when it does not match."""
        if self.regex:
            m = self.pattern.search(text)
            return m.span() if m is not None else None
        lowered = text.lower()
        at = lowered.find(self.needle)
        if at < 0:
            return None
        if len(lowered) == len(text):  # lowercasing kept every position
            return at, at + len(self.needle)
        m = re.search(re.escape(self.query), text, re.IGNORECASE)
        return m.span() if m is not None else (0, 0)

    def grams(self) -> list[str] | None:
        """Lowercased trigrams every matching text holds (lowercased); None: no prefilter."""
        if not self.regex:
            return trigrams(self.needle) or None
        grams: list[str] = []
        for literal in _required_literals(self.pattern):
            grams.extend(trigrams(literal.lower()))
        return list(dict.fromkeys(grams)) or None


def _required_literals(pattern: re.Pattern[str]) -> list[str]:
    """Runs of literal characters every match of ``pattern`` contains (its top-level
    sequence), when lowercasing them is the same as lowercasing the text around them."""
    if pattern.flags & re.IGNORECASE:
        return []
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        import sre_parse  # type: ignore[no-redef]
    try:
        parsed = sre_parse.parse(pattern.pattern, pattern.flags)
    except Exception:  # pragma: no cover - compiled above; be safe on other versions
        return []
    literal = sre_parse.LITERAL
    runs, run = [], []
    for op, arg in parsed:
        if op is literal:
            run.append(chr(arg))
        else:
            runs.append("".join(run))
            run = []
    runs.append("".join(run))
    # a character whose lowercase is longer, or depends on its neighbours (final sigma),
    # would not be found as itself in the lowercased text
    return [r for r in runs if len(r) >= 3 and all(len(c.lower()) == 1 and c != "Σ" for c in r)]


def _kinds(where: Any) -> list[str] | None:
    if where is None:
        return None
    given = [where] if isinstance(where, str) else list(where)
    for kind in given:
        if kind not in KINDS:
            close = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SearchQueryError(
                f"unknown kind of match {kind!r}: {hint}choose from {', '.join(KINDS)}"
            )
    if not given:
        raise SearchQueryError(f"where is empty: give one or more of {', '.join(KINDS)}")
    return list(dict.fromkeys(given))


# ============================================================================ the search


def search(
    query: str,
    store: Any = None,
    *,
    regex: bool = False,
    where: str | Iterable[str] | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Find text in every saved session: a row per matching text, in session and
    transcript order.

    Columns: ``session_id``, ``prompt`` (the number ``a3s_nb.fork(at=...)`` cuts at),
    ``message`` (index in the session's messages), ``kind`` (``prompt``, ``assistant``,
    ``tool_args``, ``tool_output``, ``artifact``), ``tool``, ``tool_call_id``, ``time``
    (the prompt's run start, UTC) and ``snippet`` (the match with some text around it).

    A plain ``query`` is a case-insensitive substring; ``regex=True`` makes it a Python
    regular expression. ``where`` keeps some kinds (a name or a list); ``limit`` the
    first N rows. See docs/search.md.

    >>> a3s_nb.search("rm -rf", where="tool_args")                # doctest: +SKIP
    """
    import pandas as pd

    matcher = Matcher(query, regex)
    kinds = _kinds(where)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise SearchQueryError(f"limit must be a whole number, 0 or more, not {limit!r}")
    st = _open(store)
    rows, errors = _search(st, matcher, kinds)
    if limit is not None:
        rows = rows[:limit]
    df = pd.DataFrame(
        [
            (sid, p, m, k, tool, call, t, _snippet(matcher, text))
            for sid, p, m, _b, k, tool, call, t, text in rows
        ],
        columns=COLUMNS,
    )
    df["prompt"] = df["prompt"].astype("Int64")
    df["message"] = df["message"].astype("Int64")
    df["time"] = pd.to_datetime(df["time"].astype("Int64"), unit="ms", utc=True)
    df.attrs["errors"] = errors
    return df


def _open(store: Any) -> Store:
    if isinstance(store, Store):
        return store
    if store is not None and str(store) == ":memory:":
        return MemoryStore()
    if store is None:
        store = default_store_path()
    return FileStore(store, create=False)  # searching never creates a store


def _order(row: tuple) -> tuple:
    sid, prompt, message, block = row[:4]
    big = 1 << 62
    return (sid, big if prompt is None else prompt, big if message is None else message, block)


def _search(st: Store, matcher: Matcher, kinds: list[str] | None) -> tuple[list[tuple], list[dict]]:
    """Matching ``(session_id, *Doc)`` rows in order, and the sessions left out."""
    if not isinstance(st, FileStore):
        return _brute_force(st, matcher, kinds)
    index = SearchIndex(st)
    try:
        with index:
            index.refresh()
            hits = [
                r for r in index.rows(matcher.grams(), kinds) if matcher.span(r[-1]) is not None
            ]
    except (OSError, sqlite3.Error) as e:  # a store we cannot write, a damaged index
        log.info("searching %s without its index: %s", st, e)
        return _brute_force(st, matcher, kinds)
    errors = _report(index.rejected)
    return sorted(hits, key=_order), errors


def _report(rejected: dict[str, CorruptFileError]) -> list[dict]:

    errors: list[dict] = []
    for sid in sorted(rejected):
        report(errors, sid, rejected[sid])
    return errors


def _brute_force(
    st: Store, matcher: Matcher, kinds: list[str] | None
) -> tuple[list[tuple], list[dict]]:
    """Every session the store loads, every text scanned: what the index must equal."""
    rejected: dict[str, CorruptFileError] = {}
    hits: list[tuple] = []
    for sid, docs in _loaded_documents(st, rejected):
        hits.extend(
            (sid, *doc)
            for doc in docs
            if (kinds is None or doc[3] in kinds) and matcher.span(doc[-1]) is not None
        )
    return sorted(hits, key=_order), _report(rejected)


def _loaded_documents(
    st: Store, rejected: dict[str, CorruptFileError]
) -> Iterator[tuple[str, list[Doc]]]:
    for sid in st.list():
        try:
            bundle = st.load(sid)
        except CorruptFileError as e:
            rejected[sid] = e
            continue
        except SessionNotFoundError as e:  # as the load check words it
            rejected[sid] = CorruptFileError(st.location(sid), f"cannot be loaded: {e}")
            continue
        yield sid, documents(bundle)


def _snippet(matcher: Matcher, text: str, context: int = SNIPPET_CONTEXT) -> str:
    """The match with ``context`` characters on each side, on one line."""
    start, end = matcher.span(text) or (0, 0)
    lo, hi = max(0, start - context), min(len(text), end + context)
    snip = " ".join(text[lo:hi].split())
    return ("…" if lo > 0 else "") + snip + ("…" if hi < len(text) else "")


def matching_sessions(text: str, store: Any = None) -> set[str]:
    """The ids of the sessions with ``text`` anywhere in them (``list_sessions(contains=)``)."""
    return set(search(text, store)["session_id"])


def hit_line(hit: Any) -> str:
    """One hit (a row of ``search``) on one line: session, prompt, kind and tool, snippet."""
    prompt = hit.prompt
    where = "" if prompt is None or prompt != prompt else f"prompt {prompt}"
    tool = f" {hit.tool}" if isinstance(hit.tool, str) else ""
    return f"{hit.session_id}  {where:9}  {hit.kind}{tool}: {hit.snippet}"
