"""cost_usd in runs and sessions: known prices, cached tokens priced once, unknown = NA."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import a3s_nb
from a3s_nb.frames import cost

# Prices per million tokens in the pinned genai-prices table (constraints.txt), as the
# providers publish them: input, cached input (read), cache write, output.
GPT_4O = (2.50, 1.25, None, 10.00)
GPT_4O_MINI = (0.15, 0.075, None, 0.60)
SONNET_45 = (3.00, 0.30, 3.75, 15.00)
SONNET_45_OVER_200K = (6.00, 0.60, 7.50, 22.50)
CREATED_MS = 1_795_485_265_812  # 2026-11: the prices above apply


def usage(prompt, completion, read=None, write=None) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
    }


def run_record(run_id, sid, provider, model, turns, *, end_usage="sum", status="completed"):
    """A run as a3s-code writes it: turn_start/turn_end per model call, then agent_end."""
    events, seq = [], 0

    def add(event):
        nonlocal seq
        events.append({"sequence": seq, "timestamp_ms": CREATED_MS + seq, "event": event})
        seq += 1

    add({"type": "agent_start", "prompt": "p"})
    for n, u in enumerate(turns, 1):
        add({"type": "turn_start", "turn": n})
        add({"type": "turn_end", "turn": n, "usage": u})
    if end_usage == "sum":
        # a3s-code 3.1 sums prompt/completion into agent_end but drops the cache counts
        end_usage = usage(
            sum(u["prompt_tokens"] for u in turns), sum(u["completion_tokens"] for u in turns)
        )
    if status == "completed":
        meta = {"provider": provider, "request_model": model, "response_model": model}
        add({"type": "agent_end", "text": "ok", "usage": end_usage, "meta": meta})
    snap = {
        "id": run_id,
        "session_id": sid,
        "status": status,
        "prompt": "p",
        "created_at_ms": CREATED_MS,
        "updated_at_ms": CREATED_MS + seq,
        "event_count": seq,
    }
    return {"snapshot": snap, "events": events}


def write_session(store: Path, sid: str, runs: list[dict], model_name=None) -> None:
    store.mkdir(parents=True, exist_ok=True)
    (store / "runs").mkdir(exist_ok=True)
    session = {
        "id": sid,
        "config": {"workspace": "/w"},  # required: a session without it does not load
        "messages": [],
        "created_at": 1_795_485_265,
        "updated_at": 1_795_485_266,
    }
    if model_name:
        session["model_name"] = model_name
    (store / f"{sid}.json").write_text(json.dumps(session))
    (store / "runs" / f"{sid}.json").write_text(json.dumps(runs))


def dollars(price, *, uncached=0, read=0, write=0, output=0) -> float:
    p_in, p_read, p_write, p_out = price
    return (
        uncached * p_in + read * p_read + write * (p_write or p_in) + output * p_out
    ) / 1_000_000


def test_openai_cached_tokens_are_priced_once_at_the_cache_price(tmp_path):
    # OpenAI-compatible clients: prompt_tokens INCLUDES the 800 cached tokens
    turns = [usage(1000, 10, read=800), usage(1200, 20, read=1000)]
    write_session(tmp_path, "s1", [run_record("run-1", "s1", "openai", "gpt-4o", turns)])
    runs = a3s_nb.runs(tmp_path)
    expected = dollars(GPT_4O, uncached=200 + 200, read=800 + 1000, output=30)
    assert runs.cost_usd.iloc[0] == pytest.approx(expected, rel=1e-12)
    # not the mistakes: everything at the input price, or the cached tokens counted twice
    full_price = dollars(GPT_4O, uncached=2200, output=30)
    twice = full_price + dollars(GPT_4O, read=1800)
    assert runs.cost_usd.iloc[0] < full_price < twice
    assert str(runs.cost_usd.dtype) == "Float64"
    assert runs.attrs["unpriced_models"] == []
    assert runs.attrs["price_table"].startswith("genai-prices ")


def test_anthropic_prompt_tokens_exclude_the_cache(tmp_path):
    # a3s-code's Anthropic client: prompt_tokens = Anthropic's input_tokens (cache excluded)
    turns = [usage(500, 40, read=800, write=300)]
    run = run_record("run-1", "s1", "anthropic", "claude-sonnet-4-5", turns)
    write_session(tmp_path, "s1", [run])
    got = a3s_nb.runs(tmp_path).cost_usd.iloc[0]
    assert got == pytest.approx(
        dollars(SONNET_45, uncached=500, read=800, write=300, output=40), rel=1e-12
    )


def test_each_model_call_is_priced_in_its_own_tier(tmp_path):
    # two calls of 150k input: each below the 200k tier; their sum (300k) would be above it
    turns = [usage(150_000, 100), usage(150_000, 100)]
    run = run_record("run-1", "s1", "anthropic", "claude-sonnet-4-5", turns)
    write_session(tmp_path, "s1", [run])
    got = a3s_nb.runs(tmp_path).cost_usd.iloc[0]
    assert got == pytest.approx(dollars(SONNET_45, uncached=300_000, output=200), rel=1e-12)
    one_call = dollars(SONNET_45_OVER_200K, uncached=300_000, output=200)
    assert got < one_call


def test_run_total_beyond_its_turns_is_priced_too(tmp_path):
    # tokens in agent_end.usage that no turn_end reported (e.g. a planning call)
    run = run_record(
        "run-1", "s1", "openai", "gpt-4o-mini", [usage(1000, 10)], end_usage=usage(1500, 30)
    )
    write_session(tmp_path, "s1", [run])
    got = a3s_nb.runs(tmp_path).cost_usd.iloc[0]
    assert got == pytest.approx(dollars(GPT_4O_MINI, uncached=1500, output=30), rel=1e-12)


def test_unknown_model_is_missing_not_zero_and_listed(tmp_path):
    write_session(
        tmp_path,
        "s1",
        [
            run_record("run-1", "s1", "openai", "gpt-4o-mini", [usage(1000, 10)]),
            run_record("run-2", "s1", "openai", "house-model-7", [usage(1000, 10)]),
        ],
    )
    write_session(
        tmp_path, "s2", [run_record("run-3", "s2", "openai", "gpt-4o-mini", [usage(2000, 5)])]
    )
    runs = a3s_nb.runs(tmp_path).set_index("run_id")
    assert pd.isna(runs.loc["run-2", "cost_usd"])
    assert runs.loc["run-1", "cost_usd"] > 0
    assert runs.attrs["unpriced_models"] == ["openai/house-model-7"]
    sessions = a3s_nb.sessions(tmp_path).set_index("session_id")
    assert pd.isna(sessions.loc["s1", "cost_usd"])  # one run has no price
    assert sessions.loc["s2", "cost_usd"] == pytest.approx(runs.loc["run-3", "cost_usd"])
    assert sessions.attrs["unpriced_models"] == ["openai/house-model-7"]


def test_session_cost_is_the_sum_of_its_runs(tmp_path):
    runs = [
        run_record("run-1", "s1", "openai", "gpt-4o", [usage(1000, 10, read=500)]),
        run_record("run-2", "s1", "openai", "gpt-4o-mini", [usage(3000, 50)]),
        run_record("run-3", "s1", "openai", "gpt-4o", [], status="failed"),
    ]
    write_session(tmp_path, "s1", runs, model_name="openai/gpt-4o")
    r = a3s_nb.runs(tmp_path)
    s = a3s_nb.sessions(tmp_path)
    assert r.cost_usd.iloc[2] == 0  # a failed run that made no call: known model, 0 tokens
    assert s.cost_usd.iloc[0] == pytest.approx(r.cost_usd.sum(), rel=1e-12)
    # the same from the index (second call) and through all_frames
    assert a3s_nb.sessions(tmp_path).cost_usd.iloc[0] == s.cost_usd.iloc[0]
    both = a3s_nb.all_frames(tmp_path, ["sessions", "runs"])
    assert both["sessions"].cost_usd.iloc[0] == s.cost_usd.iloc[0]


def test_custom_provider_name_falls_back_to_the_model_name():
    pricer = cost.Pricer()
    u = [usage(1_000_000, 0)]
    by_gateway = pricer.run_cost("my-gateway/gpt-4o", None, u, at_ms=CREATED_MS)
    assert by_gateway == pytest.approx(2.50)
    assert pricer.run_cost("openai/no-such-model-xyz", None, u, at_ms=CREATED_MS) is None
    assert pricer.run_cost(None, "openai", u, at_ms=CREATED_MS) is None


def test_cost_survives_parquet(tmp_path):
    write_session(
        tmp_path / "store",
        "s1",
        [run_record("run-1", "s1", "openai", "gpt-4o", [usage(1000, 10, read=500)])],
    )
    runs = a3s_nb.runs(tmp_path / "store")
    runs.to_parquet(tmp_path / "runs.parquet")
    back = pd.read_parquet(tmp_path / "runs.parquet")
    assert back.cost_usd.dtype == runs.cost_usd.dtype
    assert back.cost_usd.iloc[0] == runs.cost_usd.iloc[0]
    assert back.attrs["unpriced_models"] == []


@pytest.mark.sdk
def test_real_sdk_run_with_cached_tokens(a3s_code, tmp_path):
    """The real a3s-code drops the cache count from agent_end; the cost still uses it."""
    from a3s_nb.testing import ScriptedLLM

    script = [
        {
            "match": "hello",
            "replies": [
                {
                    "text": "hi",
                    "usage": {
                        "prompt_tokens": 4000,
                        "completion_tokens": 25,
                        "prompt_tokens_details": {"cached_tokens": 3000},
                    },
                }
            ],
        }
    ]
    with ScriptedLLM(script, models=("gpt-4o-mini",)) as llm:
        agent = a3s_code.Agent.create(llm.acl_config())
        session = agent.session(str(tmp_path))
        session.send("hello")
        runs = a3s_nb.runs(session)
    expected = dollars(GPT_4O_MINI, uncached=1000, read=3000, output=25)
    assert runs.cost_usd.iloc[0] == pytest.approx(expected, rel=1e-12)
    assert runs.model.iloc[0] == "openai/gpt-4o-mini"
