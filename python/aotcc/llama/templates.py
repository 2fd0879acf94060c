"""Chat templates: splitting a model's template around the system turn (the compiled
prompt) and the user turns, so a bundle can store the pieces and wrap every query
exactly as the template would."""

from __future__ import annotations

from typing import Any

from aotcc import _core
from aotcc.errors import AotccError, InputError, LlamaError
from aotcc.llama.protocol import ModelLike

_SYS, _USR, _ASS, _USR2 = "\x01AOTCC-SYSTEM\x01", "\x01AOTCC-USER\x01", "\x01AOTCC-ANSWER\x01", "\x01AOTCC-USER2\x01"
#: Built-in llama.cpp templates to use when a GGUF carries no template, by architecture prefix.
_BUILTIN_BY_ARCH = {"gemma": "gemma", "llama": "llama3", "qwen": "chatml", "phi3": "phi3", "mistral": "mistral-v7"}


def template_parts(model: ModelLike, name: str = "auto") -> tuple[dict[str, Any], str]:
    """Split a chat template around a system turn (the compiled prompt) and user turns.

    The bundle stores the pieces, so a query is wrapped exactly as the template would:
    `system_prefix` + compiled prompt | `user_prefix` + query + `assistant_prefix`, and
    later turns start with `turn_separator`. Returns the pieces and the template itself
    (a built-in name or the model's Jinja source).
    """
    source = None
    if name != "auto":
        check_template_name(name)
    if name == "auto":
        source = model.chat_template()
        if source is None:
            name = next((v for k, v in _BUILTIN_BY_ARCH.items() if model.arch.startswith(k)), "")
            if not name:
                raise AotccError(
                    f"model {model.path.name} ({model.arch}) has no chat template; pass --chat-template NAME "
                    "with one of llama.cpp's built-in templates (e.g. chatml, llama3, gemma)"
                )
        else:
            name = "model"
    tmpl = source if source is not None else name
    try:
        one = model.apply_chat_template(tmpl, [("system", _SYS), ("user", _USR)], True)
        two = model.apply_chat_template(tmpl, [("system", _SYS), ("user", _USR), ("assistant", _ASS), ("user", _USR2)], True)
    except LlamaError:
        whose = f"the chat template of model {model.path.name}" if source is not None else f"chat template {name!r}"
        raise AotccError(f"{whose}: llama.cpp cannot apply it") from None
    try:
        s, u = one.index(_SYS), one.index(_USR)
        a, u2 = two.index(_ASS), two.index(_USR2)
    except ValueError:
        raise AotccError(f"chat template {name!r} drops the system turn; use a plain bundle (no --chat-template)") from None
    if not s < u:
        raise AotccError(f"chat template {name!r} puts the user turn before the system turn")
    parts = {
        "name": name,
        "source_blake3": _core.blake3_hex(tmpl.encode("utf-8")),
        "system_prefix": one[:s],
        "user_prefix": one[s + len(_SYS) : u],
        "assistant_prefix": one[u + len(_USR) :],
        "turn_separator": two[a + len(_ASS) : u2],
    }
    if two[u2 + len(_USR2) :] != parts["assistant_prefix"]:
        raise AotccError(f"chat template {name!r} ends later turns differently from the first; not supported")
    return parts, tmpl


def check_template_name(name: str) -> None:
    """Refuses a `--template NAME` that is not one of llama.cpp's built-in templates,
    before any model work (an unknown name is the caller's, not the model's, fault)."""
    from aotcc.llama import backend

    known = backend.builtin_templates()
    if known and name not in known:
        raise InputError(f"--template {name!r}: not one of llama.cpp's built-in chat templates ({', '.join(known)})")


def system_text(model: ModelLike, parts: dict[str, Any], tmpl: str, text: str) -> str:
    """The compiled prompt as the template writes it into the system turn (some templates
    trim it, for instance)."""
    rendered = model.apply_chat_template(tmpl, [("system", text), ("user", _USR)], True)
    head = rendered[: rendered.index(_USR)]
    sp, up = parts["system_prefix"], parts["user_prefix"]
    if not (head.startswith(sp) and head.endswith(up)) or len(head) < len(sp) + len(up):
        raise AotccError(f"chat template {parts['name']!r} renders the system turn inconsistently")
    return head[len(sp) : len(head) - len(up)]


__all__ = ["check_template_name", "system_text", "template_parts"]
