"""A scripted OpenAI-compatible LLM server, to run a real a3s-code agent with no API key.

The a3s-code ``openai`` provider talks to ``{base_url}/v1/chat/completions``. Point it at a
:class:`ScriptedLLM` and every answer comes from a script given as data, so a notebook, a
test, a tutorial or a Binder session runs the real agent loop (real tools, real persistence)
deterministically and offline::

    from a3s_code import Agent
    from a3s_nb import testing

    llm = testing.ScriptedLLM(testing.standard_script()).start()
    agent = Agent.create(llm.acl_config())
    ...
    llm.stop()

or, in a test, ``with testing.ScriptedLLM(script) as llm: ...``.

**The script.** An ordered list of :class:`Rule`. Each request is answered from the first rule
that matches the *latest real user prompt* in it (the last ``user`` message; tool results
travel as ``tool`` messages and do not count). The reply used is the rule's
``replies[step]``, where ``step`` is the number of assistant messages that follow that user
message in the request: 0 for the first model call of a turn, 1 after the first tool round,
and so on. Past the end of ``replies`` the rule answers with its ``final`` text. Nothing is
kept between requests, so a script behaves the same across retries, resumed sessions, new
kernels and sub-agents. A prompt that no rule matches gets ``Echo: <prompt>``.

Rules and replies are plain data too (what :meth:`Rule.from_data` accepts)::

    [
        {"match": "write hello",                       # substring (or "regex": "...")
         "replies": [
             {"text": "Writing.", "tool_calls": [
                 {"name": "write", "arguments": {"file_path": "hello.txt", "content": "hi"}}]},
             "Done: hello.txt written.",               # a bare string is a text reply
         ]},
        {"match": "break", "replies": [{"status": 400, "error": "bad request"}]},
        {"match": "plan it", "plan": ["Write a.txt", "Read a.txt back"]},
    ]

**Pre-analysis.** Before each prompt a3s-code makes one tool-less, non-streaming call whose
system prompt starts "You are a pre-analysis assistant" and which expects a JSON
classification. The server answers it itself: ``requires_planning`` is false unless the
matching rule has a ``plan``, and ``optimized_input`` is the prompt unchanged (a3s-code
stores ``optimized_input`` as the user message, so anything else would rewrite history).

**Planning.** With ``plan=[...]`` a3s-code runs in planning mode: the stored user messages
become ``"Goal: <prompt>\\n\\nExecute the following plan step by step:\\n1. ..."`` and then one
``"Execute step N: <step>"`` per step, each answered by whichever rule matches *that* text
(see :func:`planning_run`).

Ready-made rules for the common scenarios: :func:`write_and_read`, :func:`failing_bash`,
:func:`read_missing`, :func:`chat`, :func:`llm_error`, :func:`large_output`,
:func:`planning_run`; :func:`standard_script` holds them all, under the ``*_PROMPT``
constants of this module.

The server itself needs the standard library only; the helpers that build an agent import
a3s-code (through :mod:`a3s_nb.sdk.live`).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .sdk.features import import_a3s_code

__all__ = [
    "CALC_CHECK",
    "CALC_FORK_PROMPT",
    "CALC_PROMPTS",
    "CALC_WHATIF_OUTPUT",
    "CALC_WHATIF_PROMPT",
    "CHAT_PROMPT",
    "FAILING_BASH_PROMPT",
    "LARGE_OUTPUT_PROMPT",
    "LLM_ERROR_PROMPT",
    "PLANNING_PROMPT",
    "READ_MISSING_PROMPT",
    "WRITE_READ_PROMPT",
    "RecordedRequest",
    "Reply",
    "Rule",
    "ScriptedLLM",
    "ToolCall",
    "calculator_script",
    "chat",
    "failing_bash",
    "large_output",
    "llm_error",
    "planning_run",
    "read_missing",
    "standard_script",
    "write_and_read",
]

PRE_ANALYSIS_MARKER = "You are a pre-analysis assistant"
DEFAULT_MODEL = "fake-model"
DEFAULT_API_KEY = "sk-scripted"
DEFAULT_FINAL = "Done."


# ================================================================================= script


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model makes: a tool name and its arguments.

    ``id`` is derived from the prompt, the turn and the step when not given, so it is the
    same on every run.
    """

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    @classmethod
    def from_data(cls, data: ToolCall | Mapping[str, Any]) -> ToolCall:
        if isinstance(data, ToolCall):
            return data
        unknown = set(data) - {"name", "arguments", "id"}
        if unknown or "name" not in data:
            raise ValueError(
                f"a tool call is {{'name': ..., 'arguments': {{...}}}}, got {dict(data)!r}"
            )
        return cls(data["name"], data.get("arguments") or {}, data.get("id"))

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "arguments": self.arguments}
        if self.id is not None:
            out["id"] = self.id
        return out

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), ensure_ascii=False)


