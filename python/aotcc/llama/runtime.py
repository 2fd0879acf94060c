"""Prefill a compiled prompt into a KV bundle, and load a bundle as the root session.

    rt = aotcc.Runtime()                      # default model: Gemma 3 270M (Q4_K_M)
    rt.prefill("prompt.aotc", "prompt.aotkv")
    root = rt.load("prompt.aotkv")            # verified, then restored: the root session
    a, b = root.fork(), root.fork()           # independent sessions sharing the root's cells
    print(a.ask("What is RP-7?").text)

`Runtime` owns one model and one llama.cpp context; a `Session` (aotcc.llama.session)
is one sequence in that context. Every check against the bundle's fingerprint (model
file, llama.cpp version, n_ctx, KV types, flash attention, checksums) runs before
llama.cpp sees a byte of the state. The llama.cpp calls themselves live in
`aotcc.llama.backend`, reached through the `Backend` protocol.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aotcc import _core
from aotcc._io import note_input, show
from aotcc.errors import AotccError, BundleError, BundleFormatError, BundleMismatch, ContextOverflow, LlamaError
from aotcc.limits import MAX_BATCH, MAX_CTX, check_int, check_threads
from aotcc.llama.bundle import FORMAT_VERSION, Bundle, model_hash
from aotcc.llama.bundle import write as write_bundle
from aotcc.llama.clean import TagMap
from aotcc.llama.protocol import Backend, ContextLike, ModelLike
from aotcc.llama.session import Session
from aotcc.llama.sizes import context_limit, max_context, state_widths
from aotcc.llama.templates import system_text, template_parts
from aotcc.models import default_model, resolve_model

#: Bundle modes: compact (what a continuing decode needs) and exact (every cell).
MODES = ("compact", "exact")

if TYPE_CHECKING:
    from aotcc.compiled import Compiled


def _backend() -> Backend:
    try:
        from aotcc.llama import backend
    except ImportError as e:
        raise AotccError(
            f"KV bundles need llama-cpp-python ({e}); run `make llama` (it builds it with flags safe for this CPU)"
        ) from None
    return backend  # type: ignore[return-value]


def _env_threads() -> int | None:
    """`AOTCC_THREADS`, when set: threads for batches (prefill and queries)."""
    v = os.environ.get("AOTCC_THREADS")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        raise AotccError(f"AOTCC_THREADS={v!r}: expected a whole number") from None
    return check_threads(n, "AOTCC_THREADS")


# --- results -------------------------------------------------------------------------


@dataclass
class PrefillResult:
    """What `Runtime.prefill` did."""

    path: Path | None
    n_tokens: int
    prefill_s: float
    state_bytes: int
    file_bytes: int
    fingerprint: dict[str, Any] = field(repr=False)
    reused: int = 0  # prompt tokens restored from a `source` bundle instead of decoded
    note: str | None = None  # why a `source` bundle was not used, when it was not

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.prefill_s if self.prefill_s > 0 else 0.0


# --- the runtime ---------------------------------------------------------------------


class Runtime:
    """A model and the llama.cpp context that bundles are prefilled into and loaded into.

    Context settings left as None are taken from the bundle on `load` (and default to
    n_ctx = prompt + 1024 rounded up to 256, f16 KV, flash attention on, for `prefill`).
    A setting given here must match the bundle's, or `load` refuses it.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int | None = None,
        kv_type: str | None = None,
        type_k: str | None = None,
        type_v: str | None = None,
        flash_attn: bool | None = None,
        n_threads: int | None = None,
        n_batch: int = 512,
        max_sessions: int = 4,
        mode: str | None = None,
    ) -> None:
        lb = _backend()
        if mode not in (None, *MODES):
            raise AotccError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        self._lb = lb
        self.model_path = resolve_model(model) if model is not None else default_model()
        note_input(self.model_path)
        kv_known = ", ".join(lb.KV_TYPES)
        for name, v in (("kv_type", kv_type), ("type_k", type_k), ("type_v", type_v)):
            if v is not None and v not in lb.KV_TYPES:
                raise AotccError(f"{name} {v!r}: expected one of {kv_known}")
        if n_ctx is not None:
            check_int(n_ctx, "n_ctx", 16, MAX_CTX)
        check_int(n_batch, "n_batch", 1, MAX_BATCH)
        check_int(max_sessions, "max_sessions", 1, 256)
        check_threads(n_threads, "n_threads")
        self.pinned: dict[str, Any] = {
            "n_ctx": n_ctx,
            "type_k": type_k or kv_type,
            "type_v": type_v or kv_type,
            "flash_attn": flash_attn,
            "mode": mode,
        }
        self.n_threads = n_threads or _env_threads()
        self.n_batch = n_batch
        self.max_sessions = max_sessions
        self._model: ModelLike | None = None
        self.model_load_s = 0.0
        self._ctx: ContextLike | None = None
        self._epoch = 0  # bumped on every load: older sessions become invalid
        self._free_seqs: list[int] = []
        self._used = 0
        self._root_template: dict[str, Any] | None = None

    @property
    def model(self) -> ModelLike:
        """The llama.cpp model, loaded on first use (so a bundle for another model file is
        refused by its hash before llama.cpp opens anything)."""
        if self._model is None:
            t = time.perf_counter()
            self._model = self._lb.Model(self.model_path)
            self.model_load_s = time.perf_counter() - t
        return self._model

    # identity

    def model_fields(self) -> dict[str, Any]:
        m = self.model
        return {
            "file": self.model_path.name,
            "size": self.model_path.stat().st_size,
            "blake3": model_hash(self.model_path),
            "arch": m.arch,
            "n_layer": m.n_layer,
            "n_embd": m.n_embd,
            "n_head_kv": m.n_head_kv,
            "n_vocab": m.n_vocab,
            "n_swa": m.n_swa,
        }

    def _check_identity(self, b: Bundle) -> None:
        """Model file, llama.cpp build, then model shape and pinned settings; first difference wins."""
        theirs = b.fingerprint["model"].get("file", "?")
        b.check(
            {"model.blake3": model_hash(self.model_path)},
            labels={"model.blake3": f"bundle made for model file {theirs}, runtime model is {self.model_path.name}"},
        )
        v = self._lb.versions()
        exp: dict[str, object] = {
            "llama.llama_cpp_python": v["llama_cpp_python"],
            "llama.llama_cpp": v["llama_cpp"],
            "llama.state_seq_version": v["state_seq_version"],
        }
        for k, want in self.pinned.items():
            if want is not None and k != "mode":
                exp[f"context.{k}"] = want
        b.check(exp)
        if self.pinned["mode"] is not None and b.fingerprint["model"].get("n_swa"):
            b.check({"context.mode": self.pinned["mode"]}, labels={
                "context.mode": "compact bundles keep the last window of the sliding-window layers; exact ones every "
                                "cell (prefill --exact)"})
        m = self.model
        b.check({"model.arch": m.arch, "model.n_layer": m.n_layer, "model.n_vocab": m.n_vocab})

    # contexts

    def _settings(self, n_ctx: int, type_k: str, type_v: str, flash_attn: bool, swa_full: bool = True) -> Any:
        return self._lb.ContextSettings(
            n_ctx=n_ctx, type_k=type_k, type_v=type_v, flash_attn=flash_attn,
            swa_full=swa_full, n_batch=self.n_batch, n_ubatch=self.n_batch,
        )

    def _check_kv_types(self, type_k: str, type_v: str, flash_attn: bool) -> None:
        """Refuse, before any prefill, a KV cache type llama.cpp cannot run here."""
        quantized = [t for t in (type_k, type_v) if t not in ("f16", "f32")]
        if type_v not in ("f16", "f32") and not flash_attn:
            raise AotccError(f"kv type {type_v}: a quantized V cache needs flash attention on (--flash-attn on)")
        if quantized:
            m = self.model
            head = m.meta(f"{m.arch}.attention.key_length") or m.meta(f"{m.arch}.attention.value_length")
            size = int(head) if head and head.isdigit() else m.n_embd // max(1, int(m.meta(f"{m.arch}.attention.head_count") or 1))
            if size % 32:
                raise AotccError(f"kv type {quantized[0]}: {m.path.name} has attention heads of {size} values, not a "
                                 "multiple of the 32-value quantization block; use f16")

    def bundle_mode(self) -> str:
        """The mode `prefill` writes: the pinned one, else compact for a sliding-window
        model (exact for any other, where the two are the same bytes)."""
        if not self.model.n_swa:
            return "exact"
        return str(self.pinned["mode"] or "compact")

    def _context(self, settings: Any) -> ContextLike:
        """A cleared context with `settings`, reusing the current one when it matches."""
        if self._ctx is not None and self._ctx.settings == settings:
            self._ctx.clear()
        else:
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None
            self._ctx = self._lb.Context(
                self.model, settings, n_seq_max=self.max_sessions, n_threads=1, n_threads_batch=self.n_threads
            )
        self._epoch += 1
        self._free_seqs = list(range(self.max_sessions - 1, 0, -1))
        self._used = 0
        return self._ctx

    # prompt tokens

    def prompt_tokens(self, text: str, template: dict[str, Any] | None) -> list[int]:
        """Token ids of the compiled prompt as a bundle stores them (BOS, template's system prefix, text)."""
        m = self.model
        toks = [m.bos] if m.add_bos and m.bos >= 0 else []
        if template is not None:
            toks += m.tokenize(template["system_prefix"], special=True)
        toks += m.tokenize(text, special=False)
        return toks

    def _resolve_n_ctx(self, n_prompt: int) -> int:
        n_ctx = self.pinned["n_ctx"]
        if n_ctx is None:
            n_ctx = min(max(2048, -(-(n_prompt + 1024) // 256) * 256), max(self.model.n_ctx_train, 2048))
        if n_prompt >= n_ctx:
            raise ContextOverflow(f"the compiled prompt has {n_prompt} tokens; n_ctx {n_ctx} leaves no room for a query (use --ctx)")
        p = self.pinned
        why = context_limit(self.model, n_ctx, p["type_k"] or "f16", p["type_v"] or "f16")
        if why:
            raise AotccError(f"n_ctx {n_ctx:,}: {why}")
        return n_ctx

    # prefill

    def _prefill_root(
        self,
        text: str,
        chat_template: str | None,
        progress: Callable[[int, int], None] | None,
        source: Bundle | None = None,
    ) -> tuple[list[int], dict[str, Any] | None, float, int]:
        """Tokenize and decode `text` into sequence 0 of a context with a full-size SWA
        cache (whatever the bundle's mode: one computation, saved two ways). With an
        exact `source` bundle of a shared token prefix, its state is restored and only
        the rest is decoded, from the last n_batch boundary inside the shared prefix: the
        same batches a full prefill decodes, so the same bytes. Returns the tokens, the
        template, the decode seconds and how many tokens came from `source`."""
        template = None
        if chat_template:
            template, tmpl = template_parts(self.model, chat_template)
            text = system_text(self.model, template, tmpl, text)
        tokens = self.prompt_tokens(text, template)
        if not tokens:
            raise AotccError("the compiled prompt is empty")
        n_ctx = self._resolve_n_ctx(len(tokens))
        p = self.pinned
        fa = True if p["flash_attn"] is None else bool(p["flash_attn"])
        self._check_kv_types(p["type_k"] or "f16", p["type_v"] or "f16", fa)
        settings = self._settings(n_ctx, p["type_k"] or "f16", p["type_v"] or "f16", fa, True)
        ctx = self._context(settings)
        start = 0
        if source is not None and source.n_tokens < n_ctx:  # its cells fit this context
            old = source.tokens.tolist()
            same = next((i for i, (a, b) in enumerate(zip(old, tokens)) if a != b), min(len(old), len(tokens)))
            start = (min(same, len(tokens) - 1) // settings.n_batch) * settings.n_batch
            if start:
                with source.payload() as state:
                    ctx.set_state(state, 0)
                if ctx.pos_max(0) != len(old) - 1:
                    raise BundleError(f"{source.path}: restored state ends at position {ctx.pos_max(0)}, expected {len(old) - 1}")
                ctx.seq_rm(0, start, -1)
        total = len(tokens)
        t = time.perf_counter()
        ctx.decode(tokens[start:], seq=0, pos=start, logits=True,
                   progress=(lambda done: progress(start + done, total)) if progress else None)
        elapsed = time.perf_counter() - t
        self._used = total
        self._root_template = template
        return tokens, template, elapsed, start

    def reuse_problem(self, source: Bundle, chat_template: str | None) -> str | None:
        """Why `source` cannot seed an incremental prefill by this runtime (None: it can).
        It must be exact (or of a model without sliding windows: the two are the same),
        and made by the same model, build and context settings a full prefill would use."""
        fp = source.fingerprint
        if source.mode != "exact" and fp["model"].get("n_swa"):
            return (f"{source.path} is a compact bundle: its sliding-window layers keep only the last window, so "
                    "no earlier state can be rebuilt from it (keep an exact bundle for incremental rebuilds)")
        try:
            self._check_identity(source)
        except BundleError as e:
            return f"{source.path}: {e}"
        p, c = self.pinned, source.context
        want = {"type_k": p["type_k"] or "f16", "type_v": p["type_v"] or "f16",
                "flash_attn": True if p["flash_attn"] is None else bool(p["flash_attn"]), "n_batch": self.n_batch}
        for k, v in want.items():
            if c.get(k) != v:
                return f"{source.path}: made with {k} {c.get(k)!r}, this prefill uses {v!r}"
        tmpl = source.template
        if (tmpl is None) != (chat_template is None) or (tmpl and template_parts(self.model, chat_template or "auto")[0] != tmpl):
            return f"{source.path}: made with another chat template setting"
        return None

    def prefill(
        self,
        compiled: Compiled | str | os.PathLike[str],
        out: str | os.PathLike[str] | None = None,
        *,
        chat_template: str | None = None,
        compress: str | None = None,
        level: int = 3,
        progress: Callable[[int, int], None] | None = None,
        source: str | os.PathLike[str] | Bundle | None = None,
        exact_out: str | os.PathLike[str] | None = None,
    ) -> PrefillResult:
        """Tokenize and decode the compiled prompt, then write the bundle to `out` (atomically).

        `chat_template` wraps the prompt as the system turn: "auto" uses the model's own
        template (or llama.cpp's built-in one for its architecture), or give a built-in
        name. `compress="zstd"` compresses the payload. `progress(done, total)` is
        called after each decoded batch.

        The bundle's mode is `bundle_mode()`: a compact bundle of a sliding-window model
        holds what a continuing decode needs (every cell of the global layers, the last
        window of the sliding ones: llama.cpp's own slot save), an exact one every cell
        of a full-size cache, for bit-exact equality with a cold prefill on this build.
        Both come from the same computation; `exact_out` also writes the exact bundle
        (what `aotcc build` keeps to rebuild incrementally).

        `source` is an earlier bundle (`prefill --from`): when it is exact and made with
        the same settings, the tokens it shares with this prompt are restored rather than
        decoded; the result has the bytes a full prefill would give. Otherwise the whole
        prompt is decoded and `PrefillResult.note` says why.
        """
        from aotcc import __version__
        from aotcc.compiled import Compiled, load

        c = compiled if isinstance(compiled, Compiled) else load(compiled)
        if out is not None:
            from aotcc._io import check_output_path

            check_output_path(out)  # a missing directory is refused before the long part
        if compress not in (None, "none", "zstd"):
            raise AotccError(f"compress {compress!r}: expected zstd or none")
        mode = self.bundle_mode()
        note = None
        src = None
        if source is not None:
            src = source if isinstance(source, Bundle) else Bundle.open(source)
            note = self.reuse_problem(src, chat_template)
            if note is not None:
                src = None
        tokens, template, elapsed, reused = self._prefill_root(c.text, chat_template, progress, source=src)
        if src is not None and not reused:
            note = f"{src.path} shares no whole batch of {self.n_batch} tokens with this prompt"
        ctx = self._live()
        # exact: every cell of the full-size caches (all sequences: SWA-masked cells too),
        # restored at the same cell indices, computes bit for bit what a cold prefill does;
        # compact: sequence 0, whose SWA-masked cells llama.cpp leaves out
        state = ctx.get_state(-1 if mode == "exact" else 0)
        s = ctx.settings
        fingerprint: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "created_by": f"aotcc {__version__}",
            "model": self.model_fields(),
            "llama": self._lb.versions(),
            "context": {
                "n_ctx": s.n_ctx, "type_k": s.type_k, "type_v": s.type_v, "flash_attn": s.flash_attn,
                # the context to restore into: a compact state goes into a cache without the full-size window
                "swa_full": mode == "exact", "kv_unified": True, "n_batch": s.n_batch, "n_ubatch": s.n_ubatch,
                "mode": mode,
            },
            "prompt": {
                "aotc_hash": c.hash,
                "aotc_file": c.path.name if c.path is not None else None,
                "text_blake3": _core.blake3_hex(c.text.encode("utf-8")),
                "n_tokens": len(tokens),
                "tokens": np.asarray(tokens, dtype="<i4").tobytes(),
                "add_bos": bool(self.model.add_bos),
                "template": template,
                "tags": TagMap.from_compiled(c).to_fields(),
            },
        }
        path = None
        size = 0
        if out is not None:
            path = write_bundle(out, fingerprint, state, codec=compress or "none", level=level)
            size = path.stat().st_size
        if exact_out is not None:
            exact_fp = {**fingerprint, "context": {**fingerprint["context"], "mode": "exact", "swa_full": True}}
            write_bundle(exact_out, exact_fp, state if mode == "exact" else ctx.get_state(-1), codec=compress or "none",
                         level=level)
        return PrefillResult(path, len(tokens), elapsed, len(state), size, fingerprint, reused=reused, note=note)

    def cold(
        self,
        compiled: Compiled | str,
        *,
        chat_template: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Session:
        """Prefill a compiled prompt (or plain text) without saving: the root session a
        bundle would give, computed the slow way. For comparisons and benchmarks."""
        text = compiled if isinstance(compiled, str) else compiled.text
        tags = None if isinstance(compiled, str) else TagMap.from_compiled(compiled)
        tokens, template, _, _ = self._prefill_root(text, chat_template, progress)
        return Session(self, 0, len(tokens), template, self._epoch, pending=None, tags=tags)

    # load

    def verify(self, bundle: str | os.PathLike[str] | Bundle, *, payload: bool = True) -> Bundle:
        """Every check `load` makes, without touching llama.cpp: raises `BundleMismatch`
        or `BundleFormatError`, returns the opened bundle."""
        b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        self._check_identity(b)
        # sizes are bounded by the real model before anything is allocated for them
        toks = b.tokens
        if len(toks) and (int(toks.min()) < 0 or int(toks.max()) >= self.model.n_vocab):
            raise BundleFormatError(f"{show(b.path)}: token ids outside the model's vocabulary (0..{self.model.n_vocab - 1})")
        c = b.context
        top, why = max_context(self.model, str(c["type_k"]), str(c["type_v"]))
        if int(c["n_ctx"]) > top:
            raise BundleMismatch("context.n_ctx", c["n_ctx"], f"at most {top}", why)
        b.check_state_size(self.model.n_layer, *state_widths(self.model))
        if payload:
            b.verify_payload()
        return b

    def load(self, bundle: str | os.PathLike[str] | Bundle) -> Session:
        """Verify a bundle against this runtime, restore it, and return the root session.

        Raises `BundleMismatch` naming the field and both values, or `BundleFormatError`
        for a truncated, corrupt or foreign file — before llama.cpp reads any state.
        Sessions from an earlier `load` stop working.
        """
        b = self.verify(bundle, payload=False)
        c = b.context
        settings = self._settings(int(c["n_ctx"]), str(c["type_k"]), str(c["type_v"]), bool(c["flash_attn"]),
                                  bool(c["swa_full"]))
        with b.payload() as state:  # checksums verified here, before the context sees it
            ctx = self._context(settings)
            try:
                ctx.set_state(state, 0)
            except LlamaError as e:
                ctx.clear()
                raise BundleError(f"{show(b.path)}: llama.cpp refused the state: {e}") from None
        if ctx.pos_max(0) != b.n_tokens - 1:
            ctx.clear()
            raise BundleError(f"{b.path}: restored state ends at position {ctx.pos_max(0)}, expected {b.n_tokens - 1}")
        self._used = b.n_tokens
        self._root_template = b.template
        return Session(self, 0, b.n_tokens, b.template, self._epoch, pending=None,
                       tags=TagMap.from_fields(b.fingerprint["prompt"].get("tags")))

    # sessions

    def _live(self) -> ContextLike:
        if self._ctx is None:
            raise AotccError("no context: prefill or load a bundle first")
        return self._ctx

    def _take_seq(self) -> int:
        if not self._free_seqs:
            raise AotccError(f"all {self.max_sessions - 1} fork slots are in use; close a session or raise max_sessions")
        return self._free_seqs.pop()

    def _release_seq(self, seq: int, own: int) -> None:
        self._live().seq_rm(seq)
        self._used = max(0, self._used - own)
        self._free_seqs.append(seq)

    @property
    def n_ctx(self) -> int:
        return int(self._ctx.n_ctx) if self._ctx is not None else 0

    @property
    def threads(self) -> int:
        """Threads for batches (prefill): the setting, else all cores."""
        return self.n_threads or self._lb.default_threads()

    @contextmanager
    def batch_threads(self, n: int) -> Iterator[None]:
        """Decode batches on `n` threads while the block runs. Scoring decodes a few
        tokens per call: there a second thread hardly pays, and on a busy machine a
        descheduled one stalls every step."""
        ctx = self._ctx
        if ctx is None:
            raise AotccError("no context: prefill or load a bundle first")
        ctx.set_threads(1, n)
        try:
            yield
        finally:  # the next prefill may reuse this context
            if self._ctx is ctx:
                ctx.set_threads(1, self.threads)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["PrefillResult", "Runtime", "default_model"]
