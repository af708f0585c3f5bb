"""The search index of a directory store: ``<store>/.a3s_nb/search.sqlite``.

Every searchable text of every session ``Store.load()`` accepts (see ``documents``) is a row
of ``docs``; an SQLite FTS5 table over the lowercased texts, with the ``trigram`` tokenizer,
finds the rows that hold every three-character piece of a query. That is a prefilter, never
the answer: ``a3s_nb.textsearch`` confirms each candidate in Python, so results are exactly
those of a scan of the loaded sessions.

What changed is found the way the frames find it (``_loadcheck``): the load check lists the
store and stats every file once, and the index keeps, per session, the signatures of the
files its rows came from (``session``, ``runs``: prompt numbers and times, ``artifacts``).
Only sessions whose files changed, appeared or vanished are read again, and their rows are
compared with the stored ones by value, so a session that grew gets its new rows only.
Rows recomputed within ``RACY_SECONDS`` of their files' last change are checked again next
time, as the load check and the sessions index do.

Deleted text does not stay findable: rows are deleted with ``secure_delete`` on (freed
pages are zeroed), and whenever rows were deleted the FTS index is merged into one segment
(``optimize``), which drops the deleted rows' pieces from it.

The file is a cache, never the truth, and is written with the care of the other cache
files: it is only ever opened as a regular file inside a real ``.a3s_nb`` folder (never
through a link), built from nothing under a fresh name created exclusively and renamed
into place, and updated with the journal in memory (no journal file beside it to plant a
link at); an update marks it ``dirty`` first and ``clean`` last, so one interrupted
halfway is rebuilt, not trusted. A store that cannot be written is searched without it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import CorruptFileError, SessionNotFoundError
from ..store import _metafiles
from ..store._cachefile import digest, encode
from ..store._prompts import _args_json, _prompts
from ..store.models import (
    ArtifactManifest,
    SessionBundle,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from ..store.store import FileStore, Part, _same_id
from ._loadcheck import LoadCheck, _locked_batches, code_digest, newest

log = logging.getLogger(__name__)

INDEX_FILE = "search.sqlite"
#: Bump when ``documents`` or the tables change: the index is then rebuilt.
INDEX_FORMAT = 2
RACY_SECONDS = 2.0
#: The files a session's rows come from.
PARTS: tuple[Part, ...] = ("session", "runs", "artifacts")
#: Sessions read, then written to the index, at a time (bounds the memory of a build).
BATCH = 256
#: A searchable text: ``(prompt, message, block, kind, tool, tool_call_id, time_ms, text)``.
Doc = tuple[int | None, int | None, int, str, str | None, str | None, int | None, str]

_DOC_COLS = "prompt, message, block, kind, tool, call, time, text"


# ============================================================================ the texts


def documents(bundle: SessionBundle) -> list[Doc]:
    """Every searchable text of a session, in transcript order.

    * ``prompt``: a text block of a user message; ``assistant``: a text block of an
      assistant message, or its reasoning (block -1);
    * ``tool_args``: a tool call's input as canonical JSON (sorted keys, as ``diff``
      compares calls); ``tool_output``: a tool result's text (text parts joined);
    * ``artifact``: the full output a3s-code stored for a truncated tool result. The
      transcript does not say which result it belongs to unless a result names its URI or
      id; without that its prompt and message are None.

    ``prompt`` is the prompt number ``a3s_nb.fork`` cuts at (``lineage.prompts``); the time
    is that prompt's run's start (None for a prompt without a run).
    """

    messages = bundle.session.messages
    prompt_of: dict[int, int] = {}
    time_of: dict[int, int | None] = {}
    for p in _prompts(bundle, content=False):
        time_of[p.number] = p.run.snapshot.created_at_ms if p.run is not None else None
        for i in range(*p.messages):
            prompt_of[i] = p.number
    names: dict[str, str] = {}
    out: list[Doc] = []
    for i, m in enumerate(messages):
        number = prompt_of.get(i)
        at = time_of.get(number) if number is not None else None
        if m.reasoning_content and m.role == "assistant":
            out.append((number, i, -1, "assistant", None, None, at, m.reasoning_content))
        for b, block in enumerate(m.content):
            if isinstance(block, TextBlock):
                kind = "prompt" if m.role == "user" else "assistant"
                out.append((number, i, b, kind, None, None, at, block.text))
            elif isinstance(block, ToolUseBlock):
                names[block.id] = block.name
                args = _args_json(block.input)
                out.append((number, i, b, "tool_args", block.name, block.id, at, args))
            elif isinstance(block, ToolResultBlock):
                uid = block.tool_use_id
                out.append((number, i, b, "tool_output", names.get(uid), uid, at, block.text))
    results = [d for d in out if d[3] == "tool_output"]
    for a, art in enumerate(bundle.artifacts.artifacts):
        owner = next(
            (d for d in results if art.artifact_uri in d[7] or art.artifact_id in d[7]), None
        )
        number, message, call, at = (
            (owner[0], owner[1], owner[5], owner[6]) if owner else (None, None, None, None)
        )
        out.append(
            (number, message, 1_000_000 + a, "artifact", art.tool_name, call, at, art.content)
        )
    return out


def searchable(store: FileStore, sid: str) -> SessionBundle | None:
    """What ``documents`` reads of a session ``Store.load()`` accepts (the load check's
    verdict), read once: the session and artifacts validated as ``load`` does, the runs
    through ``_runs_view`` when it can tell (validating their events is most of a
    ``load``). None when the session file is gone or holds another id (changed since the
    verdict); raises ``CorruptFileError`` when a part no longer validates."""
    key, texts = store._read_texts(sid, PARTS)
    if texts["session"] is None:
        return None
    session = store._validate(key, "session", texts["session"])
    if not _same_id(session.id, key):
        return None
    runs: Any = []
    text = texts["runs"]
    if text is not None:
        view = _runs_view(text)
        runs = view if view is not None else store._validate(key, "runs", text)
    text = texts["artifacts"]
    artifacts = (
        store._validate(key, "artifacts", text)
        if text is not None
        else ArtifactManifest.model_construct(artifacts=[])
    )
    # every field given: pydantic would inspect each default factory, on every call
    return SessionBundle.model_construct(
        session=session,
        runs=runs,  # views, not models: ``documents`` reads only the fields they hold
        traces=[],
        verification=[],
        artifacts=artifacts,
        subagent_tasks=None,
    )


@functools.cache
def _runs_decoder() -> Callable[[str | bytes], list[Any]] | None:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is in a3s-nb[all]: runs are validated
        return None

    # Exactly what ``_prompts(content=False)`` reads of a run, in types no looser than
    # the models' (a value of another type fails here, and the runs are validated); a
    # record is read only in the shape with ``event`` (an envelope has none: validated).
    # Built with ``defstruct``: this module's annotations are strings.
    struct = msgspec.defstruct
    record = struct("Record", [("event", struct("Event", [("type", str)]))])
    snapshot = struct("Snapshot", [("status", str), ("prompt", str), ("created_at_ms", int)])
    events = ("events", list[record], msgspec.field(default_factory=list))
    run = struct("Run", [("snapshot", snapshot), events])
    return msgspec.json.Decoder(list[run]).decode


def _runs_view(text: Any) -> list[Any] | None:
    """The runs file's text as read-only views of the fields prompt numbering reads, or
    None when that cannot be told this way (a part read out of an envelope, a value of a
    looser type than msgspec's strict one): the caller validates it then."""
    decode = _runs_decoder()
    if decode is None or not isinstance(text, str | bytes):
        return None
    try:
        return decode(text)
    except ValueError:  # msgspec's errors are ValueErrors
        return None


def trigrams(text: str) -> list[str]:
    """Pieces of three characters of ``text`` that together cover it (a trigram index
    holding all of them is a superset of the texts that contain ``text``)."""
    starts = list(range(0, len(text) - 2, 3))
    if starts and starts[-1] != len(text) - 3:
        starts.append(len(text) - 3)
    return list(dict.fromkeys(text[s : s + 3] for s in starts))


def _match_expr(grams: list[str]) -> str:
    # each piece a quoted string of one token: FTS5's query syntax never sees the user's text
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


# ============================================================================ the file


_SCHEMA = (
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE docs(id INTEGER PRIMARY KEY, stem TEXT NOT NULL, sid TEXT NOT NULL, "
    "prompt INTEGER, message INTEGER, block INTEGER, kind TEXT, tool TEXT, "
    "call TEXT, time INTEGER, text TEXT)",
    "CREATE INDEX docs_stem ON docs(stem)",
    "CREATE INDEX docs_kind ON docs(kind)",
    # per session: what its rows were read from (``encode`` of the signatures of its
    # ``PARTS`` files, None for an absent one); not trusted: read again next time
    "CREATE TABLE sessions(stem TEXT PRIMARY KEY, sid TEXT NOT NULL, sigs BLOB NOT NULL, "
    "trusted INTEGER NOT NULL)",
    # contentless: the lowercased text is only tokenized; the text itself is in ``docs``
    "CREATE VIRTUAL TABLE ft USING fts5(body, content='', detail=none, "
    "tokenize='trigram case_sensitive 1')",
)

_PRAGMAS = (
    "PRAGMA journal_mode=MEMORY",  # no journal file beside the index
    "PRAGMA secure_delete=ON",  # deleted rows are zeroed, not left in free pages
    "PRAGMA temp_store=MEMORY",
    "PRAGMA synchronous=NORMAL",
)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{quote(str(path))}?mode=rw", uri=True, isolation_level=None, timeout=30
    )
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    return conn


def _open_existing(path: Path) -> sqlite3.Connection | None:
    """The index file, opened only if it is a regular file with no journal beside it (a3s_nb
    never leaves one: a journal found there is not ours, and neither is the file); None
    when it is missing or has been removed for a rebuild."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    sidecars = [Path(f"{path}{s}") for s in ("-journal", "-wal", "-shm")]
    if not stat.S_ISREG(st.st_mode) or any(os.path.lexists(p) for p in sidecars):
        for p in [path, *sidecars]:  # unlinking a link removes the link, not its target
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(p)
        return None
    conn = _connect(path)
    again = os.lstat(path)
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):  # swapped while we opened it
        conn.close()
        return None
    return conn


def _format() -> str:
    """The index's ``format``: ``INDEX_FORMAT`` and the code its texts are read by (an
    index another build of a3s_nb made is made again)."""
    return f"{INDEX_FORMAT}.{code_digest()}"


def _fresh(path: Path) -> tuple[sqlite3.Connection, Path]:
    """A new, empty index under a name of its own (created exclusively, never through a
    link), to be renamed over ``path`` when built."""
    tmp = _metafiles.temp_name(path)
    os.close(_metafiles.create(tmp, 0o600))  # exclusively, never through a link
    try:
        conn = _connect(tmp)
        conn.execute("BEGIN")
        for sql in _SCHEMA:
            conn.execute(sql)
        conn.execute("INSERT INTO meta VALUES ('format', ?), ('state', 'building')", (_format(),))
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return conn, tmp


def _meta(conn: sqlite3.Connection) -> dict[str, str]:
    """The ``meta`` table; empty for a file that is not an index (or is damaged)."""
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError:
        return {}


# ============================================================================ the index


class SearchIndex:
    """The search index of one directory store, brought up to date by ``refresh``."""

    def __init__(self, store: FileStore):
        self.store = store
        self.path = store.meta_dir / INDEX_FILE
        self.conn: sqlite3.Connection | None = None
        #: The sessions ``load()`` rejects, as ``{session_id, path, problem}`` (after refresh).
        self.rejected: dict[str, CorruptFileError] = {}
        #: How many sessions the last refresh read (for tests and benchmarks).
        self.read = 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- refresh -------------------------------------------------------------------------

    def refresh(self, progress: Callable[[list], Iterable] | None = None) -> None:
        """Bring the index up to date with the store (raises OSError or sqlite3.Error
        when it cannot be; the caller then searches without it)."""
        scanned_at = time.time_ns()
        check = LoadCheck(self.store)
        known = check.ids()
        self.rejected = check.rejected(known, progress=progress)
        check.save()
        good = {check.stems[sid]: sid for sid in known if sid not in self.rejected}
        # what ``good`` is made of: the files (v1 names included, which the stems follow),
        # the sessions and those rejected
        clean = digest([check.digest, known, sorted(self.rejected), _format()])
        _metafiles.ensure_dir(self.store.meta_dir)  # a real folder in the store, never a link
        conn = _open_existing(self.path)
        meta = _meta(conn) if conn is not None else {}
        if meta.get("format") == _format() and meta.get("state") == "clean":
            self.conn = conn
            if meta.get("clean") == clean:  # every row trusted, on exactly these files
                return
            try:
                self._update(check.scanned, good, clean, scanned_at, progress, fresh=None)
                return
            except sqlite3.DatabaseError as e:  # damaged: built again below
                log.info("search index %s rebuilt: %s", self.path, e)
                self.close()
                conn = None
        if conn is not None:
            conn.close()
        conn, tmp = _fresh(self.path)
        self.conn = conn
        try:
            self._update(check.scanned, good, clean, scanned_at, progress, fresh=tmp)
        except BaseException:
            self.close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _update(
        self,
        scanned: dict[str, dict[str, list[int]]],
        good: dict[str, str],
        clean: str,
        scanned_at: int,
        progress: Callable[[list], Iterable] | None,
        fresh: Path | None,
    ) -> None:
        conn = self.conn
        assert conn is not None
        if fresh is None:  # updated in place: marked dirty until the last write is done
            conn.execute("UPDATE meta SET value = 'dirty' WHERE key = 'state'")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # as it is now that no other process writes it: per stem, the session it was
            # read as and the signatures of its files then (None: look again)
            known = {
                stem: (sid, sigs if trusted else None)
                for stem, sid, sigs, trusted in conn.execute(
                    "SELECT stem, sid, sigs, trusted FROM sessions"
                )
            }
            parts = {part: scanned.get(part, {}) for part in PARTS}
            ses, runs, arts = (parts[part].get for part in PARTS)  # (``PARTS``' order)
            current = {stem: encode((ses(stem), runs(stem), arts(stem))) for stem in good}
            stale = sorted(
                stem for stem, sid in good.items() if known.get(stem) != (sid, current[stem])
            )
            gone = sorted(stem for stem in known if stem not in good)
            limit = scanned_at - RACY_SECONDS * 1e9
            deleted = 0
            self.read = 0
            for stem in gone:
                deleted += self._replace(stem, None, [])
            work = progress(stale) if progress is not None and stale else stale
            batch: list[tuple[str, list[Doc] | None]] = []
            # the shared lock is taken once per LOCK_BATCH sessions read, not per read
            for stem in _locked_batches(self.store, work):
                batch.append((stem, self._docs_of(good[stem])))
                if len(batch) >= BATCH:
                    deleted += self._apply(batch, good, current, parts, limit)
                    batch = []
            deleted += self._apply(batch, good, current, parts, limit)
            if deleted:  # merge the FTS index: the deleted rows' pieces leave it
                conn.execute("INSERT INTO ft(ft) VALUES ('optimize')")
            (untrusted,) = conn.execute(
                "SELECT count(*) FROM sessions WHERE NOT trusted"
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('clean', ?)", ("" if untrusted else clean,)
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("UPDATE meta SET value = 'clean' WHERE key = 'state'")  # the last write
        if fresh is not None:
            os.replace(fresh, self.path)

    def _docs_of(self, sid: str) -> list[Doc] | None:
        """The texts of one session (which the load check accepted), read now; None if it
        can no longer be read."""
        self.read += 1
        try:
            bundle = searchable(self.store, sid)
        except (CorruptFileError, SessionNotFoundError):  # changed since checked: next time
            return None
        return None if bundle is None else documents(bundle)

    def _apply(
        self,
        batch: list[tuple[str, list[Doc] | None]],
        good: dict[str, str],
        current: dict[str, bytes],
        parts: dict[str, dict[str, list[int]]],
        limit: float,
    ) -> int:
        """Write a batch of sessions' rows, and what they were read from: the signatures
        of their files, trusted unless a file changed within ``RACY_SECONDS``."""
        deleted = 0
        for stem, docs in batch:
            if docs is None:  # no record: read again next time
                deleted += self._replace(stem, None, [])
                continue
            deleted += self._replace(stem, good[stem], docs)
            self.conn.execute(  # type: ignore[union-attr]
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)",
                (stem, good[stem], current[stem], int(newest(parts, stem) < limit)),
            )
        return deleted

    def _replace(self, stem: str, sid: str | None, docs: list[Doc]) -> int:
        """Make the rows of ``stem`` exactly ``docs``: rows unchanged stay, the others are
        deleted, the new ones added. Returns how many rows were deleted."""
        conn = self.conn
        assert conn is not None
        have: dict[tuple, list[int]] = defaultdict(list)  # a row's values: its ids
        for row_id, *row in conn.execute(
            f"SELECT id, sid, {_DOC_COLS} FROM docs WHERE stem = ?", (stem,)
        ):
            have[tuple(row)].append(row_id)
        add: list[Doc] = []
        for doc in docs:
            same = have.get((sid, *doc))
            if same:
                same.pop()
            else:
                add.append(doc)
        drop = [(row_id, row[-1]) for row, ids in have.items() for row_id in ids]
        if sid is None:
            conn.execute("DELETE FROM sessions WHERE stem = ?", (stem,))
        for row_id, text in drop:
            conn.execute(
                "INSERT INTO ft(ft, rowid, body) VALUES ('delete', ?, ?)", (row_id, text.lower())
            )
            conn.execute("DELETE FROM docs WHERE id = ?", (row_id,))
        if add:
            (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM docs").fetchone()
            rows = [(top + n + 1, stem, sid, *doc) for n, doc in enumerate(add)]
            conn.executemany(
                f"INSERT INTO docs(id, stem, sid, {_DOC_COLS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO ft(rowid, body) VALUES (?, ?)", [(r[0], r[-1].lower()) for r in rows]
            )
        return len(drop)

    # ---- queries -------------------------------------------------------------------------

    def rows(self, grams: list[str] | None, kinds: Iterable[str] | None) -> Iterator[tuple]:
        """``(session_id, *Doc)`` of every row holding all ``grams`` (lowercased trigrams;
        None: every row), of the given kinds (None: all)."""
        assert self.conn is not None
        sql = f"SELECT sid, {_DOC_COLS} FROM docs"
        where, args = [], []
        if grams:
            where.append("id IN (SELECT rowid FROM ft WHERE ft MATCH ?)")
            args.append(_match_expr(grams))
        if kinds is not None:
            kinds = list(kinds)
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return iter(self.conn.execute(sql, args))


def forget(store: FileStore, stems: list[str]) -> None:
    """Take deleted sessions' rows out of the search index now (their text must not stay
    findable on disk until the next search); an index that cannot be changed is removed
    (it is only a cache: the next search builds it again)."""
    path = store.meta_dir / INDEX_FILE
    try:
        conn = _open_existing(path)
    except (OSError, sqlite3.Error):
        conn = None
    if conn is None:
        return
    index = SearchIndex(store)
    index.conn = conn
    try:
        with conn:
            deleted = sum(index._replace(stem, None, []) for stem in stems)
            if deleted:  # the deleted rows' pieces leave the FTS index too
                conn.execute("INSERT INTO ft(ft) VALUES ('optimize')")
    except sqlite3.Error:
        index.close()
        with contextlib.suppress(OSError):
            path.unlink()
    finally:
        index.close()
