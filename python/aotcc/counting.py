"""Token counting backends. A counter maps a batch of strings to their token counts;
the core calls it per batch of units. `None` means the core's built-in estimator.

- `HFTokenizer`: a HuggingFace `tokenizer.json`, through the `tokenizers` package.
- `.gguf`: the target model's own vocabulary (`_core.GgufTokenizer`), exact: the same
  token ids as llama.cpp. The compiler calls it natively, without a Python callback.
  One tokenizer object per file and process (`gguf_tokenizer`), so its in-memory count
  cache serves every compile; counts also persist on disk (`count_cache_path`), so a
  recompile after an edit tokenizes only the units that changed.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from aotcc import _core
from aotcc._io import cache_dir, note_input, read_input, show
from aotcc.errors import InputError

#: Largest tokenizer.json read (the biggest vocabularies are a few tens of MB).
MAX_TOKENIZER_BYTES = 256 << 20


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
        data = read_input(self.path, limit=MAX_TOKENIZER_BYTES)  # bounded: a device never ends
        try:
            self._tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:
            raise InputError(f"{show(self.path)}: not a tokenizers JSON file: {e}") from None
        self.fingerprint = f"tokenizers:{_core.blake3_hex(data)[:16]}"
        self._encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)

    #: pieces encoded per call of `tokenizers`: its encodings (ids, offsets, masks, token
    #: strings) take about 100 bytes a token, so a batch of 16k units of a 4 MB prompt
    #: held ~80 MB at once; a thousand pieces at a time holds a few MB, as fast
    SUB_BATCH = 1024

    def __call__(self, pieces: list[str]) -> list[int]:
        out: list[int] = []
        for k in range(0, len(pieces), self.SUB_BATCH):
            out += [len(e) for e in self._encode(pieces[k : k + self.SUB_BATCH], add_special_tokens=False)]
        return out


log = logging.getLogger("aotcc")

# One GgufTokenizer per (file, size, mtime) in this process, with the number of counts
# it held when its disk cache was last loaded or saved.
_GGUF: dict[tuple[str, int, int], _core.GgufTokenizer] = {}
_SAVED: dict[str, int] = {}
_LOCK = threading.Lock()


def count_cache_dir() -> Path | None:
    """Where unit counts persist: `$AOTCC_CACHE_DIR/counts`, else
    `$XDG_CACHE_HOME/aotcc/counts`, else `~/.cache/aotcc/counts`; None when
    `AOTCC_COUNT_CACHE=0` turns the disk cache off."""
    if os.environ.get("AOTCC_COUNT_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    return cache_dir() / "counts"


def count_cache_path(tokenizer: _core.GgufTokenizer) -> Path | None:
    """The count cache file of a tokenizer (named by its fingerprint), or None."""
    directory = count_cache_dir()
    if directory is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tokenizer.fingerprint)
    return directory / f"{safe}.bin"


def gguf_tokenizer(path: str | os.PathLike[str]) -> _core.GgufTokenizer:
    """The tokenizer of a GGUF model, loaded once per process (reloaded if the file
    changes), with the counts an earlier run cached on disk.

    Raises InputError for a missing or corrupt file, or a vocabulary type or
    pre-tokenizer that cannot be counted exactly."""
    p = Path(path)
    note_input(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such GGUF file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read: {e.strerror}") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        tok = _GGUF.get(key)
        if tok is None:
            tok = _core.GgufTokenizer(str(p))
            cache = count_cache_path(tok)
            if cache is not None:
                try:
                    tok.load_counts(str(cache))
                except InputError as e:  # an unreadable cache only costs time
                    log.warning("%s", e)
            _SAVED[tok.fingerprint] = tok.cached_counts
            _GGUF[key] = tok
    return tok


def save_count_caches() -> None:
    """Writes the disk cache of every GGUF tokenizer that counted something new (at
    interpreter exit, and after a CLI compile)."""
    with _LOCK:
        for tok in list(_GGUF.values()):
            cache = count_cache_path(tok)
            if cache is None or tok.cached_counts == _SAVED.get(tok.fingerprint):
                continue
            try:
                _SAVED[tok.fingerprint] = tok.save_counts(str(cache))
            except InputError as e:
                log.warning("%s", e)


atexit.register(save_count_caches)


def resolve_tokenizer(tokenizer: str | os.PathLike[str] | TokenCounter | None) -> tuple[TokenCounter | None, str]:
    """`(counter, fingerprint)` for a tokenizer argument: None (estimator), a path to a
    `.gguf` model (its own vocabulary, exact) or a `tokenizer.json`, or a ready counter
    object (a `_core.GgufTokenizer` included)."""
    if tokenizer is None:
        return None, _core.ESTIMATOR_FINGERPRINT
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        if path.suffix.lower() == ".gguf":
            gguf = gguf_tokenizer(path)
            return gguf, gguf.fingerprint  # type: ignore[return-value]  # the core's class fits the protocol
        counter = HFTokenizer(path)
        return counter, counter.fingerprint
    if callable(tokenizer):
        return tokenizer, getattr(tokenizer, "fingerprint", f"custom:{type(tokenizer).__name__}")
    raise TypeError(f"tokenizer must be a path or a counter, not {type(tokenizer).__name__}")


def find_gguf_for(fingerprint: str) -> _core.GgufTokenizer | None:
    """A GGUF tokenizer with this fingerprint: one already loaded in this process, or
    the default model's (so `aotcc inspect` can report model tokens of an artifact
    compiled with `--tokenizer model.gguf` without being told the file again)."""
    if not fingerprint.startswith("gguf:"):
        return None
    with _LOCK:
        for tok in _GGUF.values():
            if tok.fingerprint == fingerprint:
                return tok
    try:
        from aotcc.models import default_model

        tok = gguf_tokenizer(default_model())
    except Exception:  # no default model installed: nothing to match
        return None
    return tok if tok.fingerprint == fingerprint else None


def model_token_report(compiled: object, tokenizer: _core.GgufTokenizer) -> dict[str, object]:
    """Token cost of a compiled prompt against its source in the target model's own
    tokens: both texts tokenized whole (as llama.cpp will read them), the definition
    blocks and reference tags that were added, the mentions the tags replaced, and what
    one reference tag costs. `compiled` is an `aotcc.Compiled`."""
    from aotcc.compiled import Compiled

    assert isinstance(compiled, Compiled)
    source, text = compiled.decompile(), compiled.text
    injected = [t for t in compiled.terms if t.injected]
    blocks = [text[s:e] for t in injected if t.definition_span for s, e in [t.definition_span]]
    sm = compiled.source_map
    tags, mentions = [], []
    for k in range(len(sm)):
        kind = int(sm.kind[k])
        if kind in (2, 3):  # a reference tag replacing a mention, or added after it
            tags.append(text[int(sm.out_start[k]):int(sm.out_end[k])])
        if kind == 2:
            mentions.append(source[int(sm.src_start[k]):int(sm.src_end[k])])
    whole = tokenizer.count([source, text])
    parts: Sequence[int] = tokenizer.count(blocks + tags + mentions).tolist() if blocks or tags or mentions else []
    nb, nt = len(blocks), len(tags)
    block_tokens = [int(x) for x in parts[:nb]]
    tag_tokens = [int(x) for x in parts[nb:nb + nt]]
    mention_tokens = [int(x) for x in parts[nb + nt:]]
    one_tag = injected[0].reference if injected else None
    tag_cost = int(tokenizer.count([one_tag])[0]) if one_tag else None
    src_tokens, out_tokens = int(whole[0]), int(whole[1])
    return {
        "tokenizer": tokenizer.fingerprint,
        "model": tokenizer.path,
        "source_tokens": src_tokens,
        "compiled_tokens": out_tokens,
        "added_tokens": out_tokens - src_tokens,
        "definition_blocks": {"count": nb, "tokens": sum(block_tokens)},
        "reference_tags": {"count": nt, "tokens": sum(tag_tokens)},
        "replaced_mentions": {"count": len(mentions), "tokens": sum(mention_tokens)},
        "tag_cost": {"tag": one_tag, "tokens": tag_cost},
    }
