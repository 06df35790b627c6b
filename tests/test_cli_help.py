"""Every `msm-eval` command says what it is for, documents every option, and shows an example."""

from __future__ import annotations

import argparse

from msm_eval.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser, help line) for every subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield path + (name,), sub, helps.get(name)
                yield from _commands(sub, path + (name,))


def _is_group(parser: argparse.ArgumentParser) -> bool:
    return any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)


def test_top_level_help_describes_the_tool_for_users() -> None:
    text = build_parser().format_help()
    assert "adhere" in text and "spec" in text            # what the tool is for, not how the package is laid out
    assert "register(subparsers)" not in text and "Example" in text


def test_every_command_and_option_has_help_and_every_command_an_example() -> None:
    problems = []
    commands = list(_commands(build_parser()))
    assert len(commands) > 15
    for path, parser, line in commands:
        name = "msm-eval " + " ".join(path)
        if not line:
            problems.append(f"{name}: no one-line help")
        if not _is_group(parser) and "msm-eval " + path[0] not in (parser.epilog or ""):
            problems.append(f"{name}: no example in its help (epilog)")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help:
                problems.append(f"{name}: option {'/'.join(action.option_strings) or action.dest} has no help")
    assert not problems, "\n".join(problems)


def test_one_name_per_concept_across_commands() -> None:
    options = {opt for _, parser, _ in _commands(build_parser()) for a in parser._actions for opt in a.option_strings}
    assert "--threshold" not in options or "--dedup-threshold" not in options
    assert "--filter-model-role" not in options            # helper models are named with --model-role ROLE=MODEL
