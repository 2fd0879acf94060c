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
from aotcc.llama.protocol import Backend, ContextLike, ModelLike
from aotcc.llama.session import Session
from aotcc.llama.sizes import context_limit, max_context, state_widths
from aotcc.llama.templates import system_text, template_parts
from aotcc.models import default_model

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
    ) -> None:
        lb = _backend()
        self._lb = lb
        self.model_path = Path(model) if model is not None else default_model()
        if not self.model_path.is_file():
            raise AotccError(f"model {str(self.model_path)!r}: no such file")
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
            "context.swa_full": True,
        }
        for k, want in self.pinned.items():
            if want is not None:
                exp[f"context.{k}"] = want
        b.check(exp)
        m = self.model
        b.check({"model.arch": m.arch, "model.n_layer": m.n_layer, "model.n_vocab": m.n_vocab})

    # contexts

    def _settings(self, n_ctx: int, type_k: str, type_v: str, flash_attn: bool) -> Any:
        return self._lb.ContextSettings(
            n_ctx=n_ctx, type_k=type_k, type_v=type_v, flash_attn=flash_attn,
            swa_full=True, n_batch=self.n_batch, n_ubatch=self.n_batch,
        )

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
    ) -> tuple[list[int], dict[str, Any] | None, float]:
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
        settings = self._settings(n_ctx, p["type_k"] or "f16", p["type_v"] or "f16", fa)
        ctx = self._context(settings)
        total = len(tokens)
        t = time.perf_counter()
        ctx.decode(tokens, seq=0, pos=0, logits=True, progress=(lambda done: progress(done, total)) if progress else None)
        elapsed = time.perf_counter() - t
        self._used = total
        self._root_template = template
        return tokens, template, elapsed

    def prefill(
        self,
        compiled: Compiled | str | os.PathLike[str],
        out: str | os.PathLike[str] | None = None,
        *,
        chat_template: str | None = None,
        compress: str | None = None,
        level: int = 3,
        progress: Callable[[int, int], None] | None = None,
    ) -> PrefillResult:
        """Tokenize and decode the compiled prompt, then write the bundle to `out` (atomically).

        `chat_template` wraps the prompt as the system turn: "auto" uses the model's own
        template (or llama.cpp's built-in one for its architecture), or give a built-in
        name. `compress="zstd"` compresses the payload. `progress(done, total)` is
        called after each decoded batch.
        """
        from aotcc import __version__
        from aotcc.compiled import Compiled, load

        c = compiled if isinstance(compiled, Compiled) else load(compiled)
        if out is not None:
            from aotcc._io import check_output_path

            check_output_path(out)  # a missing directory is refused before the long part
        if compress not in (None, "none", "zstd"):
            raise AotccError(f"compress {compress!r}: expected zstd or none")
        tokens, template, elapsed = self._prefill_root(c.text, chat_template, progress)
        ctx = self._live()
        # all cells of the (only) sequence, SWA-masked ones included: restoring them at the
        # same cell indices makes a loaded bundle compute bit for bit what a cold prefill does
        state = ctx.get_state(-1)
        s = ctx.settings
        fingerprint = {
            "format": FORMAT_VERSION,
            "created_by": f"aotcc {__version__}",
            "model": self.model_fields(),
            "llama": self._lb.versions(),
            "context": {
                "n_ctx": s.n_ctx, "type_k": s.type_k, "type_v": s.type_v, "flash_attn": s.flash_attn,
                "swa_full": s.swa_full, "kv_unified": True, "n_batch": s.n_batch, "n_ubatch": s.n_ubatch,
            },
            "prompt": {
                "aotc_hash": c.hash,
                "aotc_file": c.path.name if c.path is not None else None,
                "text_blake3": _core.blake3_hex(c.text.encode("utf-8")),
                "n_tokens": len(tokens),
                "tokens": np.asarray(tokens, dtype="<i4").tobytes(),
                "add_bos": bool(self.model.add_bos),
                "template": template,
            },
        }
        path = None
        size = 0
        if out is not None:
            path = write_bundle(out, fingerprint, state, codec=compress or "none", level=level)
            size = path.stat().st_size
        return PrefillResult(path, len(tokens), elapsed, len(state), size, fingerprint)

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
        tokens, template, _ = self._prefill_root(text, chat_template, progress)
        return Session(self, 0, len(tokens), template, self._epoch, pending=None)

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
        settings = self._settings(int(c["n_ctx"]), str(c["type_k"]), str(c["type_v"]), bool(c["flash_attn"]))
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
        return Session(self, 0, b.n_tokens, b.template, self._epoch, pending=None)

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
