"""Every exception aotcc raises, in one place. All derive from `AotccError`, which the
CLI turns into a one-line message and exit code 2 (`CheckFailed`: exit 1).

The first seven are raised by the Rust core (one class per error kind, and
`InternalError` for a bug in it); the rest by the Python side. Importing this module
never imports llama.cpp.
"""

from __future__ import annotations

from aotcc._core import (
    AotccError,
    ArtifactError,
    CountError,
    InputError,
    InternalError,
    PlanError,
    SpecError,
)


class CheckFailed(AotccError):
    """A check ran and failed (the CLI exits 1, not 2): e.g. a bundle that does not match."""


class OutputError(AotccError):
    """An output cannot be written (no space, read-only, an input or a device in the way);
    the message names the output path, never a temporary file."""


# --- the llama.cpp side ----------------------------------------------------------------


class LlamaError(AotccError):
    """llama.cpp refused or failed an operation; the message says which and why."""


class ContextFull(LlamaError):
    """llama_decode found no free KV cells for the batch."""


class ContextOverflow(AotccError):
    """A prompt or query does not fit in the context that is left."""


class BundleError(AotccError):
    """A KV bundle cannot be used: unreadable, corrupt, or made for something else."""


class BundleFormatError(BundleError):
    """The file is not a bundle, is truncated, or fails its checksum."""


class BundleMismatch(BundleError):
    """A fingerprint field differs from what the runtime has."""

    def __init__(self, field: str, bundle_value: object, runtime_value: object, detail: str = "") -> None:
        self.field = field
        self.bundle_value = bundle_value
        self.runtime_value = runtime_value
        msg = f"bundle field {field}: bundle has {_show(bundle_value)}, runtime has {_show(runtime_value)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


def _show(v: object) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, str):
        return v
    return repr(v)


class ModelError(AotccError):
    """The model cannot do what analysis needs (no logits, no embeddings, a failed decode)."""


__all__ = [
    "AotccError",
    "ArtifactError",
    "BundleError",
    "BundleFormatError",
    "BundleMismatch",
    "CheckFailed",
    "ContextFull",
    "ContextOverflow",
    "CountError",
    "InputError",
    "InternalError",
    "LlamaError",
    "ModelError",
    "OutputError",
    "PlanError",
    "SpecError",
]
