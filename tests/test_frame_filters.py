"""Each frame's ``status`` takes the frame's own values; anything else is a clear error.

Every valid value is checked against rows counted straight from the fixture store's files
(not through a3s_nb); every typo, and a value of the other kind of status, must raise
``FilterError`` naming the valid ones, in the functions and in ``all_frames``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import a3s_nb
from a3s_nb import FilterError
from a3s_nb.frames import schema

RUN_STATUSES = schema.ENUMS["run_status"]
CHECK_STATUSES = schema.ENUMS["verification_status"]
RUN_FRAMES = ("sessions", "messages", "traces", "runs", "run_events", "spans")


def _files(store: Path, folder: str) -> dict[str, list]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((store / folder).glob("*.json"))}


@pytest.fixture(scope="module")
def on_files() -> dict:
    """What the fixture store's files hold, counted without a3s_nb."""
    store = Path(__file__).parent / "fixtures" / "a3s-code-3.1.0"
    runs = _files(store, "runs")
    checks = [
        c
        for reports in _files(store, "verification").values()
        for r in reports
        for c in r["checks"]
    ]
    return {
        "runs": Counter(r["snapshot"]["status"] for rs in runs.values() for r in rs),
        "run_ids": {
            s: {
                r["snapshot"]["id"]
                for rs in runs.values()
                for r in rs
                if r["snapshot"]["status"] == s
            }
            for s in RUN_STATUSES
        },
        "events": Counter(
            r["snapshot"]["status"] for rs in runs.values() for r in rs for _ in r["events"]
        ),
        "sessions": {
            s: {sid for sid, rs in runs.items() if any(r["snapshot"]["status"] == s for r in rs)}
            for s in RUN_STATUSES
        },
        "checks": Counter(c["status"] for c in checks),
    }


def test_the_fixture_store_has_both_kinds_of_status(on_files):
    """The counts below mean something only if some values match and some do not."""
    assert on_files["runs"]["completed"] and on_files["runs"]["failed"]
    assert on_files["checks"]["passed"] and on_files["checks"]["failed"]
    assert not on_files["runs"]["cancelled"] and not on_files["checks"]["skipped"]


@pytest.mark.parametrize("status", RUN_STATUSES)
def test_each_run_status_keeps_its_runs_and_sessions(fixture_store, on_files, status):
    runs = a3s_nb.runs(fixture_store, status=status)
    assert len(runs) == on_files["runs"][status]
    assert set(runs.run_id) == on_files["run_ids"][status]
    assert len(a3s_nb.run_events(fixture_store, status=status)) == on_files["events"][status]
    assert set(a3s_nb.spans(fixture_store, status=status).run_id) == on_files["run_ids"][status]
    sessions = on_files["sessions"][status]
    assert set(a3s_nb.sessions(fixture_store, status=status).session_id) == sessions
    for frame in ("messages", "traces"):
        df = getattr(a3s_nb, frame)(fixture_store, status=status)
        whole = getattr(a3s_nb, frame)(fixture_store)
        assert len(df) == whole.session_id.isin(sessions).sum()


@pytest.mark.parametrize("status", CHECK_STATUSES)
def test_each_check_status_keeps_its_checks(fixture_store, on_files, status):
    checks = a3s_nb.verification(fixture_store, status=status)
    assert len(checks) == on_files["checks"][status]
    assert (checks.status == status).all()


def test_a_list_of_statuses_keeps_any_of_them(fixture_store, on_files):
    both = a3s_nb.verification(fixture_store, status=["passed", "failed"])
    assert len(both) == on_files["checks"]["passed"] + on_files["checks"]["failed"]
    runs = a3s_nb.runs(fixture_store, status=iter(["failed", "completed"]))
    assert len(runs) == on_files["runs"]["failed"] + on_files["runs"]["completed"]


@pytest.mark.parametrize("frame", RUN_FRAMES)
def test_a_run_status_typo_is_an_error(fixture_store, frame):
    with pytest.raises(FilterError, match=r"status='complete' is not a run status") as e:
        getattr(a3s_nb, frame)(fixture_store, status="complete")
    assert "created, planning, executing, verifying, completed, failed, cancelled" in str(e.value)
    assert "did you mean 'completed'?" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(FilterError, match=r"status='passed' is not a run status"):
        getattr(a3s_nb, frame)(fixture_store, status=["failed", "passed"])


def test_a_check_status_typo_is_an_error(fixture_store):
    with pytest.raises(FilterError, match=r"status='pased' is not a check status") as e:
        a3s_nb.verification(fixture_store, status="pased")
    assert "passed, failed, needs_review, skipped; did you mean 'passed'?" in str(e.value)
    with pytest.raises(FilterError, match=r"status='completed' is not a check status"):
        a3s_nb.verification(fixture_store, status="completed")


def test_all_frames_takes_what_every_frame_asked_for_takes(fixture_store, on_files):
    frames = a3s_nb.all_frames(fixture_store, status="failed")
    assert len(frames["runs"]) == on_files["runs"]["failed"]
    assert set(frames["sessions"].session_id) == on_files["sessions"]["failed"]
    # verification keeps its own failed checks, whatever the session's runs did
    assert len(frames["verification"]) == on_files["checks"]["failed"]
    only = a3s_nb.all_frames(fixture_store, ["verification"], status="passed")
    assert len(only["verification"]) == on_files["checks"]["passed"]
    with pytest.raises(FilterError, match=r"is not a run status.*in separate calls"):
        a3s_nb.all_frames(fixture_store, status="passed")
    with pytest.raises(FilterError, match="is not a check status"):
        a3s_nb.all_frames(fixture_store, ["runs", "verification"], status="completed")


def test_a_status_that_is_not_a_string_is_an_error(fixture_store):
    with pytest.raises(FilterError, match="status=5 is not a status or a list of them"):
        a3s_nb.runs(fixture_store, status=5)


def test_since_that_is_not_a_time_is_the_magics_error(fixture_dir, ip):
    with pytest.raises(UsageError) as magic:
        ip.run_line_magic("a3s_sessions", f"--store {fixture_dir} --since yesterday")
    message = str(magic.value)
    assert message.startswith("since='yesterday' is not a date or time")
    for frame in ("runs", "sessions", "spans", "verification"):
        with pytest.raises(FilterError) as e:
            getattr(a3s_nb, frame)(fixture_dir, since="yesterday")
        assert str(e.value) == message
    with pytest.raises(FilterError, match=r"until='soon' is not a date or time"):
        a3s_nb.all_frames(fixture_dir, until="soon")
    with pytest.raises(FilterError) as e:
        a3s_nb.list_sessions(fixture_dir, since="yesterday")
    assert str(e.value) == message


def test_a_session_that_is_no_fork_shows_lineage_kind_as_na(fixture_dir):
    """lineage_kind is missing for most sessions: shown <NA>, as a missing string is (a
    category of str would show NaN), and it survives a Parquet round trip as it is."""
    sessions = a3s_nb.sessions(fixture_dir)
    assert str(sessions["lineage_kind"].dtype) == "string"
    assert sessions["lineage_kind"].isna().all()
    assert (
        "<NA>" in sessions[["lineage_kind"]].to_string()
        and "NaN" not in sessions[["lineage_kind"]].to_string()
    )
