"""The model side of analysis: one GGUF model, one context, and the kinds of model
call analysis makes — windows (surprisal of chosen tokens in context), unit onsets
scored alone (a prefix tree), embeddings (hidden states from a decode cut short half way
through the model), shared prefixes with branches (yes/no questions about one term), and
(grammar-constrained) generation.

Every call is counted in `calls`, so a run can say how many it made, and every setting
that changes a result is in `settings`, which goes into every cache key. Results are
deterministic: greedy decoding, fixed context settings.

Logits are read only for the rows that are scored: with Gemma's 262k-word vocabulary
the output matmul of one row costs more than twice the rest of the small model, so
those rows, not the tokens decoded, are what an analysis pays for. Independent short
decodes are packed side by side (one sequence each) into batches of up to n_batch rows.
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
    #: sequences decoded side by side in one batch (unit onsets scored alone)
    N_SEQ = 64

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
        self._chat: tuple[str, str] | None = None
        #: the graph node whose rows, mean-pooled, are a text's embedding: the normed
        #: input of layer 4 of Gemma 3 270M's 18 (a quarter of the way). The decode
        #: stops there, so an embedding token costs about a fifth of a prefill token
        self.hidden = f"attn_norm-{max(1, self.model.n_layer // 4)}"

    @property
    def settings(self) -> dict[str, Any]:
        """What, besides the text, shapes a result (part of every cache key)."""
        return {"model": self.model_hash, "n_ctx": self.N_CTX, "n_batch": self.N_BATCH, "hidden": self.hidden}

    # contexts

    def _ctx(self) -> Any:
        if self._logits_ctx is None:
            s = self._lb.ContextSettings(n_ctx=self.N_CTX, n_batch=self.N_BATCH, n_ubatch=self.N_BATCH)
            try:
                self._logits_ctx = self._lb.Context(self.model, s, n_seq_max=self.N_SEQ, n_threads_batch=self.n_threads,
                                                    hidden=self.hidden)
            except AotccError as e:
                raise ModelError(f"model {self.path.name}: {e}") from None
        return self._logits_ctx

    def close(self) -> None:
        if self._logits_ctx is not None:
            self._logits_ctx.close()
        self._logits_ctx = None
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
        """-log p of `tokens[i]` for each i in `want`, given BOS + `prefix` + tokens before i
        (float32 nats, NaN where not wanted). See `windows`."""
        return self.windows([(prefix, tokens, want)])[0]

    def windows(self, items: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]]) -> list[np.ndarray]:
        """`surprisal` of each window `(prefix, tokens, want)`.

        Windows are packed side by side (one sequence each) into decodes of up to n_batch
        rows, logits switched on only for the rows that predict a wanted token. A window
        longer than n_batch is decoded alone, in several batches.
        """
        t0 = time.perf_counter()
        ctx = self._ctx()
        n_batch = ctx.settings.n_batch
        fulls: list[list[int]] = []
        offs: list[int] = []
        rowsets: list[set[int]] = []
        for prefix, tokens, want in items:
            seq = list(self._bos()) + list(prefix)
            full = seq + list(tokens)
            if len(full) > ctx.n_ctx:
                raise ModelError(f"window of {len(full)} tokens does not fit n_ctx {ctx.n_ctx}")
            off = len(seq)
            # row r (position r in `full`) predicts token r+1; we need rows off+i-1 for i in want
            rowsets.append({off + i - 1 for i in want if 0 <= i < len(tokens) and off + i - 1 >= 0})
            fulls.append(full)
            offs.append(off)
        out = [np.full(len(t), np.nan, dtype=np.float32) for _, t, _ in items]
        k = 0
        try:
            while k < len(items):
                group = [k]
                used = len(fulls[k])
                k += 1
                while k < len(items) and len(group) < self.N_SEQ and used + len(fulls[k]) <= n_batch:
                    group.append(k)
                    used += len(fulls[k])
                    k += 1
                rows = [(g, w, p) for g, w in enumerate(group) for p in range(len(fulls[w]))]
                ctx.clear()
                for done in range(0, len(rows), n_batch):
                    part = rows[done : done + n_batch]
                    lp = ctx.score_rows([fulls[w][p] for _, w, p in part], [p for _, _, p in part],
                                        [g for g, _, _ in part],
                                        [[fulls[w][p + 1]] if p in rowsets[w] else [] for _, w, p in part])
                    for r, (_, w, p) in enumerate(part):
                        if p in rowsets[w]:
                            out[w][p + 1 - offs[w]] = -lp[r][0]
                self.calls.windows += len(group)
                self.calls.window_tokens += used
        except AotccError as e:
            raise ModelError(f"{e} (surprisal window)") from None
        finally:
            ctx.clear()
        self.calls.timed("windows", t0)
        return out

    def surprisal_alone(self, texts: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """-log p of every token of each token list given only BOS.

        The lists are laid out as a prefix tree: a row is one node (a token at its depth)
        shared by every list that passes through it (a row may belong to many sequences),
        scored against each of its children, so BOS and common openings ("- **", "If
        the") are decoded and put through the output layer once per batch, not once per
        list. Up to N_SEQ lists and n_batch nodes per decode."""
        t0 = time.perf_counter()
        ctx = self._ctx()
        bos = self._bos()
        out = [np.full(len(t), np.nan, dtype=np.float32) for t in texts]
        n_batch = ctx.settings.n_batch
        i = 0
        try:
            while i < len(texts):
                # nodes: token, depth, sequences through it, children (token -> node)
                tok: list[int] = []
                depth: list[int] = []
                seqs: list[list[int]] = []
                kids: list[dict[int, int]] = []
                roots: dict[int, int] = {}
                paths: list[tuple[int, list[int]]] = []  # (text index, node per position of BOS + text)
                while i < len(texts) and len(paths) < self.N_SEQ:
                    full = (bos + list(texts[i]))[:n_batch]
                    # nodes this list would add
                    level, fresh, node = roots, 0, -1
                    for t in full:
                        node = level.get(t, -1) if fresh == 0 else -1
                        if node < 0:
                            fresh += 1
                            level = {}
                        else:
                            level = kids[node]
                    if paths and len(tok) + fresh > n_batch:
                        break
                    s = len(paths)
                    level, path = roots, []
                    for d, t in enumerate(full):
                        node = level.get(t, -1)
                        if node < 0:
                            node = len(tok)
                            tok.append(t)
                            depth.append(d)
                            seqs.append([])
                            kids.append({})
                            level[t] = node
                        seqs[node].append(s)
                        path.append(node)
                        level = kids[node]
                    paths.append((i, path))
                    i += 1
                targets = [sorted(k) for k in kids]
                ctx.clear()
                lp = ctx.score_rows(tok, depth, seqs, targets)
                for ti, path in paths:
                    # the node at depth d predicts the token at depth d+1 (text index d+1-len(bos))
                    for d in range(len(path) - 1):
                        ix = d + 1 - len(bos)
                        if ix >= 0:
                            child = tok[path[d + 1]]
                            out[ti][ix] = -lp[path[d]][targets[path[d]].index(child)]
                self.calls.unit_batches += 1
                self.calls.unit_tokens += len(tok)
        except AotccError as e:
            raise ModelError(f"{e} (scoring units alone)") from None
        finally:
            ctx.clear()
        self.calls.timed("unit_batches", t0)
        return out

    # embeddings

    def embed_many(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The embedding of each text: the mean of its tokens' hidden states at the graph
        node `hidden` (its first n_batch - 1 tokens, after BOS; float32, not normalised).
        Texts are packed side by side, one sequence each, and every decode stops at that
        node, so the layers after it and the output layer are never computed."""
        if not texts:
            return []
        t0 = time.perf_counter()
        ctx = self._ctx()
        n_batch = ctx.settings.n_batch
        bos = self._bos()
        lists = [(bos + self.tokenize(t))[: n_batch] for t in texts]
        if any(len(x) <= len(bos) for x in lists):
            raise ModelError("cannot embed an empty text")
        out: list[np.ndarray] = []
        i = 0
        try:
            while i < len(lists):
                group: list[list[int]] = []
                used = 0
                while i < len(lists) and len(group) < self.N_SEQ and used + len(lists[i]) <= n_batch:
                    group.append(lists[i])
                    used += len(lists[i])
                    i += 1
                rows = [(g, p, t) for g, toks in enumerate(group) for p, t in enumerate(toks)]
                h = ctx.hidden_only([t for _, _, t in rows], [p for _, p, _ in rows], [g for g, _, _ in rows])
                at = 0
                for toks in group:
                    out.append(h[at + len(bos) : at + len(toks)].mean(axis=0))
                    at += len(toks)
        except AotccError as e:
            raise ModelError(f"model {self.path.name} cannot produce embeddings: {e}") from None
        self.calls.embeddings += len(texts)
        self.calls.embedding_tokens += sum(len(x) for x in lists)
        self.calls.timed("embeddings", t0)
        return out

    # shared prefixes and their branches

    def branches(self, jobs: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
                 answers: Sequence[int]) -> list[list[np.ndarray]]:
        """Per job `(prefix, suffixes)`: the prefix is decoded once, and each suffix as its
        own sequence branching from it (`seq_cp`: the prefix's cells are shared, not
        copied); returns, per suffix, log p of each of `answers` as the token after it.
        Prefixes are packed side by side into one decode, and the branches of all of
        them into as few more as n_batch allows; logits are computed for one row per
        suffix."""
        t0 = time.perf_counter()
        ctx = self._ctx()
        n_batch = ctx.settings.n_batch
        room = min(ctx.n_ctx - n_batch, n_batch)  # cells the prefixes may take; a batch of branches takes the rest
        for prefix, suffixes in jobs:
            if not 0 < len(prefix) <= room:
                raise ModelError(f"a prompt prefix of {len(prefix)} tokens does not fit (at most {room})")
            for x in suffixes:
                if not 0 < len(x) <= n_batch:
                    raise ModelError(f"a question of {len(x)} tokens does not fit (at most {n_batch})")
        results: list[list[np.ndarray]] = []
        k = 0
        try:
            while k < len(jobs):
                group = [k]
                used = len(jobs[k][0])
                k += 1
                while k < len(jobs) and len(group) < self.N_SEQ // 4 and used + len(jobs[k][0]) <= room:
                    group.append(k)
                    used += len(jobs[k][0])
                    k += 1
                ctx.clear()
                rows = [(g, p) for g, j in enumerate(group) for p in range(len(jobs[j][0]))]
                ctx.score_rows([jobs[group[g]][0][p] for g, p in rows], [p for _, p in rows], [g for g, _ in rows],
                               [[]] * len(rows))
                branches = [(g, list(x)) for g, j in enumerate(group) for x in jobs[j][1]]
                answers_of: list[list[np.ndarray]] = [[] for _ in group]
                b = 0
                while b < len(branches):
                    batch: list[tuple[int, list[int]]] = []
                    size = 0
                    while b < len(branches) and len(group) + len(batch) < self.N_SEQ and \
                            size + len(branches[b][1]) <= n_batch:
                        batch.append(branches[b])
                        size += len(branches[b][1])
                        b += 1
                    toks: list[int] = []
                    pos: list[int] = []
                    seqs: list[int] = []
                    targets: list[list[int]] = []
                    for m, (g, suf) in enumerate(batch):
                        s = len(group) + m
                        ctx.seq_cp(g, s)
                        base = len(jobs[group[g]][0])
                        toks += suf
                        pos += range(base, base + len(suf))
                        seqs += [s] * len(suf)
                        targets += [[]] * (len(suf) - 1) + [list(answers)]
                    lp = ctx.score_rows(toks, pos, seqs, targets)
                    for (g, _), x in zip(batch, [x for x in lp if len(x)]):
                        answers_of[g].append(x)
                    for m in range(len(batch)):
                        ctx.seq_rm(len(group) + m)
                results += answers_of
        except AotccError as e:
            raise ModelError(f"{e} (shared-prefix prompts)") from None
        finally:
            ctx.clear()
        self.calls.confirmations += sum(len(s) for _, s in jobs)
        self.calls.timed("confirmations", t0)
        return results

    # prompts

    def chat(self, question: str) -> str:
        """`question` as a user turn followed by the start of the model's answer."""
        pre, post = self.chat_parts()
        return pre + question + post

    def chat_parts(self) -> tuple[str, str]:
        """What goes before a user turn's text and after it (up to the model's answer)."""
        if self._chat is None:
            from aotcc.llama.templates import template_parts

            try:
                parts, _ = template_parts(self.model)
                self._chat = (parts["user_prefix"], parts["assistant_prefix"])
            except AotccError:
                self._chat = ("", "\n")  # no template: plain continuation
        return self._chat

    def _prompt_tokens(self, prompt: str) -> list[int]:
        return self._bos() + self.model.tokenize(prompt, special=True)

    def prompt_parts(self, *parts: tuple[str, bool]) -> tuple[list[int], list[int]]:
        """Token ids of the concatenated `(text, special)` parts (special tokens parsed
        where `special`), and where each part starts: a caller can pool or branch at a
        part's edge exactly."""
        toks: list[int] = []
        starts: list[int] = []
        for text, special in parts:
            starts.append(len(toks))
            toks += self.model.tokenize(text, special=special)
        return toks, starts

    def answer_ids(self) -> tuple[list[int], list[int]]:
        """The single-token spellings of yes and of no (`Yes`, ` yes`, …)."""
        return self._variants(("yes", "Yes", "YES")), self._variants(("no", "No", "NO"))

    @staticmethod
    def margin(logp: np.ndarray, n_yes: int) -> float:
        """log p(yes) - log p(no) from the log-probabilities of `answer_ids()` (yes
        spellings first): each side is the sum over its spellings."""
        lp = np.asarray(logp, dtype=np.float64)
        return float(np.logaddexp.reduce(lp[:n_yes]) - np.logaddexp.reduce(lp[n_yes:]))

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

