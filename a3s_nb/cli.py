"""``a3s-nb``: the store from a terminal.

    a3s-nb list   [--store DIR] [--limit N] [--model M] [--workspace W] [--since T]
                  [--contains TEXT]             saved sessions, newest first
    a3s-nb show   ID [--prompts] [--store DIR]  one session's transcript (--prompts: its
                                                prompts and tool call ids)
    a3s-nb report ID [-o FILE.html]             one session as a self-contained HTML page
    a3s-nb search QUERY [--in KIND] [--regex]   find text in every session
    a3s-nb check  [--fix] [--store DIR]         load every session; report broken files
    a3s-nb export FRAME OUT [--store DIR]       a frame to .parquet or .csv
    a3s-nb export dataset DEST [--full]         every frame as a Parquet dataset (dir or s3://)
    a3s-nb export otel [OUT.jsonl] [--endpoint URL] [--content]
                                                runs as OpenTelemetry GenAI traces
    a3s-nb fork   ID [--at N] [--edit CALL_ID=TEXT] [--send PROMPT --config FILE]
                                                fork after prompt N, tool results edited
                                                (see ``a3s-nb fork -h``)
    a3s-nb replay ID --model P/M [--store DIR]  replay a session on a model; exit 1 on
                                                a regression (see ``a3s-nb replay -h``)

The store is ``--store``, else ``$A3S_NB_STORE``, else ``./a3s_sessions``. Options go
before or after the command. Every command reads the store: a store that does not exist is
an error (exit 2), never created. Exit codes: 0 done, 1 some session is broken (``list``
still lists the others), 2 nothing could be done.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .api import LIST_FILTERS, list_filters, list_sessions
from .errors import A3sNbError, CorruptSessionWarning
from .lab.lineage import replay
from .saved import transcript_text
from .sdk.features import import_a3s_code
from .store.store import FileStore, Store, open_store

FRAMES = ("sessions", "messages", "traces", "runs", "run_events", "spans", "verification")


_ROLE = re.compile(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")  # :func:`a3s_nb.save` -> save


def _plain(text: str) -> str:
    """``text`` without reST markup: ``code`` and :role:`target` read as plain words."""
    return _ROLE.sub(r"\1", text).replace("``", "")


class _Plain(argparse.HelpFormatter):
    """Help text as written in the docstrings, shown without reST markup."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(_plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return _plain(super()._expand_help(action))


class _PlainRaw(_Plain, argparse.RawDescriptionHelpFormatter):
    """The same, keeping the description's own line breaks."""


