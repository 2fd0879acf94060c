"""A stock llama.cpp `llama-server` driven from Python: started on 127.0.0.1 with the
flags `aotcc export --llama-server` prints, a slot restored from an exported bundle,
greedy completions, stopped. The project's server round trip (tests/test_server.py) and
the cross-architecture check (scripts/edge_check.py) run through it.

    with LlamaServer(["-m", "model.gguf", "--ctx-size", "2048", ...]) as srv:
        srv.restore(0, "prompt.slot.bin")
        out = srv.complete(tokens + query, n_predict=16)

Failures raise `LlamaError` with the tail of the server's log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aotcc.errors import LlamaError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_flags(printed: str, model: str | os.PathLike[str]) -> list[str]:
    """The flags of the `llama-server` line that `aotcc export --llama-server` printed,
    with the model path filled in."""
    line = next((ln.strip() for ln in printed.splitlines() if ln.strip().startswith("llama-server ")), None)
    if line is None:
        raise LlamaError("no `llama-server ...` line in the export's output")
    args = line.split()[1:]
    args[args.index("-m") + 1] = str(model)
    return args


class LlamaServer:
    """One llama-server process on 127.0.0.1 (a free port), its output in `log`."""

    def __init__(self, flags: Sequence[str], *, binary: str | os.PathLike[str], log: str | os.PathLike[str],
                 prefix: Sequence[str] = (), threads: int = 2, timeout: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        self.timeout = timeout
        self._out = open(self.log, "wb")
        cmd = [*prefix, str(binary), *flags, "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads),
               "--no-webui"]
        try:
            self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT)
        except OSError as e:
            self._out.close()
            raise LlamaError(f"cannot start {binary}: {e.strerror or e}") from None
        self.started = time.monotonic()

    def __enter__(self) -> LlamaServer:
        self.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, n: int = 30) -> str:
        self._out.flush()
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _fail(self, msg: str) -> LlamaError:
        return LlamaError(f"{msg}; llama-server log ({self.log}):\n{self.tail()}")

    def wait(self) -> float:
        """Block until /health says ok; returns the seconds it took."""
        end = self.started + self.timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise self._fail(f"llama-server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return time.monotonic() - self.started
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.3)
        raise self._fail(f"llama-server did not become healthy in {self.timeout:.0f} s")

    def post(self, path: str, body: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                out: dict[str, Any] = json.loads(r.read())
                return out
        except urllib.error.HTTPError as e:
            raise self._fail(f"POST {path}: HTTP {e.code}: {e.read()[:300]!r}") from None
        except (urllib.error.URLError, TimeoutError) as e:
            raise self._fail(f"POST {path}: {e}") from None

    def restore(self, slot: int, filename: str) -> dict[str, Any]:
        """POST /slots/N?action=restore of a file in the server's --slot-save-path."""
        return self.post(f"/slots/{slot}?action=restore", {"filename": filename})

    def complete(self, prompt: Sequence[int | str], n_predict: int, slot: int = 0, n_probs: int = 0) -> dict[str, Any]:
        """A greedy /completion in slot `slot`, with the tokens returned; `n_probs` > 0 adds
        the log-probabilities of the top `n_probs` tokens at each position (before sampling)."""
        return self.post("/completion", {
            "prompt": list(prompt), "n_predict": n_predict, "temperature": 0, "top_k": 1, "samplers": ["top_k"],
            "cache_prompt": True, "id_slot": slot, "return_tokens": True, "n_probs": n_probs,
        })

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


__all__ = ["LlamaServer", "free_port", "launch_flags"]
