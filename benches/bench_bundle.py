"""KV bundles on the real Gemma 3 270M model, side by side in one run, for compiled
prompts of about 1k, 4k and 8k tokens (the example prompt cut at paragraph ends) and a
32-token query:

- time to first token, cold (prefill the compiled prompt, then the query) against warm
  (load the bundle, then the query); goal: at least 100x at 8k;
- bundle load (open, fingerprint and checksum checks, restore) against a raw
  `llama_state_seq_set_data` of the same bytes read from a file; goal: at most 1.2x;
- `aotcc prefill` (tokenize, decode, save the bundle) against llama-cpp-python's
  `Llama.eval` of the same tokens on the same build; goal: at least 0.95x;
- bundle sizes and bytes per prompt token for compact f16 (the default), exact f16,
  compact q8_0 and q8_0+zstd against the slot file a stock llama-server saves for the
  same prompt (`llama_state_seq_save_file` of sequence 0; recorded in `extra_info`;
  benches/bundle_report.py prints the tables).

Prefills of 8k tokens take half a minute here, so those benchmarks run one pedantic
round. `AOTCC_BENCH_SIZES=1k,4k` limits the sizes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp  # `make bench` needs `make llama`; missing, it is an error, not a skip
import pytest

import aotcc
from aotcc.llama import backend as lb
from aotcc.llama import bundle as aotkv
from aotcc.llama.runtime import Runtime, default_model

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench" / "bundle"
SIZES = {"1k": 1024, "4k": 4096, "8k": 8192}
_wanted = os.environ.get("AOTCC_BENCH_SIZES")
if _wanted:
    SIZES = {k: v for k, v in SIZES.items() if k in _wanted.split(",")}
QUERY_TOKENS = 32
SUITE = "bundle"


@dataclass
class Case:
    size: str
    compiled: aotcc.Compiled
    n_tokens: int
    query: str
    dir: Path

    @property
    def bundle(self) -> Path:
        return self.dir / "f16.aotkv"

    @property
    def raw_state(self) -> Path:
        """The bundle's state bytes alone (what `llama_state_seq_get_data` wrote)."""
        return self.dir / "raw-state.bin"

    @property
    def slot_file(self) -> Path:
        """The file a stock llama-server's slot save writes for this prompt."""
        return self.dir / "slot-save.bin"


@pytest.fixture(scope="module")
def runtime():
    rt = Runtime(max_sessions=1)
    rt.cold("Warm up: fault the model's weights in before anything is timed.").ask(" ok", max_tokens=1)
    yield rt
    rt.close()


def _query(rt: Runtime) -> str:
    words = (
        "Question: a customer on a Relay Plus plan reports that the Relay Hub keeps rebooting every night after "
        "the firmware update, and asks whether an advance replacement can be shipped before the faulty unit "
        "is returned to us; what exactly should the agent do first and why?"
    ).split()
    q = "\n\n"
    for w in words:
        nxt = q + (" " if q.strip() else "") + w
        if len(rt.model.tokenize(nxt)) > QUERY_TOKENS:
            break
        q = nxt
    assert len(rt.model.tokenize(q)) == QUERY_TOKENS, "query is not 32 tokens; lengthen the word list"
    return q


@pytest.fixture(scope="module")
def cases(runtime) -> dict[str, Case]:
    """The example prompt cut at the last paragraph end that stays within each size."""
    src = (ROOT / "examples" / "support_agent.md").read_text().split("\n\n")
    terms = ROOT / "examples" / "support_terms.toml"
    query = _query(runtime)
    out: dict[str, Case] = {}
    for name, target in SIZES.items():
        lo, hi, best = 1, len(src), None
        while lo <= hi:  # binary search on the paragraph count
            mid = (lo + hi) // 2
            c = aotcc.compile("\n\n".join(src[:mid]) + "\n", terms)
            n = len(runtime.prompt_tokens(c.text, None))
            if n <= target:
                best, lo = (c, n), mid + 1
            else:
                hi = mid - 1
        assert best is not None
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        best[0].save(d / "prompt.aotc")
        out[name] = Case(name, aotcc.load(d / "prompt.aotc"), best[1], query, d)
    return out


