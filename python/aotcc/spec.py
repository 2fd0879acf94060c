"""Reading a term spec: TOML (stdlib `tomllib`) or JSON, from a file or a Python object,
normalized to the JSON document the Rust core validates. Errors name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from aotcc._io import parse_document, read_input
from aotcc.errors import SpecError

TermSpec = Union[str, "os.PathLike[str]", dict[str, Any], list[Any]]


def _parse(data: bytes, name: str, fmt: str | None) -> Any:
    return parse_document(data, name, fmt, error=SpecError)


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
