"""How big a model's KV cache and saved states can be, from the model's own shape: the
bounds a bundle's fingerprint is held to before llama.cpp allocates anything for it."""

from __future__ import annotations

from aotcc.limits import memory_bytes
from aotcc.llama.protocol import ModelLike

#: Bytes per value of each KV cache type (block types: block bytes / 32 values).
TYPE_BYTES = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}


def _meta_int(m: ModelLike, key: str) -> int | None:
    v = m.meta(f"{m.arch}.{key}")
    try:
        return int(v) if v else None
    except ValueError:  # a per-layer array, for instance
        return None


def kv_widths(m: ModelLike) -> tuple[int, int]:
    """Values per token and layer in the K and in the V cache (head size x KV heads)."""
    heads = _meta_int(m, "attention.head_count") or 1
    k = _meta_int(m, "attention.key_length") or max(1, m.n_embd // max(1, heads))
    v = _meta_int(m, "attention.value_length") or k
    kv = max(1, m.n_head_kv)
    return k * kv, v * kv


def state_widths(m: ModelLike) -> tuple[int, int]:
    """K and V widths for an upper bound on a saved state: never below n_embd, so a model
    whose metadata understates its heads cannot make a real state look too large."""
    k, v = kv_widths(m)
    return max(k, m.n_embd), max(v, m.n_embd)


def kv_cache_bytes(m: ModelLike, n_ctx: int, type_k: str, type_v: str) -> int:
    """About what llama.cpp allocates for the KV cache of a context of `n_ctx` cells (with a
    full-size SWA cache, the sliding-window layers hold n_ctx cells too)."""
    k, v = kv_widths(m)
    per_cell = m.n_layer * (k * TYPE_BYTES.get(type_k, 4.0) + v * TYPE_BYTES.get(type_v, 4.0))
    return int(n_ctx * per_cell)


def max_context(m: ModelLike, type_k: str, type_v: str) -> tuple[int, str]:
    """The largest context this model and machine can take, and what sets it: the model's
    training context (at least 2048), or a KV cache that must fit this machine's memory."""
    train = max(m.n_ctx_train, 2048)
    have = memory_bytes()
    per_cell = kv_cache_bytes(m, 1, type_k, type_v)
    if have is not None and per_cell > 0 and have // per_cell < train:
        return int(have // per_cell), f"a larger KV cache would not fit this machine's {have / 1e9:.1f} GB"
    return train, "the model's training context"


def context_limit(m: ModelLike, n_ctx: int, type_k: str, type_v: str) -> str | None:
    """Why a context of `n_ctx` cells is refused for `m` (see `max_context`), or None."""
    top, why = max_context(m, type_k, type_v)
    return None if n_ctx <= top else f"at most {top:,} tokens: {why}"
