"""File input and output: reading prompts (`-` is stdin) and writing outputs atomically,
so a failed run never leaves a partial file behind."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from aotcc.errors import InputError


def read_input(name: str | os.PathLike[str]) -> bytes:
    """The bytes of a file, or of standard input for `-`."""
    if str(name) == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from None


def cache_dir() -> Path:
    """aotcc's cache directory: `$AOTCC_CACHE_DIR`, else `$XDG_CACHE_HOME/aotcc`, else
    `~/.cache/aotcc`. Model hashes, token counts and analysis results live under it."""
    explicit = os.environ.get("AOTCC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aotcc"


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuses an output path whose directory is missing, before any work is done."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{p}: directory {parent} does not exist")
    if p.is_dir():
        raise InputError(f"{p}: is a directory; give a file name")
    return p


def write_atomic(path: str | os.PathLike[str], fill: Callable[[BinaryIO], object]) -> Path:
    """Lets `fill(f)` write a temporary file beside `path`, fsyncs it, then renames it into
    place: a failed or interrupted write never leaves a partial file at `path`."""
    p = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the mode open() would
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return p


def atomic_write(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Writes `data` atomically (see `write_atomic`)."""
    return write_atomic(path, lambda f: f.write(data))


def parse_document(
    data: bytes,
    name: str,
    fmt: str | None = None,
    *,
    json_starts: str = "[{",
    error: type[Exception] = InputError,
) -> Any:
    """A TOML or JSON file's bytes as a document; errors (as `error`) name the file
    and the byte, line or column. Without `fmt`, text starting with one of
    `json_starts` is JSON (a suite passes "{" since its TOML may open with a table)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(f"{name}: invalid UTF-8 at byte {e.start} (line {line})") from None
    text = text.removeprefix("\ufeff")
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in tuple(json_starts) else "toml"
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise error(f"{name}: malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{name}: malformed TOML: {e}") from None
