"""A session: one conversation over a loaded root, its own sequence in the runtime's
shared llama.cpp context. `ask`/`stream` generate, `score` ranks candidate answers,
`fork` branches without copying the root's cells."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from aotcc.errors import AotccError, ContextOverflow
from aotcc.llama.clean import DEFAULT_STOPS, Cleaner, TagMap, check_stops

if TYPE_CHECKING:
    from aotcc.llama.protocol import ContextLike
    from aotcc.llama.runtime import Runtime


@dataclass
class Answer:
    """One answer: the text a user sees (term names where the model wrote reference
    tags, cut at a stop sequence), the raw text the model generated, token ids, and how
    long it took."""

    text: str
    tokens: list[int]
    prompt_tokens: int
    ttft_s: float
    total_s: float
    stop: str  # "eog" (end of turn), "stop" (a stop sequence), "length" (max_tokens), "context" (no room left)
    raw_text: str = ""
    tags: int = 0  # reference tags (and other tags of the prompt's elements) the model wrote
    stop_sequence: str | None = None

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




class Session:
    """One conversation over a loaded root: its own sequence in the shared context.

    `ask` appends a query (as plain text, or as a user turn for a template bundle) and
    generates; a second `ask` continues the same conversation. `fork` gives a new
    session that shares this one's cells and then goes its own way.
    """

    def __init__(self, runtime: Runtime, seq: int, n_past: int, template: dict[str, Any] | None, epoch: int,
                 pending: int | None, tags: TagMap | None = None) -> None:
        self._rt = runtime
        self.tags = tags or TagMap()
        self.seq = seq
        self.n_past = n_past
        self.template = template
        self._epoch = epoch
        self._pending = pending  # sampled last but not yet decoded
        self._own = 0  # cells only this session holds
        self._turns = 0
        self._closed = False

    def _check(self) -> ContextLike:
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

    def fork(self, at: int | None = None) -> Session:
        """A new session that starts from this one's current state, or from its first
        `at` tokens (the prompt up to there: a question asked mid-prompt)."""
        ctx = self._check()
        self._flush()
        if at is not None and not 0 < at <= self.n_past:
            raise AotccError(f"fork at token {at}: expected 1 to {self.n_past}")
        n_swa = self._rt.model.n_swa
        if at is not None and at < self.n_past and n_swa and ctx.pos_min(self.seq) > max(0, at - n_swa):
            raise AotccError(
                f"fork at token {at}: this session holds only the last {n_swa}-token window of the model's "
                f"sliding-window layers (a compact bundle), so it can continue only from its end; prefill the "
                "bundle with --exact to fork mid-prompt")
        seq = self._rt._take_seq()
        ctx.seq_cp(self.seq, seq, 0 if at is not None else -1, at if at is not None else -1)
        child = Session(self._rt, seq, self.n_past if at is None else at, self.template, self._epoch, pending=None,
                        tags=self.tags)
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
        stops: Sequence[str] | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it is generated (greedy unless `temperature` > 0).

        The text is cleaned as it streams (`aotcc.llama.clean`): reference tags become
        term names, and the answer ends at a stop sequence. `stops` defaults to where a
        plain bundle's model starts a question or user turn of its own (`DEFAULT_STOPS`;
        none for a template bundle, whose turns end at the end-of-turn token); pass `()`
        for none. The finished `Answer` is appended to `result` when one is given.
        """
        t0 = time.perf_counter()
        self._check()
        if not prompt:
            raise AotccError("the query is empty")
        stop_seqs = (DEFAULT_STOPS if self.template is None else ()) if stops is None else check_stops(stops)
        cleaner = Cleaner(self.tags, stop_seqs)
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
        ctx = self._check()
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
            shown = cleaner.feed(piece) if piece else ""
            if shown:
                yield shown
            if cleaner.stopped is not None:
                self._pending = tok
                stop = "stop"
                break
            if len(out) >= max_tokens:
                self._pending = tok
                break
            if self.n_past + 1 > self.n_ctx or self._rt._used + 1 > self.n_ctx:
                self._pending = tok
                stop = "context"
                break
            self._decode([tok], logits=True)
        shown = cleaner.feed(decoder.decode(b"", final=True)) + cleaner.finish()
        if shown:
            yield shown
        if cleaner.stopped is not None:
            stop = "stop"
        total = time.perf_counter() - t0
        if result is not None:
            result.append(Answer(cleaner.text, out, len(query), ttft, total, stop, raw_text=m.detokenize(out),
                                 tags=cleaner.tag_count, stop_sequence=cleaner.stopped))

    def ask(self, prompt: str, *, max_tokens: int = 256, temperature: float = 0.0, seed: int | None = None,
            on_text: Callable[[str], None] | None = None, stops: Sequence[str] | None = None) -> Answer:
        """Answer `prompt`; `on_text` receives the (clean) text as it streams."""
        res: list[Answer] = []
        for piece in self.stream(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed, result=res,
                                 stops=stops):
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
            first = prev.astype(np.float64)
            first_norm = float(np.log(np.exp(first - first.max()).sum()) + first.max())
            rows = sum(len(t) for t in conts)
            if len(conts) <= len(self._rt._free_seqs) and rows <= ctx.settings.n_batch:
                # every continuation in one decode, each in its own fork of the query
                kids = [q.fork() for _ in conts]
                try:
                    tokens, positions, seqs, targets = [], [], [], []
                    for kid, toks in zip(kids, conts):
                        for j, t in enumerate(toks):
                            tokens.append(t)
                            positions.append(kid.n_past + j)
                            seqs.append(kid.seq)
                            targets.append(toks[j + 1] if j + 1 < len(toks) else -1)
                    lp = ctx.score_batch(tokens, positions, seqs, targets)
                    at = 0
                    for kid, toks in zip(kids, conts):
                        total = float(first[toks[0]] - first_norm) + float(np.sum(lp[at:at + len(toks) - 1], dtype=np.float64))
                        out.append(Score(total, len(toks)))
                        at += len(toks)
                        kid.n_past += len(toks)
                        kid._own += len(toks)
                        self._rt._used += len(toks)
                finally:
                    for kid in kids:
                        kid.close()
                return out
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

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    p = np.exp(z)
    p /= p.sum()
    return int(rng.choice(len(p), p=p))


__all__ = ["Answer", "Score", "Session"]