def _info(benchmark, case: Case, contender: str, **extra: object) -> None:
    benchmark.extra_info.update({"suite": SUITE, "size": case.size, "tokens": case.n_tokens, "contender": contender, **extra})


# --- prefill throughput (also makes the bundles the other benchmarks load) ----------


def _prefill_aotcc(benchmark, runtime: Runtime, case: Case) -> None:
    """`Runtime.prefill`: tokenize, decode, read the state, checksum and write the bundle
    (fsync included). The context is created and warmed up with a short decode
    beforehand, as the `Llama` it is compared with is."""
    n_ctx = runtime._resolve_n_ctx(case.n_tokens)

    def setup():
        ctx = runtime._context(runtime._settings(n_ctx, "f16", "f16", True, swa_full=runtime.bundle_mode() == "exact"))
        ctx.decode(runtime.prompt_tokens(case.compiled.text, None)[:16])
        return (), {}

    res = benchmark.pedantic(lambda: runtime.prefill(case.compiled, case.bundle), setup=setup, rounds=1, iterations=1)
    f16 = aotkv.Bundle.open(case.bundle)
    with f16.payload() as view:  # the same bytes, for the raw set_data baseline
        case.raw_state.write_bytes(bytes(view))
    # what a stock llama-server's slot save writes for this prompt: sequence 0's state
    runtime._live().save_state_file(str(case.slot_file), f16.tokens.tolist(), seq=0)
    sizes = {"compact_f16": f16.file_size, "slot_save": case.slot_file.stat().st_size}
    # exact and q8_0 need their own prefills; zstd of q8_0 is a rewrite of the same state
    zstd_s = 0.0
    for name, kw in (("exact_f16", {"mode": "exact"}), ("compact_q8_0", {"kv_type": "q8_0"})):
        rt = Runtime(max_sessions=1, **kw)
        try:
            r = rt.prefill(case.compiled, case.dir / f"{name}.aotkv")
            sizes[name] = r.file_bytes
            if name == "compact_q8_0":
                state = rt._live().get_state(0)
                t = time.perf_counter()
                p = aotkv.write(case.dir / "q8_0.zstd.aotkv", r.fingerprint, state, codec="zstd")
                zstd_s = time.perf_counter() - t
                sizes["compact_q8_0_zstd"] = p.stat().st_size
        finally:
            rt.close()
    _info(benchmark, case, "aotcc prefill", n_ctx=f16.context["n_ctx"], state_bytes=res.state_bytes, sizes=sizes,
          bytes_per_token={k: round(v / case.n_tokens) for k, v in sizes.items()},
          decode_s=res.prefill_s, zstd_write_s=zstd_s)


def _prefill_llama_cpp(benchmark, runtime: Runtime, case: Case) -> None:
    """llama-cpp-python's `Llama.eval` of the same tokens with the same context settings."""
    tokens = runtime.prompt_tokens(case.compiled.text, None)
    n_ctx = runtime._resolve_n_ctx(len(tokens))
    llm = llama_cpp.Llama(
        str(default_model()), n_ctx=n_ctx, n_batch=512, n_ubatch=512, flash_attn=True, swa_full=True,
        n_threads=1, n_threads_batch=runtime.n_threads or lb.default_threads(), verbose=False,
    )
    try:
        llm.eval(tokens[:16])  # fault its weights in, as the aotcc runtime's were

        def run():
            llm.reset()
            llm.eval(tokens)

        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        llm.close()
    _info(benchmark, case, "llama_cpp Llama.eval")


# the two contenders of one size run back to back, so a change in machine load hits both
@pytest.mark.parametrize("contender", ["aotcc", "llama_cpp_eval"])
@pytest.mark.parametrize("size", list(SIZES))
def test_prefill(benchmark, runtime, cases, size, contender):
    (_prefill_aotcc if contender == "aotcc" else _prefill_llama_cpp)(benchmark, runtime, cases[size])


