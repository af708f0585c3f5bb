"""Floats are written as serde_json writes them, so re-saved files stay byte-identical."""

from __future__ import annotations

import json
from pathlib import Path

from a3s_nb.store import dumps, serde_float

GOLDEN = Path(__file__).parent / "data" / "serde_json_f64.tsv"


def _golden() -> list[tuple[float, str]]:
    rows = []
    for line in GOLDEN.read_text().splitlines():
        if line and not line.startswith("#"):
            py, serde = line.split("\t")
            rows.append((float(py), serde))
    return rows


def test_every_float_is_spelled_as_serde_json_spells_it():
    rows = _golden()
    assert len(rows) > 5000
    assert sum(repr(v) != s for v, s in rows) > 2000  # the table covers real differences
    wrong = [(v, s, serde_float(v)) for v, s in rows if serde_float(v) != s]
    assert wrong == []


def test_dumps_uses_serde_spelling_only_for_numbers():
    doc = {"percent": 1e-05, "big": 1.5e16, "plain": 0.8, "text": "1e-05 stays 1e-05"}
    text = dumps(doc)
    assert '"percent": 0.00001' in text and '"big": 1.5e16' in text
    assert '"plain": 0.8' in text and '"text": "1e-05 stays 1e-05"' in text
    assert json.loads(text) == doc
    assert dumps({"a": [1, 2.5, "x"]}) == json.dumps({"a": [1, 2.5, "x"]}, indent=2)
