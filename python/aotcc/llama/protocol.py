"""The small protocol between aotcc's llama.cpp side and its backend.

`aotcc.llama.backend` is the one implementation: it wraps llama-cpp-python's C API.
The runtime, sessions, analysis and eval are written against these protocols, so they
type-check without importing llama.cpp, and a test may substitute a faster backend for
a part of its work (never for the real one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np


class ModelLike(Protocol):
    """A loaded GGUF model and its vocabulary."""

    path: Path
    arch: str
    n_vocab: int
    n_layer: int
    n_embd: int
    n_head_kv: int
    n_ctx_train: int
    n_swa: int
    add_bos: bool
    bos: int

    def meta(self, key: str) -> str | None: ...
    def chat_template(self) -> str | None: ...
    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]: ...
    def piece(self, token: int) -> bytes: ...
    def detokenize(self, tokens: Sequence[int]) -> str: ...
    def is_eog(self, token: int) -> bool: ...
    def apply_chat_template(self, template: str, messages: Sequence[tuple[str, str]], add_assistant: bool) -> str: ...
    def close(self) -> None: ...


class SettingsLike(Protocol):
    """Everything about a context that changes the bytes of a saved state."""

    n_ctx: int
    type_k: str
    type_v: str
    flash_attn: bool
    swa_full: bool
    n_batch: int
    n_ubatch: int


class ContextLike(Protocol):
    """A llama.cpp context: a KV cache shared by sequences, decoding and state I/O."""

    model: ModelLike
    settings: Any
    n_ctx: int
    n_seq_max: int

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None: ...
    def pos_min(self, seq: int) -> int: ...
    def pos_max(self, seq: int) -> int: ...
    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool: ...
    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None: ...
    def clear(self, data: bool = False) -> None: ...
    def decode(
        self,
        tokens: Sequence[int],
        *,
        seq: int = 0,
        pos: int = 0,
        logits: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> None: ...
    def last_logits(self) -> np.ndarray: ...
    def greedy_next(self) -> int: ...
    def score_batch(
        self, tokens: Sequence[int], positions: Sequence[int], seqs: Sequence[int], targets: Sequence[int]
    ) -> np.ndarray: ...
    def logprobs(
        self,
        tokens: Sequence[int],
        *,
        seq: int = 0,
        pos: int = 0,
        prev_logits: np.ndarray | None = None,
        rows: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray: ...
    def get_state(self, seq: int = 0) -> bytearray: ...
    def set_state(self, data: object, seq: int = 0) -> int: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """The backend module: model and context types, and what the build is."""

    KV_TYPES: Mapping[str, int]
    STATE_SEQ_VERSION: int

    def Model(self, path: str | Path) -> ModelLike: ...  # noqa: N802 - a class in the module
    def ContextSettings(self, **settings: Any) -> SettingsLike: ...  # noqa: N802
    def Context(self, model: ModelLike, settings: Any, **kw: Any) -> ContextLike: ...  # noqa: N802
    def versions(self) -> dict[str, object]: ...
    def default_threads(self) -> int: ...


__all__ = ["Backend", "ContextLike", "ModelLike", "SettingsLike"]
