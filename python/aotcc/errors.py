"""Exceptions raised by aotcc. Each Rust error kind has its own class; all derive from
`AotccError`, which the CLI turns into a one-line message and exit code 2."""

from aotcc._core import (
    AotccError,
    ArtifactError,
    CountError,
    InputError,
    PlanError,
    SpecError,
)


class CheckFailed(AotccError):
    """A check ran and failed (the CLI exits 1, not 2): e.g. a bundle that does not match."""


__all__ = [
    "AotccError",
    "ArtifactError",
    "CheckFailed",
    "CountError",
    "InputError",
    "PlanError",
    "SpecError",
]
