"""Building frames in several worker processes (the frames' ``workers=``).

The sessions to read are split into contiguous runs of ids, one per worker, in order. Each
worker builds its run's frames through the same code as a build in one process
(``_engine._collect_frames`` with ``ids=`` its sessions, no cache, the load verdicts the
parent already has), writes each frame as an Arrow IPC file into a private temporary
directory (in ``/dev/shm`` when there is room: memory, not disk) and says it is done; the
parent maps the files, concatenates each frame's tables in worker order and makes one
DataFrame of them, with the dtypes, categories and ``attrs`` a build in one process gives.
Only small things travel through the pipe: the ``errors`` entries and the warnings a worker
raised, which the parent raises again, once each, at the user's line, and each session's
``sessions`` row (the parent's sessions index takes them instead of reading the files
again). Before the build, the sessions with no cached load verdict are checked the same
way (``check``: each worker runs ``_loadcheck._check`` on its share and sends back the
verdicts, which the parent records as if it had reached them).

Workers are started by ``forkserver`` (``spawn`` where there is none), never by a plain
fork of a process that may be a threaded Jupyter kernel. The fork server imports a3s_nb
(``_parallel_preload``) once, when it first starts, so every worker starts in
milliseconds. Whatever ends a
build (done, a failing worker, an error, KeyboardInterrupt), every worker still running is
stopped and the temporary files are removed before the call returns; a worker that fails
raises :class:`~a3s_nb.errors.ParallelBuildError` and no frame is returned.

A build killed outright (SIGKILL, the kernel's OOM killer) removes nothing. So what it
leaves is named for the process that made it: its scratch directory
(``a3s_nb-frames-<pid>-*``) and multiprocessing's own temporary directory, which holds the
fork server's socket (``a3s_nb-pool-<pid>-*`` instead of ``pymp-*``, when this process has
none yet). The next parallel build, and ``a3s-nb check --fix``, remove those of processes
that no longer run (:func:`remove_dead_leftovers`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import re
import shutil
import signal
import stat
import sys
import tempfile
import traceback
import types
import warnings
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np
import pandas as pd

from .._warn import warn
from ..errors import ParallelBuildError
from ..store.store import FileStore, _pid_alive
from . import _columns, _engine, _loadcheck
from ._columns import _with_attrs
from ._framecache import to_frame

#: A worker gets at least this many sessions (fewer workers are started if need be).
MIN_PER_WORKER = 20
#: Progress is reported by a worker every this many sessions.
PROGRESS_EVERY = 64
#: ``/dev/shm`` is used for the workers' files when it has at least this much room.
SHM_MIN_FREE = 1 << 30
#: What the fork server imports when it starts (everything a worker needs).
_PRELOAD = __name__ + "_preload"
#: Seconds a worker is given to exit after ``terminate`` before it is killed.
STOP_SECONDS = 5.0


def check_workers(workers: Any) -> int:
    """``workers`` as a number of processes (None is 1), or a ValueError saying why not."""
    if workers is None:
        return 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(
            f"workers must be a whole number of processes, 1 or more (or None for one "
            f"process), not {workers!r}"
        )
    return workers


def chunks(ids: list[str], n: int) -> list[list[str]]:
    """``ids`` cut into at most ``n`` contiguous runs of nearly equal length, in order."""
    n = max(1, min(n, len(ids)))
    size, extra = divmod(len(ids), n)
    out, at = [], 0
    for k in range(n):
        end = at + size + (1 if k < extra else 0)
        out.append(ids[at:end])
        at = end
    return out


def _context() -> Any:
    """The multiprocessing context: forkserver (see :func:`_preloading`), else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    return multiprocessing.get_context("forkserver")


