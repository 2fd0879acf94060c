"""Shared fixtures: paths to the shipped example and a helper that runs the CLI in-process."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# benches/corpus.py, the one synthetic-corpus generator, is importable as `corpus`
sys.path.insert(0, str(ROOT / "benches"))
EXAMPLE_PROMPT = ROOT / "examples" / "support_agent.md"
EXAMPLE_TERMS = ROOT / "examples" / "support_terms.toml"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli():
    """Runs `aotcc ARGS...` in-process; returns exit code, stdout and stderr."""
    from aotcc.cli import main

    def run(*args: str, stdin: bytes | None = None) -> Result:
        out_bytes = io.BytesIO()
        out = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
        err = io.StringIO()
        old_stdin = sys.stdin
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main([str(a) for a in args])
        finally:
            sys.stdin = old_stdin
        out.flush()
        return Result(code, out_bytes.getvalue().decode("utf-8", "replace"), err.getvalue())

    return run
