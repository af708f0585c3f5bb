"""The scripted OpenAI-compatible server, over raw HTTP (no SDK needed)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from a3s_nb import testing
from a3s_nb.testing import Reply, Rule, ScriptedLLM, ToolCall

PRE_SYSTEM = "You are a pre-analysis assistant. Given a user message, classify the task."


def user(text: Any) -> dict:
    return {"role": "user", "content": text}


def body(*messages: dict, stream: bool = False, usage: bool = True, **extra: Any) -> dict:
    out: dict[str, Any] = {"model": "fake-model", "messages": list(messages), **extra}
    if stream:
        out["stream"] = True
        if usage:
            out["stream_options"] = {"include_usage": True}
    return out


def post(llm: ScriptedLLM, payload: Any, path: str = "/v1/chat/completions") -> tuple[int, Any]:
    """(status, parsed JSON or list of SSE data payloads)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(
        llm.base_url + path, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, ctype, raw = response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    if ctype == "text/event-stream":
        text = raw.decode()
        assert text.endswith("data: [DONE]\n\n")
        events = text.split("\n\n")
        assert events[-1] == ""
        assert all(e.startswith("data: ") for e in events[:-1])
        return status, [e[len("data: ") :] for e in events[:-1]]
    return status, json.loads(raw)


def streamed(events: list[str]) -> tuple[str, list[dict], str | None, dict | None]:
    """(text, tool calls, finish_reason, usage) accumulated from SSE payloads."""
    assert events[-1] == "[DONE]"
    text, calls, finish, usage = "", {}, None, None
    for raw in events[:-1]:
        chunk = json.loads(raw)
        assert chunk["object"] == "chat.completion.chunk"
        if chunk.get("usage"):
            assert chunk["choices"] == []
            usage = chunk["usage"]
            continue
        (choice,) = chunk["choices"]
        delta = choice["delta"]
        text += delta.get("content") or ""
        for tc in delta.get("tool_calls") or []:
            slot = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
            slot["id"] = tc.get("id") or slot["id"]
            slot["name"] += tc.get("function", {}).get("name", "")
            slot["arguments"] += tc.get("function", {}).get("arguments", "")
        finish = choice["finish_reason"] or finish
    return text, [calls[i] for i in sorted(calls)], finish, usage


WRITE = ToolCall("write", {"file_path": "a.txt", "content": "hi\n"})
SCRIPT = [
    Rule(match="make a file", replies=[Reply(text="Writing.", tool_calls=[WRITE]), "Written."]),
    Rule(regex=r"^count to \d+$", replies=["one", "two"], final="that's all"),
    Rule(match="break it", replies=[{"status": 400, "error": "scripted 400"}]),
    Rule(match="plan", plan=["first", "second"]),
    Rule(match="catch", replies=["first rule wins"]),
    Rule(match="catch", replies=["never used"]),
]


@pytest.fixture
def llm():
    with ScriptedLLM(SCRIPT) as server:
        yield server


# ------------------------------------------------------------------------------ replies


def test_non_streaming_text(llm):
    status, reply = post(llm, body(user("count to 3")))
    assert status == 200
    assert reply["object"] == "chat.completion"
    assert reply["model"] == "fake-model"
    (choice,) = reply["choices"]
    assert choice["message"] == {"role": "assistant", "content": "one"}
    assert choice["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_streaming_text_with_usage(llm):
    text = "Hello! I am a scripted model; nothing here is real."
    llm.script = testing.chat("hello", text)
    status, events = post(llm, body(user("hello"), stream=True))
    assert status == 200
    got, calls, finish, usage = streamed(events)
    assert (got, calls, finish) == (text, [], "stop")
    assert len(events) > 4  # the text arrives in several deltas
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streaming_without_include_usage_has_no_usage_chunk(llm):
    _, events = post(llm, body(user("count to 3"), stream=True, usage=False))
    assert streamed(events)[3] is None


def test_streaming_tool_calls(llm):
    status, events = post(llm, body(user("please make a file"), stream=True))
    assert status == 200
    text, calls, finish, _ = streamed(events)
    assert text == "Writing."
    assert finish == "tool_calls"
    (call,) = calls
    assert call["name"] == "write"
    assert json.loads(call["arguments"]) == {"file_path": "a.txt", "content": "hi\n"}
    assert call["id"].startswith("call_")
    # the arguments come in more than one delta, as from a real provider
    arg_deltas = [e for e in events if '"arguments": "' in e and '"arguments": ""' not in e]
    assert len(arg_deltas) == 2


def test_non_streaming_tool_calls(llm):
    _, reply = post(llm, body(user("please make a file")))
    message = reply["choices"][0]["message"]
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "write"
    assert json.loads(call["function"]["arguments"]) == dict(WRITE.arguments)


def test_tool_call_ids_are_deterministic_and_differ_between_turns(llm):
    def call_id(*messages):
        return post(llm, body(*messages))[1]["choices"][0]["message"]["tool_calls"][0]["id"]

    first = call_id(user("make a file"))
    assert first == call_id(user("make a file"))
    later_turn = call_id(user("hi"), {"role": "assistant", "content": "yo"}, user("make a file"))
    assert later_turn != first
    llm.script = [Rule(match="x", replies=[Reply(tool_calls=[ToolCall("ls", {}, id="fixed")])])]
    assert call_id(user("x")) == "fixed"


def test_step_counts_assistant_messages_after_latest_user_prompt(llm):
    tool_round = [
        user("make a file"),
        {"role": "assistant", "content": "Writing.", "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Wrote 3 bytes"},
    ]
    _, reply = post(llm, body(*tool_round))
    assert reply["choices"][0]["message"]["content"] == "Written."
    # past the end of the replies: the last text, or the rule's final text
    _, reply = post(llm, body(*tool_round, {"role": "assistant", "content": "Written."}))
    assert reply["choices"][0]["message"]["content"] == "Written."
    count = [user("count to 9")] + [{"role": "assistant", "content": "n"}] * 5
    _, reply = post(llm, body(*count))
    assert reply["choices"][0]["message"]["content"] == "that's all"


def test_pre_analysis_answer(llm):
    system = {"role": "system", "content": PRE_SYSTEM}
    status, reply = post(llm, body(system, user("please make a file")))
    assert status == 200
    analysis = json.loads(reply["choices"][0]["message"]["content"])
    assert analysis["requires_planning"] is False
    assert analysis["optimized_input"] == "please make a file"  # a3s-code stores it as history
    assert analysis["execution_plan"]["steps"] == []
    assert set(analysis) == {
        "intent",
        "requires_planning",
        "goal",
        "execution_plan",
        "optimized_input",
    }
    assert llm.requests[-1].kind == "pre-analysis"


def test_pre_analysis_planning_variant(llm):
    system = {"role": "system", "content": PRE_SYSTEM}
    _, reply = post(llm, body(system, user("plan the work")))
    analysis = json.loads(reply["choices"][0]["message"]["content"])
    assert analysis["requires_planning"] is True
    assert analysis["goal"]["description"] == "plan the work"
    steps = analysis["execution_plan"]["steps"]
    assert [s["description"] for s in steps] == ["first", "second"]
    assert steps[1]["dependencies"] == [steps[0]["id"]]


def test_error_reply(llm):
    status, reply = post(llm, body(user("break it now"), stream=True))
    assert status == 400
    assert reply["error"]["message"] == "scripted 400"
    assert reply["error"]["type"] == "invalid_request_error"
    assert llm.requests[-1].status == 400


def test_usage_override(llm):
    llm.script = [Rule(match="u", replies=[Reply(text="t", usage={"prompt_tokens": 7})])]
    _, reply = post(llm, body(user("u")))
    assert reply["usage"]["prompt_tokens"] == 7
    assert reply["usage"]["total_tokens"] == 7 + reply["usage"]["completion_tokens"]


# ----------------------------------------------------------------------------- matching


def test_rule_matching(llm):
    def answer(text):
        return post(llm, body(user(text)))[1]["choices"][0]["message"]["content"]

    assert answer("count to 12") == "one"  # regex
    assert answer("please count to 12") == "Echo: please count to 12"  # regex anchored
    assert answer("catch me") == "first rule wins"  # first matching rule
    assert answer("nothing matches") == "Echo: nothing matches"
    assert answer("Make A File") == "Echo: Make A File"  # substrings are case-sensitive


def test_latest_user_prompt_skips_tool_results_and_reads_content_parts(llm):
    parts = [{"type": "text", "text": "count "}, {"type": "text", "text": "to 2"}]
    messages = [
        user("make a file"),
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]},
        {"role": "tool", "tool_call_id": "c", "content": "count to 5"},
        {"role": "assistant", "content": "done"},
        user(parts),
    ]
    _, reply = post(llm, body(*messages))
    assert reply["choices"][0]["message"]["content"] == "one"
    assert llm.requests[-1].prompt == "count to 2"
    assert llm.requests[-1].step == 0


