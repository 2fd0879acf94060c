"""Where does the model still answer? Greedy answers to plain questions about the shipped
example prompt, cut to growing lengths, in each layout and in both query formats
(plain `Question:/Answer:` and the model's chat template). It measured the choice of the
demo's prompt and format (docs/eval.md, "Generation by length").

    .venv/bin/python scripts/generation_study.py [--model M] [--lengths 1024,2048,4096,6000] [-o out.json]

An answer counts as right when its cleaned text (tags shown as term names) holds the
fact; the table also counts answers that copy the prompt instead of answering.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = ROOT / "examples" / "support_agent.md"
TERMS = ROOT / "examples" / "support_terms.toml"
QUESTIONS = [
    ("Diagnostic Bundle", "How long is a Diagnostic Bundle valid?", r"72[ -]hours?"),
    ("Authorized Contact", "How many Authorized Contacts can one account have at most?", r"\bthree\b|\b3\b"),
    ("Goodwill Credit", "Up to what amount may an agent give a Goodwill Credit on their own judgement?", r"\$ ?20\b"),
    ("Cooling-Off Period", "How long is the Cooling-Off Period?", r"30[ -]days?|thirty days"),
    ("Identity Verification", "Which tool runs Identity Verification?", r"verify_identity"),
    ("Safe Mode", "How long must the reset button be held to start Safe Mode?", r"ten seconds|10[ -]seconds?"),
    ("Goodwill Credit", "Who must approve a Goodwill Credit above $20?", r"supervisor"),
    ("Advance Replacement", "How many days does the customer have to return the faulty unit in an Advance Replacement?",
     r"\b14\b|fourteen"),
]
LAYOUTS = {"raw": None, "top": ("top", "keep", "short"), "chunk-tag": ("chunk", "tag", "seed"),
           "chunk-short": ("chunk", "tag", "short")}


def cut(text: str, tokens: int, count) -> str:
    """The prompt's first paragraphs, up to about `tokens` model tokens."""
    out = ""
    for para in text.split("\n\n"):
        nxt = out + para + "\n\n"
        if count(nxt) > tokens and out:
            break
        out = nxt
    return out


def main(argv: list[str] | None = None) -> int:
    import aotcc
    from aotcc.llama.runtime import Runtime
    from aotcc.models import default_model, resolve_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--lengths", default="1024,2048,4096,6000")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--formats", default="plain,template")
    p.add_argument("--max-tokens", type=int, default=40)
    p.add_argument("-o", "--output")
    a = p.parse_args(argv)
    from aotcc.counting import gguf_tokenizer

    model = resolve_model(a.model) if a.model else default_model()
    tok = gguf_tokenizer(model)

    def count(s: str) -> int:
        return int(tok.count([s])[0])

    source = PROMPT.read_text()
    rows = []
    with Runtime(model, max_sessions=4) as rt:
        for length in [int(x) for x in a.lengths.split(",")]:
            text = cut(source, length, count)
            for name in a.layouts.split(","):
                mode = LAYOUTS[name]
                c = aotcc.compile(text, str(TERMS), tokenizer=str(model), progress=False,
                                  **({} if mode is None else {"placement": mode[0], "references": mode[1],
                                                              "tag_style": mode[2]}))
                present = {t.name for t in c.terms if t.first_offset is not None}
                qs = [q for q in QUESTIONS if q[0] in present]
                for fmt in a.formats.split(","):
                    t0 = time.perf_counter()
                    root = rt.cold(text if mode is None else c, chat_template="auto" if fmt == "template" else None)
                    for term, ask, pattern in qs:
                        query = ask if fmt == "template" else f"\n\nQuestion: {ask}\nAnswer:"
                        with root.fork() as s:
                            ans = s.ask(query, max_tokens=a.max_tokens)
                        right = re.search(pattern, ans.text, re.I) is not None
                        copied = len(ans.text.strip()) > 20 and ans.text.strip()[:20] in c.text
                        rows.append({"length": length, "source_tokens": count(text), "layout": name, "format": fmt,
                                     "tokens": root.n_past, "term": term, "question": ask, "right": right,
                                     "copied": copied, "tags": ans.tags, "text": ans.text, "raw": ans.raw_text})
                    done = [r for r in rows if r["length"] == length and r["layout"] == name and r["format"] == fmt]
                    print(f"{length:>5} {name:<12} {fmt:<8} {root.n_past:>6} tokens: {sum(r['right'] for r in done)}/"
                          f"{len(done)} right, {sum(r['copied'] for r in done)} copied the prompt, "
                          f"{sum(r['tags'] for r in done)} tags ({time.perf_counter() - t0:.0f} s)", flush=True)
    if a.output:
        Path(a.output).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
