"""Every ```python example in README.md and docs/*.md runs as written.

Each page's examples run in order, in one fresh namespace of a real IPython shell (so
``%a3s_...`` lines are real magics), in a scratch folder holding a copy of the store written
by a3s-code 3.1.0 as ``./a3s_sessions``, the default store. Examples that need an agent
start the scripted model of ``a3s_nb.testing`` themselves, as a reader would.

A block whose fence reads ```` ```python notest: REASON ```` is not run (it needs something
a test machine does not have, such as an S3 bucket or a live OTLP endpoint); it is still
compiled, and reported as skipped with its reason.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from IPython.utils.capture import capture_output

from a3s_nb import testing

from .conftest import FIXTURE_STORE, require_sdk

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(
    r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOTEST = re.compile(r"\bnotest\b:?\s*(?P<reason>.*)")


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    code: str
    skip_reason: str | None  # set for ```python notest: REASON

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def examples(text: str, page: str) -> list[Example]:
    """The ```python blocks of a Markdown text, in order."""
    found = []
    for m in FENCE.finditer(text):
        info = m["info"].strip()
        if info.split(" ", 1)[0] != "python":
            continue
        notest = NOTEST.search(info)
        reason = None
        if notest:
            reason = notest["reason"].strip()
            if not reason:
                raise ValueError(f"{page}: a notest block must say why: ```python notest: WHY")
        line = text.count("\n", 0, m.start()) + 1
        found.append(Example(page, line, m["body"], reason))
    return found


def page_examples(path: Path) -> list[Example]:
    return examples(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


class ExampleFailed(AssertionError):
    pass


def run_examples(shell, blocks: list[Example]) -> list[Example]:
    """Run the runnable blocks in order in ``shell``; return the skipped ones.

    Raises :class:`ExampleFailed` naming the page and line of the first block that raises.
    """
    skipped = []
    for block in blocks:
        if block.skip_reason is not None:
            skipped.append(block)
            continue
        with capture_output(display=True) as out:
            result = shell.run_cell(block.code, store_history=False)
        if not result.success:
            error = result.error_before_exec or result.error_in_exec
            raise ExampleFailed(
                f"the example at {block} fails: {type(error).__name__}: {error}\n"
                f"--- the example:\n{block.code}--- its output:\n"
                + ANSI.sub("", out.stdout + out.stderr)
            )
    return skipped


def _clean(shell) -> None:
    """Stop what the examples started and leave the shell as the next test expects it."""
    for value in list(shell.user_ns.values()):
        if isinstance(value, testing.ScriptedLLM):
            value.stop()
    if "a3s_nb" in shell.extension_manager.loaded:
        shell.run_line_magic("unload_ext", "a3s_nb")
    shell.config.pop("A3sNb", None)
    shell.reset(new_session=False)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The working folder of the examples (conftest makes tmp_path the cwd): the fixture store
    copied to ./a3s_sessions."""
    shutil.copytree(FIXTURE_STORE, tmp_path / "a3s_sessions")
    return tmp_path


def _running_servers() -> list:
    import gc

    from a3s_nb.testing import ScriptedLLM

    return [o for o in gc.get_objects() if isinstance(o, ScriptedLLM) and o.running]


@pytest.fixture
def fresh(shell):
    shell.reset(new_session=False)
    before = {id(o) for o in _running_servers()}
    yield shell
    _clean(shell)
    for server in _running_servers():  # a page's model left running (its variable reused)
        if id(server) not in before:
            server.stop()


RUNNABLE = [p for p in PAGES if any(e.skip_reason is None for e in page_examples(p))]
NOT_RUN = [e for p in PAGES for e in page_examples(p) if e.skip_reason is not None]


def test_the_readme_and_the_docs_have_examples():
    """The pages this test reads are where it thinks they are."""
    names = {p.relative_to(ROOT).as_posix() for p in RUNNABLE}
    assert {"README.md", "docs/analysis.md", "docs/lineage.md", "docs/exports.md"} <= names


@pytest.mark.sdk
@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_examples_run_as_written(page: Path, scratch: Path, fresh) -> None:
    require_sdk()
    run_examples(fresh, page_examples(page))


@pytest.mark.parametrize("block", NOT_RUN, ids=str)
def test_examples_not_run_still_compile(block: Example) -> None:
    """A notest block is at least valid Python (magics included); why it is not run is its
    reason, which the marker must give (see ``examples``)."""
    assert block.skip_reason
    compile(TransformerManager().transform_cell(block.code), str(block), "exec")


# ---- the runner itself ---------------------------------------------------------------------

PAGE = """\
# A page

```python
x = 2
```

Some text, and a shell block that is not Python:

```sh
exit 1
```

```python notest: needs an S3 bucket
raise SystemExit("never run")
```

```python
assert x == 2, "the blocks of a page share one namespace"
y = x + undefined_name
```
"""


def test_examples_are_read_with_their_lines_and_reasons():
    found = examples(PAGE, "page.md")
    assert [(e.line, e.skip_reason) for e in found] == [
        (3, None),
        (13, "needs an S3 bucket"),
        (17, None),
    ]
    with pytest.raises(ValueError, match="must say why"):
        examples("```python notest\nx = 1\n```\n", "page.md")


def test_a_broken_example_fails_naming_its_line(fresh):
    with pytest.raises(ExampleFailed, match=r"page\.md:17 fails: NameError.*undefined_name"):
        run_examples(fresh, examples(PAGE, "page.md"))


def test_a_broken_magic_line_fails(fresh):
    broken = examples("```python\n%load_ext a3s_nb\n%a3s_resume no-such-id\n```\n", "p.md")
    with pytest.raises(ExampleFailed, match=r"p\.md:1 fails: UsageError"):
        run_examples(fresh, broken)