def _parser() -> argparse.ArgumentParser:
    # The common options are on the main parser and on every command, so they go before or
    # after the command; SUPPRESS keeps a command's parser from resetting a value given
    # before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        help="store directory (default: $A3S_NB_STORE or ./a3s_sessions)",
    )
    parser = argparse.ArgumentParser(
        prog="a3s-nb",
        description=__doc__.split("\n")[0],
        parents=[common],
        formatter_class=_Plain,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser(
        "list", parents=[common], help="saved sessions, newest first", formatter_class=_Plain
    )
    for flag, options in LIST_FILTERS:  # the filters of %a3s_sessions
        listing.add_argument(flag, **options)
    show = sub.add_parser(
        "show", parents=[common], help="a session's transcript", formatter_class=_Plain
    )
    show.add_argument("id", help="session id or a unique prefix of it")
    show.add_argument(
        "--prompts",
        action="store_true",
        help="one line per prompt and per tool call, with the numbers and call ids that "
        "fork --at and --edit take",
    )
    rep = sub.add_parser(
        "report", parents=[common], help="one session as a self-contained HTML page"
    )
    rep.add_argument("id", help="session id or a unique prefix of it")
    rep.add_argument("-o", "--output", help="the HTML file to write (default: ./<id>.html)")
    rep.add_argument(
        "--allow-secrets",
        action="store_true",
        help="show the secrets the session holds as they are (default: redacted)",
    )
    find = sub.add_parser(
        "search", parents=[common], help="find text in every session (see docs/search.md)"
    )
    find.add_argument("query", help="the text (ignoring case), or a regex with --regex")
    find.add_argument(
        "--in",
        dest="where",
        action="append",
        metavar="KIND",
        help="only matches in prompt, assistant, tool_args, tool_output or artifact",
    )
    find.add_argument("--regex", action="store_true", help="QUERY is a Python regular expression")
    find.add_argument("--limit", type=int, help="at most N hits")
    check = sub.add_parser(
        "check",
        parents=[common],
        help="load every session and report broken files",
        formatter_class=_Plain,
    )
    check.add_argument(
        "--fix", action="store_true", help="also remove what interrupted saves left behind"
    )
    export = sub.add_parser(
        "export",
        parents=[common],
        help="write a frame to .parquet or .csv, or every frame as a dataset",
        formatter_class=_Plain,
    )
    export.add_argument("frame", choices=(*FRAMES, "dataset", "otel"))
    export.add_argument(
        "out",
        nargs="?",
        help="output file (.parquet or .csv); dataset: a directory or s3://bucket/prefix; "
        "otel: an OTLP JSON Lines file",
    )
    export.add_argument(
        "--full", action="store_true", help="dataset: rewrite every session, not just changed ones"
    )
    export.add_argument("--endpoint", help="otel: an OTLP/HTTP collector or backend URL")
    export.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="otel: a header for the endpoint (repeatable)",
    )
    export.add_argument(
        "--content",
        action="store_true",
        help="otel: include prompts, answers and tool input/output (secrets redacted)",
    )
    export.add_argument("--status", help="otel: only runs with this status")
    export.add_argument("--since", help="otel: only runs created at or after this time")
    export.add_argument("--until", help="otel: only runs created before this time")
    _fork_parser(sub)
    _replay_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # a skipped session is reported by each command in its own words (on stderr, once),
    # not as a Python warning pointing at this module's source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptSessionWarning)
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    if args.command == "replay":
        return _replay(args)
    if args.command == "fork":
        return _fork(args)
    try:
        store = open_store(getattr(args, "store", None), create=False)
        if args.command == "list":
            return _list(store, list_filters(args))
        if args.command == "show":
            bundle = store.load(store.resolve(args.id))
            print(f"session {bundle.id} ({bundle.session.model_name or 'unknown model'})")
            print(_prompt_lines(bundle) if args.prompts else transcript_text(bundle, limit=0))
            return 0
        if args.command == "report":
            from .exports.report import report_file  # pandas: imported on first use

            print(report_file(args.id, args.output, store=store, allow_secrets=args.allow_secrets))
            return 0
        if args.command == "check":
            return _check(store, fix=args.fix)
        if args.command == "search":
            return _search(store, args)
        if args.frame == "otel":
            return _export_otel(store, args)
        if args.out is None:
            raise ValueError(f"export {args.frame} needs an output: a file or directory")
        if args.frame == "dataset":
            return _export_dataset(store, args.out, full=args.full)
        return _export(store, args.frame, args.out)
    except (A3sNbError, OSError, ValueError) as e:
        print(f"a3s-nb: {e}", file=sys.stderr)
        return 2


def _list(store: Store, filters: dict[str, Any]) -> int:
    """The sessions frame, as lines; a broken session is reported and the others listed."""
    with warnings.catch_warnings():  # the skipped sessions are reported below, once each
        warnings.simplefilter("ignore")
        df = list_sessions(store, **filters)
    for row in df.itertuples(index=False):
        when = "" if pd_isna(row.updated_at) else row.updated_at.strftime("%Y-%m-%d %H:%M")
        model = "" if pd_isna(row.model) else row.model
        print(f"{when:16}  {row.session_id:40}  {model:28}  {row.n_messages:4} messages")
    errors = df.attrs.get("errors") or []
    for err in errors:
        print(f"a3s-nb: skipped session {err['session_id']!r}: {err['path']}: "
              f"{err['problem']}", file=sys.stderr)  # fmt: skip
    if df.empty and not errors:
        given = any(value is not None for value in filters.values())
        print(f"no saved sessions {'match ' if given else ''}in {store}")
    return 1 if errors else 0


