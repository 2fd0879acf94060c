"""File input and output, in one place: reading inputs (`-` is stdin) with a size bound,
parsing small TOML/JSON documents into plain JSON-shaped data, and writing outputs so
that a failed or interrupted run never leaves a partial file and never replaces an
input or a device.

How an output path is written (`write_atomic`):

- a regular file, or a name that does not exist yet: a temporary file beside it
  (`.NAME.aotcc-PID-RANDOM.tmp`), fsynced, then renamed over the name. A symlink is
  followed: the file it points to is replaced, the link stays.
- a character device or a FIFO (`/dev/null`, a named pipe), or a path that resolves
  through /proc (`/dev/stdout`, `/proc/self/fd/1`): written through, in place (no
  temporary file, no rename), so a device is never replaced by a regular file.
- a block device, a socket or a directory: refused.

SIGTERM, SIGHUP and SIGINT during a write remove the temporary file before the process
ends. kill -9 cannot be caught: it leaves the temporary file, and the next write into
that directory removes it once its process is gone and it is older than ten minutes.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import math
import os
import re
import secrets
import signal
import stat
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from aotcc.errors import InputError, OutputError
from aotcc.limits import MAX_DEPTH, MAX_INPUT_BYTES

#: A temporary file of ours whose process is gone is removed once it is this old (seconds).
STALE_TEMP_AGE = 600

_TEMP = re.compile(r"^\..*\.aotcc-(\d+)-[0-9a-f]{8}\.tmp$", re.DOTALL)


# --- showing names in messages -------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def _escape_char(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:  # a byte that is not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c <= 0xFF else f"\\u{c:04x}"


def escape(text: str) -> str:
    """`text` safe to print on one line: control characters (newlines and terminal
    escapes included) and undecodable bytes become `\\xNN`. Idempotent."""
    return _CONTROL.sub(_escape_char, text)


def show(path: str | os.PathLike[str] | bytes) -> str:
    """A file name as messages print it (see `escape`)."""
    return escape(os.fsdecode(path))


# --- standard streams ----------------------------------------------------------------


class _ClosedStdout:
    """Stands in for a closed standard output: any write is a one-line error."""

    def _fail(self, *_: object) -> Any:
        raise OutputError("cannot write to standard output: it is closed (give -o FILE, or leave stdout open)")

    write = writelines = _fail

    def flush(self) -> None:
        pass

    @property
    def buffer(self) -> _ClosedStdout:
        return self

    def fileno(self) -> int:
        self._fail()
        return -1

    def isatty(self) -> bool:
        return False


def guard_std_streams() -> None:
    """Standard streams the command line can rely on: a closed fd 0, 1 or 2 gets
    /dev/null (so no file we open takes its number and receives stray output), and a
    closed stdout becomes an object whose writes fail with a one-line error."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:
                pass
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()
    if sys.stderr is None:  # print(file=None) would go to stdout: send diagnostics nowhere instead
        sys.stderr = open(os.devnull, "w")


# --- inputs --------------------------------------------------------------------------

_protect: list[set[tuple[int, int]]] = []  # inputs read while the command line runs a command
_stdin_reader: list[tuple[object, str]] = []


@contextlib.contextmanager
def protect_inputs() -> Iterator[None]:
    """While active, every file read through `read_input` (or noted with `note_input`)
    is an input, and `write_atomic` refuses to write over it."""
    _protect.append(set())
    try:
        yield
    finally:
        _protect.pop()


def note_input(path: str | os.PathLike[str] | int) -> None:
    """Record `path` (or an open fd) as an input of the running command."""
    if not _protect:
        return
    try:
        st = os.fstat(path) if isinstance(path, int) else os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode):
        _protect[-1].add((st.st_dev, st.st_ino))


