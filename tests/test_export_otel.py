"""to_otel: runs as OpenTelemetry GenAI traces, to an OTLP JSON file and to a real
OTLP/HTTP backend (an MLflow tracking server started by the test, read back with its own
client)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

import a3s_nb
from a3s_nb.exports.otel import OPERATIONS, span_id, trace_id

ROOT = Path(__file__).resolve().parents[1]


def otlp_spans(path: Path) -> list[dict]:
    """Every span of an OTLP JSON Lines file, its attributes as a plain dict."""
    out = []
    for line in path.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            resource = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    attrs = {}
                    for a in sp.get("attributes", []):
                        (v,) = a["value"].values()
                        attrs[a["key"]] = int(v) if "intValue" in a["value"] else v
                    out.append({**sp, "attrs": attrs, "resource": resource})
    return out


@pytest.fixture
def exported(fixture_dir, tmp_path):
    out = tmp_path / "traces.jsonl"
    result = a3s_nb.to_otel(fixture_dir, out)
    return result, otlp_spans(out), out


def test_every_span_of_spans_is_exported_with_its_operation(exported, fixture_dir):
    result, spans, _ = exported
    frame = a3s_nb.spans(fixture_dir)
    want = Counter(frame["kind"].astype(str))
    assert Counter(s["attrs"]["a3s_nb.span.kind"] for s in spans) == want
    assert result["spans_by_kind"] == dict(want)
    assert result["traces"] == len(a3s_nb.runs(fixture_dir))
    for s in spans:
        assert s["attrs"]["gen_ai.operation.name"] == OPERATIONS[s["attrs"]["a3s_nb.span.kind"]]
        assert s["attrs"]["gen_ai.conversation.id"] in set(frame["session_id"])
        assert s["attrs"]["gen_ai.provider.name"] == "openai"
        assert s["attrs"]["gen_ai.request.model"] in ("fake-model", "fake-model-large")
    assert {s["name"] for s in spans if s["attrs"]["a3s_nb.span.kind"] == "run"} == {
        "invoke_agent a3s-code"
    }
    tools = [s for s in spans if s["attrs"]["gen_ai.operation.name"] == "execute_tool"]
    assert all(s["attrs"]["gen_ai.tool.call.id"] and s["attrs"]["gen_ai.tool.name"] for s in tools)
    assert {s["name"] for s in tools} == {
        f"execute_tool {t}" for t in frame.query("kind == 'tool'")["tool_name"]
    }


def test_tokens_times_parents_and_ids_come_from_the_frames(exported, fixture_dir):
    _, spans, _ = exported
    frame = a3s_nb.spans(fixture_dir)
    runs = a3s_nb.runs(fixture_dir)
    run_spans = [s for s in spans if s["attrs"]["a3s_nb.span.kind"] == "run"]
    assert (
        sum(s["attrs"]["gen_ai.usage.input_tokens"] for s in run_spans) == runs.prompt_tokens.sum()
    )
    assert (
        sum(s["attrs"]["gen_ai.usage.output_tokens"] for s in run_spans)
        == runs.completion_tokens.sum()
    )
    chats = [s for s in spans if s["attrs"]["gen_ai.operation.name"] == "chat"]
    turns = frame.query("kind == 'turn'")
    assert sum(s["attrs"].get("gen_ai.usage.input_tokens", 0) for s in chats) == (
        turns.prompt_tokens.sum()
    )
    by_id = {(r.session_id, r.span_id): r for r in frame.itertuples()}
    for s in spans:
        row = by_id[(s["attrs"]["gen_ai.conversation.id"], s["attrs"]["a3s_nb.span.id"])]
        assert int(s["startTimeUnixNano"]) == row.start.value  # recorded, not export time
        assert int(s["endTimeUnixNano"]) == row.end.value
        assert s["traceId"] == f"{trace_id(row.session_id, row.run_id):032x}"
        assert s["spanId"] == f"{span_id(row.session_id, row.span_id):016x}"
        if isinstance(row.parent_span_id, str):
            assert s["parentSpanId"] == f"{span_id(row.session_id, row.parent_span_id):016x}"
        else:
            assert not s.get("parentSpanId")


def test_ids_are_stable_across_exports_and_the_file_is_replaced(exported, fixture_dir):
    _, spans, out = exported
    a3s_nb.to_otel(fixture_dir, out)
    again = otlp_spans(out)
    assert len(again) == len(spans)  # replaced, not appended
    assert [(s["traceId"], s["spanId"]) for s in again] == [
        (s["traceId"], s["spanId"]) for s in spans
    ]


def test_failed_runs_and_tools_have_error_status(exported, fixture_dir):
    _, spans, _ = exported
    frame = a3s_nb.spans(fixture_dir)
    errors = {s["attrs"]["a3s_nb.span.id"] for s in spans if s["status"].get("code") == 2}
    assert errors == set(frame.loc[frame["status"] == "error", "span_id"])
    failed_runs = set(a3s_nb.runs(fixture_dir, status="failed")["run_id"])
    assert failed_runs and failed_runs <= errors
    assert any(
        s["attrs"].get("error.type") == "tool_error" for s in spans if s["status"].get("code") == 2
    )


def test_content_only_when_asked_and_secrets_redacted(fixture_dir, tmp_path):
    plain = otlp_spans_of(fixture_dir, tmp_path / "plain.jsonl")
    content_keys = {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
    }
    assert not any(content_keys & s["attrs"].keys() for s in plain)
    out = tmp_path / "content.jsonl"
    result = a3s_nb.to_otel(fixture_dir, out, content=True)
    spans = otlp_spans(out)
    runs = a3s_nb.runs(fixture_dir)
    run_spans = {
        s["attrs"]["a3s_nb.run.id"]: s for s in spans if s["attrs"]["a3s_nb.span.kind"] == "run"
    }
    prompts = {rid: json.loads(s["attrs"]["gen_ai.input.messages"]) for rid, s in run_spans.items()}
    for r in runs.itertuples():
        assert prompts[r.run_id][0]["parts"][0]["content"] == r.prompt
    assert any("gen_ai.tool.call.arguments" in s["attrs"] for s in spans)
    assert any("gen_ai.tool.call.result" in s["attrs"] for s in spans)
    assert result["redacted"] == 0

    # a key pasted into a prompt never leaves the machine
    store = fixture_dir  # a private copy
    sid = "dc488148-a475-4c5d-b553-2ee4179ae7fc"
    runs_file = store / "runs" / f"{sid}.json"
    key = "sk-proj-" + "4fT9qLm2Xv8RzK1pW7sN3bY6hJ0cD5eGaQ2uV9wZx4Rt"  # made up
    runs_file.write_text(runs_file.read_text().replace("replace the string", f"use {key} to"))
    out = tmp_path / "secret.jsonl"
    result = a3s_nb.to_otel(store, out, content=True)
    assert result["redacted"] >= 1
    text = out.read_text()
    assert key not in text and "[REDACTED:openai-key]" in text


def otlp_spans_of(source, out: Path) -> list[dict]:
    a3s_nb.to_otel(source, out)
    return otlp_spans(out)


def test_selection_and_cli(fixture_dir, tmp_path, capsys):
    from a3s_nb.cli import main

    out = tmp_path / "failed.jsonl"
    assert (
        main(["--store", str(fixture_dir), "export", "otel", str(out), "--status", "failed"]) == 0
    )
    spans = otlp_spans(out)
    failed = a3s_nb.spans(fixture_dir, status="failed")
    assert len(spans) == len(failed) > 0
    assert "spans" in capsys.readouterr().out
    assert main(["--store", str(fixture_dir), "export", "otel"]) == 2
    assert "OUT.jsonl or --endpoint" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_down_is_a_clear_error(fixture_dir, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(a3s_nb.ExportError, match="did not accept") as info:
        a3s_nb.to_otel(fixture_dir, endpoint=url, timeout=2)
    assert url in str(info.value)
    assert time.monotonic() - t0 < 30


def test_endpoint_refusing_is_a_clear_error(fixture_dir):
    """A server that answers 404 (not an OTLP receiver) is named in the error."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class NotOtlp(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotOtlp)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(a3s_nb.ExportError, match="404"):
            a3s_nb.to_otel(fixture_dir, endpoint=url, timeout=2)
    finally:
        server.shutdown()
        server.server_close()


