"""``a3s_nb.cost_summary``: cost per model that stays <NA> when a run has no price."""

from __future__ import annotations

import pandas as pd
import pytest

import a3s_nb

from .test_cost import GPT_4O_MINI, dollars, run_record, usage, write_session


@pytest.fixture
def store(tmp_path):
    """s1: a priced run and an unpriced one; s2: a priced run, with cached tokens."""
    write_session(
        tmp_path,
        "s1",
        [
            run_record("run-1", "s1", "openai", "gpt-4o-mini", [usage(1000, 10)]),
            run_record("run-2", "s1", "openai", "house-model-7", [usage(1000, 10)]),
        ],
    )
    write_session(
        tmp_path,
        "s2",
        # the run's total, on agent_end, with its cache counts
        [
            run_record(
                "run-3",
                "s2",
                "openai",
                "gpt-4o-mini",
                [usage(2000, 5, read=500)],
                end_usage=usage(2000, 5, read=500),
            )
        ],
    )
    write_session(
        tmp_path, "s3", [run_record("run-4", "s3", "openai", "house-model-7", [usage(10, 1)])]
    )
    return tmp_path


def test_an_unpriced_model_costs_na_not_zero(store):
    summary = a3s_nb.cost_summary(store)
    house, mini = summary.loc["openai/house-model-7"], summary.loc["openai/gpt-4o-mini"]
    assert pd.isna(house["cost_usd"]) and pd.isna(house["priced_cost_usd"])
    assert (house["runs"], house["priced_runs"], house["unpriced_runs"]) == (2, 0, 2)
    # what pandas' plain sum says, and what cost_summary is for
    assert a3s_nb.runs(store).groupby("model")["cost_usd"].sum()["openai/house-model-7"] == 0
    expected = dollars(GPT_4O_MINI, uncached=1000, output=10) + dollars(
        GPT_4O_MINI, uncached=1500, read=500, output=5
    )
    assert mini["cost_usd"] == pytest.approx(expected)
    assert (mini["runs"], mini["priced_runs"], mini["unpriced_runs"]) == (2, 2, 0)
    assert (mini["prompt_tokens"], mini["completion_tokens"]) == (3000, 15)
    assert mini["cache_read_tokens"] == 500
    assert pd.isna(house["cache_read_tokens"])  # never reported: unknown, not 0
    assert summary.attrs["unpriced_models"] == ["openai/house-model-7"]


def test_a_group_with_one_unpriced_run_has_no_cost_but_says_what_is_priced(store):
    summary = a3s_nb.cost_summary(store, by="session_id")
    s1 = summary.loc["s1"]
    assert pd.isna(s1["cost_usd"])
    assert (s1["priced_runs"], s1["unpriced_runs"]) == (1, 1)
    assert s1["priced_cost_usd"] == pytest.approx(dollars(GPT_4O_MINI, uncached=1000, output=10))
    assert summary.loc["s2", "cost_usd"] == summary.loc["s2", "priced_cost_usd"] > 0
    # the same as the sessions frame's cost
    sessions = a3s_nb.sessions(store).set_index("session_id")["cost_usd"]
    pd.testing.assert_series_equal(
        summary["cost_usd"], sessions.sort_index(), check_names=False, check_index_type=False
    )


def test_it_takes_a_runs_frame_and_several_keys(store):
    runs = a3s_nb.runs(store)
    by_two = a3s_nb.cost_summary(runs, by=["session_id", "model"])
    assert by_two.index.names == ["session_id", "model"]
    assert by_two["runs"].sum() == len(runs) == 4
    assert list(by_two.columns) == [
        "runs",
        "priced_runs",
        "unpriced_runs",
        "prompt_tokens",
        "completion_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
        "priced_cost_usd",
    ]


def test_runs_with_an_unknown_model_are_a_group_too(store):
    runs = a3s_nb.runs(store)
    runs.loc[runs["run_id"] == "run-4", "model"] = None
    summary = a3s_nb.cost_summary(runs)
    assert summary["runs"].sum() == 4
    assert summary.index.isna().sum() == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"by": "nope"}, r"no column 'nope' in the runs frame"),
        ({"by": []}, "by is empty"),
    ],
)
def test_bad_arguments_say_what_to_do(store, kwargs, match):
    with pytest.raises(ValueError, match=match):
        a3s_nb.cost_summary(store, **kwargs)
    with pytest.raises(ValueError, match="filter the runs DataFrame itself"):
        a3s_nb.cost_summary(a3s_nb.runs(store), status="failed")


def test_exported_lazily():
    import subprocess
    import sys

    code = (
        "import sys, a3s_nb; assert 'pandas' not in sys.modules; "
        "assert 'cost_summary' in a3s_nb.__all__; a3s_nb.cost_summary; "
        "assert 'pandas' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
