"""`aotcc analyze`: the model chooses chunk boundaries and where each term is first
needed, then the prompt is compiled with those hints; `--draft-terms` drafts a term spec
instead. Also `run_analysis`, which `aotcc compile --analyze` calls."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from aotcc._io import atomic_write, check_output_path, decode_utf8, read_input, show
from aotcc.cli import args as types
from aotcc.errors import InputError
from aotcc.options import CompileOptions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="let the model choose chunk boundaries and first appearances, or draft a term spec",
        description=(
            "Analyse PROMPT files with a llama.cpp model, then compile them. Boundaries: per-token surprisal "
            "finds sentences where the topic shifts; chunks end there when the budget allows. Semantic first "
            "appearance: embeddings shortlist earlier sentences that talk about a term without naming it, and "
            "the definition moves to the earliest one's chunk (with --confirm, the model must answer yes "
            "about each first). "
            "Every model result is cached by content hash, so after an edit only changed text is re-analysed. "
            "With --draft-terms PROMPT -o terms.toml: draft a term spec for review instead."
        ),
        epilog="Example: aotcc analyze prompt.md -t terms.toml -o prompt.aotc; "
               "aotcc analyze --draft-terms prompt.md -o terms.toml",
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="prompt files, concatenated in order (- for stdin)")
    p.add_argument("--terms", "-t", metavar="SPEC", help="term spec, TOML or JSON (required unless --draft-terms)")
    p.add_argument("--draft-terms", metavar="PROMPT", help="draft a term spec from this prompt (write it with -o)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="the compiled .aotc (analysis), or the drafted .toml (--draft-terms); written atomically")
    p.add_argument("--model", "-m", metavar="M.gguf", help="GGUF model (default: Gemma 3 270M Q4_K_M)")
    p.add_argument("--threads", type=types.threads, metavar="N", help="CPU threads for batches (default: all cores)")
    CompileOptions.add_arguments(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cache", metavar="DIR", help="cache directory (default: ~/.cache/aotcc/analyze)")
    g.add_argument("--no-cache", action="store_true", help="ask the model for everything, store nothing")
    p.add_argument("--no-boundaries", action="store_true", help="skip the surprisal pass (structure-only chunks)")
    p.add_argument("--no-semantic", action="store_true", help="skip semantic first appearance (literal only)")
    p.add_argument("--top-k", type=types.top_k, default=3, metavar="K",
                   help="earlier sentences shortlisted per term (default 3)")
    p.add_argument("--confirm", action="store_true",
                   help="ask the model a yes/no about each shortlisted sentence, in source order, before a "
                        "definition moves (off: Gemma 3 270M said yes to all 27 it was asked, at about one "
                        "prefill's cost on a 1k-token prompt; worth it with a model that can answer)")
    p.add_argument("--threshold", type=types.threshold, default=1.0, metavar="NATS",
                   help="topic-shift score a sentence needs to become a break (default 1.0)")
    p.add_argument("--no-model-draft", action="store_true", help="--draft-terms with the extractor only")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="compute the surprisal windows on Ray actors (a local cluster without ADDRESS, `auto`, or "
                        "ray://host:port); the result is the same as a local run")
    p.add_argument("--json", action="store_true", help="print the analysis (or the draft) as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=cmd_analyze)


def add_compile_flag(p: argparse.ArgumentParser) -> None:
    """`aotcc compile --analyze [MODEL]` (the flag lives here so the two stay in step)."""
    p.add_argument("--analyze", nargs="?", const="default", metavar="M.gguf",
                   help="analyse with a model first (default model if none given; write --analyze=M.gguf "
                        "before the prompts), caching results in ~/.cache/aotcc/analyze")


class _Progress:
    """A progress bar per stage (surprisal windows, embeddings, confirmations, drafting)."""

    LABELS = {"surprisal": ("surprisal", "windows"), "embed": ("embed", "texts"),
              "confirm": ("confirm", "pairs"), "draft": ("draft", "pieces")}

    def __init__(self, show: bool) -> None:
        from aotcc.progress import Bar

        self.show = show
        self._bars: dict[str, Any] = {}
        self._bar_cls = Bar

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.show:
            return
        bar = self._bars.get(stage)
        if bar is None:
            for other in self._bars.values():
                other.close()
            bar = self._bars[stage] = self._bar_cls()
        label, unit = self.LABELS.get(stage, (stage, ""))
        bar.update(done, total, label, unit)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


def _cache_dir(args: argparse.Namespace) -> Any:
    if getattr(args, "no_cache", False):
        return None
    return args.cache if getattr(args, "cache", None) else "default"


def _engine(args: argparse.Namespace, model: str | None) -> Any:
    from aotcc.analyze import Engine

    return Engine(None if model in (None, "default") else model, n_threads=getattr(args, "threads", None))


def run_analysis(args: argparse.Namespace, sources: list[tuple[str, bytes]], model: str | None) -> Any:
    """Analyse and compile `sources` with the options in `args`; returns the `Analysis`."""
    from aotcc.analyze import analyze
    from aotcc.progress import enabled

    for name, data in sources:  # bad input fails before the model is loaded
        decode_utf8(data, name)
    options = CompileOptions.from_args(args)
    if args.terms != "-":  # (stdin can be read once: analyze reads it)
        options.compiler(args.terms)
    bars = _Progress(enabled())
    engine = _engine(args, model)
    scatter = stop = None
    try:
        if getattr(args, "ray", None) is not None:
            from aotcc.build_ray import window_scatter

            scatter, stop = window_scatter(args.ray, engine.path)
        return analyze(
            sources, args.terms, engine=engine, cache_dir=_cache_dir(args), options=CompileOptions.from_args(args),
            boundaries=not getattr(args, "no_boundaries", False),
            semantic=not getattr(args, "no_semantic", False), top_k=getattr(args, "top_k", 3),
            threshold=getattr(args, "threshold", 1.0), confirm=getattr(args, "confirm", False), progress=bars, scatter=scatter,
        )
    finally:
        bars.close()
        engine.close()
        if stop is not None:
            stop()


def summary(a: Any) -> str:
    """The analysis in a few lines for stderr: boundaries, moves, calls, cache."""
    c = a.calls
    st = a.cache
    reasons: dict[str, int] = {}
    for b in a.boundaries:
        reasons[b.reason] = reasons.get(b.reason, 0) + 1
    lines = [
        f"analysis: {a.units} units, {len(a.compiled.chunks)} chunks; boundaries: "
        + (", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"),
    ]
    for b in a.boundaries:
        score = f" (shift {b.score:+.2f} nats)" if b.score is not None and b.reason == "model" else ""
        lines.append(f"  chunk {b.chunk:>3} starts at char {b.offset:>7}: {b.reason}{score}")
    for m in a.moves:
        why = f"similarity {m.similarity:.2f}" + ("" if m.margin is None else f", yes-no margin {m.margin:+.2f}")
        lines.append(f"  moved {m.term!r}: chunk {m.literal_chunk} -> {m.chunk} ({why}): {m.sentence[:70]}")
    lines.append(
        f"model calls: {c.total} ({c.windows} surprisal windows, {c.embeddings} embeddings, "
        f"{c.confirmations} confirmations, {c.generations} generations); "
        f"cache: {st.total('hits')} hits, {st.total('misses')} misses"
        + (f", {len(st.corrupt)} corrupt entries rebuilt" if st.corrupt else "")
        + f"; {a.seconds:.2f} s"
    )
    for path in st.corrupt:
        lines.append(f"aotcc: warning: corrupt cache entry rebuilt: {show(path)}")
    return "\n".join(lines)


def cmd_analyze(args: argparse.Namespace) -> int:
    if args.draft_terms:
        return _cmd_draft(args)
    if not args.prompts:
        raise InputError("analyze: give PROMPT files (or --draft-terms PROMPT)")
    if not args.terms:
        raise InputError("analyze: give --terms SPEC (or use --draft-terms PROMPT to draft one)")
    if args.prompts.count("-") > 1:
        raise InputError("stdin (-) can be read only once")
    if args.output:
        check_output_path(args.output)
    sources = [(name, read_input(name)) for name in args.prompts]
    a = run_analysis(args, sources, args.model)
    if args.output:
        atomic_write(args.output, a.compiled.to_bytes())
    if args.json:
        print(json.dumps({**a.to_dict(), "output": args.output}, indent=2, ensure_ascii=False))
    elif not args.quiet:
        print(summary(a), file=sys.stderr)
        if args.output:
            print(f"wrote {show(args.output)}", file=sys.stderr)
    else:
        for path in a.cache.corrupt:
            print(f"aotcc: warning: corrupt cache entry rebuilt: {show(path)}", file=sys.stderr)
    return 0


def _vocab_counter(model: str | None) -> Any:
    """A token counter from the model's vocabulary alone (the core's GGUF tokenizer, no
    llama.cpp) for the common-word filter of `--no-model-draft`; None when there is no
    model to read (the filter then uses its small built-in list)."""
    from aotcc.counting import gguf_tokenizer
    from aotcc.errors import AotccError
    from aotcc.models import default_model, resolve_model

    try:
        tok = gguf_tokenizer(default_model() if model in (None, "default") else resolve_model(model))
    except AotccError:
        return None
    return lambda text: int(tok([text])[0])


def _cmd_draft(args: argparse.Namespace) -> int:
    from aotcc import _core
    from aotcc.analyze import Cache, default_dir
    from aotcc.analyze.draft import draft, to_toml
    from aotcc.progress import enabled
    from aotcc.spec import load_spec

    if args.prompts or args.terms:
        raise InputError("--draft-terms PROMPT takes no other PROMPT or --terms")
    if not args.output:
        raise InputError("--draft-terms needs -o terms.toml")
    out = check_output_path(args.output)
    if out.suffix.lower() != ".toml":
        raise InputError(f"{out}: the drafted spec is TOML; give a .toml file name")
    data = read_input(args.draft_terms)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{args.draft_terms}: invalid UTF-8 at byte {e.start}") from None
    t0 = time.perf_counter()
    cache_dir = _cache_dir(args)
    cache = Cache(default_dir() if cache_dir == "default" else cache_dir)
    bars = _Progress(enabled())
    engine = None if args.no_model_draft else _engine(args, args.model)
    try:
        d = draft(engine, cache, text, use_model=engine is not None, count=None if engine else _vocab_counter(args.model),
                  progress=lambda k, n: bars("draft", k, n))
        calls = engine.calls if engine is not None else None
        model_name = engine.path.name if engine is not None else None
    finally:
        bars.close()
        if engine is not None:
            engine.close()
    if not d.entries:
        raise InputError(f"{args.draft_terms}: no glossary-shaped lines found and the model proposed no terms")
    toml_text = to_toml(d, str(args.draft_terms), model_name)
    # what is written must load and compile: check the exact text before the rename
    tmp_doc = _check_toml(toml_text, str(out))
    spec_json, _ = load_spec(tmp_doc)
    _core.Compiler(spec_json, str(out)).compile([(str(args.draft_terms), data)])
    atomic_write(out, toml_text.encode("utf-8"))
    extracted = sum(e.origin == "extracted" for e in d.entries)
    mined = sum(e.origin == "mined" for e in d.entries)
    result = {
        "output": str(out), "terms": len(d.entries),
        "extracted": extracted, "mined": mined,
        "proposed_by_model": [e.name for e in d.entries if e.origin == "model"],
        "attempts": d.attempts, "dropped": d.dropped, "pieces": d.pieces, "pieces_total": d.pieces_total,
        "model_calls": calls.to_dict() if calls else None, "cache": cache.stats.to_dict(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif not args.quiet:
        bad = [a for a in d.attempts if not a["ok"]]
        print(f"drafted {result['terms']} terms -> {show(out)} ({result['extracted']} from glossary-shaped lines, "
              f"{mined} names the prompt keeps using, {len(d.entries) - extracted - mined} proposed by the model; "
              "review them)", file=sys.stderr)
        for a in bad:
            print(f"aotcc: warning: model answer for piece {a['piece'] + 1} malformed ({a['reason']})", file=sys.stderr)
        if calls is not None:
            print(f"model calls: {calls.generations} generations ({calls.generated_tokens} tokens); cache: "
                  f"{cache.stats.total('hits')} hits, {cache.stats.total('misses')} misses", file=sys.stderr)
    for path in cache.stats.corrupt:
        print(f"aotcc: warning: corrupt cache entry rebuilt: {show(path)}", file=sys.stderr)
    return 0


def _check_toml(text: str, name: str) -> dict:
    from aotcc._io import parse_document
    from aotcc.errors import SpecError

    # a failure here is a bug of ours, but the message still says where
    doc = parse_document(text.encode("utf-8"), f"{name} (the drafted spec)", "toml", error=SpecError)
    return {"terms": doc.get("term", [])}


__all__ = ["add_compile_flag", "register", "run_analysis", "summary", "Path"]
