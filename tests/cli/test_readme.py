"""The README's CLI synopsis lists exactly the options ``--help`` shows, command by command."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from fastpush.cli.main import _parser

README = Path(__file__).resolve().parents[2] / "README.md"
_OPTION = re.compile(r"(?<![\w-])((?:--?|\+)[a-z][a-z0-9=-]*)")


def _synopses() -> dict[str, str]:
    """Each command's synopsis in the README's first code block of "The CLI"."""
    text = README.read_text()
    section = text[text.index("## The CLI") :]
    block = section[section.index("```sh") + 5 : section.index("```", section.index("```sh") + 5)]
    found: dict[str, str] = {}
    for chunk in re.split(r"^python -m fastpush ", block, flags=re.MULTILINE)[1:]:
        command, _, rest = chunk.partition(" ")
        found[command] = rest
    return found


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_commands()))
def test_readme_lists_every_option_of(command: str) -> None:
    synopsis = _synopses()[command]
    in_readme = set(_OPTION.findall(synopsis))
    helped = [
        action.option_strings
        for action in _commands()[command]._actions
        if action.option_strings and "-h" not in action.option_strings
    ]
    missing = [strings for strings in helped if not in_readme & set(strings)]
    assert not missing, f"in --help but not in the README: {missing}"
    known = {string for strings in helped for string in strings}
    assert in_readme <= known, f"in the README but not in --help: {in_readme - known}"


def test_every_command_has_a_synopsis() -> None:
    assert set(_synopses()) == set(_commands())