# --- time to first token ---------------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
def test_ttft_cold(benchmark, runtime, cases, size):
    case = cases[size]

    def cold():
        return runtime.cold(case.compiled).ask(case.query, max_tokens=1)

    ans = benchmark.pedantic(cold, rounds=1, iterations=1)
    _info(benchmark, case, "cold: prefill + query", query_tokens=ans.prompt_tokens)


@pytest.mark.parametrize("size", list(SIZES))
def test_ttft_warm(benchmark, runtime, cases, size):
    case = cases[size]
    runtime.load(case.bundle)  # the context is created once, as on a device that serves many queries

    def warm():
        return runtime.load(case.bundle).ask(case.query, max_tokens=1)

    ans = benchmark.pedantic(warm, rounds=5, iterations=1, warmup_rounds=1)
    _info(benchmark, case, "warm: load bundle + query", query_tokens=ans.prompt_tokens)


# --- load --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
def test_load_bundle(benchmark, runtime, cases, size):
    case = cases[size]
    runtime.load(case.bundle)
    benchmark.pedantic(lambda: runtime.load(case.bundle), rounds=10, iterations=1, warmup_rounds=2)
    _info(benchmark, case, "aotcc Runtime.load", bytes=aotkv.Bundle.open(case.bundle).file_size)


@pytest.mark.parametrize("size", list(SIZES))
def test_load_raw_set_data(benchmark, runtime, cases, size):
    """The floor: the same state bytes read from a file and handed to
    `llama_state_seq_set_data`, with no checks."""
    case = cases[size]
    runtime.load(case.bundle)  # a context with the bundle's settings
    ctx = runtime._live()
    path = case.raw_state

    def raw():
        ctx.clear()
        ctx.set_state(path.read_bytes(), 0)

    benchmark.pedantic(raw, rounds=10, iterations=1, warmup_rounds=2)
    _info(benchmark, case, "llama_state_seq_set_data", bytes=path.stat().st_size)


# --- incremental rebuild -----------------------------------------------------------------


@pytest.fixture(scope="module")
def late_edit(cases):
    """The 4k prompt (or the largest size asked for) with one sentence added to the
    paragraph that starts past 90% of its source, and an exact bundle of the original
    to rebuild from: what a daily edit near the end of a prompt gives `aotcc build`."""
    name = "4k" if "4k" in cases else list(cases)[-1]
    case = cases[name]
    src = case.compiled.decompile()
    at = src.index("\n\n", int(len(src) * 0.9))
    edited = src[:at] + " This sentence was added by an edit." + src[at:]
    new = aotcc.compile(edited, ROOT / "examples" / "support_terms.toml")
    old_exact = case.dir / "rebuild-old-exact.aotkv"
    with Runtime(max_sessions=1, mode="exact") as rt:
        rt.prefill(case.compiled, old_exact)
    return case, new, old_exact


@pytest.mark.parametrize("contender", ["full", "incremental"])
def test_rebuild_after_late_edit(benchmark, late_edit, contender):
    """`aotcc prefill NEW --from OLD` (incremental: restore the shared prefix, decode the
    rest) against a full prefill of the edited prompt, both exact bundles on the same
    build; goal: at least 5x faster for an edit in the last 10% of a 4k prompt."""
    case, new, old_exact = late_edit
    out = case.dir / f"rebuild-{contender}.aotkv"
    with Runtime(max_sessions=1, mode="exact") as rt:
        rt.cold("Warm up.").ask(" ok", max_tokens=1)
        source = old_exact if contender == "incremental" else None
        res = benchmark.pedantic(lambda: rt.prefill(new, out, source=source), rounds=1, iterations=1)
    if contender == "incremental":  # the same bytes as a full prefill, or the comparison means nothing
        assert res.reused > 0 and out.read_bytes() == (case.dir / "rebuild-full.aotkv").read_bytes()
    benchmark.extra_info.update({"suite": SUITE, "size": case.size, "tokens": res.n_tokens,
                                 "contender": f"rebuild {contender}", "reused": res.reused})
