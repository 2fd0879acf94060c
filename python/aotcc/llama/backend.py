"""The llama.cpp backend of KV bundles: every call into `llama_cpp` goes through here.

It owns loading a GGUF model, creating a context with pinned settings (n_ctx, KV
types, flash attention, full-size SWA cache), tokenizing, decoding in batches,
reading logits, and the sequence-state API (`llama_state_seq_get_data`/`set_data`).
It knows nothing about the `.aotkv` format; `aotcc.llama.bundle` and `aotcc.llama.runtime` do.
Import it lazily: importing it loads the llama.cpp shared library.

llama.cpp's own log output goes to the `aotcc.llama` logger at DEBUG level, so it is
silent unless someone asks for it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as _ll
import numpy as np

from aotcc.errors import ContextFull, LlamaError

log = logging.getLogger("aotcc.llama")
_native_log = logging.getLogger("aotcc.llama.native")

#: Version of the sequence-state layout written by `llama_state_seq_get_data` and the
#: `ggsq` file header (LLAMA_STATE_SEQ_VERSION in llama.h of the pinned build).
STATE_SEQ_VERSION = 3
STATE_SEQ_MAGIC = 0x67677371  # 'ggsq'

#: KV cache types a bundle may use, by the name the CLI takes.
KV_TYPES: dict[str, int] = {
    "f32": _ll.GGML_TYPE_F32,
    "f16": _ll.GGML_TYPE_F16,
    "q8_0": _ll.GGML_TYPE_Q8_0,
    "q5_1": _ll.GGML_TYPE_Q5_1,
    "q5_0": _ll.GGML_TYPE_Q5_0,
    "q4_1": _ll.GGML_TYPE_Q4_1,
    "q4_0": _ll.GGML_TYPE_Q4_0,
}


# --- logging -------------------------------------------------------------------------

_log_lock = threading.Lock()
_log_line: list[str] = []


@_ll.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:  # pragma: no cover - C callback
    # llama.cpp sends partial lines (progress dots); join them into whole lines first.
    try:
        s = text.decode("utf-8", "replace")
    except Exception:
        return
    with _log_lock:
        _log_line.append(s)
        if not s.endswith("\n"):
            return
        line = "".join(_log_line).rstrip("\n")
        _log_line.clear()
    if _native_log.isEnabledFor(logging.DEBUG):
        _native_log.debug("%s", line)


_initialized = False
_init_lock = threading.Lock()


def _init() -> None:
    """Initialise the ggml backends once and route llama.cpp's log to `logging`."""
    global _initialized
    with _init_lock:
        if _initialized:
            return
        _ll.llama_log_set(_log_callback, ctypes.c_void_p(0))
        _ll.llama_backend_init()
        _initialized = True
        log.debug("llama.cpp backend initialised (llama-cpp-python %s)", _ll.__version__)


def versions() -> dict[str, object]:
    """The llama-cpp-python version, the llama.cpp version string and the state format."""
    _init()
    try:
        native = _ll.llama_version().decode("utf-8", "replace")
    except Exception:  # older builds have no llama_version()
        native = "unknown"
    return {
        "llama_cpp_python": _ll.__version__,
        "llama_cpp": native,
        "state_seq_version": STATE_SEQ_VERSION,
    }


def builtin_templates() -> list[str]:
    """The names of llama.cpp's built-in chat templates (`llama_chat_builtin_templates`)."""
    n = _ll.llama_chat_builtin_templates(None, 0)
    if n <= 0:
        return []
    arr = (ctypes.c_char_p * n)()
    _ll.llama_chat_builtin_templates(arr, n)
    return [a.decode("utf-8", "replace") for a in arr if a]


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --- model ---------------------------------------------------------------------------


def _check_gguf(path: Path) -> None:
    # llama.cpp aborts on some malformed files; look at the magic before it sees one.
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise LlamaError(f"model {str(path)!r}: {e.strerror or e}") from None
    if magic != b"GGUF":
        raise LlamaError(f"model {str(path)!r}: not a GGUF file (magic {magic!r})")


