"""`segue-bench engine` and `segue-bench turns` explain every option in `--help` (long runs: a user
must know what a knob does and how long a run takes before starting one)."""

import argparse

import pytest

from evaluation import bench_engine, bench_turns


@pytest.mark.parametrize("module,name", [(bench_engine, "engine"), (bench_turns, "turns")])
def test_every_option_has_a_help_text_and_the_command_a_description(module, name) -> None:
    default = {"engine": "(default: 30.0)", "turns": "(default: 3)"}[name]  # --seconds, --trials
    parser = argparse.ArgumentParser(prog="segue-bench")
    sub = parser.add_subparsers()
    module.add_parser(sub)
    command = sub.choices[name]
    assert command.description and "take" in command.description.lower()  # how long a run takes
    undocumented = [a.option_strings for a in command._actions if a.option_strings and not a.help]
    assert undocumented == []
    assert default in " ".join(command.format_help().split())  # defaults are shown
