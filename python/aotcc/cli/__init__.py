"""The `aotcc` command line: `main(argv) -> int`. Exit 0 ok, 1 a check failed,
2 an error (one line on stderr naming the file, term, field or offset). Data goes to
stdout, diagnostics and progress to stderr; `--json` where a machine reads it."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from aotcc import __version__
from aotcc._io import escape, guard_std_streams
from aotcc.errors import AotccError, CheckFailed, InternalError

# Each module adds its subcommands with `register(subparsers)`.
COMMAND_MODULES = ["aotcc.cli.compile_cmds", "aotcc.cli.bundle_cmds", "aotcc.cli.analyze_cmds", "aotcc.cli.eval_cmds",
                   "aotcc.cli.export_cmds", "aotcc.cli.build_cmds"]

log = logging.getLogger("aotcc")


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (`aotcc: error: compile: --budget: ...`, exit
    2), like every other error of the command line; `--help` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        name = self.prog.removeprefix("aotcc").strip()
        where = f"{name}: " if name else ""
        self.exit(2, escape(f"aotcc: error: {where}{message} (see `{self.prog} --help`)") + "\n")


class _OneLine(logging.Formatter):
    """Log lines with control characters escaped, like every other message."""

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="aotcc",
        description=(
            "Ahead-of-time context compiler: inject each glossary term's definition where it first "
            "appears, rewrite later mentions as abstract tags, and bake the result into a KV state."
        ),
        epilog="Exit codes: 0 ok, 1 a check failed, 2 an error. Run `aotcc COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"aotcc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    from aotcc.cli.args import guarded

    for p in sub.choices.values():  # every command: paths checked first, inputs never overwritten
        p.set_defaults(func=guarded(p.get_default("func")))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    guard_std_streams()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help is 0, a usage error is 2
        return int(e.code or 0)
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine("aotcc: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    try:
        return int(args.func(args) or 0)
    except CheckFailed as e:
        print(escape(f"aotcc: check failed: {e}"), file=sys.stderr)
        return 1
    except InternalError as e:  # a panic in the core, already one line
        print(f"aotcc: {_one_line(e)}", file=sys.stderr)
        return 2
    except AotccError as e:
        print(escape(f"aotcc: error: {e}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aotcc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except SystemExit:
        raise
    except BaseException as e:  # never a traceback for the user; AOTCC_DEBUG=1 shows it
        # BaseException too: pyo3's PanicException (another extension's panic) is one.
        if os.environ.get("AOTCC_DEBUG"):
            raise
        print(escape(f"aotcc: internal error: {type(e).__name__}: {_one_line(e)} (set AOTCC_DEBUG=1 for a traceback)"), file=sys.stderr)
        return 2


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at `limit` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run() -> None:
    sys.exit(main())
