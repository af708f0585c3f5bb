"""The ``a3s-nb`` command on the SDK-written fixture store."""

from __future__ import annotations

import pandas as pd
import pytest

from a3s_nb.cli import main


def test_list_newest_first(fixture_dir, fixture_store, capsys):
    assert main(["--store", str(fixture_dir), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8
    newest = max(fixture_store.list(), key=lambda i: fixture_store.load(i).session.updated_at)
    assert newest in lines[0]
    assert any("fix-oscar-2-000" in line and "20 messages" in line for line in lines)


def test_show_by_prefix(fixture_dir, capsys):
    assert main(["--store", str(fixture_dir), "show", "fix-osc"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("session fix-oscar-2-000 (openai/fake-model-large)")
    assert "Create docs/echo_0_1.md" in out


def test_check_reports_a_broken_file_and_fails(fixture_dir, capsys):
    assert main(["--store", str(fixture_dir), "check"]) == 0
    assert "8 of 8 sessions load cleanly" in capsys.readouterr().out
    (fixture_dir / "traces" / "fix-india-2-004.json").write_text("")
    assert main(["--store", str(fixture_dir), "check"]) == 1
    out = capsys.readouterr().out
    assert "BROKEN fix-india-2-004" in out and "traces/fix-india-2-004.json: file is empty" in out
    assert "7 of 8 sessions load cleanly" in out


def test_export_parquet(fixture_dir, tmp_path, capsys):
    out = tmp_path / "runs.parquet"
    assert main(["--store", str(fixture_dir), "export", "runs", str(out)]) == 0
    assert len(pd.read_parquet(out)) == 40
    assert "40 rows of runs" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "nope"], "no session 'nope'"),
        (["show", "fix"], "matches 2 sessions"),
        (["export", "runs", "out.txt"], "must end in .parquet or .csv"),
    ],
)
def test_errors_are_one_line_and_exit_2(fixture_dir, capsys, argv, message):
    assert main(["--store", str(fixture_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("a3s-nb: ") and message in err
