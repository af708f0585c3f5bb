"""Column sources (``schema.Column.source``): every column says where its value comes from,
and every path resolves in a store written by the real a3s-code SDK to the column's values.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import a3s_nb
from a3s_nb.frames import schema
from a3s_nb.store import sdk_safe_id
from a3s_nb.store import store as store_files

from .conftest import FIXTURE_STORE

FRAMES = schema.FRAME_NAMES
OSCAR = "fix-oscar-2-000"

#: Path columns the fixture store (with one fork) leaves empty everywhere: a3s-code 3.1.0
#: writes no parent id or identity labels (3.3+), and these sessions ran no program
#: (trace ``details``) and reported no prompt-cache tokens per event.
EMPTY_IN_FIXTURE = {
    ("sessions", "parent_id"),
    ("sessions", "tenant_id"),
    ("sessions", "principal"),
    ("sessions", "agent_template_id"),
    ("sessions", "correlation_id"),
    ("traces", "details"),
    ("run_events", "cache_read_tokens"),
    ("run_events", "cache_write_tokens"),
}


def _columns() -> list[tuple[str, schema.Column]]:
    return [(name, col) for name in FRAMES for col in schema.columns(name)]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A copy of the fixture store with one fork, so the lineage columns have values."""
    dest = tmp_path_factory.mktemp("sources") / "store"
    shutil.copytree(FIXTURE_STORE, dest)
    a3s_nb.fork(OSCAR, at=2, store=a3s_nb.FileStore(dest), new_id="oscar-fork")
    return dest


@pytest.fixture(scope="module")
def frames(store: Path) -> dict[str, pd.DataFrame]:
    return a3s_nb.all_frames(store)


def _files(store: Path, sid: str) -> dict[str, Any]:
    """The parsed files of one session, by ``schema.SOURCE_FILES`` part (None if absent)."""
    out = {}
    for template, part in schema.SOURCE_FILES.items():
        path = store / template.replace("<id>", sdk_safe_id(sid))
        out[part] = json.loads(path.read_text()) if path.exists() else None
    return out


def _resolve(path: schema.SourcePath, files: dict[str, Any]) -> list[Any]:
    doc = files[path.part]
    return [] if doc is None else path.resolve(doc)


def _file_value(col: schema.Column, path: schema.SourcePath, value: Any) -> Any:
    """A value as written in a file, as the column holds it (comparable, hashable)."""
    if value is None:
        return None
    if col.kind == "timestamp":
        if isinstance(value, str):
            return pd.Timestamp(value).tz_convert("UTC").floor("ms")
        unit = "ms" if (path.last_key or "").endswith("_ms") else "s"
        return pd.Timestamp(value, unit=unit, tz="UTC")
    if col.kind == "json":
        return json.dumps(value, sort_keys=True)
    return value


def _cell(col: schema.Column, value: Any) -> Any:
    """A frame cell as plain Python, comparable with ``_file_value``."""
    if col.kind == "json":
        return json.dumps(json.loads(value), sort_keys=True)
    if col.kind == "timestamp":
        return pd.Timestamp(value)
    if col.kind in ("int", "bool"):
        return value.item() if hasattr(value, "item") else value
    return str(value) if col.kind in ("string", "category") else value


def _expected(col: schema.Column, files: dict[str, Any]) -> set[Any] | Any:
    """The values the column's paths hold in ``files`` (a set), or its aggregate."""
    paths = col.paths
    if paths[0].aggregate:
        (path,) = paths
        nodes = _resolve(path, files)
        if path.aggregate == "count":
            return len(nodes)
        values = [v for v in nodes if v is not None]
        if not values:
            return None
        pick = min if path.aggregate == "min" else max
        return _file_value(col, path, pick(values))
    out: set[Any] = set()
    for path in paths:
        for v in _resolve(path, files):
            if isinstance(v, list | dict) and col.kind != "json":
                continue  # not a value of this column
            v = _file_value(col, path, v)
            if v is not None:
                out.add(v)
    return out


def _rows(name: str, df: pd.DataFrame, store: Path):
    """``(row context files, rows)`` for the checks: a ``sessions`` row is its session, a
    ``runs`` row its own run, any other frame's rows are checked per session."""
    cache: dict[str, dict[str, Any]] = {}
    for sid, rows in df.groupby("session_id", sort=False):
        files = cache.setdefault(sid, _files(store, sid))
        if name == "runs":
            for _, row in rows.iterrows():
                one = dict(files, runs=[files["runs"][int(row["run_index"])]])
                yield one, row.to_frame().T
        elif name == "sessions":
            assert len(rows) == 1
            yield files, rows
        else:
            yield files, rows


# ----------------------------------------------------------------------------- the specs


