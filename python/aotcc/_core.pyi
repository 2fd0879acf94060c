"""Type stubs for the Rust core (`rust/py/`). Offsets here are characters, not bytes."""

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__version__: str
FORMAT_VERSION: int
ESTIMATOR_FINGERPRINT: str

class AotccError(Exception):
    """Base of every error the core raises."""

class InputError(AotccError):
    """A source file is not valid UTF-8, or an input is unusable."""

class SpecError(AotccError):
    """The term spec is malformed: missing field, duplicate name, claimed alias, unknown `requires`."""

class PlanError(AotccError):
    """Planning failed: a `requires` cycle, an explicit tag id that collides with the source."""

class CountError(AotccError):
    """The token counter failed or returned a wrong number of counts."""

class ArtifactError(AotccError):
    """A `.aotc` file is truncated, corrupt, or of another format version."""

class InternalError(AotccError):
    """A bug in the core (a Rust panic), reported in one line instead of crashing."""

class Progress:
    """Shared progress counters: the core updates them while it runs without the GIL."""

    def __init__(self) -> None: ...
    @property
    def stage(self) -> str: ...
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...

Counter = Callable[[list[str]], Sequence[int]]

class Compiler:
    """A validated term spec and compile options, with the detection automaton built once."""

    def __init__(
        self,
        spec_json: str,
        spec_name: str = "<spec>",
        *,
        budget: int = 512,
        placement: str = "chunk",
        references: str = "tag",
        tag_ids: str = "alpha",
        tag_style: str = "seed",
    ) -> None: ...
    @property
    def term_names(self) -> list[str]: ...
    @property
    def spec_hash(self) -> str: ...
    def compile(
        self,
        sources: Sequence[tuple[str, bytes]],
        *,
        counter: Counter | None = None,
        tokenizer: str = ...,
        progress: Progress | None = None,
        breaks: Sequence[int] | None = None,
        anchors: Sequence[tuple[str, int]] | None = None,
    ) -> Artifact:
        """Compile `(name, bytes)` sources (concatenated in order) into an artifact.

        `counter` maps a batch of strings to their token counts; `None` uses the core's
        estimator. `tokenizer` is the fingerprint recorded in the artifact.
        """
    def detect(self, text: str) -> dict[str, npt.NDArray[np.int64]]:
        """Occurrences in `text`: arrays `start`, `end` (characters), `term`, `alias`."""

class Artifact:
    """A compiled prompt: the `.aotc` contents, immutable."""

    @staticmethod
    def from_bytes(data: bytes, name: str = "<artifact>") -> Artifact: ...
    def to_bytes(self, timings: bool = False) -> bytes:
        """The `.aotc` bytes; stage timings only when asked (they break byte-identity)."""
    @property
    def hash(self) -> str: ...
    @property
    def text(self) -> str: ...
    def source(self) -> bytes: ...
    def chunks(self) -> dict[str, npt.NDArray[np.int64]]:
        """`src_start src_end out_start out_end` (characters), `tokens` (source), `out_tokens`."""
    def source_map(self) -> dict[str, npt.NDArray[np.int64]]:
        """`out_start out_end src_start src_end kind term`; kind 0 copy, 1 definition, 2 reference, 3 annotation."""
    def occurrences(self) -> dict[str, npt.NDArray[np.int64]]:
        """`start end` (source characters), `term`, `chunk`, `role` (0 first mention, 1 later mention)."""
    def terms(self) -> list[dict[str, object]]: ...
    def manifest(self) -> dict[str, object]: ...
    def timings(self) -> list[tuple[str, float]]:
        """Seconds per stage, in pipeline order."""
    def compiled_byte_offset(self, char_offset: int) -> int | None: ...

def segment(text: str, file_starts: Sequence[int] = ()) -> dict[str, npt.NDArray[np.int64]]:
    """Units of `text`: `start`, `end` (characters), `kind` (0 heading, 1 paragraph,
    2 list item, 3 code, 4 later sentence)."""

def blake3_hex(data: bytes | bytearray | memoryview) -> str:
    """BLAKE3 of a buffer, hex (no copy, GIL released)."""

def crc32(data: bytes | bytearray | memoryview) -> int:
    """CRC-32 with the same values as `zlib.crc32`, hardware-accelerated."""

def hash_file(path: str) -> str:
    """BLAKE3 of a file's contents (memory-mapped, multithreaded), hex."""

def _test_panic(message: str, in_worker: bool) -> None:
    """Panics in the core with `message` (tests of the panic guard): raises `InternalError`."""

class GgufTokenizer:
    """A GGUF model's own vocabulary, tokenizing exactly as llama.cpp's
    `llama_tokenize(text, add_special=False, parse_special=False)`. Supports
    `tokenizer.ggml.model` "llama" (SentencePiece-style) and "gpt2" (byte-level BPE, the
    pre-tokenizers in `supported_pre()`); any other raises InputError. Passed as a
    compile `counter`, the core uses it natively (no Python callback)."""

    def __init__(self, path: str) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def pre(self) -> str | None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def fingerprint(self) -> str:
        """Model type, pre-tokenizer and a hash of the `tokenizer.*` metadata."""
    @property
    def cached_counts(self) -> int: ...
    def tokenize(self, text: str) -> npt.NDArray[np.uint32]: ...
    def tokenize_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.uint32]]: ...
    def count(self, texts: Sequence[str]) -> npt.NDArray[np.int64]:
        """Token counts in parallel (GIL released), through the count cache."""
    def __call__(self, pieces: list[str]) -> list[int]: ...
    def token_text(self, id: int) -> bytes: ...
    def load_counts(self, path: str) -> int: ...
    def save_counts(self, path: str) -> int: ...
    @staticmethod
    def supported_pre() -> list[str]: ...