@dataclass(frozen=True)
class Reply:
    """One answer of the model: text, tool calls, or an HTTP error.

    - ``text``: the assistant's text (may accompany tool calls).
    - ``tool_calls``: the tools to call; a3s-code runs them and calls the model again.
    - ``status``: answer with this HTTP error instead (``error`` is its message). Use a 4xx:
      a3s-code gives up on a 400 after 2 attempts (0.2 s, a failed run), while 429 and 5xx
      are retried with back-off for about 30 s.
    - ``usage``: ``{"prompt_tokens": int, "completion_tokens": int}`` to report; by default
      ``100 + 20 * len(messages)`` and ``1 + len(text) // 4 + 20 * len(tool_calls)``.
    - ``delay``: seconds to wait before answering (to watch streaming or test cancellation).
    """

    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    status: int | None = None
    error: str | None = None
    usage: Mapping[str, int] | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(map(ToolCall.from_data, self.tool_calls)))
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"an error reply needs a 4xx or 5xx status, not {self.status}")

    @classmethod
    def from_data(cls, data: Reply | str | Mapping[str, Any]) -> Reply:
        """A reply from data: a string (text), or a dict with the fields of this class."""
        if isinstance(data, Reply):
            return data
        if isinstance(data, str):
            return cls(text=data)
        fields = {"text", "tool_calls", "status", "error", "usage", "delay"}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown reply field(s) {sorted(unknown)}; known: {sorted(fields)}")
        if "error" in data and "status" not in data:
            data = {**data, "status": 400}
        return cls(**{**data, "tool_calls": tuple(data.get("tool_calls") or ())})

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.text is not None:
            out["text"] = self.text
        if self.tool_calls:
            out["tool_calls"] = [tc.to_data() for tc in self.tool_calls]
        if self.status is not None:
            out["status"] = self.status
        if self.error is not None:
            out["error"] = self.error
        if self.usage is not None:
            out["usage"] = dict(self.usage)
        if self.delay:
            out["delay"] = self.delay
        return out