@pytest.mark.parametrize(("name", "col"), _columns(), ids=lambda v: getattr(v, "name", v))
def test_every_column_says_where_its_value_comes_from(name, col):
    assert col.source.strip(), (name, col.name)
    if col.computed:
        assert len(col.source) > len(schema.COMPUTED) + 8, (name, col.name, col.source)
        return
    paths = col.paths
    assert paths, (name, col.name)
    for path in paths:
        assert path.part in ("session", "runs", "traces", "verification", "lineage")
        if path.aggregate:  # only where a row is one session or one run
            assert name in ("sessions", "runs"), (name, col.name)
            assert col.kind == "int" or path.aggregate in ("min", "max"), (name, col.name)


def test_sources_are_shown_in_the_schema_document():
    text = schema.render_markdown()
    for name, col in _columns():
        assert f"| `{col.name}` | {col.label} | {col.doc} | {col.source_label} |" in text, (
            name,
            col.name,
        )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "computed: ",
        "<id>.json.",
        "session.json.id",
        "runs/<id>.json[0].snapshot",
        "count(<id>.json.messages[]) or <id>.json.id",
        "<id>.json.id | <id>.json.state",
        "sum(runs/<id>.json[])",
    ],
)
def test_malformed_sources_are_refused_when_the_schema_is_defined(bad):
    with pytest.raises(ValueError):
        schema._c("x", "string", "X.", source=bad)


def test_source_files_are_the_store_layout(tmp_path):
    """The files the sources name are where the store keeps each part."""
    store = a3s_nb.FileStore(tmp_path / "s")
    files = {part: path for part, path in store.session_files("a-b").items()}
    files["lineage"] = store_files._lineage_file(store, "a-b")
    for template, part in schema.SOURCE_FILES.items():
        assert Path(files[part]).relative_to(store.path).as_posix() == template.replace(
            "<id>", "a-b"
        ), part


def test_path_grammar():
    doc = {"a": [{"t": "x", "v": 1, "w": {"k": "p"}}, {"t": "y", "v": 2}, {"t": "x", "u": 3}]}
    assert schema.parse_path("<id>.json.a[].v").resolve(doc) == [1, 2]
    assert schema.parse_path("<id>.json.a[t=x].{v,u}").resolve(doc) == [1, 3]
    assert schema.parse_path("<id>.json.a[w.k=p].t").resolve(doc) == ["x"]
    assert schema.parse_path("<id>.json.missing[].v").resolve(doc) == []
    assert schema.parse_path("count(<id>.json.a[t=x])").aggregate == "count"
    assert schema.parse_path("runs/<id>.json[].snapshot.created_at_ms").last_key == (
        "created_at_ms"
    )


# ----------------------------------------------------------------------------- the data


@pytest.mark.parametrize("name", FRAMES)
def test_path_sources_hold_the_column_values(name, frames, store):
    """Every non-null value of a path column is found at its path in the session's files
    (for ``sessions`` and ``runs`` rows: in that session / that run; an aggregate equals
    its value), and a path that holds values has a column that shows them."""
    df = frames[name]
    checked = set()
    for _, col in [c for c in _columns() if c[0] == name]:
        if col.computed:
            continue
        found_any = False
        for files, rows in _rows(name, df, store):
            expected = _expected(col, files)
            if col.paths[0].aggregate:
                (value,) = rows[col.name].tolist()
                got = None if pd.isna(value) else _cell(col, value)
                assert got == expected, (name, col.name, rows.iloc[0].get("session_id"))
                found_any = found_any or got is not None
                continue
            got = {_cell(col, v) for v in rows[col.name].dropna()}
            missing = got - expected
            assert not missing, (name, col.name, col.source, sorted(map(str, missing))[:3])
            found_any = found_any or bool(got)
            if expected and not got and name in ("sessions", "runs"):
                pytest.fail(f"{name}.{col.name}: {col.source} holds {expected} but the row is null")
        if found_any:
            checked.add((name, col.name))
        else:
            assert (name, col.name) in EMPTY_IN_FIXTURE, (
                f"{name}.{col.name} is empty in the fixture: its source {col.source!r} is "
                "not checked against data"
            )
    stale = {k for k in EMPTY_IN_FIXTURE if k[0] == name} & checked
    assert not stale, f"now checked against data, drop from EMPTY_IN_FIXTURE: {stale}"


def test_a_wrong_path_is_caught(frames, store):
    """The check above fails for a source that points at the wrong field."""
    col = schema.Column("status", "category", "", "run_status", "runs/<id>.json[].snapshot.id")
    files, rows = next(_rows("runs", frames["runs"], store))
    got = {_cell(col, v) for v in rows["status"].dropna()}
    assert got and not got <= _expected(col, files)
    count = schema.Column("n_turns", "int", "", None, "count(runs/<id>.json[].events[])")
    files, rows = next(_rows("runs", frames["runs"], store))
    assert rows["n_turns"].iloc[0] != _expected(count, files)
