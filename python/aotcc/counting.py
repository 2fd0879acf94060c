"""Token counting backends. A counter maps a batch of strings to their token counts;
the core calls it per batch of units. `None` means the core's built-in estimator.

- `HFTokenizer`: a HuggingFace `tokenizer.json`, through the `tokenizers` package.
- `.gguf` files (the target model's own vocabulary) are the seam for a later backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

from aotcc import _core
from aotcc.errors import InputError


@runtime_checkable
class TokenCounter(Protocol):
    """Anything that counts tokens of many strings at once."""

    fingerprint: str

    def __call__(self, pieces: list[str]) -> Sequence[int]: ...


class HFTokenizer:
    """Counts with a HuggingFace `tokenizer.json` (special tokens not added)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from tokenizers import Tokenizer

        self.path = Path(path)
        try:
            self._tok = Tokenizer.from_file(str(self.path))
        except FileNotFoundError:
            raise InputError(f"{self.path}: no such tokenizer file") from None
        except Exception as e:
            raise InputError(f"{self.path}: not a tokenizers JSON file: {e}") from None
        self.fingerprint = f"tokenizers:{_core.hash_file(str(self.path))[:16]}"
        self._encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    def __call__(self, pieces: list[str]) -> list[int]:
        return [len(e) for e in self._encode(pieces, add_special_tokens=False)]


def resolve_tokenizer(tokenizer: str | os.PathLike[str] | TokenCounter | None) -> tuple[TokenCounter | None, str]:
    """`(counter, fingerprint)` for a tokenizer argument: None (estimator), a path to a
    `tokenizer.json`, or a ready counter object."""
    if tokenizer is None:
        return None, "estimator:v1"
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        if path.suffix.lower() == ".gguf":
            raise InputError(
                f"{path}: counting with a GGUF model's own vocabulary is not supported yet; "
                "give a tokenizer.json or no --tokenizer (estimator)"
            )
        counter = HFTokenizer(path)
        return counter, counter.fingerprint
    if callable(tokenizer):
        return tokenizer, getattr(tokenizer, "fingerprint", f"custom:{type(tokenizer).__name__}")
    raise TypeError(f"tokenizer must be a path or a counter, not {type(tokenizer).__name__}")