@contextlib.contextmanager
def _preloading(ctx: Any) -> Iterator[None]:
    """While workers start, the fork server's preload list also names this package.

    The list is read only when the server starts (the first time anyone in the process
    uses forkserver); added to, never replacing, what the kernel asked for, and put back
    as it was as soon as the workers are started, whatever happens.
    """
    if ctx.get_start_method() != "forkserver":
        yield
        return
    from multiprocessing import forkserver

    before = getattr(forkserver._forkserver, "_preload_modules", None)
    preload = list(before or ["__main__"])
    if _PRELOAD not in preload:
        ctx.set_forkserver_preload([*preload, _PRELOAD])
    try:
        yield
    finally:
        forkserver._forkserver._preload_modules = before


_SHM = "/dev/shm"
#: What a build leaves in the temporary directories while it runs, by the owning pid.
_LEFTOVER = re.compile(r"a3s_nb-(?:frames|pool)-(\d+)-")


def _scratch_dir() -> str:
    """A private temporary directory for the workers' files, in memory when possible."""
    prefix = f"a3s_nb-frames-{os.getpid()}-"
    with contextlib.suppress(OSError):
        if os.path.isdir(_SHM) and shutil.disk_usage(_SHM).free >= SHM_MIN_FREE:
            return tempfile.mkdtemp(prefix=prefix, dir=_SHM)
    return tempfile.mkdtemp(prefix=prefix)


def _own_pool_dir() -> None:
    """Give multiprocessing a temporary directory named for this process, unless it has
    one already: it is where the fork server's socket lives, and it is removed only when
    this process exits normally. Made and cleaned up as ``multiprocessing.util.get_temp_dir``
    does, under a name :func:`dead_leftovers` can tell."""
    from multiprocessing import util

    config = multiprocessing.current_process()._config
    prefix = f"a3s_nb-pool-{os.getpid()}-"
    # the socket's path, <dir>/<prefix>XXXXXXXX/listener-XXXXXXXX, must fit AF_UNIX's 108 bytes
    fits = len(os.fsencode(tempfile.gettempdir())) + len(prefix) + 28 < 104
    if config.get("tempdir") is None and fits:
        path = tempfile.mkdtemp(prefix=prefix)
        util.Finalize(None, util._remove_temp_dir, args=(shutil.rmtree, path), exitpriority=-100)
        config["tempdir"] = path


def dead_leftovers() -> list[str]:
    """The directories builds of processes no longer running left in the temporary
    directories (``/dev/shm`` and the system's): only this user's, never a link."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    found = []
    for root in dict.fromkeys([_SHM, tempfile.gettempdir()]):
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            m = _LEFTOVER.match(entry.name)
            if m is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode) or (uid is not None and st.st_uid != uid):
                continue
            if not _pid_alive(int(m.group(1))):
                found.append(entry.path)
    return sorted(found)


def remove_dead_leftovers() -> list[str]:
    """Remove :func:`dead_leftovers`; the directories removed."""
    gone = []
    for path in dead_leftovers():
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            gone.append(path)
    return gone


# ============================================================================ the worker


def _work(conn: Connection, task: dict[str, Any]) -> None:
    """A worker's whole life: build one run of sessions, write its frames, report."""
    _serve(conn, _build_chunk, task)


def _check_work(conn: Connection, task: dict[str, Any]) -> None:
    """A load-check worker's whole life: check one run of sessions, report the verdicts."""
    _serve(conn, _check_chunk, task)


def _serve(conn: Connection, job: Any, task: dict[str, Any]) -> None:
    """Run ``job(conn, **task)`` and send its result (or its failure) to the parent."""
    # Ctrl-C in a terminal reaches the whole process group: the parent handles it and
    # stops the workers, which need not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = job(conn, **task)
    except BaseException as e:  # any failure is the parent's to raise
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
    else:
        conn.send(("done", result))
    finally:
        conn.close()


def _check_chunk(conn: Connection, *, path: str, ids: list[str]) -> dict[str, Any]:
    """The load check's verdict on each of ``ids`` (``_loadcheck._check``, a batch of
    sessions under each taking of the store's shared lock, as in the calling process)."""
    store = FileStore(path, create=False)
    return {sid: _loadcheck._check(store, sid) for sid in _loadcheck._locked_batches(store, ids)}