@dataclass(frozen=True)
class Rule:
    """Which prompts a rule answers, and how.

    - ``match``: a substring of the prompt; ``regex``: a pattern ``re.search``-ed in it. With
      neither, the rule matches every prompt (a catch-all; put it last).
    - ``replies``: the answers, by step (see the module docstring).
    - ``final``: the text used past the end of ``replies``; by default the last text-only
      reply, else "Done.".
    - ``plan``: step descriptions; when set, pre-analysis turns planning mode on for prompts
      this rule matches.
    - ``name``: shown in the request log (defaults to ``match`` or ``regex``).
    - ``model``: answer only requests for this model id (or any of a list of them), so one
      server can play two models that behave differently; None answers every model.
    - ``seen``: answer only when this text occurs in the conversation the request carries
      (its user, assistant and tool messages: tool results included), so a reply can
      depend on what a tool returned, e.g. an edited tool result of a what-if fork.
    """

    match: str | None = None
    regex: str | None = None
    replies: tuple[Reply, ...] = ()
    final: str | None = None
    plan: tuple[str, ...] | None = None
    name: str | None = None
    model: str | tuple[str, ...] | None = None
    seen: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "replies", tuple(map(Reply.from_data, self.replies)))
        if self.plan is not None:
            if isinstance(self.plan, str) or not self.plan:
                raise ValueError("plan is a non-empty list of step descriptions")
            object.__setattr__(self, "plan", tuple(self.plan))
        if self.regex is not None:
            try:
                re.compile(self.regex)  # fail now, not in the server thread
            except re.error as e:
                raise ValueError(f"bad regex {self.regex!r}: {e}") from None
        if self.name is None:
            object.__setattr__(self, "name", self.match or self.regex or "*")
        if self.model is not None and not isinstance(self.model, str):
            models = tuple(self.model)
            if not models or not all(isinstance(m, str) for m in models):
                raise ValueError("model is a model id or a non-empty list of model ids")
            object.__setattr__(self, "model", models)

    @classmethod
    def from_data(cls, data: Rule | Mapping[str, Any]) -> Rule:
        """A rule from a dict with the fields of this class (``replies`` as reply data)."""
        if isinstance(data, Rule):
            return data
        fields = {"match", "regex", "replies", "final", "plan", "name", "model", "seen"}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown rule field(s) {sorted(unknown)}; known: {sorted(fields)}")
        return cls(**{**data, "replies": tuple(data.get("replies") or ())})

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("match", "regex", "final", "name", "seen"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.model is not None:
            out["model"] = self.model if isinstance(self.model, str) else list(self.model)
        out["replies"] = [r.to_data() for r in self.replies]
        if self.plan is not None:
            out["plan"] = list(self.plan)
        return out

    def matches(self, prompt: str, model: str | None = None, conversation: str = "") -> bool:
        """Whether this rule answers ``prompt`` sent to ``model`` (None: any model) in a
        request whose messages hold ``conversation`` (their texts, joined)."""
        if self.seen is not None and self.seen not in conversation:
            return False
        if self.model is not None and model is not None:
            wanted = (self.model,) if isinstance(self.model, str) else self.model
            if model not in wanted:
                return False
        if self.match is not None and self.match not in prompt:
            return False
        return self.regex is None or re.search(self.regex, prompt) is not None

    def reply_for(self, step: int) -> Reply:
        """The reply for the ``step``-th model call of a turn."""
        if step < len(self.replies):
            return self.replies[step]
        final = self.final
        if final is None:
            texts = [r.text for r in self.replies if r.text is not None and not r.tool_calls]
            final = texts[-1] if texts else DEFAULT_FINAL
        return Reply(text=final)


def _flatten(script: Iterable[Any]) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for item in script:
        if isinstance(item, Rule | Mapping):
            rules.append(Rule.from_data(item))
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes):
            rules.extend(_flatten(item))
        else:
            raise TypeError(f"a script holds rules (Rule or dict), not {item!r}")
    return tuple(rules)


# ============================================================================ ready-made

WRITE_READ_PROMPT = "Write notes.txt and read it back"
FAILING_BASH_PROMPT = "Run the failing command"
READ_MISSING_PROMPT = "Read the missing file"
CHAT_PROMPT = "Say hello"
LLM_ERROR_PROMPT = "Make the model fail"
LARGE_OUTPUT_PROMPT = "Print a large log"
PLANNING_PROMPT = "Plan and build the report"


def write_and_read(
    prompt: str = WRITE_READ_PROMPT,
    path: str = "notes.txt",
    content: str = "hello from a3s_nb\n",
) -> list[Rule]:
    """A tool round: ``write`` a file, ``read`` it back, then say so (2 tool calls, 3 steps)."""
    return [
        Rule(
            match=prompt,
            name="write_and_read",
            replies=(
                Reply(
                    text=f"I'll write {path}.",
                    tool_calls=(ToolCall("write", {"file_path": path, "content": content}),),
                ),
                Reply(tool_calls=(ToolCall("read", {"file_path": path}),)),
                Reply(text=f"{path} now contains: {content.strip()}"),
            ),
        )
    ]


