"""A check given to a replay is judged on its own: failing, it is a regression, and every
check's result is shown with its command, whether or not the source recorded that check.

Real a3s-code SDK, scripted server: the calculator story, whose quick model breaks the
tests at prompt 3 and whose careful model does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import a3s_nb
from a3s_nb import cli, testing
from a3s_nb.sdk import live

from .test_lineage_sdk import calc_agent, calc_llm  # noqa: F401 - fixtures

pytestmark = pytest.mark.sdk

COMMAND = testing.CALC_CHECK["command"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def unchecked(calc_agent, tmp_path, store) -> str:  # noqa: F811
    """The calculator story on the quick model, saved with no verification report."""
    ws = tmp_path / "calc"
    ws.mkdir()
    session = live.open_session(calc_agent, ws, store_dir=store, session_id="calc")
    for prompt in testing.CALC_PROMPTS:
        session.send(prompt)
    a3s_nb.save(session, store=store)
    session.close()
    assert a3s_nb.open_store(store).load("calc").verification == []
    return "calc"


@pytest.fixture
def config(calc_llm, tmp_path) -> Path:  # noqa: F811
    path = tmp_path / "agent.acl"
    path.write_text(calc_llm.acl_config("quick"))
    return path


def replay_cli(store: Path, config: Path, model: str, *checks: str) -> list[str]:
    args = ["replay", "calc", "--model", model, "--store", str(store), "--config", str(config)]
    return args + [f"--check={c}" for c in checks]


def test_a_failing_check_fails_the_cli_though_the_source_had_none(unchecked, store, config, capsys):
    code = cli.main(replay_cli(store, config, "openai/quick", f"tests={COMMAND}", "true=true"))
    out = capsys.readouterr().out
    assert code == 1, out
    assert "CHECKS:\n" in out
    assert f"  failed  tests: {COMMAND} (exit code 1)\n" in out
    assert "  passed  true: true\n" in out
    assert (
        f"required check 'tests' of 'checks': `{COMMAND}` failed in the replay "
        "(exit code 1; the source recorded no such check)"
    ) in out
    assert "'true'" not in out.split("REGRESSIONS:", 1)[1]  # a passing check is not one


def test_a_passing_check_is_printed_and_passes(unchecked, store, config, capsys):
    code = cli.main(replay_cli(store, config, "openai/careful", f"tests={COMMAND}"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"CHECKS:\n  passed  tests: {COMMAND}\n" in out
    assert "REGRESSIONS" not in out


def test_the_function_and_the_magic_see_the_same_regression(
    unchecked,
    store,
    calc_agent,  # noqa: F811
    ip,
    capsys,
):
    result = a3s_nb.replay(
        "calc", calc_agent, model="openai/quick", store=store, verify=[testing.CALC_CHECK]
    )
    assert not result.ok
    assert [r.split(":")[0] for r in result.regressions] == ["required check 'tests' of 'checks'"]
    assert [(c["id"], c["command"], c["status"], c["exit_code"]) for c in result.checks] == [
        ("tests", COMMAND, "failed", 1)
    ]
    result.session.close()
    # a check that is not required is shown, and is no regression
    optional = a3s_nb.replay(
        "calc",
        calc_agent,
        model="openai/quick",
        store=store,
        verify=[{**testing.CALC_CHECK, "required": False}],
    )
    assert optional.ok and f"failed  tests: {COMMAND} (exit code 1; not required)" in str(optional)
    optional.session.close()

    ip.push({"agent": calc_agent})
    capsys.readouterr()
    ip.run_line_magic(
        "a3s_replay",
        f"calc --agent agent --model openai/quick --store {store} --check 'tests={COMMAND}'",
    )
    out = capsys.readouterr().out
    assert f"  failed  tests: {COMMAND} (exit code 1)\n" in out
    assert "REGRESSIONS:\n  required check 'tests' of 'checks': " in out
    assert not ip.user_ns["replay"].ok
    ip.user_ns["replay"].session.close()
