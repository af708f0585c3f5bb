"""Runs as OpenTelemetry traces, in the GenAI semantic conventions.

Every run is a trace, built from ``a3s_nb.spans()`` (the frames' columns, nothing read
again from the files) and ``a3s_nb.runs()``:

    a3s_nb span kind   gen_ai.operation.name   span name
    run                invoke_agent            invoke_agent a3s-code
    planning, step     invoke_workflow         invoke_workflow planning / step <n>
    turn               chat                    chat <model>
    tool               execute_tool            execute_tool <tool>

(the conventions have no planning operation; a plan and its steps are the closest thing
they name, a workflow). Spans carry ``gen_ai.conversation.id`` (the session id),
``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.tool.name`` /
``gen_ai.tool.call.id``, ``gen_ai.usage.*`` (input tokens include cached ones, as the
conventions define them), the recorded start and end times, and an error status on failed
runs, steps and tools. Trace and span ids are derived from the session, run and span ids,
so exporting twice gives the same ids and a backend de-duplicates instead of doubling.

Message and tool content (prompts, answers, tool arguments and output) is exported only
with ``content=True``. Every exported text goes through :mod:`a3s_nb.secrets` first, so a
key that slipped into a transcript is replaced by ``[REDACTED:<kind>]``.

The spans go through the OpenTelemetry SDK to its exporters: the OTLP JSON file exporter
(``opentelemetry-exporter-otlp-json-file``) for a file, the OTLP/HTTP exporter for a
collector or backend (Jaeger, Phoenix, MLflow, Langfuse, ...).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .. import frames as _frames
from .._version import __version__
from ..errors import ExportError
from ..frames.cost import ANTHROPIC_CLIENTS, split_model
from ..secrets import redact

__all__ = ["OPERATIONS", "to_otel"]

_INSTALL = 'pip install "a3s-nb[export]"'

#: a3s_nb span kind -> gen_ai.operation.name
OPERATIONS = {
    "run": "invoke_agent",
    "planning": "invoke_workflow",
    "step": "invoke_workflow",
    "turn": "chat",
    "tool": "execute_tool",
}
AGENT_NAME = "a3s-code"
#: Spans handed to an exporter at a time (one OTLP request or one line of the file).
BATCH_SPANS = 1000


def trace_id(session_id: str, run_id: str) -> int:
    """The OpenTelemetry trace id of a run: stable across exports."""
    return _hash_id(f"a3s_nb:trace:{session_id}:{run_id}", 16)


def span_id(session_id: str, a3s_span_id: str) -> int:
    """The OpenTelemetry span id of a ``spans()`` row: stable across exports."""
    return _hash_id(f"a3s_nb:span:{session_id}:{a3s_span_id}", 8)


def _hash_id(text: str, n: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:n], "big")
    return value or 1  # an all-zero id is invalid in OpenTelemetry


def _otel() -> Any:
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.id_generator import IdGenerator
    except ImportError:
        raise ExportError(f"the OpenTelemetry export needs opentelemetry-sdk: {_INSTALL}") from None
    return trace, Resource, TracerProvider, SimpleSpanProcessor, InMemorySpanExporter, IdGenerator


def _value(v: Any) -> Any:
    """A plain Python value from a frame cell; None for a missing one."""
    import pandas as pd

    if v is None or v is pd.NA or v is pd.NaT:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        return v.item()
    return v


def _ns(ts: Any) -> int | None:
    ts = _value(ts)
    return None if ts is None else int(ts.value) if hasattr(ts, "value") else None


def _usage(row: Any, provider: str | None) -> dict[str, int]:
    """gen_ai.usage.* from a row's a3s-code token counts (input includes cached tokens)."""
    prompt = _value(row.prompt_tokens)
    completion = _value(row.completion_tokens)
    read = _value(row.cache_read_tokens)
    write = _value(row.cache_write_tokens)
    out: dict[str, int] = {}
    if prompt is not None:
        total_input = prompt
        if (provider or "").lower() in ANTHROPIC_CLIENTS:  # cache reported outside prompt
            total_input += (read or 0) + (write or 0)
        out["gen_ai.usage.input_tokens"] = int(total_input)
    if completion is not None:
        out["gen_ai.usage.output_tokens"] = int(completion)
    if read is not None:
        out["gen_ai.usage.cache_read.input_tokens"] = int(read)
    if write is not None:
        out["gen_ai.usage.cache_creation.input_tokens"] = int(write)
    return out