def _search(store: Store, args: argparse.Namespace) -> int:
    """A line per hit: session, prompt, kind (and tool), snippet; skipped sessions named."""
    from .frames.search import hit_line, search  # pandas: imported on first use

    with warnings.catch_warnings():  # the skipped sessions are reported below, once each
        warnings.simplefilter("ignore")
        df = search(args.query, store, regex=args.regex, where=args.where, limit=args.limit)
    for hit in df.itertuples(index=False):
        print(hit_line(hit))
    errors = df.attrs.get("errors") or []
    for err in errors:
        print(f"a3s-nb: skipped session {err['session_id']!r}: {err['path']}: "
              f"{err['problem']}", file=sys.stderr)  # fmt: skip
    if df.empty:
        print(f"no matches for {args.query!r} in {store}", file=sys.stderr)
    return 1 if errors else 0


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def _check(store: Store, *, fix: bool = False) -> int:
    """Load every session; exit 1 if any fails to load (or a file cannot be a session)."""
    ids = store.list()  # taking the lock finishes a write a dead process left half done
    broken = 0
    for sid in ids:
        try:
            store.load(sid)
        except A3sNbError as e:
            broken += 1
            print(f"BROKEN {sid}: {e}")
        except Exception as e:  # a bug, but the other sessions still get checked
            broken += 1
            print(f"BROKEN {sid}: unexpected {type(e).__name__}: {e}")
    print(f"{len(ids) - broken} of {len(ids)} sessions load cleanly")
    if isinstance(store, FileStore):
        for note in store.recovered:
            print(f"RECOVERED {note}")
        for path in store.stray_files():
            broken += 1
            print(f"STRAY {path}: a3s-code cannot have written this name ('\\' or '..')")
        for path in store.v1_stray_files():
            broken += 1
            print(
                f"STRAY {path}: a3s-code does not list this file (its name is not id_ and "
                "the base64url of a session id)"
            )
        left = store.remove_leftovers() if fix else store.leftovers()
        if left:
            size = sum(_size(p) for p in left) if not fix else 0
            if fix:
                print(f"removed {len(left)} files left by interrupted saves")
            else:
                print(
                    f"{len(left)} files ({size:,} bytes) left by interrupted saves of "
                    "processes no longer running: a3s-nb check --fix removes them"
                )
            for path in left:
                print(f"  {path}")
    _check_builds(fix)
    return 1 if broken else 0


def _check_builds(fix: bool) -> None:
    """Say (or with ``fix`` remove) what parallel frame builds killed outright left in the
    temporary directories."""
    from .frames._parallel import dead_leftovers, remove_dead_leftovers  # pandas

    left = remove_dead_leftovers() if fix else dead_leftovers()
    if not left:
        return
    if fix:
        print(f"removed {len(left)} folders left by frame builds of processes no longer running")
    else:
        print(
            f"{len(left)} folders left by frame builds of processes no longer running: "
            "a3s-nb check --fix removes them"
        )
    for path in left:
        print(f"  {path}")


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _export(store: Store, frame: str, out: str) -> int:
    from . import frames  # pandas: imported by the commands that need it

    df = getattr(frames, frame)(store)
    if out.endswith(".parquet"):
        df.to_parquet(out)
    elif out.endswith(".csv"):
        df.to_csv(out, index=False)
    else:
        raise ValueError(f"{out}: the output must end in .parquet or .csv")
    errors = df.attrs.get("errors") or []
    _skipped(errors)
    print(f"{len(df)} rows of {frame} -> {out}")
    return 1 if errors else 0


def _skipped(errors: list[dict]) -> None:
    """An export's line on stderr for each session it left out."""
    for err in errors:
        print(f"SKIPPED {err['session_id']}: {err['path']}: {err['problem']}", file=sys.stderr)


# ------------------------------------------------------------------------------ replay

_REPLAY_HELP = """\
Send the user prompts of a saved session, in order, to a fresh session on MODEL (in a copy
of its workspace; tools run again), save it beside the source with its lineage, print how
it compares, and exit 1 when something got worse: a prompt whose run completed in the
source and does not in the replay, or a check given with --check that fails (each check's
command and result are printed; a3s-code does not save the commands of the source's checks,
so give them again, with their ids, to compare).
Exit 2 on an error. The agent comes from --config FILE (an a3s-code .acl config) or
$A3S_NB_AGENT_CONFIG.

  a3s-nb replay fix-1 --model openai/gpt-4o --config agent.acl --check "tests=pytest -q"
"""


def _replay_parser(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser(
        "replay",
        help="replay a session on a model; exit 1 on a regression",
        description=_REPLAY_HELP,
        formatter_class=_PlainRaw,
    )
    replay.add_argument("id", help="session id or a unique prefix of it")
    replay.add_argument("--model", help="provider/model to replay on (default: the config's)")
    # SUPPRESS: the top-level --store is not reset when this one is not given
    replay.add_argument("--store", default=argparse.SUPPRESS, help="store directory")
    replay.add_argument(
        "--config", help="a3s-code agent config file (default: $A3S_NB_AGENT_CONFIG)"
    )
    replay.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="ID=COMMAND",
        help="a required check to run after the prompts (repeatable); its result is "
        "printed, and a failing one is a regression (exit 1)",
    )
    replay.add_argument("--subject", default="checks", help="the checks' report subject")
    replay.add_argument("--id", dest="new_id", help="the replay's id (default: ID-replay-K)")
    replay.add_argument(
        "--workspace",
        help="where to copy the workspace (default: STORE/.a3s_nb/workspaces/<new id>)",
    )


