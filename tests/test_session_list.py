"""The session list: ``%a3s_sessions``, ``a3s_nb.list_sessions`` and ``a3s-nb list`` show
the same sessions for the same filters; the magic shows a few columns unless asked."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import a3s_nb
from a3s_nb import api
from a3s_nb.cli import main
from a3s_nb.frames import schema

from .test_magics import run

ALL = [c.name for c in schema.columns("sessions")]


def test_the_magic_shows_a_few_columns_unless_asked_for_all(ip, fixture_dir):
    narrow, _ = run(ip, "a3s_sessions", f"--store {fixture_dir}")
    assert list(narrow.columns) == list(api.SESSION_LIST_COLUMNS)
    assert 1 < len(api.SESSION_LIST_COLUMNS) <= 8
    wide, _ = run(ip, "a3s_sessions", f"--store {fixture_dir} --all")
    assert list(wide.columns) == ALL
    picked, _ = run(ip, "a3s_sessions", f"--store {fixture_dir} --columns session_id,n_runs_failed")
    assert list(picked.columns) == ["session_id", "n_runs_failed"]
    assert list(narrow["session_id"]) == list(wide["session_id"]) == list(picked["session_id"])


def test_the_function_returns_every_column_unless_told(fixture_dir):
    assert list(a3s_nb.list_sessions(fixture_dir).columns) == ALL
    some = a3s_nb.list_sessions(fixture_dir, columns=["model", "session_id"])
    assert list(some.columns) == ["model", "session_id"]
    narrow = a3s_nb.list_sessions(fixture_dir, columns=api.SESSION_LIST_COLUMNS)
    assert list(narrow.columns) == list(api.SESSION_LIST_COLUMNS)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("--columns session_id,nope", r"no column 'nope' in the session list; the columns are"),
        ("--columns ,", "no columns given"),
        ("--all --columns session_id", "choose one of --all and --columns"),
        ("--browse --all", "--all cannot go with --browse"),
    ],
)
def test_bad_columns_are_a_usage_error(ip, fixture_dir, line, match):
    with pytest.raises(UsageError, match=match):
        run(ip, "a3s_sessions", f"--store {fixture_dir} {line}")


def test_the_help_says_what_contains_matches(ip):
    doc = ip.find_line_magic("a3s_sessions").__doc__
    assert "--contains TEXT`` matches the session id, or (ignoring case) the session's" in doc
    assert "content: prompts, answers, tool calls and their outputs" in doc
    help_text = dict(api.LIST_FILTERS)["--contains"]["help"]
    assert "whose id contains this text, or whose content does" in help_text


def _cli_ids(capsys, store, args: list[str]) -> list[str]:
    code = main(["--store", str(store), "list", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return [line.split()[2] for line in out.splitlines() if not line.startswith("no saved")]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--limit", "3"],
        ["--limit", "0"],
        ["--model", "large"],
        ["--workspace", "fix-"],
        ["--since", "<third>"],
        ["--contains", "fix-"],
        ["--contains", "nothing-like-this"],
        ["--model", "fake-model", "--contains", "2-00", "--limit", "2"],
    ],
    ids=lambda a: " ".join(a) or "no filter",
)
def test_cli_list_and_the_magic_give_the_same_sessions(ip, fixture_dir, capsys, args):
    if "<third>" in args:  # the third newest save: some sessions are before it
        third = a3s_nb.list_sessions(fixture_dir)["updated_at"].iloc[2].isoformat()
        args = [third if a == "<third>" else a for a in args]
    df, _ = run(ip, "a3s_sessions", " ".join([f"--store {fixture_dir}", *args]))
    magic_ids = [] if df is None else list(df["session_id"])
    cli_ids = _cli_ids(capsys, fixture_dir, args)
    assert cli_ids == magic_ids
    assert len(magic_ids) == 8 if not args else len(magic_ids) < 8  # each filter filters


def test_cli_list_refuses_what_the_function_refuses(fixture_dir, capsys):
    assert main(["--store", str(fixture_dir), "list", "--since", "whenever"]) == 2
    assert "is not a date or time" in capsys.readouterr().err
    assert main(["--store", str(fixture_dir), "list", "--limit", "-1"]) == 2
    assert "limit must be 0 or more" in capsys.readouterr().err


def test_cli_and_magic_take_the_same_filter_options(ip):
    from a3s_nb.cli import _parser

    listing = _parser()._subparsers._group_actions[0].choices["list"]
    cli_flags = {s for a in listing._actions for s in a.option_strings}
    magic = ip.find_line_magic("a3s_sessions").__func__.parser
    magic_flags = {s for a in magic._actions for s in a.option_strings}
    filters = {flag for flag, _ in api.LIST_FILTERS}
    assert filters <= cli_flags and filters <= magic_flags
    assert filters == {"--limit", "--model", "--workspace", "--since", "--contains"}
