"""`Compiled`: the Python face of a `.aotc` artifact — compiled text, chunk and source-map
tables as numpy arrays (character offsets), the term table, manifest, save and load."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from aotcc import _core
from aotcc._io import atomic_write, read_input
from aotcc.errors import ArtifactError, InputError

SPAN_KINDS = ("copy", "definition", "reference", "annotation")


class Table:
    """Named numpy columns of equal length, readable as attributes: `chunks.src_start`."""

    def __init__(self, columns: dict[str, npt.NDArray[np.int64]]) -> None:
        self._columns = columns

    def __getattr__(self, name: str) -> npt.NDArray[np.int64]:
        try:
            col: npt.NDArray[np.int64] = self.__dict__["_columns"][name]
            return col
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> npt.NDArray[np.int64]:
        return self._columns[name]

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def to_dict(self) -> dict[str, list[int]]:
        return {k: v.tolist() for k, v in self._columns.items()}

    def __repr__(self) -> str:
        return f"Table({len(self)} rows: {', '.join(self._columns)})"


@dataclass(frozen=True)
class TermInfo:
    """What the compile did with one term. Offsets are characters."""

    index: int
    name: str
    id: str | None
    tag: str | None  # the element name (`__SYS_STATE_A__`, or `A` in the short style)
    reference: str | None  # the reference tag as written (`<__SYS_STATE_A__ />`, `<A/>`)
    first_chunk: int | None
    first_offset: int | None
    occurrences: int
    references: int
    definition_span: tuple[int, int] | None
    definition_tokens: int
    tag_tokens: int
    depends_on: tuple[str, ...]
    pulled_in: bool

    @property
    def injected(self) -> bool:
        return self.id is not None


class Compiled:
    """A compiled prompt. Offsets in every table are characters, not bytes."""

    def __init__(self, artifact: _core.Artifact, path: Path | None = None) -> None:
        self._artifact = artifact
        self.path = path

    @property
    def artifact(self) -> _core.Artifact:
        return self._artifact

    @cached_property
    def text(self) -> str:
        """The compiled prompt."""
        return self._artifact.text

    @property
    def hash(self) -> str:
        """BLAKE3 of the artifact body (stable for the same inputs and options)."""
        return self._artifact.hash

    @cached_property
    def chunks(self) -> Table:
        """`src_start src_end out_start out_end tokens out_tokens`, one row per chunk."""
        return Table(self._artifact.chunks())

    @cached_property
    def source_map(self) -> Table:
        """`out_start out_end src_start src_end kind term`; kind indexes `SPAN_KINDS`."""
        return Table(self._artifact.source_map())

    @cached_property
    def occurrences(self) -> Table:
        """`start end term chunk role` per occurrence in the source (role 0: first mention)."""
        return Table(self._artifact.occurrences())

    @cached_property
    def terms(self) -> list[TermInfo]:
        out = []
        for t in self._artifact.terms():
            span: Any = t["definition_span"]
            deps: Any = t["depends_on"]
            out.append(
                TermInfo(
                    index=_int(t["index"]), name=str(t["name"]), id=_opt_str(t["id"]), tag=_opt_str(t["tag"]), reference=_opt_str(t["reference"]),
                    first_chunk=_opt_int(t["first_chunk"]), first_offset=_opt_int(t["first_offset"]),
                    occurrences=_int(t["occurrences"]), references=_int(t["references"]),
                    definition_span=(int(span[0]), int(span[1])) if span is not None else None,
                    definition_tokens=_int(t["definition_tokens"]), tag_tokens=_int(t["tag_tokens"]),
                    depends_on=tuple(str(d) for d in deps), pulled_in=bool(t["pulled_in"]),
                )
            )
        return out

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """Versions, hashes, options, files, totals and warnings."""
        return self._artifact.manifest()

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage of the compile that made this artifact."""
        return dict(self._artifact.timings())

    @property
    def warnings(self) -> list[str]:
        return list(self.manifest["warnings"])

    def source_bytes(self) -> bytes:
        """The source, byte for byte (decompiled from the text and the source map)."""
        return self._artifact.source()

    def decompile(self) -> str:
        return self.source_bytes().decode("utf-8")

    def to_bytes(self, timings: bool = False) -> bytes:
        """The `.aotc` bytes; `timings=True` keeps the stage timings (not byte-stable)."""
        return self._artifact.to_bytes(timings)

    def save(self, path: str | os.PathLike[str], timings: bool = False) -> Path:
        """Writes the `.aotc` file atomically (byte-identical for the same inputs)."""
        self.path = atomic_write(path, self._artifact.to_bytes(timings))
        return self.path

    def chunk_text(self, i: int) -> str:
        """The compiled text of chunk `i`."""
        c = self.chunks
        return self.text[int(c.out_start[i]) : int(c.out_end[i])]

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"<Compiled {m['source_tokens']} → {m['compiled_tokens']} tokens, "
            f"{m['chunks']} chunks, {m['injected']}/{m['terms']} terms injected, hash {self.hash[:12]}>"
        )


def _int(v: object) -> int:
    assert isinstance(v, int)
    return v


def _opt_int(v: object) -> int | None:
    return None if v is None else _int(v)


def _opt_str(v: object) -> str | None:
    return None if v is None else str(v)


def load(path: str | os.PathLike[str]) -> Compiled:
    """Reads a `.aotc` file (checking its format, version and hash)."""
    data = read_input(path)
    try:
        artifact = _core.Artifact.from_bytes(data, str(path))
    except ArtifactError:
        raise
    except Exception as e:  # pragma: no cover - defensive
        raise InputError(f"{path}: {e}") from None
    return Compiled(artifact, None if str(path) == "-" else Path(path))
