"""Every bound aotcc puts on a number it is given, in one place: command-line options,
Python API arguments, environment variables and sizes read from files. A value outside
its bound is refused before any work (and before anything is allocated for it)."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from aotcc.errors import InputError

#: Largest prompt, artifact or other bulk input read into memory (1 GiB).
MAX_INPUT_BYTES = 1 << 30
#: Largest term spec, suite, export document or other small document (64 MiB).
MAX_DOCUMENT_BYTES = 64 << 20
#: Deepest nesting accepted in a TOML, JSON or msgpack document (the core's JSON reader stops at 128).
MAX_DEPTH = 64
#: GGML's own thread limit (GGML_MAX_N_THREADS): more aborts inside llama.cpp.
GGML_MAX_THREADS = 512
#: The largest llama.cpp context accepted anywhere (a model's training context bounds it further).
MAX_CTX = 1 << 24
#: The largest batch of tokens per llama_decode call.
MAX_BATCH = 1 << 14


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most threads a command may ask for: 4 per available core, at most GGML's 512."""
    return min(GGML_MAX_THREADS, 4 * available_cores())


def threads_hint() -> str:
    return f"1 to {max_threads()} threads (4 per available core, at most {GGML_MAX_THREADS})"


def check_threads(n: object, what: str) -> int | None:
    """`n` as a thread count (None stays None), or an `InputError` naming `what`."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_threads():
        raise InputError(f"{what} {n!r}: expected {threads_hint()}")
    return n


def check_int(n: object, what: str, lo: int, hi: int) -> int:
    """`n` as a whole number in [lo, hi], or an `InputError` naming `what`."""
    if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
        raise InputError(f"{what} {n!r}: expected a whole number from {lo:,} to {hi:,}")
    return n


def memory_bytes() -> int | None:
    """The memory this process may use at most: physical RAM, or the cgroup's limit when
    lower; None when neither can be read."""
    found: list[int] = []
    try:
        found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read(64).strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            found.append(int(text))
    return min(found) if found else None


# --- argparse types: the command line's numbers, each bounded (aotcc.cli.args names them per option)


def quote_value(text: str) -> str:
    """A value as a message quotes it: escaped, and cut after 40 characters."""
    from aotcc._io import escape  # (_io imports this module)

    t = escape(text)
    return repr(t if len(t) <= 40 else t[:40] + "…")


def parse_whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {quote_value(text)}") from None


def int_range(lo: int, hi: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number from `lo` to `hi`."""

    def parse(text: str) -> int:
        n = parse_whole(text)
        if not lo <= n <= hi:
            unit = f" {what}" if what else ""
            raise argparse.ArgumentTypeError(f"expected {lo:,} to {hi:,}{unit}, got {n:,}" if len(str(n)) < 40 else
                                             f"expected {lo:,} to {hi:,}{unit}, got a {len(str(n))}-digit number")
        return n

    parse.__name__ = "whole number"  # argparse names the type in its messages
    return parse


def float_range(lo: float, hi: float, *, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (or (lo, hi] with `lo_open`)."""

    def parse(text: str) -> float:
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {quote_value(text)}") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {quote_value(text)}")
        if x < lo or x > hi or (lo_open and x == lo):
            left = "(" if lo_open else "["
            raise argparse.ArgumentTypeError(f"expected a number in {left}{lo:g}, {hi:g}], got {quote_value(text)}")
        return x

    parse.__name__ = "number"
    return parse
