"""How faithful is a KV bundle? Each setting's bundle answers the same queries as a cold
f16 prefill (full-size cache) of the same compiled prompt, on the same build:

- greedy agreement: the bundle's free-running greedy answer equals the cold one, token
  for token (`--tokens` tokens, no stop sequences);
- top-1 agreement: along the cold answer (teacher-forced, one batch on both sides), the
  share of positions where the bundle's most likely token is the cold prefill's most
  likely token in the same batch (not the greedy token: one-token steps and a batch
  round differently, and that alone moved 3% of Gemma's positions);
- logprob gap: the largest difference, over every position of every query, in the
  log-probability of the cold answer's token.

    .venv/bin/python scripts/measure_fidelity.py [--models gemma3-270m,smollm2-135m] [-o fidelity.json]

It wrote the table in docs/bundles.md and python/aotcc/llama/fidelity.toml, which
`prefill` and `info` read to warn about settings that flip answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [("exact", "f16"), ("compact", "f16"), ("compact", "q8_0"), ("compact", "q4_0")]


def queries(compiled) -> list[str]:
    from aotcc.evaluate.auto import questions

    spec = [{"name": t.name, "definition": d} for t, d in zip(compiled.terms, _definitions())]
    out = [f"\n\nQuestion: {q.ask}\nAnswer:" for q in questions(spec) if q.term in _present(compiled)]
    out += [f"\n\nQuestion: What is the {t.name} and when does it apply?\nAnswer:" for t in compiled.terms if t.injected]
    out += [f"\n\nQuestion: What should an agent do first when a customer says '{s}'?\nAnswer:" for s in (
        "my internet is down", "I want a refund", "the light is blinking amber", "cancel my plan", "my node is offline",
        "I was charged twice", "can you send a new hub", "I moved house", "my wifi is slow upstairs",
        "the app says my hub is unreachable", "I never agreed to this charge", "my neighbour can see my network",
        "the replacement has not arrived", "I want to speak to a manager", "my son changed the password",
        "the hub is very hot", "I lost the return label", "you closed my ticket without asking")]
    return out


def _definitions() -> list[str]:
    import tomllib

    return [t["definition"] for t in tomllib.loads((ROOT / "examples" / "support_terms.toml").read_text())["term"]]


def _present(compiled) -> set[str]:
    return {t.name for t in compiled.terms if t.injected}


def greedy(session, query: str, n: int) -> list[int]:
    with session.fork() as s:
        a = s.ask(query, max_tokens=n, stops=())
    return a.tokens


def forced(rt, session, query: str, answer: list[int]) -> np.ndarray:
    """Logits after each token of query + answer[:-1], teacher-forced in one batch."""
    toks = session.query_tokens(query) + answer[:-1]
    with session.fork() as s:
        rows = rt._live().logits_rows(toks, seq=s.seq, pos=s.n_past)
        s.n_past += len(toks)
        s._own += len(toks)
        rt._used += len(toks)
    return rows[len(toks) - len(answer):]


def logsoftmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def main(argv: list[str] | None = None) -> int:
    import aotcc
    from aotcc.llama.bundle import Bundle
    from aotcc.llama.runtime import Runtime
    from aotcc.models import resolve_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="gemma3-270m,smollm2-135m")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--paragraphs", type=int, default=24, help="example paragraphs in the prompt (default 24, ~2k tokens)")
    p.add_argument("-o", "--output")
    a = p.parse_args(argv)
    text = "\n\n".join((ROOT / "examples" / "support_agent.md").read_text().split("\n\n")[: a.paragraphs]) + "\n"
    results = []
    for name in a.models.split(","):
        model = resolve_model(name)
        c = aotcc.compile(text, str(ROOT / "examples" / "support_terms.toml"), tag_style="short", tokenizer=str(model))
        qs = queries(c)
        with Runtime(model, max_sessions=4) as rt:
            root = rt.cold(c)
            n_prompt = root.n_past
            ref = [greedy(root, q, a.tokens) for q in qs]
            ref_rows = [logsoftmax(forced(rt, root, q, r)) for q, r in zip(qs, ref)]
        print(f"{name}: {n_prompt} prompt tokens, {len(qs)} queries", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for mode, kv in SETTINGS:
                out = Path(tmp) / f"{mode}-{kv}.aotkv"
                t0 = time.perf_counter()
                with Runtime(model, kv_type=kv, mode=mode, max_sessions=1) as rt:
                    res = rt.prefill(c, out)
                with Runtime(model, max_sessions=4) as rt:
                    b = rt.load(out)
                    same = 0
                    agree = positions = 0
                    gaps: list[float] = []
                    for q, r, rr in zip(qs, ref, ref_rows):
                        if not r:
                            continue
                        same += greedy(b, q, a.tokens) == r
                        rows = logsoftmax(forced(rt, b, q, r))
                        agree += int((rows.argmax(axis=-1) == rr.argmax(axis=-1)).sum())
                        positions += len(r)
                        idx = np.arange(len(r))
                        gaps += list(np.abs(rows[idx, r] - rr[idx, r]))
                n = sum(1 for r in ref if r)
                row = {
                    "model": model.name, "arch": Bundle.open(out).fingerprint["model"]["arch"],
                    "n_swa": Bundle.open(out).fingerprint["model"]["n_swa"], "mode": mode, "kv": kv,
                    "prompt_tokens": n_prompt, "file_bytes": res.file_bytes,
                    "bytes_per_token": round(res.file_bytes / n_prompt), "queries": n,
                    "greedy_agreement": round(same / n, 4), "top1_agreement": round(agree / positions, 4),
                    "max_logprob_gap": round(float(max(gaps)), 4), "median_logprob_gap": round(float(np.median(gaps)), 5),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    if a.output:
        Path(a.output).write_text(json.dumps(results, indent=1) + "\n")
    print("\n| model | mode | KV | bytes/token | greedy agreement | top-1 agreement | max logprob gap |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['mode']} | {r['kv']} | {r['bytes_per_token']:,} | {r['greedy_agreement']:.0%} "
              f"({r['queries']}) | {r['top1_agreement']:.1%} | {r['max_logprob_gap']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