def failing_bash(
    prompt: str = FAILING_BASH_PROMPT, command: str = "echo 'something broke' >&2; exit 3"
) -> list[Rule]:
    """A ``bash`` call that exits non-zero (its tool_result is ``is_error``), then a reply."""
    return [
        Rule(
            match=prompt,
            name="failing_bash",
            replies=(
                Reply(tool_calls=(ToolCall("bash", {"command": command}),)),
                Reply(text="The command failed with exit code 3."),
            ),
        )
    ]


def read_missing(prompt: str = READ_MISSING_PROMPT, path: str = "no-such-file.txt") -> list[Rule]:
    """A ``read`` of a file that does not exist (an ``is_error`` tool_result), then a reply."""
    return [
        Rule(
            match=prompt,
            name="read_missing",
            replies=(
                Reply(tool_calls=(ToolCall("read", {"file_path": path}),)),
                Reply(text=f"{path} does not exist."),
            ),
        )
    ]


def chat(
    prompt: str = CHAT_PROMPT, text: str = "Hello! I am a scripted model; nothing here is real."
) -> list[Rule]:
    """A plain answer, no tools."""
    return [Rule(match=prompt, name="chat", replies=(Reply(text=text),))]


def llm_error(
    prompt: str = LLM_ERROR_PROMPT, status: int = 400, message: str = "scripted failure"
) -> list[Rule]:
    """Every model call fails with HTTP ``status``: the run fails (``send`` raises)."""
    return [Rule(match=prompt, name="llm_error", replies=(Reply(status=status, error=message),))]


def large_output(prompt: str = LARGE_OUTPUT_PROMPT, n_bytes: int = 150_000) -> list[Rule]:
    """A ``bash`` command printing ``n_bytes`` bytes on one line.

    Over 100 KiB, a3s-code truncates the tool_result and stores the full output as an
    artifact (``a3s://tool-output/bash/...``).
    """
    command = f"head -c {int(n_bytes)} /dev/zero | tr '\\0' x"
    return [
        Rule(
            match=prompt,
            name="large_output",
            replies=(
                Reply(tool_calls=(ToolCall("bash", {"command": command}),)),
                Reply(text=f"The log is {n_bytes} bytes long; I kept it as an artifact."),
            ),
        )
    ]


_REPORT_PLAN: dict[str, tuple[Any, ...]] = {
    "Write report.md": (
        Reply(
            tool_calls=(
                ToolCall("write", {"file_path": "report.md", "content": "# Report\n\nAll good.\n"}),
            )
        ),
        "report.md written.",
    ),
    "Read report.md back": (
        Reply(tool_calls=(ToolCall("read", {"file_path": "report.md"}),)),
        "report.md says: All good.",
    ),
}


def planning_run(
    prompt: str = PLANNING_PROMPT,
    steps: Mapping[str, Sequence[Any]] | Sequence[str] | None = None,
) -> list[Rule]:
    """A planning-mode run: the plan for ``prompt``, then one rule per step message.

    ``steps`` maps each step description to its replies (reply data, as in a rule); a plain
    list of descriptions answers each step with a short text. By default step 1 writes
    ``report.md`` and step 2 reads it back.
    """
    if steps is None:
        steps = _REPORT_PLAN
    elif not isinstance(steps, Mapping):
        steps = {step: (f"Done: {step}.",) for step in steps}
    rules = [Rule(match=prompt, name="planning_run", plan=tuple(steps))]
    for number, (step, replies) in enumerate(steps.items(), 1):
        rules.append(
            Rule(
                match=f"Execute step {number}: {step}",
                name=f"planning_run step {number}",
                replies=tuple(replies),
            )
        )
    return rules


def standard_script() -> list[Rule]:
    """Every ready-made scenario, each answering its ``*_PROMPT`` constant."""
    return [
        *write_and_read(),
        *failing_bash(),
        *read_missing(),
        *chat(),
        *llm_error(),
        *large_output(),
        *planning_run(),
    ]


# ----------------------------------------------------------- two models, one story

