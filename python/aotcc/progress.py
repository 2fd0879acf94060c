"""Progress on stderr for long runs: a bar that redraws in place on a terminal and
prints nothing otherwise (unless forced with AOTCC_PROGRESS=1). It appears only
after half a second, so quick runs stay quiet."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


def enabled(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    flag = os.environ.get("AOTCC_PROGRESS")
    if flag is not None:
        return flag not in ("0", "", "no", "false")
    return hasattr(stream, "isatty") and stream.isatty()


def _fmt_amount(n: float, unit: str) -> str:
    if unit == "B":
        return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
    return f"{int(n):,} {unit}".strip()


class Bar:
    """A single-line progress bar: `update(done, total, label)`; `close()` clears it."""

    def __init__(self, stream: TextIO | None = None, width: int = 28, delay: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.monotonic()
        self.delay = delay
        self.shown = False
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_line = ""

    def update(self, done: float, total: float, label: str, unit: str = "") -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < self.delay:
            return
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        fill = int(frac * self.width)
        eta = ""
        if 0 < frac < 1:
            eta = f" eta {elapsed / frac - elapsed:4.1f}s"
        amount = f" {_fmt_amount(done, unit)}/{_fmt_amount(total, unit)}" if unit else ""
        line = f"{label:<9} [{'#' * fill}{'.' * (self.width - fill)}] {frac * 100:5.1f}%{amount}{eta}"
        if line == self._last_line:
            return
        self._last_line = line
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


class Poller:
    """Polls `read() -> (done, total, label, unit)` on a thread and draws a `Bar`."""

    def __init__(self, read: Callable[[], tuple[float, float, str, str]], interval: float = 0.1) -> None:
        self.read = read
        self.interval = interval
        self.bar = Bar()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            done, total, label, unit = self.read()
            self.bar.update(done, total, label, unit)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.close()
