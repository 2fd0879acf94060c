"""What every command's arguments must satisfy before any work starts: the argparse types
for numbers (whole numbers within bounds, finite floats), and the path rules (an output
is never one of the command's inputs, never another output, stdin is read once).

Each numeric option of every command takes one of these types, so a bad number is a
usage error (`aotcc: error: prefill: argument --threads: ...`, exit 2) before any file
is read or any model is loaded.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from aotcc._io import show
from aotcc.errors import InputError
from aotcc.limits import MAX_BATCH, MAX_CTX, float_range, int_range, max_threads, parse_whole, threads_hint

#: Destinations of options that name outputs; every other string argument may be an input.
OUTPUT_DESTS = ("output", "plot", "write_suite", "slot_file")


def threads(text: str) -> int:
    """An argparse type: CPU threads, 1 to `max_threads()`."""
    n = parse_whole(text)
    if not 1 <= n <= max_threads():
        raise argparse.ArgumentTypeError(f"expected {threads_hint()}, got " + (f"{n:,}" if len(str(n)) < 40 else "more"))
    return n


# shared options, one definition each
count = int_range(0, 10**12)
positive = int_range(1, 10**12)
ctx_size = int_range(16, MAX_CTX, "tokens")
batch = int_range(1, MAX_BATCH, "tokens")
max_tokens = int_range(1, 1 << 20, "tokens")
seed = int_range(0, 2**32 - 1)
zstd_level = int_range(1, 22)
top_k = int_range(1, 1000)
repeat = int_range(1, 1_000_000)
price = float_range(0.0, 1e9)
temperature = float_range(0.0, 100.0)
threshold = float_range(-1e6, 1e6)


# --- paths ---------------------------------------------------------------------------


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, str):
                yield v


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _stdin_identity() -> tuple[int, int] | None:
    try:
        st = os.fstat(sys.stdin.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_dev, st.st_ino


def _flag(dest: str) -> str:
    return {"prompts": "PROMPT", "artifact": "the input", "input": "INPUT", "bundle": "the bundle", "suite": "SUITE",
            "output": "-o"}.get(dest, "--" + dest.replace("_", "-"))


def check_paths(args: argparse.Namespace) -> None:
    """Refuses, before any work, an output that is also an input of the command (compared by
    device and inode, so links and other spellings count), two outputs that are the same
    file, and `-` (stdin) given for more than one input."""
    outputs: list[tuple[str, str]] = []
    inputs: list[tuple[str, str]] = []
    for dest, value in vars(args).items():
        if dest.startswith("_") or dest in ("command", "func"):
            continue
        for s in _strings(value):
            (outputs if dest in OUTPUT_DESTS else inputs).append((dest, s))
    stdin_users = [dest for dest, s in inputs if s == "-"]
    if len(stdin_users) > 1:
        raise InputError(f"stdin (-) can be read only once; it is given for {' and '.join(_flag(d) for d in stdin_users)}")
    seen: dict[tuple[int, int], str] = {}
    for dest, s in outputs:
        if s == "-":
            continue
        ident = _identity(s)
        if ident is None:
            continue
        if ident in seen:
            raise InputError(f"{show(s)}: given as both {_flag(seen[ident])} and {_flag(dest)}; give two different files")
        seen[ident] = dest
        for in_dest, t in inputs:
            if t == "-":
                if _stdin_identity() == ident:
                    raise InputError(f"{show(s)}: is also the input read from stdin; refusing to write over it")
                continue
            if _identity(t) == ident:
                raise InputError(f"{show(s)}: is also an input of this command ({_flag(in_dest)} {show(t)}); "
                                 "refusing to write over it")


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command handler that first checks its paths (`check_paths`), then runs with its
    inputs protected: whatever it reads is never written over (`aotcc._io.protect_inputs`)."""
    from aotcc._io import protect_inputs

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        check_paths(args)
        with protect_inputs():
            return func(args)

    return run