class Model:
    """A GGUF model loaded by llama.cpp (weights memory-mapped), with its vocabulary."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        _init()
        self.path = Path(path)
        _check_gguf(self.path)
        params = _ll.llama_model_default_params()
        params.n_gpu_layers = 0
        ptr = _ll.llama_model_load_from_file(str(self.path).encode(), params)
        if not ptr:
            raise LlamaError(f"model {str(self.path)!r}: llama.cpp could not load it")
        self._ptr = ptr
        self._vocab = _ll.llama_model_get_vocab(ptr)
        self.n_vocab: int = _ll.llama_vocab_n_tokens(self._vocab)
        self.n_layer: int = _ll.llama_model_n_layer(ptr)
        self.n_embd: int = _ll.llama_model_n_embd(ptr)
        self.n_head_kv: int = _ll.llama_model_n_head_kv(ptr)
        self.n_ctx_train: int = _ll.llama_model_n_ctx_train(ptr)
        self.n_swa: int = _ll.llama_model_n_swa(ptr)
        self.arch: str = self.meta("general.architecture") or "unknown"
        self.add_bos: bool = bool(_ll.llama_vocab_get_add_bos(self._vocab))
        self.bos: int = _ll.llama_vocab_bos(self._vocab)
        self._pieces: dict[int, bytes] = {}

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1024)
        n = _ll.llama_model_meta_val_str(self._ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            _ll.llama_model_meta_val_str(self._ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        """The model's default chat template (Jinja source), or None when it has none."""
        t = _ll.llama_model_chat_template(self._ptr, None)
        return t.decode("utf-8", "replace") if t else None

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """Token ids of `text`; `special` parses control tokens such as `<start_of_turn>`."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (_ll.llama_token * cap)()
        n = _ll.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:
            cap = -n
            buf = (_ll.llama_token * cap)()
            n = _ll.llama_tokenize(self._vocab, data, len(data), buf, cap, add_bos, special)
            if n < 0:
                raise LlamaError("tokenize failed")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes one token renders as (special tokens render as nothing)."""
        p = self._pieces.get(token)
        if p is None:
            buf = ctypes.create_string_buffer(64)
            n = _ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = _ll.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            p = buf.raw[: max(n, 0)]
            self._pieces[token] = p
        return p

    def detokenize(self, tokens: Iterable[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(_ll.llama_vocab_is_eog(self._vocab, token))

    def apply_chat_template(self, template: str, messages: Sequence[tuple[str, str]], add_assistant: bool) -> str:
        """Render `(role, content)` messages with llama.cpp's built-in template engine."""
        arr = (_ll.llama_chat_message * len(messages))()
        keep = []
        for i, (role, content) in enumerate(messages):
            r, c = role.encode(), content.encode()
            keep += [r, c]
            arr[i].role = r
            arr[i].content = c
        size = sum(len(c) for _, c in messages) * 2 + 1024
        buf = ctypes.create_string_buffer(size)
        n = _ll.llama_chat_apply_template(template.encode(), arr, len(messages), add_assistant, buf, size)
        if n < 0:
            raise LlamaError("the model's chat template is not one llama.cpp can apply")
        if n > size:
            buf = ctypes.create_string_buffer(n + 1)
            n = _ll.llama_chat_apply_template(template.encode(), arr, len(messages), add_assistant, buf, n + 1)
        return buf.raw[:n].decode("utf-8")

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            _ll.llama_model_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:  # pragma: no cover - finaliser
        try:
            self.close()
        except Exception:
            pass


# --- context -------------------------------------------------------------------------


class _GgmlTensor(ctypes.Structure):
    """The leading fields of `struct ggml_tensor` (ggml.h of the pinned build), as far as
    `name`: what the eval callback needs to find a tensor and read its rows."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
    ]


_GGML_TYPE_F32 = 0


#: rows of logits per step of `_logsumexp_rows` (8 rows of a 262k vocabulary: 8 MiB)
_LSE_ROWS = 8
_lse_pool: tuple[ThreadPoolExecutor, int] | None = None


def _logsumexp_span(x: np.ndarray, out: np.ndarray) -> None:
    tmp = np.empty((min(_LSE_ROWS, len(x)), x.shape[1]), dtype=np.float32)
    for i in range(0, len(x), _LSE_ROWS):
        blk = x[i : i + _LSE_ROWS]
        t = tmp[: len(blk)]
        m = blk.max(axis=1)
        np.subtract(blk, m[:, None], out=t)
        np.exp(t, out=t)
        out[i : i + len(blk)] = m + np.log(t.sum(axis=1, dtype=np.float64))


def _logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(row))) of each row, stable (float64 accumulation).

    With a 262k vocabulary this is no small part of scoring a row: a whole-array
    `exp(x - max)` makes a temporary as big as the logits (512 rows: 512 MiB) and
    walks memory three times. Here a few rows at a time go through one small buffer,
    in place, and the rows are split over the batch threads (numpy's ufuncs release
    the GIL): 0.12 s for 511 rows instead of 0.5-2 s, the same values."""
    global _lse_pool
    out = np.empty(len(x), dtype=np.float32)
    workers = min(default_threads(), max(1, len(x) // _LSE_ROWS))
    if workers <= 1:
        _logsumexp_span(x, out)
        return out
    if _lse_pool is None or _lse_pool[1] < workers:
        _lse_pool = (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aotcc-lse"), workers)
    cuts = np.linspace(0, len(x), workers + 1).astype(int)
    list(_lse_pool[0].map(lambda k: _logsumexp_span(x[cuts[k] : cuts[k + 1]], out[cuts[k] : cuts[k + 1]]),
                       range(workers)))
    return out


@dataclass(frozen=True)
class ContextSettings:
    """Everything about a llama.cpp context that changes the bytes of a saved state.

    `flash_attn` is pinned (never "auto"), and the SWA cache is full size so that a
    sliding-window model's restored state holds every cell the original one had.
    """

    n_ctx: int = 2048
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool = True
    swa_full: bool = True
    n_batch: int = 512
    n_ubatch: int = 512


class Context:
    """A llama.cpp context for one model: a unified KV cache shared by up to `n_seq_max` sequences."""

    def __init__(
        self,
        model: Model,
        settings: ContextSettings,
        *,
        n_seq_max: int = 1,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        embeddings: bool = False,
        hidden: str | None = None,
    ) -> None:
        if settings.type_k not in KV_TYPES or settings.type_v not in KV_TYPES:
            raise LlamaError(f"unknown KV type {settings.type_k!r}/{settings.type_v!r}; expected one of {', '.join(KV_TYPES)}")
        if settings.type_v not in ("f16", "f32") and not settings.flash_attn:
            raise LlamaError(f"a quantized V cache ({settings.type_v}) needs flash attention on")
        self.model = model
        self.settings = settings
        self.n_seq_max = n_seq_max
        threads_batch = n_threads_batch or default_threads()
        # one token at a time is a chain of tiny ops with a barrier after each: a second
        # thread rarely pays, and on a busy machine a descheduled one stalls every barrier
        threads = n_threads or 1
        p = _ll.llama_context_default_params()
        p.n_ctx = settings.n_ctx
        p.n_batch = settings.n_batch
        p.n_ubatch = settings.n_ubatch
        p.n_seq_max = n_seq_max
        p.n_threads = threads
        p.n_threads_batch = threads_batch
        p.flash_attn_type = _ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if settings.flash_attn else _ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        p.type_k = KV_TYPES[settings.type_k]
        p.type_v = KV_TYPES[settings.type_v]
        p.swa_full = settings.swa_full
        # one cell pool for all sequences, so a fork shares the root's cells instead of
        # copying them (with one sequence both layouts are the same)
        p.kv_unified = n_seq_max > 1
        # an embeddings context pools the last hidden states of each sequence (mean)
        p.embeddings = embeddings
        if embeddings:
            p.pooling_type = _ll.LLAMA_POOLING_TYPE_MEAN
        self.embeddings = embeddings
        # hidden states: llama.cpp's eval callback sees every node of the graph as it is
        # computed; the one named `hidden` (e.g. "attn_norm-17", the normed input of the
        # last layer, which exists for every row of the batch, not only the output rows)
        # is copied out, so a decode yields per-token vectors at no extra matrix work
        self.hidden_name = hidden
        self._hidden: list[np.ndarray] = []
        self._capture = False
        self._stop = False  # end the graph once the hidden state is read (nothing after it is wanted)
        self._cb = None
        if hidden is not None:
            want = hidden.encode("utf-8")

            @_ll.ggml_backend_sched_eval_callback
            def _observe(t: int, ask: bool, user_data: ctypes.c_void_p) -> bool:  # pragma: no cover - C callback
                if not self._capture:
                    return not ask  # ask: nothing wanted; observe: carry on
                tensor = ctypes.cast(t, ctypes.POINTER(_GgmlTensor)).contents
                if tensor.name != want or tensor.type != _GGML_TYPE_F32:
                    return not ask
                if ask:
                    return True
                rows, width = int(tensor.ne[1]), int(tensor.ne[0])
                if tensor.nb[0] == 4 and tensor.nb[1] == 4 * width and tensor.data:
                    buf = ctypes.cast(tensor.data, ctypes.POINTER(ctypes.c_float))
                    self._hidden.append(np.ctypeslib.as_array(buf, shape=(rows, width)).copy())
                return not self._stop  # False: the scheduler computes nothing after this node

            self._cb = _observe
            p.cb_eval = _observe
            p.cb_eval_user_data = None
        p.no_perf = True
        ptr = _ll.llama_init_from_model(model._ptr, p)
        if not ptr:
            raise LlamaError(f"llama.cpp could not create a context (n_ctx={settings.n_ctx}, type_k={settings.type_k}, type_v={settings.type_v})")
        self._ptr = ptr
        self.n_ctx: int = _ll.llama_n_ctx(ptr)
        self._mem = _ll.llama_get_memory(ptr)
        self._batch = _ll.llama_batch_init(settings.n_batch, 0, 1)
        self._batch_seqs = 1  # sequence ids a row of `_batch` can hold
        self._lock = threading.RLock()

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        """Threads for one-token decodes and for batches (takes effect on the next decode)."""
        _ll.llama_set_n_threads(self._ptr, n_threads, n_threads_batch)

    # sequences

    def pos_min(self, seq: int) -> int:
        """Lowest position stored for `seq`, -1 when empty (above 0 once a sliding
        window has dropped the start)."""
        return _ll.llama_memory_seq_pos_min(self._mem, seq)

    def pos_max(self, seq: int) -> int:
        """Highest position stored for `seq`, -1 when empty."""
        return _ll.llama_memory_seq_pos_max(self._mem, seq)

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        """Remove `seq`'s cells at positions [p0, p1); False when the cache cannot
        (a partial removal a sliding-window cache has no cells to undo)."""
        return bool(_ll.llama_memory_seq_rm(self._mem, seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        """Give `dst` the cells of `src` at positions [p0, p1) (all when -1)."""
        _ll.llama_memory_seq_cp(self._mem, src, dst, p0, p1)

    def clear(self, data: bool = False) -> None:
        """Forget every cell. The KV buffers keep stale values unless `data`: an empty
        cell is masked out of attention, so what it holds never reaches a result."""
        _ll.llama_memory_clear(self._mem, data)

    # decoding

    def _run(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int | Sequence[int]],
             logits: Sequence[bool], what: str = "", hidden: bool = False, stop: bool = False) -> None:
        """One `llama_decode` of an explicit batch (row i: `tokens[i]` at `positions[i]`
        of sequence `seqs[i]` — or of every sequence in it, a row shared by several —
        with logits when `logits[i]`). With `hidden`, `hidden_rows()` then holds each
        row's hidden state; with `stop` too, the graph ends there (no logits, and the
        KV cells of the layers after it are left unwritten: clear them). Call with the
        lock held."""
        n = len(tokens)
        width = max((1 if isinstance(q, int) else len(q) for q in seqs), default=1)
        if width > self._batch_seqs:
            _ll.llama_batch_free(self._batch)
            self._batch = _ll.llama_batch_init(self.settings.n_batch, 0, width)
            self._batch_seqs = width
        b = self._batch
        for i in range(n):
            b.token[i] = int(tokens[i])
            b.pos[i] = int(positions[i])
            q = seqs[i]
            if isinstance(q, int):
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = q
            else:
                b.n_seq_id[i] = len(q)
                for k, s in enumerate(q):
                    b.seq_id[i][k] = int(s)
            b.logits[i] = bool(logits[i])
        b.n_tokens = n
        if hidden and self.hidden_name is None:
            raise LlamaError("this context was not created to read hidden states (hidden=...)")
        if stop and (not hidden or any(logits[:n])):
            raise LlamaError("a decode cut short after the hidden state reads no logits")
        self._hidden = []
        self._capture = hidden
        self._stop = stop
        try:
            rc = _ll.llama_decode(self._ptr, b)
        finally:
            self._capture = self._stop = False
        if rc == 1:
            raise ContextFull(f"no free KV cells for {n} more tokens (n_ctx {self.n_ctx})")
        if rc != 0:
            raise LlamaError(f"llama_decode failed with code {rc}{what}")
        if hidden and sum(len(h) for h in self._hidden) != n:
            got = sum(len(h) for h in self._hidden)
            raise LlamaError(f"{self.model.path.name}: llama.cpp's graph gave {got} rows of {self.hidden_name!r} "
                             f"for {n} tokens (this model's graph may not name that tensor)")

    def hidden_rows(self) -> np.ndarray:
        """The hidden state of every row of the last decode made with `hidden` (float32,
        shape (rows, n_embd)), in batch order."""
        if not self._hidden:
            raise LlamaError("no hidden states: the last decode did not ask for them")
        return self._hidden[0] if len(self._hidden) == 1 else np.concatenate(self._hidden)

    def _logits(self, rows: int) -> np.ndarray:
        """A view of the logits of the last decode's `rows` logit rows."""
        ptr = _ll.llama_get_logits(self._ptr)
        if not ptr:
            raise LlamaError("no logits available")
        return np.ctypeslib.as_array(ptr, shape=(rows, self.model.n_vocab))

    def decode(
        self,
        tokens: Sequence[int],
        *,
        seq: int = 0,
        pos: int = 0,
        logits: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Decode `tokens` at positions `pos…` of `seq`, in batches of n_batch.

        Only the last token's logits are kept (when `logits`). `progress(n)` is called
        after each batch with the number of tokens done so far.
        """
        n_batch = self.settings.n_batch
        with self._lock:
            done = 0
            total = len(tokens)
            while done < total:
                n = min(n_batch, total - done)
                want = [False] * n
                want[-1] = logits and done + n == total
                self._run(tokens[done : done + n], range(pos + done, pos + done + n), [seq] * n, want)
                done += n
                if progress is not None:
                    progress(done)

    def last_logits(self) -> np.ndarray:
        """Logits of the last token decoded with logits on (a float32 copy)."""
        ptr = _ll.llama_get_logits_ith(self._ptr, -1)
        if not ptr:
            raise LlamaError("no logits available")
        return np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,)).copy()

    def score_batch(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        seqs: Sequence[int],
        targets: Sequence[int],
    ) -> np.ndarray:
        """One `llama_decode` of an explicit batch of at most `n_batch` rows: row i is
        `tokens[i]` at position `positions[i]` of sequence `seqs[i]`.

        Logits are computed only for rows with `targets[i] >= 0` (with a 262k-word
        vocabulary the output matmul of a row costs more than the rest of a small
        model), and the result holds log p(targets[i] | row i and what precedes it in
        its sequence) there, NaN elsewhere (float32).
        """
        n = len(tokens)
        if not (n == len(positions) == len(seqs) == len(targets)):
            raise LlamaError("score_batch: tokens, positions, seqs and targets differ in length")
        if n > self.settings.n_batch:
            raise LlamaError(f"score_batch: {n} rows exceed n_batch {self.settings.n_batch}")
        out = np.full(n, np.nan, dtype=np.float32)
        if n == 0:
            return out
        want = [t >= 0 for t in targets]
        picked = [i for i in range(n) if want[i]]
        with self._lock:
            self._run(tokens, positions, seqs, want)
            if picked:
                block = self._logits(len(picked))
                nxt = np.asarray([targets[i] for i in picked], dtype=np.int64)
                out[picked] = block[np.arange(len(picked)), nxt] - _logsumexp_rows(block)
        return out

    def score_rows(
        self,
        tokens: Sequence[int],
        positions: Sequence[int],
        seqs: Sequence[int | Sequence[int]],
        targets: Sequence[Sequence[int]],
        *,
        hidden: bool = False,
    ) -> list[np.ndarray]:
        """`score_batch` generalised: a row may belong to several sequences (`seqs[i]` a
        list: a prefix shared by the sequences that branch from it) and be scored against
        several next tokens (the branches' first tokens). Logits are computed only for
        rows with targets. Returns, per row, log p of each of its targets (float32).
        With `hidden`, `hidden_rows()` holds every row's hidden state afterwards."""
        n = len(tokens)
        if not (n == len(positions) == len(seqs) == len(targets)):
            raise LlamaError("score_rows: tokens, positions, seqs and targets differ in length")
        if n > self.settings.n_batch:
            raise LlamaError(f"score_rows: {n} rows exceed n_batch {self.settings.n_batch}")
        out = [np.zeros(0, dtype=np.float32) for _ in range(n)]
        if n == 0:
            return out
        want = [len(t) > 0 for t in targets]
        picked = [i for i in range(n) if want[i]]
        with self._lock:
            self._run(tokens, positions, seqs, want, hidden=hidden)
            if picked:
                block = self._logits(len(picked))
                lse = _logsumexp_rows(block)
                for r, i in enumerate(picked):
                    ids = np.asarray(targets[i], dtype=np.int64)
                    out[i] = (block[r, ids] - lse[r]).astype(np.float32)
        return out

    def hidden_only(self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int]) -> np.ndarray:
        """One decode of at most n_batch rows, cut short after the graph node `hidden`:
        every row's hidden state there (float32, (rows, n_embd)) at the cost of the
        layers before it. The cells it leaves behind hold only those layers, so the
        context is cleared after it."""
        n = len(tokens)
        if n > self.settings.n_batch:
            raise LlamaError(f"hidden_only: {n} rows exceed n_batch {self.settings.n_batch}")
        with self._lock:
            try:
                self._run(tokens, positions, seqs, [False] * n, hidden=True, stop=True)
                return self.hidden_rows()
            finally:
                self.clear()

    def logits_rows(self, tokens: Sequence[int], *, seq: int = 0, pos: int = 0) -> np.ndarray:
        """Decodes `tokens` into `seq` at positions `pos…` (one batch, at most n_batch)
        and returns every row's logits, shape (len(tokens), n_vocab) (a float32 copy):
        what the model predicts after each token. For fidelity checks of short spans."""
        n = len(tokens)
        if not 0 < n <= self.settings.n_batch:
            raise LlamaError(f"logits_rows: {n} tokens, expected 1 to n_batch {self.settings.n_batch}")
        with self._lock:
            self._run(tokens, range(pos, pos + n), [seq] * n, [True] * n)
            return self._logits(n).copy()

    def logprobs(
        self,
        tokens: Sequence[int],
        *,
        seq: int = 0,
        pos: int = 0,
        prev_logits: np.ndarray | None = None,
        rows: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Decodes `tokens` into `seq` at positions `pos…` and returns, for each one, its
        log-probability given everything before it (float32; surprisal is the negative).

        Element 0 is scored with `prev_logits` (the logits of the token before, e.g.
        `last_logits()` after decoding a prefix), NaN when None. Logits are read back for
        every token, `rows` tokens per decode: with a vocabulary of 262k a full 512-row
        batch of logits alone would be half a gigabyte. The last token's logits stay
        available through `last_logits()`.
        """
        total = len(tokens)
        out = np.full(total, np.nan, dtype=np.float32)
        if total == 0:
            return out
        if prev_logits is not None:
            prev = np.asarray(prev_logits, dtype=np.float32)
            out[0] = prev[int(tokens[0])] - _logsumexp_rows(prev[None, :])[0]
        rows = max(1, min(rows, self.settings.n_batch))
        toks = [int(t) for t in tokens]
        for done in range(0, total, rows):
            n = min(rows, total - done)
            # row i predicts the token after it; the block's last row predicts the next
            # block's first token, so it is scored against that (or just computed, last)
            targets = toks[done + 1 : done + n + 1]
            last = len(targets) < n
            if last:
                targets.append(0)
            lp = self.score_batch(toks[done : done + n], range(pos + done, pos + done + n), [seq] * n, targets)
            upto = n - 1 if last else n
            out[done + 1 : done + 1 + upto] = lp[:upto]
            if progress is not None:
                progress(done + n)
        return out

    def embed_many(self, token_lists: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The mean-pooled, L2-normalised final hidden state of each token list (float32),
        the lists packed side by side (one sequence each) into as few decodes as
        `n_batch` and `n_seq_max` allow: short sentences embedded one per decode leave
        most of a batch's matrix work unused. Needs a context made with
        `embeddings=True`; at most `n_batch` tokens of a list are used. The context is
        cleared before and after each decode, so embeddings never see each other."""
        if not self.embeddings:
            raise LlamaError("this context was not created for embeddings (embeddings=True)")
        lists = [list(t)[: self.settings.n_batch] for t in token_lists]
        if any(not t for t in lists):
            raise LlamaError("cannot embed an empty token list")
        out: list[np.ndarray] = []
        i = 0
        while i < len(lists):
            group: list[list[int]] = []
            used = 0
            while i < len(lists) and len(group) < self.n_seq_max and used + len(lists[i]) <= self.settings.n_batch:
                group.append(lists[i])
                used += len(lists[i])
                i += 1
            with self._lock:
                self.clear()
                rows = [(t, p, seq) for seq, toks in enumerate(group) for p, t in enumerate(toks)]
                try:
                    self._run([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [True] * len(rows),
                              f" while embedding {len(group)} texts")
                except LlamaError:
                    self.clear()
                    raise
                for seq in range(len(group)):
                    ptr = _ll.llama_get_embeddings_seq(self._ptr, seq)
                    if not ptr:
                        self.clear()
                        raise LlamaError(f"{self.model.path.name}: llama.cpp returned no pooled embedding for this model")
                    vec = np.ctypeslib.as_array(ptr, shape=(self.model.n_embd,)).astype(np.float32)
                    norm = float(np.linalg.norm(vec))
                    if not np.isfinite(norm) or norm == 0.0:
                        self.clear()
                        raise LlamaError(f"{self.model.path.name}: the pooled embedding is zero or not finite")
                    out.append(vec / norm)
                self.clear()
        return out

    def greedy_next(self) -> int:
        ptr = _ll.llama_get_logits_ith(self._ptr, -1)
        if not ptr:
            raise LlamaError("no logits available")
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.model.n_vocab,))))

    # sequence state

    def state_size(self, seq: int = 0) -> int:
        return _ll.llama_state_seq_get_size(self._ptr, seq)

    def get_state(self, seq: int = 0) -> bytearray:
        """The sequence state of `seq`, as `llama_state_seq_get_data` writes it."""
        with self._lock:
            size = _ll.llama_state_seq_get_size(self._ptr, seq)
            out = bytearray(size)
            cbuf = (ctypes.c_uint8 * size).from_buffer(out)
            n = _ll.llama_state_seq_get_data(self._ptr, cbuf, size, seq)
            del cbuf
            if n != size:
                raise LlamaError(f"llama_state_seq_get_data wrote {n} of {size} bytes")
            return out

    def set_state(self, data: object, seq: int = 0) -> int:
        """Restore `seq` from state bytes (any buffer: bytes, bytearray, mmap slice, numpy)."""
        arr = np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
        ptr = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        with self._lock:
            n = _ll.llama_state_seq_set_data(self._ptr, ptr, arr.size, seq)
        del ptr, arr
        if n == 0:
            raise LlamaError("llama.cpp could not restore the sequence state")
        return n

    def save_state_file(self, path: str, tokens: Sequence[int], seq: int = 0) -> int:
        """`llama_state_seq_save_file`: the raw state file a llama-server restores."""
        arr = (_ll.llama_token * len(tokens))(*tokens)
        with self._lock:
            n = _ll.llama_state_seq_save_file(self._ptr, path.encode(), seq, arr, len(tokens))
        if n == 0:
            raise LlamaError(f"llama_state_seq_save_file failed for {path!r}")
        return n

    def load_state_file(self, path: str, seq: int = 0, capacity: int | None = None) -> list[int]:
        """`llama_state_seq_load_file`; returns the token ids stored in the file."""
        cap = capacity if capacity is not None else self.n_ctx
        toks = (_ll.llama_token * cap)()
        count = ctypes.c_size_t(0)
        with self._lock:
            n = _ll.llama_state_seq_load_file(self._ptr, path.encode(), seq, toks, cap, ctypes.byref(count))
        if n == 0:
            raise LlamaError(f"llama_state_seq_load_file failed for {path!r}")
        return list(toks[: count.value])

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            _ll.llama_batch_free(self._batch)
            _ll.llama_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:  # pragma: no cover - finaliser
        try:
            self.close()
        except Exception:
            pass


# --- grammars --------------------------------------------------------------------------


class Grammar:
    """A GBNF grammar as a llama.cpp sampler, for constrained greedy decoding."""

    def __init__(self, model: Model, gbnf: str, root: str = "root") -> None:
        self.model = model
        ptr = _ll.llama_sampler_init_grammar(model._vocab, gbnf.encode("utf-8"), root.encode("utf-8"))
        if not ptr:
            raise LlamaError("llama.cpp refused the grammar")
        self._ptr = ptr

    def _apply(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The logits of `ids` after the grammar masked the tokens it refuses (-inf)."""
        n = len(ids)
        data = (_ll.llama_token_data * n)()
        for i, (t, v) in enumerate(zip(ids.tolist(), logits.tolist())):
            data[i].id = t
            data[i].logit = v
            data[i].p = 0.0
        arr = _ll.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
        _ll.llama_sampler_apply(self._ptr, ctypes.byref(arr))
        return np.fromiter((data[i].logit for i in range(n)), dtype=np.float32, count=n)

    def accepts(self, token: int, logits: np.ndarray) -> bool:
        """Whether the grammar allows `token` next."""
        return bool(np.isfinite(self._apply(np.array([token]), logits[[token]])[0]))

    def best(self, logits: np.ndarray, step: int = 2048) -> int:
        """The highest-logit token the grammar allows, or -1 when it allows none (the
        grammar is complete). Candidates are tried a slice at a time in logit order, so
        a refused greedy token rarely costs a pass over the whole vocabulary."""
        order = np.argsort(-logits, kind="stable")
        for s in range(0, len(order), step):
            ids = order[s : s + step]
            ok = np.isfinite(self._apply(ids, logits[ids]))
            if ok.any():
                return int(ids[int(np.argmax(ok))])
        return -1

    def accept(self, token: int) -> None:
        """Advances the grammar past `token`."""
        _ll.llama_sampler_accept(self._ptr, token)

    def close(self) -> None:
        if getattr(self, "_ptr", None):
            _ll.llama_sampler_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:  # pragma: no cover - finaliser
        try:
            self.close()
        except Exception:
            pass
