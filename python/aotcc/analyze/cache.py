"""The analysis cache: every model result on disk, keyed by a content hash of what
produced it (model file hash, the exact text, the settings and the prompt version).

A recompile after an edit asks the model only for keys it has not seen: the windows,
units and (unit, term) pairs whose text changed. One small JSON file per result, written
atomically; the file repeats its key and a CRC of its value, so a truncated or edited
entry is detected, counted as corrupt, deleted and recomputed — never trusted.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aotcc import _core
from aotcc._io import atomic_write, cache_dir

#: bump when the stored layout changes; old entries then simply miss
FORMAT = 1


def default_dir() -> Path:
    """`$AOTCC_CACHE_DIR/analyze`, else `$XDG_CACHE_HOME/aotcc/analyze`, else `~/.cache/aotcc/analyze`."""
    return cache_dir() / "analyze"


def key_of(kind: str, **parts: Any) -> str:
    """A stable BLAKE3 key of a result's kind and every input that shapes it."""
    doc = json.dumps({"format": FORMAT, "kind": kind, **parts}, sort_keys=True, ensure_ascii=False)
    return _core.blake3_hex(doc.encode("utf-8"))


@dataclass
class Stats:
    """Hits, misses and corrupt entries, per kind of result."""

    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)  # file names of entries rebuilt

    def total(self, which: str) -> int:
        return sum(getattr(self, which).values())

    def to_dict(self) -> dict[str, Any]:
        return {"hits": dict(self.hits), "misses": dict(self.misses), "corrupt": list(self.corrupt)}


class Cache:
    """A directory of results. `directory=None` keeps nothing (every lookup misses)."""

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.dir = Path(directory) if directory is not None else None
        self.stats = Stats()

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.json"

    def get(self, kind: str, key: str) -> Any | None:
        """The stored value, or None (a miss). A corrupt entry is removed and reported."""
        if self.dir is not None:
            path = self._path(key)
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                raw = None
            except OSError:
                raw = None
            if raw is not None:
                value = _decode(raw, key)
                if value is not _CORRUPT:
                    self.stats.hits[kind] = self.stats.hits.get(kind, 0) + 1
                    return value
                self.stats.corrupt.append(str(path))
                try:
                    path.unlink()
                except OSError:
                    pass
        self.stats.misses[kind] = self.stats.misses.get(kind, 0) + 1
        return None

    def put(self, key: str, value: Any) -> None:
        if self.dir is None:
            return
        body = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        doc = {"key": key, "crc": zlib.crc32(body.encode("utf-8")), "value": body}
        path = self._path(key)
        try:  # the cache is an optimisation: a full disk must not fail the analysis
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(doc).encode("utf-8"))
        except OSError:
            pass

    def through(self, kind: str, key: str, compute: Callable[[], Any]) -> Any:
        """The cached value of `key`, else `compute()` stored under it."""
        value = self.get(kind, key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value


_CORRUPT = object()


def _decode(raw: bytes, key: str) -> Any:
    try:
        doc = json.loads(raw)
        body = doc["value"]
        if doc["key"] != key or zlib.crc32(body.encode("utf-8")) != doc["crc"]:
            return _CORRUPT
        value = json.loads(body)
    except (ValueError, KeyError, TypeError, AttributeError):
        return _CORRUPT
    return _CORRUPT if value is None else value
