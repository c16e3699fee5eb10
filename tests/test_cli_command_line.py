"""The command line of ``scaleset-listen``: the usual one is read without argparse (issue 28), and
reads exactly as argparse reads it; anything unusual is argparse's to read, with its messages."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_client import _cli_options
from scaleset_client._cli_options import OPTIONS, UsageError, build_parser, parse_args

_VALUED = [opt.flag for opt in OPTIONS if not opt.switch]
_SWITCHES = [opt.flag for opt in OPTIONS if opt.switch]
# words argparse reads its own way: help, version, abbreviations, an end of options, a negative number
_ODD = ["-h", "--help", "--version", "--", "--ur", "--scale-set", "--once=1", "-5", "plain", "--nope", "-x"]
_VALUES = st.one_of(st.sampled_from(["", "https://github.com/o", "a=b", " -x", "-1", "-x", "--once", "10", "é"]),
                    st.text(max_size=8))


def _by_argparse(argv: list[str]) -> dict[str, Any] | None:
    """What argparse reads, or None when it refuses the line (or prints help or the version)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return vars(build_parser().parse_args(argv))
        except SystemExit:
            return None


@st.composite
def _command_lines(draw: st.DrawFn) -> list[str]:
    words: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["spaced", "joined", "switch", "odd", "value"]))
        if kind == "spaced":
            words += [draw(st.sampled_from(_VALUED)), draw(_VALUES)]
        elif kind == "joined":
            words.append(f"{draw(st.sampled_from(_VALUED))}={draw(_VALUES)}")
        elif kind == "switch":
            words.append(draw(st.sampled_from(_SWITCHES)))
        elif kind == "odd":
            words.append(draw(st.sampled_from(_ODD)))
        else:  # a value where a flag belongs, or a flag left without its value at the end
            words.append(draw(_VALUES))
    return words


@settings(max_examples=400, deadline=None)
@given(argv=_command_lines())
def test_a_command_line_read_without_argparse_reads_as_argparse_reads_it(argv: list[str]) -> None:
    usual = _cli_options._read_usual(argv)
    if usual is not None:
        assert _by_argparse(argv) == vars(usual), argv


@pytest.mark.parametrize("argv", [
    ["--url", "https://github.com/o", "--scale-set-id", "7", "--once", "--log-level", "WARNING"],
    ["--url=https://github.com/o", "--max-runners=3", "--recreate-deleted", "--labels", ""],
    ["--url", "u", "--url", "v"],  # the last one wins, as with argparse
])
def test_the_usual_command_lines_are_read_without_argparse(argv: list[str]) -> None:
    usual = _cli_options._read_usual(argv)
    assert usual is not None
    assert vars(usual) == _by_argparse(argv)


@pytest.mark.parametrize("argv", [["--help"], ["--ur", "u"], ["--once=yes"], ["--url"], ["--duration", "-1"], ["x"]])
def test_an_unusual_command_line_is_left_to_argparse(argv: list[str]) -> None:
    assert _cli_options._read_usual(argv) is None


def test_an_abbreviated_flag_still_works_through_argparse() -> None:
    args = parse_args(["--ur", "https://github.com/o", "--max-run", "4"], environ={})
    assert (args.url, args.max_runners) == ("https://github.com/o", 4)
    assert args.sources == {"url": "--url", "max_runners": "--max-runners"}


def test_values_from_either_reader_are_converted_and_checked_alike() -> None:
    for argv in (["--max-runners", "x"], ["--max-runners=x"], ["--max-run", "x"]):
        with pytest.raises(UsageError, match="--max-runners='x': must be a whole number, 0 or more"):
            parse_args(argv, environ={})
    usual = parse_args(["--url", "u", "--duration", "2.5", "--once"], environ={"SCALESET_MAX_RUNNERS": "5"})
    odd = parse_args(["--ur", "u", "--dur", "2.5", "--onc"], environ={"SCALESET_MAX_RUNNERS": "5"})
    assert vars(usual) == vars(odd)
    assert (usual.duration, usual.once, usual.max_runners, usual.sources["max_runners"]) == (
        2.5, True, 5, "SCALESET_MAX_RUNNERS")


def test_a_negative_number_as_a_value_reads_as_argparse_reads_it() -> None:
    """``--duration -1``: argparse takes ``-1`` as the value (no option looks like a number); the
    conversion then refuses it, whichever reader read it."""
    with pytest.raises(UsageError, match="--duration='-1'"):
        parse_args(["--url", "u", "--duration", "-1"], environ={})


def test_the_parsed_command_line_never_shows_the_token() -> None:
    args = parse_args(["--url", "https://github.com/o", "--token", "ghp_" + "s" * 36], environ={})
    assert args.token == "ghp_" + "s" * 36
    assert "ghp_" not in repr(args) and "token=***" in repr(args) and "url='https://github.com/o'" in repr(args)