def test_a_seen_rule_answers_only_when_a_tool_returned_its_text():
    script = [
        Rule(match="what did it say?", seen="all clear", replies=("It said all clear.",)),
        Rule(match="what did it say?", replies=("It failed.",)),
    ]

    def answer(output):
        messages = [
            user("run it"),
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]},
            {"role": "tool", "tool_call_id": "c", "content": output},
            {"role": "assistant", "content": "ran"},
            user("what did it say?"),
        ]
        return post(server, body(*messages))[1]["choices"][0]["message"]["content"]

    with ScriptedLLM(script) as server:
        assert answer("all clear: 3 checks") == "It said all clear."
        assert answer("error: 2 checks failed") == "It failed."
    assert Rule.from_data(script[0].to_data()) == script[0]


def test_script_as_plain_data_round_trips():
    data = [rule.to_data() for rule in testing.standard_script()]
    assert json.loads(json.dumps(data)) == data
    rules = [Rule.from_data(d) for d in data]
    assert rules == testing.standard_script()
    with ScriptedLLM(data) as server:  # dicts and nested lists are accepted as they are
        assert server.script == tuple(rules)


@pytest.mark.parametrize(
    "bad",
    [
        {"match": "x", "replies": [{"txt": "typo"}]},
        {"mtch": "x"},
        {"match": "x", "replies": [{"status": 200}]},
        {"match": "x", "replies": [{"tool_calls": [{"arguments": {}}]}]},
        {"regex": "("},
        {"match": "x", "plan": "not a list"},
    ],
)
def test_bad_script_data_is_refused_up_front(bad):
    with pytest.raises((ValueError, TypeError)):
        ScriptedLLM([bad])


