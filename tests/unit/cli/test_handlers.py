"""Every command's handler, named as "module:function" so `dom0 --help` imports none of them, exists and has the
signature `dom0` calls it with: a misspelt name would otherwise surface only when a user runs that command."""

from __future__ import annotations

import argparse
import inspect
import typing
from collections.abc import Iterator

import pytest

from dom0.cli.main import _resolve, build_parser


def _commands(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(the command's words, its parser) for every command that runs something, subcommands included."""
    verbs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not verbs:
        yield " ".join(words), parser
        return
    for action in verbs:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*words, name))


COMMANDS = dict(_commands(build_parser()))


def test_every_command_is_found() -> None:
    # Guards the walk above: a handful of commands at each level, so a broken walk cannot pass vacuously.
    assert {"list", "top", "console", "save", "restore", "clone", "export", "import"} <= set(COMMANDS)
    assert {"host stop", "host start", "image inspect", "image kernel"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_handler_resolves_and_takes_the_parsed_arguments(command: str) -> None:
    spec = COMMANDS[command].get_default("handler")
    assert isinstance(spec, str), f"dom0 {command} names no handler"
    handler = _resolve(spec)
    assert callable(handler), f"dom0 {command}: {spec} is not a function"
    params = list(inspect.signature(handler).parameters.values())
    assert len(params) == 1, f"{spec} takes {params}"
    assert params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, f"{spec} takes {params}"
    hints = typing.get_type_hints(handler)
    assert hints == {params[0].name: argparse.Namespace, "return": int}, f"{spec}: {hints}"