def check(store: Any, ids: list[str], *, workers: int) -> dict[str, Any]:
    """The load check's verdict (None or ``{path, problem}``) on each of ``ids`` of a
    directory store, reached by ``workers`` processes, each on a contiguous share: what
    ``_loadcheck._check`` answers in this process (tests/test_parallel.py)."""
    parts = chunks(ids, min(workers, len(ids) // MIN_PER_WORKER))
    ctx = _context()
    running: list[tuple[Any, Connection]] = []
    try:
        with _without_main(), _preloading(ctx):
            for k, part in enumerate(parts):
                receive, send = ctx.Pipe(duplex=False)
                task = {"path": str(store.path), "ids": part}
                proc = ctx.Process(
                    target=_check_work,
                    args=(send, task),
                    name=f"a3s_nb-check-{k}",
                    daemon=True,
                )
                running.append((proc, receive))
                proc.start()
                send.close()
        verdicts: dict[str, Any] = {}
        for result in _gather(running, None):
            verdicts.update(result)
        return verdicts
    finally:
        _stop(running)


def _build_chunk(
    conn: Connection,
    *,
    path: str,
    wanted: list[str],
    ids: list[str],
    since: Any,
    until: Any,
    status: Any,
    out: str,
    rows: bool = False,
) -> dict[str, Any]:
    """Build the frames of ``ids`` as one process would, write each to ``out/<frame>.arrow``
    and return what else the parent needs: the ``errors`` entries of skipped sessions, each
    frame's notes, and the warnings raised; with ``rows``, each session's ``sessions`` row
    made in the same pass (for the parent's sessions index)."""
    import pyarrow as pa

    reported: list[dict] = []
    skip_warnings: set[int] = set()  # which of the warnings say a session was skipped
    report = _engine._report

    def counting_report(errors: list[dict], session_id: str, err: Any) -> None:
        before = len(caught)
        report(errors, session_id, err)
        reported.append(errors[-1])
        skip_warnings.update(range(before, len(caught)))

    def counting_progress(items: Any, progress: Any, desc: str, total: Any = None) -> Any:
        if desc != "sessions":
            return items
        return _counted(items, conn)

    # This process is this build's alone: its engine may be steered for it.
    _engine._report = counting_report
    _engine._progress = counting_progress
    rows_made: dict[str, Any] | None = {} if rows else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames = _engine._collect(
            FileStore(path, create=False),
            wanted,
            ids=ids,
            since=since,
            until=until,
            status=status,
            progress=False,
            cache=False,
            prechecked=(None, ids, {}, []),
            exact_ids=True,
            rows_made=rows_made,
        )
    notes: dict[str, list[dict]] = {}
    for name, df in frames.items():
        errors = df.attrs.get("errors", [])
        if errors[: len(reported)] != reported:  # pragma: no cover - an engine change
            raise RuntimeError("the errors of a frame do not start with its skipped sessions")
        notes[name] = errors[len(reported) :]
        table = pa.Table.from_pandas(df, preserve_index=False)
        table = table.cast(_plain_dictionaries(pa, table.schema))
        with (
            pa.OSFile(os.path.join(out, f"{name}.arrow"), "wb") as sink,
            pa.ipc.new_file(sink, table.schema) as writer,
        ):
            writer.write_table(table)
    # Which warning is about what: a skipped session, or a frame's note (each note is
    # warned once, frame after frame in ``wanted`` order, as the frames are finished).
    about: list[str] = ["skip" if i in skip_warnings else "other" for i in range(len(caught))]
    rest = [i for i in range(len(caught)) if i not in skip_warnings]
    if len(rest) == sum(len(notes[name]) for name in wanted):
        at = iter(rest)
        for name in wanted:
            for _ in notes[name]:
                about[next(at)] = name
    return {
        "reported": reported,
        "rows": rows_made or {},
        "notes": notes,
        "warnings": [
            (about[i], _category(w.category), str(w.message))
            for i, w in enumerate(caught)
            # hidden by default where they arise (in a library); not the user's to see
            if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
        ],
    }


def _category(category: type[Warning]) -> type[Warning]:
    """``category`` if it travels to the parent (by its importable name), else UserWarning."""
    try:
        pickle.dumps(category)
    except Exception:  # a class defined where the parent cannot find it
        return UserWarning
    return category


def _plain_dictionaries(pa: Any, schema: Any) -> Any:
    """``schema`` with every dictionary column indexed by int32: pandas picks the width
    from the number of categories, which differs between workers; tables concatenate only
    when their schemas agree."""
    fields = [
        f.with_type(pa.dictionary(pa.int32(), f.type.value_type))
        if pa.types.is_dictionary(f.type)
        else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def _counted(items: Any, conn: Connection) -> Any:
    n = 0
    for item in items:
        yield item
        n += 1
        if n == PROGRESS_EVERY:
            conn.send(("progress", n))
            n = 0
    if n:
        conn.send(("progress", n))


# ============================================================================ the parent


def usable(store: Any, ids: list[str]) -> bool:
    """Whether a build can be split among workers: a directory store (which a worker opens
    by its path) with pyarrow (which carries the frames back) and enough sessions for two
    workers (a frame cache refreshing a few changed sessions is quicker alone). Anything
    else is built in the calling process."""
    return type(store) is FileStore and _columns.pa is not None and len(ids) >= 2 * MIN_PER_WORKER


def build(
    store: Any,
    wanted: list[str],
    ids: list[str],
    *,
    workers: int,
    errors: list[dict],
    since: Any = None,
    until: Any = None,
    status: Any = None,
    progress: bool | None = None,
    rows_made: dict[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """The frames ``wanted`` of the sessions ``ids`` of a directory store, built by
    ``workers`` processes: what ``_collect_frames`` would give for them, with ``errors``
    (already reported) first in each frame's ``attrs["errors"]``. ``rows_made``, unless
    None, gets each session's ``sessions`` row, made by the workers in their pass (as
    ``_engine._build_frames`` does)."""
    pa = _columns.pa

    parts = chunks(ids, min(workers, len(ids) // MIN_PER_WORKER))
    # what the filters make of them anyway, and sure to travel to a worker
    since, until = (None if t is None else pd.Timestamp(t) for t in (since, until))
    ctx = _context()
    path = str(store.path)
    running: list[tuple[Any, Connection]] = []
    shown = _engine._progress(range(len(ids)), progress, "sessions")
    bar = shown if hasattr(shown, "update") else None
    remove_dead_leftovers()  # of builds killed before they could clean up
    _own_pool_dir()
    scratch = _scratch_dir()
    try:
        with _without_main(), _preloading(ctx):
            _start(
                ctx,
                parts,
                scratch,
                running,
                path,
                wanted,
                since,
                until,
                status,
                rows=rows_made is not None,
            )
        results = _gather(running, bar)
        if rows_made is not None:
            for r in results:
                rows_made.update(r["rows"])
        # every worker is done: the frames, in session order
        out_frames: dict[str, pd.DataFrame] = {}
        reported = [e for r in results for e in r["reported"]]
        for name in wanted:
            tables = []
            for k in range(len(parts)):
                file = os.path.join(scratch, str(k), f"{name}.arrow")
                with pa.memory_map(file) as source:
                    tables.append(pa.ipc.open_file(source).read_all())
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            df = to_frame(table, name)
            if name == "sessions" and len(parts) > 1:
                df = _newest_first(df)
            notes = [e for r in results for e in r["notes"][name]]
            out_frames[name] = _with_attrs(name, df, [*errors, *reported, *notes])
        # The warnings in the order one process gives: skipped sessions as they are met,
        # then each frame's notes as it is finished
        for kind in ("skip", *wanted, "other"):
            for r in results:
                for about, category, message in r["warnings"]:
                    if about == kind:
                        warn(message, category)
        return out_frames
    finally:
        if bar is not None:
            bar.close()
        _stop(running)
        shutil.rmtree(scratch, ignore_errors=True)


def _start(
    ctx: Any,
    parts: list[list[str]],
    scratch: str,
    running: list[tuple[Any, Connection]],
    path: str,
    wanted: list[str],
    since: Any,
    until: Any,
    status: Any,
    rows: bool = False,
) -> None:
    """Start a worker per run of sessions; each is in ``running`` before it starts."""
    for k, part in enumerate(parts):
        out = os.path.join(scratch, str(k))
        os.mkdir(out)
        task = {
            "path": path,
            "wanted": wanted,
            "ids": part,
            "since": since,
            "until": until,
            "status": status,
            "out": out,
            "rows": rows,
        }
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_work, args=(send, task), name=f"a3s_nb-frames-{k}", daemon=True)
        running.append((proc, receive))
        proc.start()
        send.close()


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Start workers as if ``__main__`` were empty: they run a3s_nb's code only.

    Otherwise multiprocessing re-runs a script's main module in every worker (and in the
    fork server), and cannot start a worker at all under a ``__main__`` it does not know
    how to describe (IPython's shell namespace, a script read from stdin). The real one is
    back in place as soon as the workers are started, whatever happens.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is None:
            sys.modules.pop("__main__", None)
        else:
            sys.modules["__main__"] = main


def _newest_first(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``sessions`` in the order ``_SessionsBuilder`` gives a whole store:
    newest ``updated_at`` first, ties (and sessions without one, last) by id."""
    updated = df["updated_at"].array.asi8
    missing = df["updated_at"].isna().to_numpy() | (updated == 0)
    keys = pd.DataFrame(
        {
            "updated": -np.where(missing, -(2**62), updated),
            "id": df["session_id"].fillna("").to_numpy(dtype=object),
        }
    )
    order = keys.sort_values(["updated", "id"], kind="stable").index.to_numpy()
    return df.take(order).reset_index(drop=True)


def _gather(running: list[tuple[Any, Connection]], bar: Any) -> list[dict[str, Any]]:
    """Each worker's result, in worker order; ParallelBuildError at the first failure."""
    results: list[dict[str, Any] | None] = [None] * len(running)
    pending = {conn: k for k, (_, conn) in enumerate(running)}
    while pending:
        for conn in wait(list(pending)):  # a message, or the end of a worker that died
            k = pending[conn]
            try:
                message = conn.recv()
            except EOFError:
                proc = running[k][0]
                proc.join()
                raise ParallelBuildError(
                    f"a worker building the frames died (exit code {proc.exitcode}) before "
                    "it finished; no frame was returned. Run with workers=None to build in "
                    "this process."
                ) from None
            if message[0] == "progress":
                if bar is not None:
                    bar.update(message[1])
            elif message[0] == "done":
                results[k] = message[1]
                del pending[conn]
            else:
                _, what, trace = message
                raise ParallelBuildError(
                    f"a worker building the frames failed: {what}; no frame was returned.\n"
                    f"The worker's traceback:\n{trace}"
                )
    return results  # type: ignore[return-value]


def _stop(running: list[tuple[Any, Connection]]) -> None:
    """Stop every worker still running and close the pipes."""
    for proc, conn in running:
        with contextlib.suppress(Exception):
            conn.close()
        if proc.pid is not None and proc.exitcode is None:
            with contextlib.suppress(Exception):
                proc.terminate()
    for proc, _ in running:
        if proc.pid is None:
            continue
        with contextlib.suppress(Exception):
            proc.join(STOP_SECONDS)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        with contextlib.suppress(Exception):
            proc.close()