def test_ready_made_prompts_are_distinct():
    rules = testing.standard_script()
    prompts = [
        testing.WRITE_READ_PROMPT,
        testing.FAILING_BASH_PROMPT,
        testing.READ_MISSING_PROMPT,
        testing.CHAT_PROMPT,
        testing.LLM_ERROR_PROMPT,
        testing.LARGE_OUTPUT_PROMPT,
        testing.PLANNING_PROMPT,
    ]
    for prompt in prompts:
        assert len([r for r in rules if r.matches(prompt)]) == 1
        assert sum(other in prompt for other in prompts) == 1


# ----------------------------------------------------------------------- other routes


def test_models_route(llm):
    with urllib.request.urlopen(llm.base_url + "/v1/models", timeout=10) as response:
        listing = json.loads(response.read())
    assert [m["id"] for m in listing["data"]] == ["fake-model"]
    assert llm.requests[-1].kind == "models"


def test_unknown_route_and_invalid_json(llm):
    status, reply = post(llm, body(user("x")), path="/v1/embeddings")
    assert status == 404 and "error" in reply
    status, reply = post(llm, b"{not json")
    assert status == 400 and "invalid request" in reply["error"]["message"]
    status, reply = post(llm, {"model": "m", "messages": "nope"})
    assert status == 400
    assert [r.kind for r in llm.requests] == ["invalid"] * 3


