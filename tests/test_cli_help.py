"""``a3s-nb --help`` and each command's help read as plain text: no reST markup."""

from __future__ import annotations

import re

import pytest

from a3s_nb import cli

MARKUP = re.compile(r"``|:[a-z]+:`")


def help_of(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["", "list", "show", "check", "export", "replay"])
def test_help_has_no_rest_markup(capsys, command):
    text = help_of(capsys, *command.split())
    assert not MARKUP.search(text), text
    assert text.startswith(f"usage: a3s-nb {command}".rstrip())


def test_the_words_inside_the_markup_stay(capsys):
    assert "\na3s-nb: the store from a terminal.\n" in help_of(capsys)
    assert cli._plain("see :func:`a3s_nb.lab.lineage.replay` and ``--check``") == (
        "see replay and --check"
    )
