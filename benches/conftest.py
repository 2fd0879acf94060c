"""Shared benchmark fixtures: the generated corpora (made once per session), on disk
too for the CLI, and the default `--benchmark-json` path that benches/report.py reads.

Every benchmark stores the bytes it processed in `benchmark.extra_info["bytes"]` and a
display name in `extra_info["contender"]`, so the report can compute MB/s per contender.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "build" / "bench"
RESULTS_JSON = BENCH_DIR / "results.json"

# The corpora the peers are compared on: the default 4 MB prompt with 1000 terms x 3
# aliases (what the goals are stated for), the same size with ten times the terms, and
# 4 MB of natural English (this repository's README.md and docs/*.md, repeated) with
# 1000 terms x 3 aliases from its own vocabulary, most of them single short words
# (`corpus.english`).
CORPORA = {
    "1k-terms": dict(size_bytes=4_000_000, n_terms=1000, aliases_per_term=3, seed=7),
    "10k-terms": dict(size_bytes=4_000_000, n_terms=10_000, aliases_per_term=3, seed=11),
    "english": dict(kind="english", size_bytes=4_000_000, n_terms=1000, aliases_per_term=3, seed=5),
}
MAIN = "1k-terms"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Saves the results to build/bench/results.json unless --benchmark-json is given
    (runs before pytest-benchmark's own `pytest_configure`, which reads the option)."""
    if getattr(config.option, "benchmark_json", "absent") is None:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = RESULTS_JSON


@dataclass(frozen=True)
class Corpus:
    """One generated prompt and its term spec, as text, bytes and files."""

    key: str
    text: str
    data: bytes
    spec: dict
    spec_json: str
    dir: Path

    @property
    def prompt_path(self) -> Path:
        return self.dir / "corpus.md"

    @property
    def terms_path(self) -> Path:
        return self.dir / "terms.json"

    def aliases(self) -> list[tuple[str, str]]:
        """`(alias, term name)` for every alias, the name first (as the spec counts it)."""
        out = []
        for term in self.spec["terms"]:
            for alias in dict.fromkeys([term["name"], *term.get("aliases", [])]):
                out.append((alias, term["name"]))
        return out


def _make(key: str) -> Corpus:
    from corpus import english, generate

    settings = dict(CORPORA[key])
    make = english if settings.pop("kind", None) == "english" else generate
    text, spec = make(**settings)
    data = text.encode("utf-8")
    spec_json = json.dumps(spec, ensure_ascii=False)
    directory = BENCH_DIR / "corpus" / key
    directory.mkdir(parents=True, exist_ok=True)
    # Rewritten only when different, so a reader (the CLI bench) never sees a stale pair.
    for path, content in ((directory / "corpus.md", data), (directory / "terms.json", spec_json.encode("utf-8"))):
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
    return Corpus(key, text, data, spec, spec_json, directory)


_CACHE: dict[str, Corpus] = {}


def get_corpus(key: str) -> Corpus:
    if key not in _CACHE:
        _CACHE[key] = _make(key)
    return _CACHE[key]


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    """The main 4 MB corpus (1000 terms x 3 aliases), generated once."""
    return get_corpus(MAIN)


@pytest.fixture(scope="session", params=list(CORPORA))
def any_corpus(request: pytest.FixtureRequest) -> Corpus:
    """Each corpus in turn (session-scoped, so each is generated once)."""
    return get_corpus(request.param)


@pytest.fixture(scope="session")
def reference():
    """The pure-Python reference detector (tests/reference.py)."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import reference as module
    finally:
        sys.path.pop(0)
    return module
