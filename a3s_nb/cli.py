"""``a3s-nb``: the store from a terminal.

    a3s-nb list   [--store DIR]                 saved sessions, newest first
    a3s-nb show   ID [--store DIR]              one session's transcript
    a3s-nb check  [--store DIR]                 load every session; report broken files
    a3s-nb export FRAME OUT [--store DIR]       a frame to .parquet or .csv

The store is ``--store``, else ``$A3S_NB_STORE``, else ``./a3s_sessions``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from .errors import A3sNbError
from .saved import transcript_text
from .store import Store, open_store

FRAMES = ("sessions", "messages", "traces", "runs", "run_events", "spans", "verification")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="a3s-nb", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--store", help="store directory (default: $A3S_NB_STORE or ./a3s_sessions)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="saved sessions, newest first")
    show = sub.add_parser("show", help="a session's transcript")
    show.add_argument("id", help="session id or a unique prefix of it")
    sub.add_parser("check", help="load every session and report broken files")
    export = sub.add_parser("export", help="write a frame to .parquet or .csv")
    export.add_argument("frame", choices=FRAMES)
    export.add_argument("out", help="output file: .parquet or .csv")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        store = open_store(args.store)
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
    rows = []
    for sid in store.list():
        raw = store.read_raw(sid, "session") or {}
        rows.append((raw.get("updated_at") or 0, sid, raw.get("model_name") or "",
                     len(raw.get("messages") or [])))  # fmt: skip
    for updated, sid, model, n in sorted(rows, reverse=True):
        when = datetime.fromtimestamp(updated, UTC).strftime("%Y-%m-%d %H:%M")
        print(f"{when}  {sid:40}  {model:28}  {n:4} messages")
    return 0


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