#: The three prompts of :func:`calculator_script`; the third is where the models differ.
CALC_PROMPTS = (
    "Create calc.py with a function add(a, b) that returns a + b",
    "Add test_calc.py with a test for add, and run it",
    "Make add join two strings with a space in between",
)
#: Another third prompt, that every model gets right (what a fork tries instead).
CALC_FORK_PROMPT = "Add a docstring to add, and run the tests again"
#: A prompt after the third whose answer depends on what the test run of prompt 3 said.
CALC_WHATIF_PROMPT = "Look at the last test run and fix what it reports"
#: What-if output for prompt 3's test run: a report that says what broke (the real one is a
#: bare ``AssertionError: 2 3``). Seen in the history, it makes the model fix ``add``.
CALC_WHATIF_OUTPUT = "FAILED test_calc.py: add(2, 3) returned '2 3', expected 5\n"
#: The check a user runs after the prompts: the tests in test_calc.py.
CALC_CHECK = {"id": "tests", "command": "python3 test_calc.py", "description": "unit tests"}

_CALC = "def add(a, b):\n    return a + b\n"
_TEST = "from calc import add\n\nassert add(2, 3) == 5, add(2, 3)\nprint('tests passed')\n"
_RUN_TESTS = ToolCall("bash", {"command": "python3 test_calc.py"})


def calculator_script(careless: str = "quick", careful: str = "careful") -> list[Rule]:
    """A small project written in three prompts, by two models that differ at the third.

    Prompt 1 writes ``calc.py``, prompt 2 writes ``test_calc.py`` and runs it; both models
    answer them alike. At prompt 3 (strings with a space) the ``careless`` model rewrites
    ``add`` so that numbers break too, runs the tests, which fail (a tool error), and
    claims success anyway; the ``careful`` model keeps numbers working, adds a test for
    strings and runs the tests, which pass. :data:`CALC_FORK_PROMPT` is answered well by
    both. :data:`CALC_WHATIF_PROMPT` depends on the history: when a tool result in it says
    ``expected 5`` (:data:`CALC_WHATIF_OUTPUT`, the edit of a what-if fork), the model
    fixes ``add`` and the tests pass; otherwise it finds nothing to fix. Serve it with ``ScriptedLLM(calculator_script(), models=("quick", "careful"))``.
    """
    broken = "def add(a, b):\n    return f'{a} {b}'\n"
    fixed = (
        "def add(a, b):\n"
        "    if isinstance(a, str) and isinstance(b, str):\n"
        "        return f'{a} {b}'\n"
        "    return a + b\n"
    )
    documented = 'def add(a, b):\n    """The sum of a and b."""\n    return a + b\n'
    string_test = _TEST.replace("print(", "assert add('a', 'b') == 'a b'\nprint(")
    p1, p2, p3 = CALC_PROMPTS
    return [
        Rule(
            match=p1,
            name="calc: write calc.py",
            replies=(
                Reply(tool_calls=(ToolCall("write", {"file_path": "calc.py", "content": _CALC}),)),
                "calc.py has add(a, b).",
            ),
        ),
        Rule(
            match=p2,
            name="calc: write and run the test",
            replies=(
                Reply(
                    tool_calls=(ToolCall("write", {"file_path": "test_calc.py", "content": _TEST}),)
                ),
                Reply(tool_calls=(_RUN_TESTS,)),
                "The test passes.",
            ),
        ),
        Rule(
            match=p3,
            model=careless,
            name="calc: strings, careless",
            replies=(
                Reply(tool_calls=(ToolCall("write", {"file_path": "calc.py", "content": broken}),)),
                Reply(tool_calls=(_RUN_TESTS,)),
                "Done: add joins strings now.",
            ),
        ),
        Rule(
            match=p3,
            name="calc: strings, careful",
            replies=(
                Reply(tool_calls=(ToolCall("write", {"file_path": "calc.py", "content": fixed}),)),
                Reply(
                    tool_calls=(
                        ToolCall("write", {"file_path": "test_calc.py", "content": string_test}),
                    )
                ),
                Reply(tool_calls=(_RUN_TESTS,)),
                "add joins strings with a space and still adds numbers; the tests pass.",
            ),
        ),
        Rule(
            match=CALC_FORK_PROMPT,
            name="calc: docstring",
            replies=(
                Reply(
                    tool_calls=(ToolCall("write", {"file_path": "calc.py", "content": documented}),)
                ),
                Reply(tool_calls=(_RUN_TESTS,)),
                "add has a docstring; the tests pass.",
            ),
        ),
        Rule(
            match=CALC_WHATIF_PROMPT,
            seen="expected 5",
            name="calc: what if, the report says what broke",
            replies=(
                Reply(tool_calls=(ToolCall("write", {"file_path": "calc.py", "content": fixed}),)),
                Reply(tool_calls=(_RUN_TESTS,)),
                "The test expects add(2, 3) == 5: add adds numbers again and still joins "
                "strings; the tests pass.",
            ),
        ),
        Rule(
            match=CALC_WHATIF_PROMPT,
            name="calc: what if, a bare assertion",
            replies=("The last test run printed '2 3'; I see nothing to fix.",),
        ),
    ]


