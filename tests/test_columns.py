"""A raw JSON value lands in a frame column the same way wherever it stands.

The builders hand ``_columns`` lists of raw JSON values; pyarrow converts a list at once,
and a list it refuses is cleaned value by value. The value a cell gets must not depend on
which of those two ways its list took, that is on the other values of the same chunk, nor
on whether pyarrow is installed. pyarrow's own conversion to int64 truncates a float
(2.9 became 2 unless a neighbour was text), which these tests caught.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

pa = pytest.importorskip("pyarrow")

import a3s_nb  # noqa: E402
from a3s_nb.frames import _columns, schema  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "a3s-code-3.1.0"

EDGES = [
    None,
    0,
    1,
    -1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    10**30,
    2.0,
    -0.0,
    2.9,
    -2.5,
    1e20,
    9.2e18,
    float("inf"),
    float("nan"),
    True,
    False,
    "",
    "a",
    "3",
    "é",
    [],
    [1, "a"],
    {},
    {"a": 1},
]


def _column_of_each_kind() -> dict[str, schema.Column]:
    out: dict[str, schema.Column] = {}
    for frame in schema.FRAMES:
        for col in schema.columns(frame):
            out.setdefault(col.kind, col)
    return out


COLUMNS = _column_of_each_kind()


def _cells(col: schema.Column, values: list, *, arrow: bool) -> list:
    """The cells ``values`` become in ``col``, built with pyarrow or without it."""
    if arrow:
        cells = _columns._chunk(col, list(values), len(values)).to_pylist()
        if col.kind == "timestamp":  # the frame's NaT is int64's least value (``_finish``)
            cells = [None if ms == _columns._NAT else ms for ms in cells]
    else:
        array = _columns._array(col, list(values), len(values))
        if col.kind == "timestamp":  # milliseconds, as the Arrow way holds them
            cells = [None if ms == _columns._NAT else int(ms) for ms in array.asi8]
        else:
            cells = [None if pd.isna(v) else v for v in array.tolist()]
    return [repr(c) for c in cells]


def test_every_kind_of_column_is_tested() -> None:
    assert set(COLUMNS) == {"string", "json", "int", "float", "timestamp", "bool", "category"}


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_a_value_becomes_the_same_cell_whatever_stands_beside_it(kind: str) -> None:
    col = COLUMNS[kind]
    alone = {repr(v): _cells(col, [v], arrow=True)[0] for v in EDGES}
    differ = []
    for v, w in itertools.product(EDGES, repeat=2):
        pair = _cells(col, [v, w], arrow=True)
        if pair != [alone[repr(v)], alone[repr(w)]]:
            differ.append((v, w, pair))
    assert differ == []
    whole = _cells(col, EDGES, arrow=True)
    assert whole == [alone[repr(v)] for v in EDGES]


@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_a_value_becomes_the_same_cell_without_pyarrow(kind: str) -> None:
    col = COLUMNS[kind]
    for v in EDGES:
        assert _cells(col, [v], arrow=False) == _cells(col, [v], arrow=True), v


@pytest.mark.parametrize("kind", ["int", "timestamp"])
def test_an_integer_column_takes_integral_numbers_and_nothing_else(kind: str) -> None:
    col = COLUMNS[kind]
    cases = {
        7: 7,
        2.0: 2,
        -0.0: 0,
        9.2e18: 9200000000000000000,
        2.9: None,
        -2.5: None,
        1e20: None,
        float("inf"): None,
        float("nan"): None,
        True: None,
        "3": None,
        2**63: None,
    }
    for value, want in cases.items():
        for arrow in (True, False):
            assert _cells(col, [value, 1], arrow=arrow) == [repr(want), "1"], (value, arrow)
            assert _cells(col, [value, "x"], arrow=arrow)[0] == repr(want), (value, arrow)


def test_a_fractional_exit_code_is_not_truncated(tmp_path: Path) -> None:
    """End to end: a tool's ``metadata.exit_code`` (free JSON, which ``load()`` accepts as
    it is) of 2.9 is <NA> in ``run_events.process_exit_code``, not 2; 3.0 is 3."""
    store = tmp_path / "store"
    shutil.copytree(FIXTURE, store)
    edited: dict[str, float] = {}  # tool call id -> the exit code written
    for path in sorted((store / "runs").glob("*.json")):
        runs = json.loads(path.read_text())
        ends = [
            r["event"] for run in runs for r in run["events"] if r["event"]["type"] == "tool_end"
        ]
        if ends:
            value = 3.0 if edited else 2.9
            ends[0]["metadata"] = {**(ends[0].get("metadata") or {}), "exit_code": value}
            path.write_text(json.dumps(runs))
            a3s_nb.FileStore(store).load(path.stem)  # load() takes it as it is
            edited[ends[0]["id"]] = value
        if len(edited) == 2:
            break
    assert sorted(edited.values()) == [2.9, 3.0]
    events = a3s_nb.run_events(store, progress=False)
    assert events.attrs["errors"] == []
    ends = events[events.event_type == "tool_end"].set_index("tool_call_id")
    got = {call: ends.loc[call, "process_exit_code"] for call in edited}
    assert {edited[call]: code for call, code in got.items()} == {2.9: pd.NA, 3.0: 3}
