"""The model side of analysis: one GGUF model, a logits context and an embeddings
context, and the four kinds of model call analysis makes — surprisal over a window,
an embedding, a constrained yes/no, and (grammar-constrained) generation.

Every call is counted in `calls`, so a run can say how many it made, and every setting
that changes a result is in `settings`, which goes into every cache key. Results are
deterministic: greedy decoding, fixed context settings.

Surprisal reads logits only at the positions asked for (`want`), in batches of up to
n_batch tokens: with Gemma's 262k-word vocabulary the output matmul of one row costs
about as much as the rest of the small model, so scoring only the first tokens of each
unit keeps analysis near the cost of a prefill.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aotcc.errors import AotccError, ModelError

log = logging.getLogger("aotcc.analyze")


@dataclass
class Calls:
    """How many model calls a run made (cache hits make none)."""

    windows: int = 0
    window_tokens: int = 0
    unit_batches: int = 0
    unit_tokens: int = 0
    embeddings: int = 0
    embedding_tokens: int = 0
    confirmations: int = 0
    generations: int = 0
    generated_tokens: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.windows + self.unit_batches + self.embeddings + self.confirmations + self.generations

    def to_dict(self) -> dict[str, Any]:
        return {"windows": self.windows, "window_tokens": self.window_tokens, "unit_batches": self.unit_batches,
                "unit_tokens": self.unit_tokens, "embeddings": self.embeddings,
                "embedding_tokens": self.embedding_tokens, "confirmations": self.confirmations,
                "generations": self.generations, "generated_tokens": self.generated_tokens, "total": self.total,
                "seconds": {k: round(v, 4) for k, v in self.seconds.items()}}

    def timed(self, kind: str, t0: float) -> None:
        self.seconds[kind] = self.seconds.get(kind, 0.0) + time.perf_counter() - t0


def _backend() -> Any:
    try:
        from aotcc.llama import backend as llama_backend
    except ImportError as e:
        raise ModelError(f"analysis needs llama-cpp-python ({e}); run `make llama`") from None
    return llama_backend


class Engine:
    """A model opened for analysis. Contexts are made on first use."""

    #: context size for surprisal windows (a window plus its carried-over prefix fits)
    N_CTX = 1024
    N_BATCH = 512
    #: sequences decoded side by side in one batch (short texts scored alone)
    N_SEQ = 16

    def __init__(self, model: str | os.PathLike[str] | None = None, *, n_threads: int | None = None) -> None:
        from aotcc.limits import check_threads
        from aotcc.models import default_model

        check_threads(n_threads, "n_threads")
        self._lb = _backend()
        self.path = Path(model) if model is not None else default_model()
        if not self.path.is_file():
            raise ModelError(f"model {str(self.path)!r}: no such file")
        from aotcc.llama.bundle import model_hash

        try:
            self.model = self._lb.Model(self.path)
        except AotccError as e:
            raise ModelError(str(e)) from None
        self.model_hash = model_hash(self.path)
        self.n_threads = n_threads
        self.calls = Calls()
        self._logits_ctx: Any = None
        self._embed_ctx: Any = None
        self._chat: tuple[str, str] | None = None

    @property
    def settings(self) -> dict[str, Any]:
        """What, besides the text, shapes a result (part of every cache key)."""
        return {"model": self.model_hash, "n_ctx": self.N_CTX, "n_batch": self.N_BATCH}

    # contexts

    def _ctx(self) -> Any:
        if self._logits_ctx is None:
            s = self._lb.ContextSettings(n_ctx=self.N_CTX, n_batch=self.N_BATCH, n_ubatch=self.N_BATCH)
            try:
                self._logits_ctx = self._lb.Context(self.model, s, n_seq_max=self.N_SEQ, n_threads_batch=self.n_threads)
            except AotccError as e:
                raise ModelError(f"model {self.path.name}: {e}") from None
        return self._logits_ctx

    def _ectx(self) -> Any:
        if self._embed_ctx is None:
            s = self._lb.ContextSettings(n_ctx=self.N_BATCH, n_batch=self.N_BATCH, n_ubatch=self.N_BATCH)
            try:
                self._embed_ctx = self._lb.Context(self.model, s, n_seq_max=self.N_SEQ, n_threads_batch=self.n_threads,
                                                   embeddings=True)
            except AotccError as e:
                raise ModelError(f"model {self.path.name} cannot produce embeddings: {e}") from None
        return self._embed_ctx

    def close(self) -> None:
        for c in (self._logits_ctx, self._embed_ctx):
            if c is not None:
                c.close()
        self._logits_ctx = self._embed_ctx = None
        self.model.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # tokens

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text, special=False)

    def token_offsets(self, text: str, tokens: Sequence[int]) -> np.ndarray:
        """Character offset in `text` where each token starts (pieces concatenate to the
        text for SentencePiece/BPE vocabularies; a mismatch falls back to proportions)."""
        lens = np.fromiter((len(self.model.piece(t)) for t in tokens), dtype=np.int64, count=len(tokens))
        data = text.encode("utf-8")
        byte_starts = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(tokens) else np.zeros(0, np.int64)
        if int(lens.sum()) != len(data):
            byte_starts = (np.arange(len(tokens)) * (len(data) / max(1, len(tokens)))).astype(np.int64)
        # bytes → characters: count the UTF-8 lead bytes before each start
        # a piece that opens with white space ("▁word") belongs where its word starts
        spaces = np.fromiter((len(p) - len(p.lstrip()) for p in map(self.model.piece, tokens)), dtype=np.int64,
                             count=len(tokens))
        byte_starts = np.minimum(byte_starts + np.where(spaces < lens, spaces, 0), len(data))
        lead = np.frombuffer(data, dtype=np.uint8)
        is_lead = np.concatenate([[0], np.cumsum((lead & 0xC0) != 0x80)])
        return is_lead[np.clip(byte_starts, 0, len(data))]

    def _bos(self) -> list[int]:
        m = self.model
        return [m.bos] if m.add_bos and m.bos >= 0 else []

    # surprisal

    def surprisal(self, prefix: Sequence[int], tokens: Sequence[int], want: Sequence[int]) -> np.ndarray:
        """-log p of `tokens[i]` for each i in `want`, given BOS + `prefix` + tokens before i.

        One window: the context is cleared, the prefix decoded without logits, then the
        window decoded in batches with logits switched on only for the rows that predict
        a wanted token. Returns float32 surprisal in nats, NaN where not wanted.
        """
        t0 = time.perf_counter()
        ctx = self._ctx()
        seq = list(self._bos()) + list(prefix)
        full = seq + list(tokens)
        if len(full) > ctx.n_ctx:
            raise ModelError(f"window of {len(full)} tokens does not fit n_ctx {ctx.n_ctx}")
        off = len(seq)
        # row r (position r in `full`) predicts token r+1; we need rows off+i-1 for i in want
        rowset = {off + i - 1 for i in want if 0 <= i < len(tokens) and off + i - 1 >= 0}
        targets = [full[p + 1] if p in rowset else -1 for p in range(len(full))]
        out = np.full(len(tokens), np.nan, dtype=np.float32)
        n_batch = ctx.settings.n_batch
        ctx.clear()
        try:
            for done in range(0, len(full), n_batch):
                n = min(n_batch, len(full) - done)
                lp = ctx.score_batch(full[done : done + n], range(done, done + n), [0] * n, targets[done : done + n])
                for k in range(n):
                    p = done + k
                    if p in rowset:
                        out[p + 1 - off] = -lp[k]
        except AotccError as e:
            raise ModelError(f"{e} (surprisal window)") from None
        ctx.clear()
        self.calls.windows += 1
        self.calls.window_tokens += len(full)
        self.calls.timed("windows", t0)
        return out

    def surprisal_alone(self, texts: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """-log p of every token of each token list given only BOS: many short lists
        side by side in one batch (one sequence each), logits on for every row."""
        t0 = time.perf_counter()
        ctx = self._ctx()
        bos = self._bos()
        out = [np.full(len(t), np.nan, dtype=np.float32) for t in texts]
        n_batch = ctx.settings.n_batch
        i = 0
        while i < len(texts):
            ctx.clear()
            toks: list[int] = []
            pos: list[int] = []
            seqs: list[int] = []
            targets: list[int] = []
            where: list[tuple[int, int]] = []  # per row: (text, token index predicted), (-1, -1) if none
            seq = 0
            while i < len(texts) and seq < self.N_SEQ:
                full = bos + list(texts[i])
                if toks and len(toks) + len(full) > n_batch:
                    break
                full = full[:n_batch]
                for p, tok in enumerate(full):
                    toks.append(tok)
                    pos.append(p)
                    seqs.append(seq)
                    # row p predicts token p+1 of `full`, i.e. token p+1-len(bos) of the text
                    if p + 1 < len(full) and p + 1 - len(bos) >= 0:
                        targets.append(full[p + 1])
                        where.append((i, p + 1 - len(bos)))
                    else:
                        targets.append(-1)
                        where.append((-1, -1))
                i += 1
                seq += 1
            try:
                lp = ctx.score_batch(toks, pos, seqs, targets)
            except AotccError as e:
                raise ModelError(f"{e} (scoring units alone)") from None
            for k, (ti, ix) in enumerate(where):
                if ti >= 0:
                    out[ti][ix] = -lp[k]
            self.calls.unit_batches += 1
            self.calls.unit_tokens += len(toks)
        ctx.clear()
        self.calls.timed("unit_batches", t0)
        return out

    # embeddings

    def embed(self, text: str) -> np.ndarray:
        """The mean-pooled, L2-normalised last hidden state of `text` (its first n_batch tokens)."""
        return self.embed_many([text])[0]

    def embed_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`embed` for many texts, packed several to a decode (one call per text is counted)."""
        if not texts:
            return []
        t0 = time.perf_counter()
        lists = [(self._bos() + self.tokenize(t))[: self.N_BATCH] for t in texts]
        try:
            vecs = self._ectx().embed_many(lists)
        except AotccError as e:
            raise ModelError(f"model {self.path.name} cannot produce embeddings: {e}") from None
        self.calls.embeddings += len(texts)
        self.calls.embedding_tokens += sum(len(t) for t in lists)
        self.calls.timed("embeddings", t0)
        return vecs

    # prompts

    def chat(self, question: str) -> str:
        """`question` as a user turn followed by the start of the model's answer."""
        if self._chat is None:
            from aotcc.llama.templates import template_parts

            try:
                parts, _ = template_parts(self.model)
                self._chat = (parts["user_prefix"], parts["assistant_prefix"])
            except AotccError:
                self._chat = ("", "\n")  # no template: plain continuation
        pre, post = self._chat
        return pre + question + post

    def _prompt_tokens(self, prompt: str) -> list[int]:
        return self._bos() + self.model.tokenize(prompt, special=True)

    def yes_no(self, prompt: str) -> float:
        """log p(yes) - log p(no) for the first answer token after `prompt` (a chat turn).

        Yes and no are each the sum over their spellings (`Yes`, ` yes`, …), so the answer
        does not depend on capitalisation. One decode.
        """
        t0 = time.perf_counter()
        ctx = self._ctx()
        toks = self._prompt_tokens(prompt)
        if len(toks) >= ctx.n_ctx:
            toks = toks[: 1] + toks[-(ctx.n_ctx - 2):]
        ctx.clear()
        ctx.decode(toks, logits=True)
        logits = ctx.last_logits().astype(np.float64)
        ctx.clear()
        lse = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
        yes = self._variants(("yes", "Yes", "YES"))
        no = self._variants(("no", "No", "NO"))
        lp_yes = np.logaddexp.reduce(logits[yes] - lse)
        lp_no = np.logaddexp.reduce(logits[no] - lse)
        self.calls.confirmations += 1
        self.calls.timed("confirmations", t0)
        return float(lp_yes - lp_no)

    def _variants(self, words: Sequence[str]) -> list[int]:
        ids: set[int] = set()
        for w in words:
            for form in (w, " " + w):
                t = self.model.tokenize(form)
                if len(t) == 1:
                    ids.add(t[0])
        if not ids:
            raise ModelError(f"model {self.path.name}: no single token for {words[0]!r}")
        return sorted(ids)

    # generation

    def generate(self, prompt: str, *, max_tokens: int, grammar: str | None = None,
                 on_token: Callable[[int], None] | None = None) -> tuple[str, str]:
        """Greedy completion of `prompt`: `(text, stop)` with stop "eog", "length" or
        "grammar" (the grammar is complete). With `grammar` (GBNF), only tokens the
        grammar accepts are chosen: the greedy token is checked first and the whole
        vocabulary filtered only when it is refused, which keeps most steps cheap."""
        t0 = time.perf_counter()
        ctx = self._ctx()
        m = self.model
        toks = self._prompt_tokens(prompt)
        room = ctx.n_ctx - max_tokens - 1
        if len(toks) > room:
            raise ModelError(f"the drafting prompt has {len(toks)} tokens; at most {room} fit with {max_tokens} to generate")
        ctx.clear()
        ctx.decode(toks, logits=True)
        smpl = None
        if grammar is not None:
            try:
                smpl = self._lb.Grammar(m, grammar)
            except AotccError:
                raise ModelError("llama.cpp refused the JSON grammar") from None
        out: list[int] = []
        stop = "length"
        try:
            pos = len(toks)
            while len(out) < max_tokens:
                logits = ctx.last_logits()
                tok = int(np.argmax(logits))
                if smpl is not None and not smpl.accepts(tok, logits):
                    tok = smpl.best(logits)
                    if tok < 0:
                        stop = "grammar"
                        break
                if m.is_eog(tok):
                    stop = "eog"
                    break
                if smpl is not None:
                    smpl.accept(tok)
                out.append(tok)
                if on_token is not None:
                    on_token(len(out))
                if pos + 1 >= ctx.n_ctx:
                    break
                ctx.decode([tok], pos=pos, logits=True)
                pos += 1
        finally:
            if smpl is not None:
                smpl.close()
            ctx.clear()
        self.calls.generations += 1
        self.calls.generated_tokens += len(out)
        self.calls.timed("generations", t0)
        return m.detokenize(out), stop