# ========================================================================== answering


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as the request log keeps it."""

    method: str
    path: str
    body: Any
    kind: str  # "pre-analysis", "chat", "models" or "invalid"
    prompt: str | None = None
    step: int | None = None
    rule: str | None = None  # name of the rule that answered; None for the echo default
    status: int = 200
    stream: bool = False


def _text_of(content: Any) -> str | None:
    """The text of a message's content (a string, or a list of OpenAI content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        return "".join(texts) if texts else None
    return None


def _conversation(messages: list[Any]) -> tuple[str, int, int]:
    """(latest real user prompt, assistant messages after it, real user messages so far)."""
    prompt, step, turns = "", 0, 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "user":
            text = _text_of(message.get("content"))
            if text is not None:
                prompt, step, turns = text, 0, turns + 1
        elif role == "assistant":
            step += 1
    return prompt, step, turns


def _is_pre_analysis(messages: list[Any]) -> bool:
    first = messages[0] if messages else None
    return (
        isinstance(first, dict)
        and first.get("role") == "system"
        and (_text_of(first.get("content")) or "").startswith(PRE_ANALYSIS_MARKER)
    )


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def pre_analysis(prompt: str, plan: Sequence[str] | None = None) -> dict[str, Any]:
    """The pre-analysis JSON a3s-code expects; planning mode when ``plan`` is given."""
    steps = [
        {
            "id": f"step-{i}",
            "description": description,
            "tool": "bash",
            "dependencies": [f"step-{i - 1}"] if i > 1 else [],
            "success_criteria": f"{description}: done",
        }
        for i, description in enumerate(plan or (), 1)
    ]
    return {
        "intent": "GeneralPurpose",
        "requires_planning": bool(plan),
        "goal": {"description": prompt, "success_criteria": ["the request is handled"]},
        "execution_plan": {
            "complexity": "Medium" if plan else "Simple",
            "steps": steps,
            "required_tools": [],
        },
        # a3s-code stores optimized_input as the user message: keep the prompt as it is
        "optimized_input": prompt,
    }


@dataclass(frozen=True)
class _Answer:
    reply: Reply
    prompt: str
    step: int
    rule: str | None
    kind: str
    seed: str  # for deterministic ids


def _answer(
    rules: Sequence[Rule], body: Mapping[str, Any], default_model: str | None = None
) -> _Answer:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    prompt, step, turns = _conversation(messages)
    model = body.get("model")
    model = model if isinstance(model, str) and model else default_model
    said = "\n".join(
        _text_of(m.get("content")) or ""
        for m in messages
        if isinstance(m, dict) and m.get("role") in ("user", "assistant", "tool")
    )
    rule = next((r for r in rules if r.matches(prompt, model, said)), None)
    seed = _digest(turns, prompt, step)
    if _is_pre_analysis(messages):
        text = json.dumps(pre_analysis(prompt, rule.plan if rule else None))
        return _Answer(Reply(text=text), prompt, step, rule and rule.name, "pre-analysis", seed)
    reply = rule.reply_for(step) if rule else Reply(text=f"Echo: {prompt}")
    return _Answer(reply, prompt, step, rule and rule.name, "chat", seed)


