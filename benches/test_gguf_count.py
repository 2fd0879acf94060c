"""Exact Gemma 3 token counts of the 4 MB synthetic prompt: aotcc's GGUF tokenizer
against llama.cpp's own (`Llama(vocab_only=True).tokenize`, on the whole text and per
paragraph on 2 threads) and HuggingFace `tokenizers` (`encode_batch_fast` over the
paragraphs with the byte-level BPE tokenizer.json the e2e bench trains; a different,
smaller vocabulary, so a speed peer only), in the same run; and `aotcc compile
--tokenizer gemma.gguf` end to end. benches/gguf_report.py prints the ratios.

Goals (issue 4): counts at ≥ 5 MB/s; the e2e compile within 1.5 s; (issue 16) the
whole `aotcc compile --tokenizer gemma.gguf` process within 0.5 s. Every aotcc round
starts cold: a fresh tokenizer (empty count cache) and no disk cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import aotcc
from aotcc import _core, counting
from aotcc.models import default_model
from test_compile_e2e import tokenizer_json  # noqa: F401  (the shared trained BPE fixture)

GROUP = "gemma-count"
GOAL_MB_S = 5.0
GOAL_E2E_SECONDS = 1.5
GOAL_CLI_SECONDS = 0.5  # issue 16: the whole process


@pytest.fixture(scope="module")
def gemma() -> Path:
    return Path(default_model())


@pytest.fixture(scope="module")
def paragraphs(corpus) -> list[str]:
    return corpus.text.split("\n\n")


def _info(benchmark, contender: str, nbytes: int, **extra) -> None:
    benchmark.extra_info.update(contender=contender, corpus=GROUP, bytes=nbytes, **extra)


def test_count_aotcc_gguf(benchmark, gemma, corpus, paragraphs):
    totals = []

    def setup():
        return (_core.GgufTokenizer(str(gemma)),), {}

    def run(tok):
        totals.append(int(tok.count(paragraphs).sum()))

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    _info(benchmark, "aotcc GgufTokenizer.count (Gemma 3, per paragraph, cold)", len(corpus.data),
          tokens=totals[-1], units=len(paragraphs), role="gguf-aotcc", goal_mb_s=GOAL_MB_S)


def test_count_aotcc_gguf_recount_after_edit(benchmark, gemma, corpus, paragraphs):
    tok = _core.GgufTokenizer(str(gemma))
    tok.count(paragraphs)
    edited = list(paragraphs)
    step = max(1, len(edited) // 100)
    for i in range(0, len(edited), step):  # 1 % of the units changed
        edited[i] += " Edited."
    rounds = iter(range(1000))

    def run():
        k = next(rounds)
        return tok.count([p + f" {k}" if i % step == 0 else p for i, p in enumerate(edited)])

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=0)
    _info(benchmark, "aotcc GgufTokenizer.count, recount after editing 1% of units (cache)", len(corpus.data),
          role="gguf-recount")


def test_count_llama_cpp_per_paragraph_2_threads(benchmark, gemma, corpus, paragraphs):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gemma), vocab_only=True, verbose=False)
    encoded = [p.encode("utf-8") for p in paragraphs]
    totals = []

    def run():
        with ThreadPoolExecutor(2) as pool:
            n = sum(pool.map(lambda b: len(llm.tokenize(b, add_bos=False, special=False)), encoded, chunksize=64))
        totals.append(n)

    benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    llm.close()
    _info(benchmark, "llama.cpp tokenize per paragraph, 2 threads (Gemma 3)", len(corpus.data),
          tokens=totals[-1], role="gguf-llama-para")


def test_count_llama_cpp_whole_text(benchmark, gemma, corpus):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gemma), vocab_only=True, verbose=False)
    totals = []

    def run():
        totals.append(len(llm.tokenize(corpus.data, add_bos=False, special=False)))

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    llm.close()
    _info(benchmark, "llama.cpp tokenize whole text (Gemma 3)", len(corpus.data), tokens=totals[-1],
          role="gguf-llama-whole")


def test_count_hf_tokenizers_peer(benchmark, corpus, paragraphs, tokenizer_json):  # noqa: F811
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    benchmark.pedantic(lambda: sum(len(e) for e in encode(paragraphs, add_special_tokens=False)),
                       rounds=3, iterations=1, warmup_rounds=1)
    _info(benchmark, "HF tokenizers encode_batch_fast per paragraph (trained byte-level BPE)", len(corpus.data),
          vocab=tok.get_vocab_size(), role="gguf-hf-peer",
          note=f"BPE vocab {tok.get_vocab_size():,} trained on the corpus, not Gemma's 262k")


def test_e2e_compile_gemma_gguf(benchmark, gemma, corpus, monkeypatch):
    monkeypatch.setenv("AOTCC_COUNT_CACHE", "0")
    runs = []

    def setup():
        counting._GGUF.clear()  # a fresh process would load the tokenizer too
        return (), {}

    def run():
        c = aotcc.compile(corpus.prompt_path, corpus.terms_path, tokenizer=gemma, progress=False)
        runs.append(c)

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1, warmup_rounds=1)
    m = runs[-1].manifest
    _info(benchmark, "aotcc.compile() with Gemma .gguf counts (cold tokenizer)", len(corpus.data),
          tokens=m["source_tokens"], tokenizer=m["tokenizer"], role="gguf-e2e", goal_seconds=GOAL_E2E_SECONDS,
          stage_seconds=dict(runs[-1].timings))


def test_e2e_cli_compile_gemma_gguf(benchmark, gemma, corpus, tmp_path):
    out = tmp_path / "c.aotc"
    script = Path(sys.executable).parent / "aotcc"
    argv = [str(script) if script.exists() else sys.executable, *([] if script.exists() else ["-m", "aotcc.cli"]),
            "compile", str(corpus.prompt_path), "--terms", str(corpus.terms_path), "--tokenizer", str(gemma),
            "-o", str(out), "--json"]
    env = {**os.environ, "AOTCC_COUNT_CACHE": "0"}
    seconds = []

    def run():
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - t0)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    manifest = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    _info(benchmark, "aotcc compile CLI process with --tokenizer gemma.gguf (no count cache)", len(corpus.data),
          role="gguf-cli", in_process_seconds=manifest["seconds"], goal_seconds=GOAL_CLI_SECONDS)
