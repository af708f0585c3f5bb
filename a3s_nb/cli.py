"""``a3s-nb``: the store from a terminal.

    a3s-nb list   [--store DIR]                 saved sessions, newest first
    a3s-nb show   ID [--store DIR]              one session's transcript
    a3s-nb check  [--store DIR]                 load every session; report broken files
    a3s-nb export FRAME OUT [--store DIR]       a frame to .parquet or .csv

The store is ``--store``, else ``$A3S_NB_STORE``, else ``./a3s_sessions``. Options go
before or after the command. Every command reads the store: a store that does not exist is
an error (exit 2), never created. Exit codes: 0 done, 1 some session is broken (``list``
still lists the others), 2 nothing could be done.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from .errors import A3sNbError
from .saved import transcript_text
from .store import Store, open_store

FRAMES = ("sessions", "messages", "traces", "runs", "run_events", "spans", "verification")


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
        prog="a3s-nb", description=__doc__.split("\n")[0], parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", parents=[common], help="saved sessions, newest first")
    show = sub.add_parser("show", parents=[common], help="a session's transcript")
    show.add_argument("id", help="session id or a unique prefix of it")
    sub.add_parser("check", parents=[common], help="load every session and report broken files")
    export = sub.add_parser("export", parents=[common], help="write a frame to .parquet or .csv")
    export.add_argument("frame", choices=FRAMES)
    export.add_argument("out", help="output file: .parquet or .csv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        store = open_store(getattr(args, "store", None), create=False)
        if args.command == "list":
            return _list(store)
        if args.command == "show":
            bundle = store.load(store.resolve(args.id))
            print(f"session {bundle.id} ({bundle.session.model_name or 'unknown model'})")
            print(transcript_text(bundle, limit=0))
            return 0
        if args.command == "check":
            return _check(store)
        return _export(store, args.frame, args.out)
    except (A3sNbError, OSError, ValueError) as e:
        print(f"a3s-nb: {e}", file=sys.stderr)
        return 2


def _list(store: Store) -> int:
    """The sessions frame, as lines; a broken session is reported and the others listed."""
    from .api import list_sessions

    with warnings.catch_warnings():  # the skipped sessions are reported below, once each
        warnings.simplefilter("ignore")
        df = list_sessions(store)
    for row in df.itertuples(index=False):
        when = "" if pd_isna(row.updated_at) else row.updated_at.strftime("%Y-%m-%d %H:%M")
        model = "" if pd_isna(row.model) else row.model
        print(f"{when:16}  {row.session_id:40}  {model:28}  {row.n_messages:4} messages")
    errors = df.attrs.get("errors") or []
    for err in errors:
        print(f"a3s-nb: skipped session {err['session_id']!r}: {err['path']}: "
              f"{err['problem']}", file=sys.stderr)  # fmt: skip
    if df.empty and not errors:
        print(f"no saved sessions in {store}")
    return 1 if errors else 0


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def _check(store: Store) -> int:
    ids = store.list()
    broken = 0
    for sid in ids:
        try:
            store.load(sid)
        except A3sNbError as e:
            broken += 1
            print(f"BROKEN {sid}: {e}")
    print(f"{len(ids) - broken} of {len(ids)} sessions load cleanly")
    return 1 if broken else 0


def _export(store: Store, frame: str, out: str) -> int:
    import a3s_nb

    df = getattr(a3s_nb, frame)(store)
    if out.endswith(".parquet"):
        df.to_parquet(out)
    elif out.endswith(".csv"):
        df.to_csv(out, index=False)
    else:
        raise ValueError(f"{out}: the output must end in .parquet or .csv")
    print(f"{len(df)} rows of {frame} -> {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