def _read_bounded(f: BinaryIO, limit: int, name: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        piece = f.read(min(1 << 20, limit + 1 - total))
        if not piece:
            return b"".join(chunks)
        chunks.append(piece)
        total += len(piece)
        if total > limit:
            raise InputError(f"{show(name)}: larger than {_size(limit)}; this input is refused beyond that")


def _size(n: int) -> str:
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k and n % (1 << k) == 0:
            return f"{n >> k} {unit}"
    return f"{n:,} bytes"


def read_input(name: str | os.PathLike[str], *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file, or of standard input for `-`, refused beyond `limit` bytes
    (a file's size is checked before reading; a pipe or device is read up to the
    limit). Standard input can be read once."""
    if str(name) == "-":
        return _read_stdin(limit)
    path = Path(name)
    shown = show(path)
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISBLK(st.st_mode):
                raise InputError(f"{shown}: is a block device, not a file")
            first = b""
            if stat.S_ISREG(st.st_mode):
                if st.st_size > limit:
                    raise InputError(f"{shown}: {st.st_size:,} bytes, larger than the {_size(limit)} this input may have")
                note_input(f.fileno())
                first = f.read(st.st_size)  # one allocation of the size the file has
            more = _read_bounded(f, limit - len(first), str(path))  # a pipe, a device, a file that grew
            return first + more if more else first
    except FileNotFoundError:
        raise InputError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{shown}: is a directory, not a file") from None
    except MemoryError:
        raise InputError(f"{shown}: not enough memory to read it") from None
    except OSError as e:
        raise InputError(f"{shown}: cannot read: {_reason(e)}") from None


def _read_stdin(limit: int) -> bytes:
    stdin = sys.stdin
    if stdin is None:
        raise InputError("-: standard input is closed")
    if any(obj is stdin for obj, _ in _stdin_reader):
        raise InputError("-: standard input was already read; give - for one input only")
    _stdin_reader.append((stdin, "-"))
    del _stdin_reader[:-4]  # keep a few (tests swap sys.stdin), never a growing list
    with contextlib.suppress(OSError, ValueError, AttributeError):  # a test's in-memory stdin has no fd
        note_input(stdin.fileno())
    try:
        return _read_bounded(stdin.buffer, limit, "-")
    except OSError as e:
        raise InputError(f"-: cannot read standard input: {_reason(e)}") from None


def cache_dir() -> Path:
    """aotcc's cache directory: `$AOTCC_CACHE_DIR`, else `$XDG_CACHE_HOME/aotcc`, else
    `~/.cache/aotcc`. Model hashes, token counts and analysis results live under it."""
    explicit = os.environ.get("AOTCC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "aotcc"


# --- outputs -------------------------------------------------------------------------


def _reason(e: OSError) -> str:
    known = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENAMETOOLONG: "file name too long",
        errno.EIO: "input/output error",
        errno.EFBIG: "file too large",
        errno.EXDEV: "cross-device rename",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "a part of the path is not a directory",
    }
    return known.get(e.errno or 0) or (e.strerror or str(e)).lower()


def _name_max(directory: str) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _through_proc(p: Path) -> bool:
    """Does `p` resolve through /proc (`/dev/stdout`, `/proc/self/fd/1`)? Such a link names an
    open file, not a place: it is written in place."""
    try:
        real = os.path.realpath(p)
    except (OSError, ValueError):
        return False
    return real == "/proc" or real.startswith("/proc/")


def _kind(p: Path) -> tuple[str, os.stat_result | None]:
    """How `p` is written: "atomic" (temporary file and rename) or "through" (in place)."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "atomic", None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise OutputError(f"{show(p)}: file name too long") from None
        if e.errno == errno.ENOTDIR:
            raise OutputError(f"{show(p)}: a part of the path is not a directory") from None
        raise OutputError(f"{show(p)}: cannot write: {_reason(e)}") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise OutputError(f"{show(p)}: is a directory; give a file name")
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return "through", st
    if stat.S_ISREG(mode):
        return ("through" if _through_proc(p) else "atomic"), st
    what = "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
    raise OutputError(f"{show(p)}: is {what}; refusing to write to it")


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Refuses, before any work is done, an output path that cannot be written: a missing
    directory, a directory, a block device or socket, a name too long, a read-only or
    unwritable directory."""
    p = Path(path)
    kind, _ = _kind(p)
    if kind == "through":
        return p
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{show(p)}: directory {show(parent)} does not exist")
    if len(os.fsencode(target.name)) > _name_max(str(parent)):
        raise OutputError(f"{show(p)}: file name too long ({len(os.fsencode(target.name))} bytes)")
    if not os.access(parent, os.W_OK):
        try:
            ro = bool(os.statvfs(parent).f_flag & os.ST_RDONLY)
        except OSError:
            ro = False
        why = "read-only file system" if ro else "permission denied"
        raise OutputError(f"{show(p)}: cannot write to directory {show(parent)}: {why}")
    return p


def _same_file(st: os.stat_result, key: tuple[int, int]) -> bool:
    return (st.st_dev, st.st_ino) == key


def _refuse_input(p: Path, st: os.stat_result | None) -> None:
    if st is not None and _protect and any(_same_file(st, k) for k in _protect[-1]):
        raise OutputError(f"{show(p)}: is also an input of this command; refusing to write over it")


class _Writer:
    """The file object `fill` writes to: a failed write names the output, not the temp file."""

    def __init__(self, f: BinaryIO, name: Path) -> None:
        self._f = f
        self._name = name

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            raise OutputError(f"{show(self._name)}: write failed: {_reason(e)}") from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise OutputError(f"{show(self._name)}: write failed: {_reason(e)}") from None

    def fileno(self) -> int:
        return self._f.fileno()

    def tell(self) -> int:
        return self._f.tell()


# Temporary files alive in this process, removed by the signal handler before the process
# dies of SIGTERM/SIGHUP/SIGINT. Handlers are installed (main thread only) while one exists.
_live: set[str] = set()
_previous: dict[int, Any] = {}
_lock = threading.Lock()
_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGTERM", "SIGHUP", "SIGINT")) if s is not None)


def _on_signal(signum: int, frame: Any) -> None:
    prev = _previous.get(signum, signal.SIG_DFL)
    if callable(prev):  # e.g. Python's SIGINT handler: it raises, and write_atomic cleans up
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    for tmp in list(_live):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _track(tmp: str) -> None:
    with _lock:
        _live.add(tmp)
        if threading.current_thread() is threading.main_thread() and not _previous:
            for s in _SIGNALS:
                try:
                    _previous[s] = signal.getsignal(s)
                    signal.signal(s, _on_signal)
                except (ValueError, OSError):
                    _previous.pop(s, None)


def _untrack(tmp: str) -> None:
    with _lock:
        _live.discard(tmp)
        if not _live and _previous and threading.current_thread() is threading.main_thread():
            for s, prev in _previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(s, prev if prev is not None else signal.SIG_DFL)
            _previous.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def sweep_stale_temps(directory: str | os.PathLike[str]) -> list[str]:
    """Removes temporary files of ours in `directory` left by a process that died without
    cleaning up (kill -9, power loss): our name pattern, our user, owning process gone,
    untouched for `STALE_TEMP_AGE` seconds. Returns the names removed."""
    removed: list[str] = []
    now = time.time()
    me = os.getpid()
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        entries = os.scandir(directory)
    except OSError:
        return removed
    with entries:
        for entry in entries:
            m = _TEMP.match(entry.name)
            if not m:
                continue
            try:
                pid = int(m.group(1))
                st = entry.stat(follow_symlinks=False)
            except (OSError, ValueError):
                continue
            if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid):
                continue
            if pid == me or now - st.st_mtime < STALE_TEMP_AGE or _alive(pid):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(entry.name)
    return removed


def _temp_name(target: Path, directory: str) -> str:
    """`.NAME.aotcc-PID-RANDOM.tmp`, with NAME cut so the whole stays within the file
    system's name limit (a cut inside a UTF-8 sequence round-trips through surrogateescape)."""
    tail = f".aotcc-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    room = _name_max(directory) - len(tail) - 1
    return "." + os.fsdecode(os.fsencode(target.name)[: max(room, 1)]) + tail


def write_atomic(path: str | os.PathLike[str], fill: Callable[[BinaryIO], object]) -> Path:
    """Lets `fill(f)` write the output at `path` (see the module docstring for how each kind
    of path is written): a regular file goes to a temporary file beside it, fsynced, then
    renamed into place, so a failed or interrupted write never leaves a partial file.
    Errors are `OutputError`s naming `path`."""
    p = check_output_path(path)
    kind, st = _kind(p)
    _refuse_input(p, st)
    if kind == "through":
        return _write_through(p, st, fill)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p
    directory = str(target.parent) if str(target.parent) else "."
    sweep_stale_temps(directory)
    tmp = os.path.join(directory, _temp_name(target, directory))
    mode = stat.S_IMODE(st.st_mode) & 0o777 if st is not None else 0o666
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as e:
        raise OutputError(f"{show(p)}: cannot create a file in {show(directory)}: {_reason(e)}") from None
    _track(tmp)
    try:
        if st is not None:  # keep an existing file's permissions (the umask applied to open)
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            w = _Writer(f, p)
            fill(w)  # type: ignore[arg-type]
            w.flush()
            try:
                os.fsync(f.fileno())
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system without fsync: nothing to wait for
                    raise OutputError(f"{show(p)}: write failed: {_reason(e)}") from None
        # re-checked here: an input may have been read (and noted) after the first check
        _refuse_input(p, _stat_or_none(target))
        try:
            os.replace(tmp, target)
        except OSError as e:
            raise OutputError(f"{show(p)}: cannot rename the new file into place: {_reason(e)}") from None
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError, OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):  # e.g. closing the file flushed into a full disk
            raise OutputError(f"{show(p)}: write failed: {_reason(e)}") from None
        raise
    finally:
        _untrack(tmp)
    return p


def _stat_or_none(p: Path) -> os.stat_result | None:
    try:
        return os.stat(p)
    except OSError:
        return None


def _write_through(p: Path, st: os.stat_result | None, fill: Callable[[BinaryIO], object]) -> Path:
    """A device, FIFO or /proc link, written in place. Our own stdout is written through its fd
    (so `>>` and pipes behave); anything else is opened for writing (a /proc link to a
    regular file is truncated, as `>` would)."""
    out = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        own = os.fstat(1)
        if st is not None and (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino) and sys.stdout is not None:
            sys.stdout.flush()
            out = sys.stdout.buffer
    try:
        if out is not None:
            w = _Writer(out, p)
            fill(w)  # type: ignore[arg-type]
            w.flush()
            return p
        flags = os.O_WRONLY | os.O_CLOEXEC
        if st is not None and stat.S_ISREG(st.st_mode):
            flags |= os.O_TRUNC
        fd = os.open(p, flags)
        with os.fdopen(fd, "wb") as f:
            w = _Writer(f, p)
            fill(w)  # type: ignore[arg-type]
            w.flush()
    except BrokenPipeError:
        raise OutputError(f"{show(p)}: the reader closed the pipe before everything was written") from None
    except OSError as e:
        raise OutputError(f"{show(p)}: write failed: {_reason(e)}") from None
    return p


def atomic_write(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Writes `data` atomically (see `write_atomic`)."""
    return write_atomic(path, lambda f: f.write(data))


# --- documents -----------------------------------------------------------------------


def decode_utf8(data: bytes, name: str, error: type[Exception] = InputError) -> str:
    """`data` as text, or an error naming the file, the byte and the line of the first
    invalid UTF-8 sequence."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise error(f"{show(name)}: invalid UTF-8 at byte {e.start} (line {line})") from None


def parse_document(
    data: bytes,
    name: str,
    fmt: str | None = None,
    *,
    json_starts: str = "[{",
    error: type[Exception] = InputError,
) -> Any:
    """A TOML or JSON file's bytes as a JSON-shaped document (dicts with string keys,
    lists, strings, finite numbers, booleans, null); errors (as `error`) name the file
    and the byte, line, column or field. Refused: nesting deeper than `MAX_DEPTH`, NaN
    and infinities, TOML dates and times. Without `fmt`, text starting with one of
    `json_starts` is JSON (a suite passes "{" since its TOML may open with a table)."""
    shown = show(name)
    text = decode_utf8(data, name, error).removeprefix("\ufeff")
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in tuple(json_starts) else "toml"
    try:
        if fmt == "json":
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as e:
                raise error(f"{shown}: malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
        else:
            try:
                doc = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise error(f"{shown}: malformed TOML: {escape(str(e))}") from None
    except RecursionError:
        raise error(f"{shown}: nested more than {MAX_DEPTH} levels deep") from None
    check_plain(doc, shown, "TOML" if fmt == "toml" else "JSON", error=error)
    return doc


def json_path(parts: list[str | int]) -> str:
    """`terms[3].name` from ["terms", 3, "name"]; odd keys are quoted."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", part) and "." not in part:
            out += f".{part}" if out else part
        else:
            out += f"[{escape(json.dumps(part, ensure_ascii=False))}]"
    return out or "(top level)"


def check_plain(doc: Any, shown: str, fmt: str = "JSON", *, error: type[Exception] = InputError,
                allow_bytes: bool = False) -> None:
    """Refuses anything in `doc` that is not plain JSON data (or bytes, with `allow_bytes`):
    nesting deeper than `MAX_DEPTH`, NaN and infinities, dates and times, other types.
    Iterative, so a deep document cannot exhaust the stack."""
    leaf: tuple[type, ...] = (str, bool, int, bytes) if allow_bytes else (str, bool, int)
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        node, where = stack.pop()
        if len(where) > MAX_DEPTH:
            raise error(f"{shown}: nested more than {MAX_DEPTH} levels deep (at {json_path(where[:8])}…)")
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise error(f"{shown}: {json_path(where)}: a key is not a string ({type(k).__name__})")
                if not isinstance(v, leaf):
                    stack.append((v, [*where, k]))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if not isinstance(v, leaf):
                    stack.append((v, [*where, i]))
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise error(f"{shown}: {json_path(where)}: {node} is not allowed (only finite numbers)")
        elif isinstance(node, (datetime.date, datetime.time)):
            raise error(f"{shown}: {json_path(where)}: a {fmt} date or time ({node.isoformat()}); write it as a quoted string")
        elif node is not None and not isinstance(node, leaf):
            raise error(f"{shown}: {json_path(where)}: unexpected {type(node).__name__} value")