def _replay(args: argparse.Namespace) -> int:
    try:
        config = _config(args.config, "replay")
        checks = []
        for item in args.check:
            cid, sep, command = item.partition("=")
            if not sep or not cid.strip() or not command.strip():
                raise A3sNbError(f"--check {item!r} is not ID=COMMAND")
            checks.append({"id": cid.strip(), "command": command.strip(), "required": True})
        agent = _agent(config)
        store = open_store(getattr(args, "store", None), create=False)
        result = replay(
            args.id,
            agent,
            model=args.model,
            new_id=args.new_id,
            workspace=args.workspace,
            store=store,
            verify=checks or None,
            verify_subject=args.subject,
        )
        result.session.close()
    except (A3sNbError, ImportError, OSError, ValueError, RuntimeError) as e:
        print(f"a3s-nb: {e}", file=sys.stderr)
        return 2
    print(result)
    _print_changes(result.diff)
    return 0 if result.ok else 1


def _config(given: str | None, command: str) -> str:
    """The agent config file: ``--config``, else ``$A3S_NB_AGENT_CONFIG``."""
    import os

    config = given or os.environ.get("A3S_NB_AGENT_CONFIG")
    if not config:
        raise A3sNbError(
            f"{command} needs an agent: give --config FILE (an a3s-code .acl config) or set "
            "$A3S_NB_AGENT_CONFIG"
        )
    return config


def _agent(config: str) -> Any:
    import os

    path = os.path.expanduser(config)
    if not os.path.isfile(path):
        raise A3sNbError(f"agent config {config} is not a file")
    return import_a3s_code().Agent.create(path)


def _print_changes(diff: Any) -> None:
    """The rows of a :func:`~a3s_nb.diff` frame that are not ``same``, a line each."""
    import pandas as pd

    def show(value: object) -> str:
        return "-" if value is None or pd.isna(value) else str(value)

    for rec in diff[diff["change"] != "same"].itertuples():
        if rec.kind == "prompt":
            what = f"prompt {show(rec.prompt_a)} / {show(rec.prompt_b)}"
        else:
            what = f"  tool {show(rec.tool_a)} / {show(rec.tool_b)}"
        changed = f" ({rec.what_changed})" if isinstance(rec.what_changed, str) else ""
        print(f"  {rec.change:8} {what}  [{show(rec.status_a)} / {show(rec.status_b)}]{changed}")


def _prompt_lines(bundle: Any) -> str:
    """A line per prompt (its number, status and first line) and per tool call (its id,
    tool and status): what ``fork --at N`` and ``--edit CALL_ID=TEXT`` take."""
    from .lab.lineage import prompts

    lines = []
    for p in prompts(bundle):
        first = (p.text.splitlines() or [""])[0]
        lines.append(f"{p.number:>3}  [{p.status or 'no run'}] {first}")
        lines.extend(f"       {t.id or '(no id)'}  {t.name} {t.status}" for t in p.tools)
    return "\n".join(lines) or "(no prompts)"


# -------------------------------------------------------------------------------- fork

_FORK_HELP = """\
Fork a saved session after prompt N (default: all) into a new saved session, record its
lineage, and print how it differs from its source. With --edit CALL_ID=TEXT it is a what-if
fork: its history holds TEXT as that tool call's output, where the model reads it (a call of
the kept prompts; `a3s-nb show ID --prompts` lists the numbers and call ids). With --send
PROMPT the fork continues on an agent (from --config FILE or $A3S_NB_AGENT_CONFIG; give
--workspace to work in a copy of the source's folder) and is saved after its prompts.
Exit 2 on an error; nothing is written then.

  a3s-nb show fix-1 --prompts
  a3s-nb fork fix-1 --at 3 --edit call_807e="2 tests failed" --send "Fix what broke" \\
      --config agent.acl --workspace /tmp/what-if
"""


