"""Reading a term spec: TOML (stdlib `tomllib`) or JSON, from a file or a Python object,
normalized to the JSON document the Rust core validates. Errors name the file."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Union

from aotcc._io import read_input
from aotcc.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TermSpec = Union[str, "os.PathLike[str]", dict, list]


def _parse(data: bytes, name: str, fmt: str | None) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SpecError(f"{name}: invalid UTF-8 at byte {e.start} (line {line})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in ("[", "{") else "toml"
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{name}: malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{name}: malformed TOML: {e}") from None


def load_spec(terms: TermSpec) -> tuple[str, str]:
    """The spec as `(json, name)`: from a path (`.toml`, `.json`, `-` for stdin), a dict
    (`{"options": ..., "terms": [...]}`) or a list of term dicts."""
    if isinstance(terms, (dict, list)):
        return json.dumps(terms, ensure_ascii=False), "<spec>"
    if isinstance(terms, (str, os.PathLike)):
        name = str(terms)
        suffix = Path(name).suffix.lower()
        fmt = {".toml": "toml", ".json": "json"}.get(suffix)
        try:
            data = read_input(terms)
        except Exception as e:  # the file's own error, as a spec error
            raise SpecError(str(e)) from None
        doc = _parse(data, name, fmt)
        if isinstance(doc, dict) and "term" in doc and "terms" not in doc:
            doc = {**{k: v for k, v in doc.items() if k != "term"}, "terms": doc["term"]}
        return json.dumps(doc, ensure_ascii=False), name
    raise TypeError(f"terms must be a path, a dict or a list, not {type(terms).__name__}")
