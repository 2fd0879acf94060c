"""Provider export: a compiled prompt as the request bodies hosted prompt caches want.

Each provider finds the cacheable prefix in a different place: Anthropic in `system`
text blocks ending in `cache_control` breakpoints (at most 4, each past a minimum
length), OpenAI in the first bytes of the prompt (automatic, 1024 tokens or more),
Gemini in a `cachedContents` object that a generate call names, llama-server in a
slot's KV cache (`cache_prompt`, or a slot restored from a KV bundle). This module
owns that placement, the provider limits (`export/providers.toml`), the stability check
of a recompile against an earlier export, and the cost estimate.

    from aotcc.export import export_request
    doc = export_request("prompt.aotc", "anthropic", model="claude-sonnet-4-5")
    doc.save("request.json")          # an export document; its requests[].body are what you POST

Breakpoints sit only at chunk boundaries. The compiler puts every definition block at
the start of a chunk and never splits a tag across chunks, so a cached block never cuts
one in half. Token counts are the artifact's (the compile's tokenizer), not the
provider's, so the minimum-length check is as exact as that tokenizer.
"""

from aotcc.export.check import CheckResult, check, read_document, static_prefix
from aotcc.export.estimate import Estimate, estimate
from aotcc.export.placement import place_breakpoints
from aotcc.export.providers import TARGETS, Family, Provider, load_providers, provider
from aotcc.export.targets import CACHE_NAME, DYNAMIC, Export, export_request

__all__ = [
    "CACHE_NAME", "CheckResult", "DYNAMIC", "Estimate", "Export", "Family", "Provider", "TARGETS", "check",
    "estimate", "export_request", "load_providers", "place_breakpoints", "provider", "read_document", "static_prefix",
]