def _usage(reply: Reply, n_messages: int) -> dict[str, int]:
    usage = dict(reply.usage or {})
    usage.setdefault("prompt_tokens", 100 + 20 * n_messages)
    usage.setdefault(
        "completion_tokens", 1 + len(reply.text or "") // 4 + 20 * len(reply.tool_calls)
    )
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def _wire_tool_calls(answer: _Answer) -> list[dict[str, Any]]:
    return [
        {
            "id": tc.id or f"call_{_digest(answer.seed, i)[:24]}",
            "type": "function",
            "function": {"name": tc.name, "arguments": tc.arguments_json()},
        }
        for i, tc in enumerate(answer.reply.tool_calls)
    ]


def _text_pieces(text: str) -> list[str]:
    """Split text into word-sized deltas that join back to exactly ``text``."""
    return re.findall(r"\s*\S+\s*|\s+", text) or [text]


def _chunks(answer: _Answer, model: str, usage: dict[str, int] | None) -> Iterator[dict]:
    """The ``chat.completion.chunk`` objects of a streamed answer, as OpenAI sends them."""
    head = {
        "id": f"chatcmpl-{answer.seed[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    reply = answer.reply
    yield chunk({"role": "assistant", "content": ""})
    for piece in _text_pieces(reply.text) if reply.text else ():
        yield chunk({"content": piece})
    for index, call in enumerate(_wire_tool_calls(answer)):
        function = call["function"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": function["name"], "arguments": ""},
                    }
                ]
            }
        )
        args = function["arguments"]
        half = len(args) // 2  # two deltas, so the client has to concatenate
        for part in (args[:half], args[half:]):
            if part:
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
    if usage is not None:
        yield {**head, "choices": [], "usage": usage}


def _completion(answer: _Answer, model: str, usage: dict[str, int]) -> dict[str, Any]:
    reply = answer.reply
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = _wire_tool_calls(answer)
    return {
        "id": f"chatcmpl-{answer.seed[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": usage,
    }


# ============================================================================= server