def _fork_parser(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser(
        "fork",
        help="fork a session after prompt N, optionally with edited tool results",
        description=_FORK_HELP,
        formatter_class=_PlainRaw,
    )
    cmd.add_argument("id", help="session id or a unique prefix of it")
    cmd.add_argument("--at", type=int, help="keep the first N prompts (default: all)")
    cmd.add_argument("--store", default=argparse.SUPPRESS, help="store directory")
    cmd.add_argument("--id", dest="new_id", help="the fork's id (default: ID-fork-K)")
    cmd.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="CALL_ID=TEXT",
        help="tool call CALL_ID returned TEXT instead (repeatable)",
    )
    cmd.add_argument(
        "--edit-file",
        action="append",
        default=[],
        metavar="CALL_ID=FILE",
        help="tool call CALL_ID returned the text of FILE instead (repeatable)",
    )
    cmd.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="PROMPT",
        help="continue the fork with this prompt on the agent (repeatable, in order)",
    )
    cmd.add_argument(
        "--config", help="a3s-code agent config for --send (default: $A3S_NB_AGENT_CONFIG)"
    )
    cmd.add_argument(
        "--workspace", help="copy the source's workspace here; the fork works in the copy"
    )


def _edit_words(args: argparse.Namespace) -> list[str]:
    """``--edit`` words, and ``--edit-file`` ones with the file's text in place of its name."""
    words = list(args.edit)
    for item in args.edit_file:
        call_id, sep, name = item.partition("=")
        if not sep or not call_id.strip() or not name:
            raise A3sNbError(f"--edit-file {item!r} is not CALL_ID=FILE")
        try:
            text = Path(name).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise A3sNbError(f"--edit-file {item!r}: cannot read {name}: {e}") from e
        words.append(f"{call_id}={text}")
    return words


def _fork(args: argparse.Namespace) -> int:
    from .api import save
    from .lab.lineage import diff, fork, fork_summary, lineage_of, parse_edits

    try:
        edits = parse_edits(_edit_words(args))
        agent = _agent(_config(args.config, "fork --send")) if args.send else None
        store = open_store(getattr(args, "store", None), create=False)
        forked = fork(
            args.id,
            args.at,
            new_id=args.new_id,
            store=store,
            agent=agent,
            workspace=args.workspace,
            edits=edits,
        )
        sid = forked.id if agent is None else forked.session_id
        rec = lineage_of(sid, store=store) or {}
        print(f"session {sid}, {fork_summary(rec)}")
        if agent is not None:
            try:
                for k, prompt in enumerate(args.send, start=rec.get("at_prompt", 0) + 1):
                    print(f"[prompt {k}] {forked.send(prompt).text}")
            finally:
                save(forked, store=store)
                forked.close()
        changes = diff(rec.get("parent_id") or args.id, sid, store=store)
    except (A3sNbError, ImportError, OSError, ValueError, RuntimeError) as e:
        print(f"a3s-nb: {e}", file=sys.stderr)
        return 2
    _print_changes(changes)
    return 0


def _export_otel(store: Store, args: argparse.Namespace) -> int:
    from .exports.otel import to_otel  # pandas, OpenTelemetry: imported on first use

    if args.out is None and args.endpoint is None:
        raise ValueError("export otel needs OUT.jsonl or --endpoint URL (or both)")
    headers = {}
    for item in args.header:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--header {item!r}: expected KEY=VALUE")
        headers[key.strip()] = value.strip()
    result = to_otel(
        store,
        args.out,
        endpoint=args.endpoint,
        headers=headers,
        content=args.content,
        status=args.status,
        since=args.since,
        until=args.until,
    )
    _skipped(result["errors"])
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(result["spans_by_kind"].items()))
    where = " and ".join(x for x in (args.out, args.endpoint) if x)
    print(f"{result['traces']} traces, {result['spans']} spans ({kinds}) -> {where}")
    if result["redacted"]:
        print(f"{result['redacted']} secrets redacted")
    return 1 if result["errors"] else 0


def _export_dataset(store: Store, dest: str, *, full: bool) -> int:
    from .exports.parquet import export_dataset  # pandas, pyarrow: imported on first use

    result = export_dataset(store, dest, full=full)
    _skipped(result["errors"])
    print(
        f"{result['written']} sessions written ({result['files']} files), "
        f"{result['unchanged']} unchanged, {result['deleted']} deleted -> {dest}"
    )
    return 1 if result["errors"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
