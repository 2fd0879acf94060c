"""Reading a term spec: TOML (stdlib `tomllib`) or JSON, from a file or a Python object,
normalized to the JSON document the Rust core validates. Errors name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Union

from aotcc._io import check_plain, parse_document, read_input, show
from aotcc.errors import AotccError, SpecError
from aotcc.limits import MAX_DOCUMENT_BYTES

TermSpec = Union[str, "os.PathLike[str]", dict[str, Any], list[Any]]


def _parse(data: bytes, name: str, fmt: str | None) -> Any:
    return parse_document(data, name, fmt, error=SpecError)


def _terms_key(doc: Any, shown: str) -> Any:
    """`[[term]]` tables as the `terms` list; a document with both is refused (one
    would silently win)."""
    if isinstance(doc, dict) and "term" in doc:
        if "terms" in doc:
            raise SpecError(f"{shown}: has both `terms` and `[[term]]` entries; put every term in one of them")
        doc = {**{k: v for k, v in doc.items() if k != "term"}, "terms": doc["term"]}
    return doc


def load_spec(terms: TermSpec) -> tuple[str, str]:
    """The spec as `(json, name)`: from a path (`.toml`, `.json`, `-` for stdin), a dict
    (`{"options": ..., "terms": [...]}`) or a list of term dicts."""
    if isinstance(terms, (dict, list)):
        check_plain(terms, "<spec>", error=SpecError)
        return json.dumps(_terms_key(terms, "<spec>"), ensure_ascii=False), "<spec>"
    if isinstance(terms, (str, os.PathLike)):
        name = str(terms)
        suffix = Path(name).suffix.lower()
        fmt = {".toml": "toml", ".json": "json"}.get(suffix)
        try:
            data = read_input(terms, limit=MAX_DOCUMENT_BYTES)
        except AotccError as e:  # the file's own error, as a spec error
            raise SpecError(str(e)) from None
        doc = _terms_key(_parse(data, name, fmt), show(name))
        return json.dumps(doc, ensure_ascii=False), name
    raise TypeError(f"terms must be a path, a dict or a list, not {type(terms).__name__}")