# ---------------------------------------------------------------------------- request log


def test_request_log_records_each_request_and_is_thread_safe(llm):
    def hit(i):
        post(llm, body(user(f"count to {i}"), stream=bool(i % 2)))

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = llm.requests
    assert len(log) == 20
    assert {r.prompt for r in log} == {f"count to {i}" for i in range(20)}
    assert {r.rule for r in log} == {r"^count to \d+$"}
    assert sum(r.stream for r in log) == 10
    assert all(r.body["messages"][0]["content"] == r.prompt for r in log)
    log.clear()  # a copy: the server's log is untouched
    assert len(llm.requests) == 20
    llm.clear_requests()
    assert llm.requests == []


# ------------------------------------------------------------------------ config, life


def test_acl_config_names_the_port_and_every_model():
    with ScriptedLLM(models=["m-1", "m-2"], api_key='k"1') as server:
        config = server.acl_config("m-2")
        assert 'default_model = "openai/m-2"' in config
        assert f'base_url = "http://127.0.0.1:{server.port}"' in config
        assert 'api_key  = "k\\"1"' in config
        assert config.count("tool_call = true") == 2
        assert 'models "m-1" {' in config and 'models "m-2" {' in config
        with pytest.raises(ValueError, match="not one of the served models"):
            server.acl_config("m-3")


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("ScriptedLLM")]


def test_clean_stop():
    before = set(threading.enumerate())
    llm = ScriptedLLM(SCRIPT).start()
    assert llm.start() is llm  # already running: no second server
    port = llm.port
    assert len(_server_threads()) == 1
    post(llm, body(user("count to 1"), stream=True))
    llm.stop()
    llm.stop()  # idempotent
    assert not llm.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = llm.port
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 1):
        pass
    assert set(threading.enumerate()) <= before  # handler threads joined too
    # a stopped server can start again (on a new port)
    with llm:
        assert post(llm, body(user("count to 1")))[0] == 200
    assert not llm.running


def test_stop_cuts_a_delayed_reply_short():
    llm = ScriptedLLM([Rule(match="slow", replies=[Reply(text="late", delay=30)])]).start()
    result = {}
    client = threading.Thread(target=lambda: result.update(r=post(llm, body(user("slow")))))
    client.start()
    deadline = time.monotonic() + 5
    while not llm.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    llm.stop()
    client.join(5)
    assert time.monotonic() - started < 5
    assert result["r"][0] == 503


def test_planning_run_answers_each_step_message():
    plan, *steps = testing.planning_run("do it in steps", ["first part", "second part"])
    assert plan.plan == ("first part", "second part")
    with ScriptedLLM([plan, *steps]) as llm:
        goal = user("Goal: do it in steps\n\nExecute the following plan step by step:\n...")
        _, reply = post(llm, body(goal, user("Execute step 2: second part\n")))
    assert reply["choices"][0]["message"]["content"] == "Done: second part."
    assert llm.requests[-1].rule == "planning_run step 2"


def test_rules_can_answer_per_model():
    script = [
        Rule(match="fix it", model="careful", replies=("Fixed carefully.",)),
        Rule(match="fix it", model=("quick", "other"), replies=("Fixed quickly.",)),
        Rule(match="fix it", replies=("Fixed somehow.",)),
    ]
    with ScriptedLLM(script, models=("quick", "careful", "third")) as llm:

        def answer(model: str | None) -> str:
            payload = body(user("please fix it"))
            if model is None:
                del payload["model"]  # no model: the server's default, the first one
            else:
                payload["model"] = model
            return post(llm, payload)[1]["choices"][0]["message"]["content"]

        assert answer("careful") == "Fixed carefully."
        assert answer("quick") == "Fixed quickly."
        assert answer("third") == "Fixed somehow."
        assert answer(None) == "Fixed quickly."
    data = Rule(match="x", model=["a", "b"]).to_data()
    assert data["model"] == ["a", "b"] and Rule.from_data(data).model == ("a", "b")
    with pytest.raises(ValueError, match="model"):
        Rule(match="x", model=[])
