"""The session list: ``%a3s_sessions`` shows a few columns unless asked, and says what its
filters match."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

import a3s_nb
from a3s_nb import api, schema

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
    assert "--contains" in doc and "matches the session id only" in doc
    assert "prompts and transcripts are not searched" in doc
    help_text = dict(api.LIST_FILTERS)["--contains"]["help"]
    assert "the session id only" in help_text

