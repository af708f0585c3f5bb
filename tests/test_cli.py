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


# ---- reading never creates, options anywhere, a broken file does not hide the others ----


@pytest.mark.parametrize(
    "command", [["list"], ["check"], ["show", "x"], ["export", "runs", "o.csv"]]
)
def test_a_missing_store_is_an_error_and_is_not_created(tmp_path, capsys, command):
    typo = tmp_path / "TYPO"
    assert main(["--store", str(typo), *command]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"a3s-nb: no store at {typo}")
    assert not typo.exists()


def test_a_missing_default_store_is_an_error(tmp_path, capsys, monkeypatch):
    assert main(["list"]) == 2  # the working directory has no ./a3s_sessions
    assert "no store at" in capsys.readouterr().err
    assert not (tmp_path / "a3s_sessions").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_options_go_before_or_after_the_command(fixture_dir, capsys, where):
    store = ["--store", str(fixture_dir)]
    for command in (["show", "fix-osc"], ["list"]):
        argv = [*store, *command] if where == "before" else [*command, *store]
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert out.startswith("session fix-oscar-2-000")
    assert sum("messages" in line for line in out.splitlines()) == 8
    assert main(["list", f"--store={fixture_dir}"]) == 0


def test_list_lists_the_rest_and_reports_a_broken_session(fixture_dir, capsys):
    (fixture_dir / "fix-india-2-004.json").write_text('{"id": "fix-india-2-004", "messa')
    assert main(["list", "--store", str(fixture_dir)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 7 and not any("fix-india" in line for line in lines)
    assert any("fix-oscar-2-000" in line and "20 messages" in line for line in lines)
    assert captured.err.startswith("a3s-nb: skipped session 'fix-india-2-004': ")
    assert "fix-india-2-004.json" in captured.err and "not valid JSON" in captured.err


def test_list_of_an_empty_store(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["list", "--store", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out.startswith("no saved sessions in")


def test_a_json_error_reads_well(fixture_dir, capsys):
    (fixture_dir / "fix-india-2-004.json").write_text('{"id": "fix-india-2-004", "messa')
    assert main(["show", "fix-india", "--store", str(fixture_dir)]) == 2
    err = capsys.readouterr().err
    assert "fix-india-2-004.json: not valid JSON (Unterminated string starting at line 1" in err
    assert "at at" not in err
