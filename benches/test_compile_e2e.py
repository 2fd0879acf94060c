"""End-to-end `aotcc compile` of the 4 MB (about 1M token) prompt.

- through the API (`aotcc.compile(path, terms, tokenizer=...)`) with exact counts from a
  byte-level BPE `tokenizer.json` trained here on the corpus (nothing is downloaded),
  and with the built-in estimator, in the same run; goal: 1.5 s wall with the tokenizer;
- the whole CLI process (`aotcc compile ... -o out.aotc`) under `/usr/bin/time -v` for
  its peak RSS (goal: at most 10x the input), next to the RSS of a bare
  `python -c "import aotcc"`, so the report can give the memory above the interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aotcc
from aotcc import _core

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "build" / "bench"
GOAL_SECONDS = 1.5
GOAL_RSS_RATIO = 10.0

# The tokenizer: byte-level BPE trained on the first ~1 MB of the corpus. The synthetic
# prompt has a small vocabulary, so the trainer stops well short of vocab_size (merges
# run out); the size reached is recorded.
TOKENIZER_SETTINGS = {
    "model": "BPE",
    "pre_tokenizer": "ByteLevel(add_prefix_space=False)",
    "vocab_size": 16_384,
    "min_frequency": 2,
    "sample_bytes": 1_000_000,
}


def _mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds else float("inf")


@pytest.fixture(scope="session")
def tokenizer_json(corpus) -> Path:
    """build/bench/tokenizer.json, retrained only when the sample or settings change."""
    import tokenizers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    cut = corpus.data.rfind(b"\n", 0, TOKENIZER_SETTINGS["sample_bytes"]) + 1
    sample = corpus.data[:cut]
    settings = {**TOKENIZER_SETTINGS, "tokenizers": tokenizers.__version__}
    key = _core.blake3_hex(sample + json.dumps(settings, sort_keys=True).encode("utf-8"))
    path, key_path = BENCH_DIR / "tokenizer.json", BENCH_DIR / "tokenizer.json.key"
    if path.exists() and key_path.exists() and key_path.read_text().strip() == key:
        return path

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings["vocab_size"],
        min_frequency=settings["min_frequency"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample.decode("utf-8").splitlines(keepends=True), trainer)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)
    key_path.write_text(key + "\n")
    return path


def _tokenizer_info(path: Path) -> dict[str, object]:
    from tokenizers import Tokenizer

    return {"tokenizer_vocab": Tokenizer.from_file(str(path)).get_vocab_size(),
            "tokenizer_blake3": _core.hash_file(str(path))[:16],
            "tokenizer_sample_bytes": TOKENIZER_SETTINGS["sample_bytes"]}


def _bench_api(benchmark, corpus, tokenizer: Path | None, rounds: int) -> None:
    runs: list[dict[str, float]] = []

    def run():
        compiled = aotcc.compile(corpus.prompt_path, corpus.terms_path, tokenizer=tokenizer, progress=False)
        runs.append(dict(compiled.timings))
        return compiled

    compiled = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    runs = runs[1:]
    m = compiled.manifest
    wall = benchmark.stats.stats.median
    benchmark.extra_info.update(
        contender=f"aotcc.compile() e2e ({'tokenizer.json' if tokenizer else 'estimator'})",
        corpus=corpus.key, bytes=len(corpus.data), tokens=m["source_tokens"], tokenizer=m["tokenizer"],
        chunks=m["chunks"], goal_seconds=GOAL_SECONDS, mb_per_s=_mb_per_s(len(corpus.data), wall),
        stage_seconds={stage: statistics.median(r[stage] for r in runs) for stage in runs[0]},
    )
    if tokenizer is not None:
        benchmark.extra_info.update(_tokenizer_info(tokenizer))


def test_e2e_compile_tokenizer(benchmark, corpus, tokenizer_json):
    _bench_api(benchmark, corpus, tokenizer_json, rounds=5)


def test_e2e_compile_estimator(benchmark, corpus):
    _bench_api(benchmark, corpus, None, rounds=10)


# --- the CLI as a process: wall time and peak RSS -----------------------------------

_MAXRSS = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")


def _run_measured(argv: list[str]) -> tuple[float, int, str]:
    """Runs `argv`; returns (wall seconds, peak RSS in bytes, stdout). Uses
    `/usr/bin/time -v` when present, else a fresh Python parent that reports its only
    child's `ru_maxrss` (RUSAGE_CHILDREN would include earlier children if read here)."""
    time_bin = shutil.which("time", path="/usr/bin")
    report = BENCH_DIR / "time-v.txt"
    if time_bin:
        cmd = [time_bin, "-v", "-o", str(report), *argv]
    else:
        wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                   "sys.stderr.write(f'Maximum resident set size (kbytes): "
                   "{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n'); sys.exit(r.returncode)")
        cmd = [sys.executable, "-c", wrapper, *argv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    text = report.read_text() if time_bin else proc.stderr
    match = _MAXRSS.search(text)
    assert match, text
    return wall, int(match.group(1)) * 1024, proc.stdout


def _aotcc_cli() -> list[str]:
    script = Path(sys.executable).parent / "aotcc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aotcc.cli"]


def _bench_process(benchmark, argv: list[str], rounds: int) -> tuple[int, str]:
    rss: list[int] = []
    outs: list[str] = []

    def run():
        _, peak, out = _run_measured(argv)
        rss.append(peak)
        outs.append(out)

    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(peak_rss_bytes=max(rss), peak_rss_bytes_median=statistics.median(rss),
                                rss_tool="/usr/bin/time -v" if shutil.which("time", path="/usr/bin") else "getrusage")
    return max(rss), outs[-1]


def test_process_import_baseline(benchmark):
    peak, _ = _bench_process(benchmark, [sys.executable, "-c", "import aotcc"], rounds=3)
    benchmark.extra_info.update(contender="python -c 'import aotcc' (baseline)", role="baseline")


@pytest.mark.parametrize("counter", ["tokenizer", "estimator"])
def test_process_cli_compile(benchmark, corpus, tokenizer_json, counter):
    out = BENCH_DIR / "out" / f"{corpus.key}-{counter}.aotc"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [*_aotcc_cli(), "compile", str(corpus.prompt_path), "--terms", str(corpus.terms_path),
            "-o", str(out), "--json"]
    if counter == "tokenizer":
        argv += ["--tokenizer", str(tokenizer_json)]
    peak, stdout = _bench_process(benchmark, argv, rounds=3)
    manifest = json.loads(stdout)
    assert manifest["source_bytes"] == len(corpus.data)
    assert out.stat().st_size > 0
    benchmark.extra_info.update(
        contender=f"aotcc compile CLI process ({'tokenizer.json' if counter == 'tokenizer' else 'estimator'})",
        role="cli", counter=counter, corpus=corpus.key, bytes=len(corpus.data), tokens=manifest["source_tokens"],
        in_process_seconds=manifest["seconds"], rss_ratio=peak / len(corpus.data), goal_rss_ratio=GOAL_RSS_RATIO,
        mb_per_s=_mb_per_s(len(corpus.data), benchmark.stats.stats.median),
    )