class _Server(ThreadingHTTPServer):
    # Handler threads are joined on close (no leaks); every response closes its
    # connection, so a handler thread never lingers on an idle keep-alive socket.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = False
    request_queue_size = 64  # sub-agents and parallel tasks call the model concurrently

    def __init__(self, llm: ScriptedLLM):
        self.llm = llm
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle or stuck client cannot hold a handler thread (and stop()) forever

    def log_message(self, format: str, *args: Any) -> None:  # quiet, unlike the default
        pass

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _send_error_json(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send_json(status, {"error": {"message": message, "type": kind, "code": None}})

    def do_GET(self) -> None:
        llm = self.server.llm
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            llm._record(RecordedRequest("GET", self.path, None, "models"))
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "a3s_nb"} for m in llm.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            llm._record(RecordedRequest("GET", self.path, None, "invalid", status=404))
            self._send_error_json(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        llm = self.server.llm
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            llm._record(RecordedRequest("POST", self.path, None, "invalid", status=404))
            self._send_error_json(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            answer = _answer(llm.script, body, llm.models[0])
        except ValueError as e:
            llm._record(
                RecordedRequest(
                    "POST", self.path, raw.decode(errors="replace"), "invalid", status=400
                )
            )
            self._send_error_json(400, f"invalid request: {e}")
            return
        reply, stream = answer.reply, bool(body.get("stream"))
        llm._record(
            RecordedRequest(
                "POST",
                self.path,
                body,
                answer.kind,
                answer.prompt,
                answer.step,
                answer.rule,
                reply.status or 200,
                stream,
            )
        )
        if reply.delay and llm._stopping.wait(reply.delay):
            self._send_error_json(503, "the scripted server is stopping")
            return
        if reply.status is not None:
            self._send_error_json(reply.status, reply.error or f"scripted HTTP {reply.status}")
            return
        model = str(body.get("model") or llm.models[0])
        usage = _usage(reply, len(body["messages"]))
        if not stream:
            self._send_json(200, _completion(answer, model, usage))
            return
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # the body ends when the connection does
        self.end_headers()
        self.close_connection = True
        for chunk in _chunks(answer, model, usage if include_usage else None):
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class ScriptedLLM:
    """An OpenAI-compatible chat server on 127.0.0.1 answering from a script.

    ``script`` is a sequence of :class:`Rule` (or rule dicts, or lists of them; see the
    module docstring). ``models`` are the model ids it serves (the first is the default).

    Use it as a context manager, or call :meth:`start` and :meth:`stop` (a notebook keeps it
    running across cells)::

        with ScriptedLLM(chat("Hi", "Hello!")) as llm:
            agent = a3s_code.Agent.create(llm.acl_config())
            ...
    """

    def __init__(
        self,
        script: Iterable[Any] = (),
        *,
        models: Sequence[str] = (DEFAULT_MODEL,),
        api_key: str = DEFAULT_API_KEY,
    ):
        if isinstance(models, str) or not models:
            raise ValueError("models is a non-empty list of model ids")
        self.models: tuple[str, ...] = tuple(models)
        self.api_key = api_key
        self._script = _flatten(script)
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---- script ----------------------------------------------------------------------

    @property
    def script(self) -> tuple[Rule, ...]:
        """The rules, in matching order. Assign a new script at any time."""
        return self._script

    @script.setter
    def script(self, script: Iterable[Any]) -> None:
        self._script = _flatten(script)

    def add(self, *rules: Any) -> None:
        """Append rules (they match after the existing ones)."""
        self._script = self._script + _flatten(rules)

    # ---- life cycle --------------------------------------------------------------------

    def start(self) -> ScriptedLLM:
        """Start serving on an ephemeral port (no-op when running); returns ``self``."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping.clear()
            server = _Server(self)
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"ScriptedLLM:{server.server_address[1]}",
                daemon=True,  # a forgotten server must not keep the interpreter alive
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join every thread. Safe to call twice."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()  # joins the handler threads
        if thread is not None:
            thread.join()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<ScriptedLLM {where}, {len(self._script)} rules>"

    # ---- addresses and config ----------------------------------------------------------

    @property
    def port(self) -> int:
        server = self._server
        if server is None:
            raise RuntimeError("the ScriptedLLM is not running; call start() first")
        return server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: what a3s-code's ``base_url`` wants (no ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    def acl_config(self, default_model: str | None = None) -> str:
        """The a3s-code config text for an agent using this server (``Agent.create(text)``).

        ``default_model`` is one of ``models`` (default: the first).
        """
        default = default_model or self.models[0]
        if default not in self.models:
            raise ValueError(f"{default!r} is not one of the served models {list(self.models)}")
        blocks = "".join(
            f'  models "{_acl_str(m)}" {{\n'
            f'    name      = "{_acl_str(m)}"\n'
            f"    tool_call = true\n"
            f"  }}\n"
            for m in self.models
        )
        return (
            f'default_model = "openai/{_acl_str(default)}"\n'
            f'providers "openai" {{\n'
            f'  api_key  = "{_acl_str(self.api_key)}"\n'
            f'  base_url = "{self.base_url}"\n'
            f"{blocks}"
            f"}}\n"
        )

    def agent(self, default_model: str | None = None) -> Any:
        """An ``a3s_code.Agent`` configured for this server (needs a3s-code installed)."""
        return import_a3s_code().Agent.create(self.acl_config(default_model))

    # ---- request log -------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._log.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the log of requests received, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()


def _acl_str(value: str) -> str:
    """``value`` escaped for a double-quoted ACL/HCL string."""
    if any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r} cannot go into an a3s-code config string")
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "$${")