def test_output_not_writable(fixture_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(a3s_nb.ExportError, match="a-file"):
        a3s_nb.to_otel(fixture_dir, blocker / "out.jsonl")


def test_corrupt_session_is_reported_and_the_rest_exported(fixture_dir, tmp_path):
    bad = "60246e33-b01d-47b4-a995-4a89a87f13f3"
    (fixture_dir / "runs" / f"{bad}.json").write_text("[{")
    out = tmp_path / "t.jsonl"
    with pytest.warns(a3s_nb.frames.CorruptSessionWarning):
        result = a3s_nb.to_otel(fixture_dir, out)
    assert [e["session_id"] for e in result["errors"]] == [bad]
    spans = otlp_spans(out)
    assert spans and bad not in {s["attrs"]["gen_ai.conversation.id"] for s in spans}


# ----------------------------------------------------------------------------- MLflow

MLFLOW_MISSING = (
    "the MLflow tracking server used as OpenTelemetry backend is not installed: "
    "run `make otel-backend` (a venv at .venv-mlflow from tests/backends/mlflow-requirements.txt)"
)

READ_BACK = """
import json, sys
import mlflow
mlflow.set_tracking_uri(sys.argv[1])
out = []
for t in mlflow.search_traces(locations=[sys.argv[2]], return_type="list", max_results=100000):
    for s in t.data.spans:
        out.append({"trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id,
                    "start": s.start_time_ns, "end": s.end_time_ns,
                    "status": s.status.status_code.value, "attributes": s.attributes})
print(json.dumps(out, default=str))
"""


def mlflow_bin() -> Path:
    venv = Path(os.environ.get("A3S_NB_MLFLOW_VENV", ROOT / ".venv-mlflow"))
    exe = venv / "bin" / "mlflow"
    if not exe.exists():
        if os.environ.get("CI"):
            pytest.fail(MLFLOW_MISSING, pytrace=False)
        pytest.skip(f"{MLFLOW_MISSING}; the backend test did NOT run")
    return exe


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server (OTLP/HTTP at /v1/traces), started and stopped here."""
    exe = mlflow_bin()
    port = free_port()
    log = open(tmp_path / "mlflow.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(exe), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(
                        "the MLflow server did not start:\n"
                        + (tmp_path / "mlflow.log").read_text()[-3000:]
                    )
                time.sleep(0.5)
        yield url, exe.parent / "python"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the workers it started
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:  # a graceful shutdown is not worth the wait
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()


def read_back(python: Path, url: str, experiment: str) -> list[dict]:
    """The spans as MLflow's own client returns them."""
    done = subprocess.run(
        [str(python), "-c", READ_BACK, url, experiment],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_real_backend_receives_every_span_and_token(fixture_dir, mlflow_server):
    """Sessions of the real SDK (the fixture store) exported over OTLP/HTTP to MLflow and read
    back through MLflow's client: same spans per kind as spans(), same tokens as runs()."""
    url, python = mlflow_server
    headers = {"x-mlflow-experiment-id": "0"}
    result = a3s_nb.to_otel(fixture_dir, endpoint=url, headers=headers, timeout=120)
    got = read_back(python, url, "0")

    frame = a3s_nb.spans(fixture_dir)
    runs = a3s_nb.runs(fixture_dir)
    per_kind = Counter(s["attributes"]["a3s_nb.span.kind"] for s in got)
    assert per_kind == Counter(frame["kind"].astype(str))
    assert dict(per_kind) == result["spans_by_kind"]
    ops = Counter(s["attributes"]["gen_ai.operation.name"] for s in got)
    assert ops == Counter(frame["kind"].astype(str).map(OPERATIONS))
    assert len({s["trace_id"] for s in got}) == len(runs)

    run_spans = [s for s in got if s["attributes"]["a3s_nb.span.kind"] == "run"]
    assert sum(s["attributes"]["gen_ai.usage.input_tokens"] for s in run_spans) == int(
        runs.prompt_tokens.sum()
    )
    assert sum(s["attributes"]["gen_ai.usage.output_tokens"] for s in run_spans) == int(
        runs.completion_tokens.sum()
    )
    chats = [s for s in got if s["attributes"]["gen_ai.operation.name"] == "chat"]
    turns = frame.query("kind == 'turn'")
    assert sum(s["attributes"].get("gen_ai.usage.input_tokens", 0) for s in chats) == int(
        turns.prompt_tokens.sum()
    )
    # recorded times, ids as derived, error status where the frames say error
    by_id = {(r.session_id, r.span_id): r for r in frame.itertuples()}
    for s in got:
        a = s["attributes"]
        row = by_id[(a["gen_ai.conversation.id"], a["a3s_nb.span.id"])]
        assert s["start"] == row.start.value and s["end"] == row.end.value
        assert s["span_id"] == f"{span_id(row.session_id, row.span_id):016x}"
        assert (s["status"] == "ERROR") == (row.status == "error")
        if a["gen_ai.operation.name"] == "execute_tool":
            assert a["gen_ai.tool.name"] == row.tool_name
            assert a["gen_ai.tool.call.id"] == row.tool_call_id

    # exporting again gives the same ids: the backend holds each span once
    a3s_nb.to_otel(fixture_dir, endpoint=url, headers=headers, timeout=120)
    assert len(read_back(python, url, "0")) == len(got)
