"""Compile options, in one place: their defaults, their validation, their command-line
flags, and the one function that builds a core `Compiler` from them.

    opts = CompileOptions(budget=256, references="annotate")
    compiler = opts.compiler("terms.toml")

`aotcc.compile`, `aotcc compile`, `aotcc analyze` and `aotcc eval` all go through
`CompileOptions`, so a new option is added here once and reaches every path.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields, replace
from typing import Any

from aotcc import _core
from aotcc.errors import InputError
from aotcc.limits import int_range
from aotcc.spec import TermSpec, load_spec

PLACEMENTS = ("chunk", "top")
REFERENCES = ("tag", "annotate", "keep")
TAG_IDS = ("alpha", "cheap")
TAG_STYLES = ("seed", "short")
MAX_BUDGET = 2**32 - 1


@dataclass(frozen=True)
class CompileOptions:
    """What shapes a compile besides the sources and the spec.

    `tokenizer` is a `.gguf` model (its own vocabulary, exact), a `tokenizer.json`, a
    counter object, or None for the built-in estimator.
    """

    budget: int = 512
    placement: str = "chunk"
    references: str = "tag"
    tag_ids: str = "alpha"
    # short: the evaluation measured the same accuracy as the seed's spelling for 9%
    # fewer prompt tokens (docs/eval.md, "Results"), so accuracy per token favours it
    tag_style: str = "short"
    tokenizer: Any = None

    def __post_init__(self) -> None:
        b = self.budget
        if isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= MAX_BUDGET:
            raise InputError(f"budget {b!r}: expected a whole number of tokens from 1 to {MAX_BUDGET}")
        _choice("placement", self.placement, PLACEMENTS)
        _choice("references", self.references, REFERENCES)
        _choice("tag_ids", self.tag_ids, TAG_IDS)
        _choice("tag_style", self.tag_style, TAG_STYLES)

    def with_(self, **changes: Any) -> CompileOptions:
        """A copy with some options changed (validated again)."""
        return replace(self, **changes)

    def compiler(self, terms: TermSpec) -> _core.Compiler:
        """The core compiler for `terms` (a spec path, or the spec as a dict/list)."""
        spec_json, spec_name = load_spec(terms)
        return _core.Compiler(
            spec_json, spec_name, budget=self.budget, placement=self.placement,
            references=self.references, tag_ids=self.tag_ids, tag_style=self.tag_style,
        )

    # --- the command line ---------------------------------------------------------------

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser, *, layout: bool = True) -> None:
        """The compile flags, as every command that compiles takes them. `layout=False`
        leaves out the layout flags (placement, references), for commands that compare
        layouts themselves."""
        p.add_argument("--budget", type=_budget, default=512, metavar="N", help="max source tokens per chunk (default 512)")
        p.add_argument("--tokenizer", metavar="PATH",
                       help="exact counts: the target model's .gguf (its own vocabulary, as llama.cpp tokenizes) "
                            "or a HuggingFace tokenizer.json (default: built-in estimator)")
        if layout:
            p.add_argument("--placement", choices=PLACEMENTS, default="chunk",
                           help="definition blocks in the chunk of first appearance (default) or all on top")
            p.add_argument("--references", choices=REFERENCES, default="tag",
                           help="later mentions become tags (default), keep the word and add the tag, or stay as written")
        p.add_argument("--tag-ids", choices=TAG_IDS, default="alpha",
                       help="tag ids A, B, … in first-appearance order (default), or the labels whose reference "
                            "tag costs the fewest tokens in --tokenizer (deterministic, still collision-free)")
        p.add_argument("--tag-style", choices=TAG_STYLES, default="short",
                       help="how tags are spelled: short (<A/>, the id alone as the element name, about 3 tokens; the "
                            "default, as accurate as seed per the eval for fewer tokens) or seed (<__SYS_STATE_A__ />, "
                            "the seed's spelling, about 9 tokens)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> CompileOptions:
        """The options a parsed command line gives (flags a command lacks keep their defaults)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            v = getattr(args, f.name, None)
            if v is not None:
                values[f.name] = v
        values.update(overrides)
        return cls(**values)


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InputError(f"{name} {value!r}: expected one of {', '.join(allowed)}")


#: argparse type for --budget: a whole number of tokens, bounded before any work.
_budget = int_range(1, MAX_BUDGET, "tokens")


__all__ = ["PLACEMENTS", "REFERENCES", "TAG_IDS", "TAG_STYLES", "CompileOptions"]
