"""What a new kernel's first frame call imports: only what its path needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from a3s_nb.frames import cost


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_price_table_key_does_not_import_genai_prices():
    genai_prices = pytest.importorskip("genai_prices")
    assert cost.price_table() == f"genai-prices {genai_prices.__version__}"
    out = _run(
        "import sys; from a3s_nb.frames import cost; "
        "print(cost.price_table(), 'genai_prices' in sys.modules)"
    )
    assert out == f"genai-prices {genai_prices.__version__} False"


def test_a_cached_store_is_read_in_a_new_process_without_genai_prices(fixture_dir):
    pytest.importorskip("genai_prices")
    pytest.importorskip("pyarrow")
    import a3s_nb

    first = a3s_nb.all_frames(fixture_dir, progress=False)
    assert (fixture_dir / ".a3s_nb" / "frames").is_dir()
    out = _run(
        "import sys, a3s_nb\n"
        f"f = a3s_nb.all_frames({str(fixture_dir)!r}, progress=False)\n"
        "print(sum(map(len, f.values())), 'genai_prices' in sys.modules)"
    )
    assert out == f"{sum(map(len, first.values()))} False"