class _Exporters:
    """The SDK exporter(s) the spans go to, with failures turned into ExportError."""

    def __init__(self, out: str | os.PathLike[str] | None, endpoint: str | None, **kw: Any):
        self.targets: list[tuple[str, Any]] = []
        self._tmp: tuple[str, str] | None = None
        if out is not None:
            try:
                from opentelemetry.exporter.otlp.json.file import FileSpanExporter
            except ImportError:
                raise ExportError(
                    "writing OTLP JSON needs opentelemetry-exporter-otlp-json-file: " + _INSTALL
                ) from None
            path = os.fspath(out)
            directory = os.path.dirname(os.path.abspath(path))
            try:  # a temp file renamed over the output at the end: a re-export replaces it
                fd, tmp = tempfile.mkstemp(prefix=".otel-", suffix=".jsonl", dir=directory)
                os.close(fd)
            except OSError as e:
                raise ExportError(f"cannot write {path}: {e}") from e
            self._tmp = (tmp, path)
            self.targets.append((path, FileSpanExporter(tmp)))
        if endpoint is not None:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ExportError(
                    "exporting to an endpoint needs opentelemetry-exporter-otlp-proto-http: "
                    + _INSTALL
                ) from None
            url = endpoint if endpoint.rstrip("/").endswith("/v1/traces") else (
                endpoint.rstrip("/") + "/v1/traces"
            )  # fmt: skip
            self.targets.append((url, OTLPSpanExporter(endpoint=url, **kw)))

    def export(self, spans: Sequence[Any]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        for where, exporter in self.targets:
            with _captured_otel_logs() as logs:
                result = exporter.export(spans)
            if result is not SpanExportResult.SUCCESS:
                why = logs[-1] if logs else "no reason given"
                raise ExportError(
                    f"{where} did not accept {len(spans)} spans: {why} "
                    "(is the collector or backend running, and is this its OTLP/HTTP traces URL?)"
                )

    def close(self, ok: bool) -> None:
        for _, exporter in self.targets:
            exporter.shutdown()
        if self._tmp is not None:
            tmp, path = self._tmp
            if ok:
                try:
                    os.replace(tmp, path)
                except OSError as e:
                    raise ExportError(f"cannot write {path}: {e}") from e
            else:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


class _captured_otel_logs:
    """The exporters report why an export failed only in their logs: keep those."""

    def __enter__(self) -> list[str]:
        self.handler = _ListHandler()
        self.logger = logging.getLogger("opentelemetry")
        self.logger.addHandler(self.handler)
        self.propagate = self.logger.propagate
        self.logger.propagate = False
        return self.handler.messages

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = self.propagate


def _tool_content(frames: dict) -> tuple[dict, dict]:
    """Tool arguments (from the transcript) and results (from tool_end events), by call."""
    msgs, ev = frames["messages"], frames["run_events"]
    args = _by_call(msgs[msgs["block_type"] == "tool_use"], "tool_use_id", "tool_input")
    results = _by_call(ev[ev["event_type"] == "tool_end"], "tool_call_id", "text")
    return args, results


def _by_call(rows: Any, call_col: str, value_col: str) -> dict[tuple[str, str], str]:
    """``{(session_id, tool call id): value}`` over the rows where both are present."""
    out: dict[tuple[str, str], str] = {}
    for sid, call, value in zip(rows["session_id"], rows[call_col], rows[value_col],
                                strict=True):  # fmt: skip
        if _value(call) is not None and _value(value) is not None:
            out[(sid, call)] = value
    return out


def to_otel(
    source: Any = None,
    out: str | os.PathLike[str] | None = None,
    *,
    endpoint: str | None = None,
    headers: dict[str, str] | None = None,
    content: bool = False,
    ids: str | Iterable[str] | None = None,
    since: Any = None,
    until: Any = None,
    status: str | Iterable[str] | None = None,
    service_name: str = AGENT_NAME,
    timeout: float = 10.0,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Export the runs of the selected sessions as OpenTelemetry GenAI traces.

    ``out`` is an OTLP JSON Lines file (replaced, not appended to); ``endpoint`` an
    OTLP/HTTP collector or backend (``http://host:4318`` or its ``.../v1/traces`` URL, with
    ``headers`` such as an API key or MLflow's ``x-mlflow-experiment-id``); give either or
    both. ``content=True`` adds prompts, answers, step descriptions and tool arguments and
    output (secrets redacted). ``source``, ``ids``, ``since``, ``until`` and ``status``
    select sessions and runs as for ``a3s_nb.spans``. Returns counts: ``traces``, ``spans``,
    ``spans_by_kind``, ``redacted`` (secrets replaced) and ``errors`` (corrupt sessions
    skipped).

    >>> a3s_nb.to_otel("sessions", endpoint="http://localhost:4318")   # doctest: +SKIP
    """
    if out is None and endpoint is None:
        raise ValueError("give out= (an OTLP JSON file) or endpoint= (an OTLP/HTTP URL)")
    trace, Resource, TracerProvider, SimpleSpanProcessor, InMemorySpanExporter, IdGenerator = (
        _otel()
    )
    from opentelemetry.trace import SpanKind, Status, StatusCode

    wanted = ["runs", "spans", *(["messages", "run_events"] if content else [])]
    frames = _frames.all_frames(
        source, wanted, ids=ids, since=since, until=until, status=status, progress=progress
    )
    runs, spans = frames["runs"], frames["spans"]
    args, results = _tool_content(frames) if content else ({}, {})

    class _Ids(IdGenerator):
        """Hands out the ids chosen for the next span (the SDK asks for them)."""

        next_trace = next_span = 0

        def generate_trace_id(self) -> int:
            return self.next_trace

        def generate_span_id(self) -> int:
            return self.next_span

    id_gen = _Ids()
    collected = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), id_generator=id_gen
    )
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("a3s_nb", __version__)
    kw: dict[str, Any] = {"timeout": timeout}
    if headers:
        kw["headers"] = dict(headers)
    exporters = _Exporters(out, endpoint, **kw)

    run_info = {
        (r.session_id, r.run_id): r for r in runs.itertuples(index=False) if _value(r.run_id)
    }
    counts: dict[str, int] = {}
    redacted = 0
    n_traces = 0
    ok = False
    try:
        pending: list[Any] = []
        for (sid, rid), group in _by_run(spans):
            run = run_info.get((sid, rid))
            model_name, provider_name = split_model(
                _value(run.model) if run is not None else None,
                _value(run.provider) if run is not None else None,
            )
            live: dict[str, Any] = {}
            ends: dict[str, int | None] = {}
            n_traces += 1
            for row in group.itertuples(index=False):
                kind = str(row.kind)
                attrs: dict[str, Any] = {
                    "gen_ai.operation.name": OPERATIONS.get(kind, kind),
                    "gen_ai.conversation.id": sid,
                    "gen_ai.agent.name": AGENT_NAME,
                    "a3s_nb.span.kind": kind,
                    "a3s_nb.span.id": row.span_id,
                    "a3s_nb.run.id": rid,
                }
                if provider_name:
                    attrs["gen_ai.provider.name"] = provider_name
                if model_name:
                    attrs["gen_ai.request.model"] = model_name
                name = f"{attrs['gen_ai.operation.name']} {AGENT_NAME}"
                otel_kind = SpanKind.INTERNAL
                if kind == "run":
                    attrs.update(_usage(row, provider_name))
                    if run is not None:
                        attrs["a3s_nb.run.status"] = str(run.status)
                        if model_name:
                            attrs["gen_ai.response.model"] = model_name
                        cost = _value(run.cost_usd)
                        if cost is not None:
                            attrs["a3s_nb.cost_usd"] = float(cost)
                        if content:
                            _put(attrs, "gen_ai.input.messages", _messages("user", run.prompt))
                            _put(attrs, "gen_ai.output.messages",
                                 _messages("assistant", run.result_text))  # fmt: skip
                elif kind == "turn":
                    attrs.update(_usage(row, provider_name))
                    attrs["a3s_nb.turn"] = int(_value(row.turn) or 0)
                    name = f"chat {model_name or 'model'}"
                    otel_kind = SpanKind.CLIENT
                elif kind == "tool":
                    tool = _value(row.tool_name) or "tool"
                    call = _value(row.tool_call_id)
                    attrs["gen_ai.tool.name"] = tool
                    attrs["gen_ai.tool.type"] = "function"
                    if call:
                        attrs["gen_ai.tool.call.id"] = call
                    if _value(row.exit_code) is not None:
                        attrs["a3s_nb.tool.exit_code"] = int(_value(row.exit_code))
                    if content and call:
                        _put(attrs, "gen_ai.tool.call.arguments", args.get((sid, call)))
                        _put(attrs, "gen_ai.tool.call.result", results.get((sid, call)))
                    name = f"execute_tool {tool}"
                else:  # planning, step
                    step = _value(row.step_number)
                    name = "invoke_workflow planning" if kind == "planning" else (
                        f"invoke_workflow step {step}" if step is not None else "invoke_workflow step"
                    )  # fmt: skip
                    if step is not None:
                        attrs["a3s_nb.step.number"] = int(step)
                    if content and kind == "step":
                        _put(attrs, "a3s_nb.step.description", _value(row.name))
                status_obj = Status(StatusCode.UNSET)
                if str(row.status) == "error":
                    attrs["error.type"] = "tool_error" if kind == "tool" else "run_failed"
                    why = _value(run.error) if run is not None and kind == "run" else None
                    status_obj = Status(StatusCode.ERROR, why if content else None)
                fixed, findings = redact({"span": attrs})
                attrs = fixed["span"]
                redacted += len(findings)
                if status_obj.description:
                    desc, found = redact({"status": status_obj.description})
                    redacted += len(found)
                    status_obj = Status(StatusCode.ERROR, desc["status"])

                parent = live.get(_value(row.parent_span_id))
                id_gen.next_trace = trace_id(sid, rid)
                id_gen.next_span = span_id(sid, row.span_id)
                ctx = trace.set_span_in_context(parent) if parent is not None else None
                start = _ns(row.start)
                end = _ns(row.end) or start
                span = tracer.start_span(
                    name, context=ctx, kind=otel_kind, attributes=attrs, start_time=start
                )
                span.set_status(status_obj)
                live[row.span_id] = span
                ends[row.span_id] = end
                counts[kind] = counts.get(kind, 0) + 1
            for key, span in live.items():  # ended once the whole run is built
                span.end(end_time=ends[key])
            pending.extend(collected.get_finished_spans())
            collected.clear()
            if len(pending) >= BATCH_SPANS:
                exporters.export(pending)
                pending = []
        if pending:
            exporters.export(pending)
        ok = True
    finally:
        provider.shutdown()
        exporters.close(ok)
    return {
        "traces": n_traces,
        "spans": sum(counts.values()),
        "spans_by_kind": counts,
        "redacted": redacted,
        "errors": list(spans.attrs.get("errors", [])),
    }


def _by_run(spans: Any) -> Iterator[tuple[tuple[str, str], Any]]:
    if spans.empty:
        return
    keep = spans[spans["run_id"].notna()]
    yield from keep.groupby(["session_id", "run_id"], sort=False, observed=True)


def _messages(role: str, text: Any) -> str | None:
    import json

    text = _value(text)
    if text is None:
        return None
    return json.dumps([{"role": role, "parts": [{"type": "text", "content": text}]}])


def _put(attrs: dict, key: str, value: Any) -> None:
    value = _value(value)
    if value is not None:
        attrs[key] = value
