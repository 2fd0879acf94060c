"""The two products stay apart: the compile side (aotcc, api, cli, export, options,
spec, counting, units) works with llama.cpp unavailable and never imports it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS

BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "llama_cpp" or name.startswith("llama_cpp."):
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, Block())
    """
)


def run_blocked(code: str, tmp_path) -> subprocess.CompletedProcess:
    script = BLOCKED + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)


def test_compile_side_never_imports_llama_cpp(tmp_path):
    r = run_blocked(
        f"""
        import aotcc, aotcc.api, aotcc.cli, aotcc.export, aotcc.options, aotcc.units
        from aotcc.cli import main
        c = aotcc.compile(__import__("pathlib").Path({str(EXAMPLE_PROMPT)!r}), {str(EXAMPLE_TERMS)!r})
        assert c.text and c.terms
        assert main(["compile", {str(EXAMPLE_PROMPT)!r}, "-t", {str(EXAMPLE_TERMS)!r}, "-o", "out.aotc", "-q"]) == 0
        assert main(["inspect", "out.aotc"]) == 0
        assert main(["export", "out.aotc", "--target", "anthropic", "-o", "req.json"]) == 0
        assert main(["decompile", "out.aotc", "-o", "src.md"]) == 0
        doc = aotcc.export.export_request(c, "openai")
        assert doc.requests
        import aotcc.llama  # the package itself is importable; its backend is not loaded
        loaded = sorted(m for m in sys.modules if m.startswith("llama_cpp") or m == "aotcc.llama.backend")
        assert not loaded, loaded
        print("ok")
        """,
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")
    assert (tmp_path / "src.md").read_bytes() == EXAMPLE_PROMPT.read_bytes()


def test_llama_commands_say_what_is_missing(tmp_path):
    """With llama.cpp unavailable, a bundle command fails with one line naming the fix."""
    r = run_blocked(
        f"""
        from aotcc.cli import main
        assert main(["compile", {str(EXAMPLE_PROMPT)!r}, "-t", {str(EXAMPLE_TERMS)!r}, "-o", "out.aotc", "-q"]) == 0
        sys.exit(main(["prefill", "out.aotc", "-o", "out.aotkv"]))
        """,
        tmp_path,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "llama-cpp-python" in lines[0] and "make llama" in lines[0]
    assert not (tmp_path / "out.aotkv").exists()
