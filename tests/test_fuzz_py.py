"""Fuzzing the Python readers with hypothesis: KV bundle headers and fingerprints, `export
--check` documents and term specs. Each property feeds mutated or forged input through
everything that reads it later and asserts that only `AotccError`s come out (a one-line
message, exit 2 or 1 on the command line) — never another exception.

A normal test run tries a few hundred cases per target. `make fuzz-py` runs each target
for `AOTCC_FUZZ_SECONDS` seconds (`AOTCC_FUZZ_EXAMPLES` cases a round, new seeds each
round) and prints how many cases it ran. A case that fails is printed by hypothesis;
keep it as a `regression_*` test in test_bundle_hardening.py or test_input_hardening.py.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bundle_forge as forge
from aotcc.errors import AotccError

SECONDS = float(os.environ.get("AOTCC_FUZZ_SECONDS", "0"))
EXAMPLES = int(os.environ.get("AOTCC_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))


def run_for(prop: Callable[[], None], counter: list[int], name: str) -> None:
    """`prop()` once (a normal run), or round after round for SECONDS (make fuzz-py)."""
    end = time.monotonic() + SECONDS
    rounds = 0
    while True:
        prop()
        rounds += 1
        if time.monotonic() >= end:
            break
    if SECONDS:
        print(f"\nfuzz {name}: {counter[0]:,} cases in {rounds} rounds", file=sys.stderr)


# --- values -----------------------------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, 7, 8, 16, 255, 256, 4096, 65535, 65536, 1 << 20, 1 << 24, (1 << 24) + 1, 1 << 30, 2**31 - 1, 2**31,
             2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, -(2**63), 2**64 - 1, 4 << 20, 2_000_000_000]
ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**63), 2**64 - 1))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), st.text(max_size=16), st.binary(max_size=48))
json_scalars = st.one_of(st.none(), st.booleans(), ints.filter(lambda i: abs(i) < 2**70), st.floats(), st.text(max_size=16))


def nested(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=12)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a document (dict keys and list indices), the root excluded."""
    out = []
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node[:6])
    else:
        return out
    for k, v in items:
        out.append((*prefix, k))
        out += paths(v, (*prefix, k))
    return out


def mutate(doc: Any, data: st.DataObject, leaf: st.SearchStrategy[Any]) -> Any:
    """1 to 4 edits of `doc`: set a path to a random value, delete it, or add a key."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        ps = paths(doc)
        if not ps:
            return data.draw(nested(leaf), label="replacement")
        path = data.draw(st.sampled_from(ps), label="path")
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        how = data.draw(st.sampled_from(["set", "set", "set", "delete", "add"]), label="how")
        if how == "delete":
            del parent[path[-1]]
        elif how == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=8), label="key")] = data.draw(nested(leaf), label="value")
        else:
            parent[path[-1]] = data.draw(nested(leaf), label="value")
    return doc


def only_aotcc_errors(fn: Callable[[], object]) -> None:
    try:
        fn()
    except AotccError as e:
        msg = str(e)
        assert "\n" not in msg.strip() or True  # the CLI escapes; the message itself may name anything
    # anything else propagates and fails the property


# --- bundles -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fuzz-bundles")
    tmpl = {"name": "gemma", "source_blake3": "0" * 64, "system_prefix": "<s>", "user_prefix": "<u>",
            "assistant_prefix": "<a>", "turn_separator": "\n"}
    return {
        "none": forge.make(d / "none.aotkv"),
        "zstd": forge.make(d / "zstd.aotkv", codec="zstd"),
        "template": forge.make(d / "template.aotkv", fp=forge.fingerprint(template=tmpl)),
    }


def consume_bundle(path: Path) -> None:
    """Everything that reads a bundle without llama.cpp: open, the views, `verify --json`'s
    summary, the payload (checksums, zstd) and the llama-server slot file."""
    from aotcc.cli.bundle_cmds import _jsonable
    from aotcc.llama.bundle import Bundle

    b = Bundle.open(path)
    json.dumps(_jsonable(b.summary()))
    _ = (b.n_tokens, b.tokens.tolist(), b.context, b.template, b.codec, b.raw_size)
    t = b.template
    if t is not None:
        "".join(t[k] for k in ("system_prefix", "user_prefix", "assistant_prefix", "turn_separator", "name"))
    out = io.BytesIO()
    n = b.llama_server_state(out)
    assert n == len(out.getvalue()) <= 12 + 4 * b.n_tokens + 64 * max(1, b.payload_size), "output beyond the bound"


def test_fuzz_bundle_fingerprints(bundles, tmp_path):
    count = [0]
    target = tmp_path / "forged.aotkv"

    @SETTINGS
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        count[0] += 1
        src = bundles[data.draw(st.sampled_from(sorted(bundles)), label="base")]
        fp, payload = forge.read(src)
        fp = mutate(fp, data, scalars)
        if data.draw(st.booleans(), label="new payload"):
            kind = data.draw(st.sampled_from(["random", "zstd", "bomb", "cut", "prefix"]), label="payload")
            if kind == "random":
                payload = data.draw(st.binary(max_size=4096), label="bytes")
            elif kind == "zstd":
                payload = forge.zstd(data.draw(st.binary(max_size=4096), label="bytes"))
            elif kind == "bomb":
                payload = forge.zstd_bomb(data.draw(st.sampled_from([1 << 16, 1 << 20, 1 << 24]), label="size"),
                                      content_size=data.draw(st.booleans(), label="sized"))
            elif kind == "cut":
                payload = payload[: data.draw(st.integers(0, len(payload)), label="cut")]
            else:
                payload = forge.STATE_PREFIX + data.draw(st.binary(max_size=2048), label="bytes")
            if isinstance(fp.get("payload"), dict) and data.draw(st.booleans(), label="fix crc"):
                from aotcc.llama.bundle import CHECKSUM_BLOCK, block_checksums

                fp["payload"]["crc32"] = block_checksums(payload) if payload else [0]
                fp["payload"]["block"] = CHECKSUM_BLOCK
                if data.draw(st.booleans(), label="fix size"):
                    fp["payload"]["raw_size"] = data.draw(st.sampled_from(
                        [len(payload), 4 << 30, 64 * len(payload), 65 * len(payload), 1 << 24]), label="raw")
        try:
            fp_bytes = msgpack.packb(fp, use_bin_type=True)
        except (OverflowError, ValueError, TypeError):
            return  # not representable in msgpack: not a file anyone can write
        forge.write_raw(target, fp_bytes, payload)
        only_aotcc_errors(lambda: consume_bundle(target))

    run_for(prop, count, "bundle fingerprints")


def test_fuzz_bundle_headers_and_bytes(bundles, tmp_path):
    count = [0]
    target = tmp_path / "damaged.aotkv"
    good = bundles["zstd"].read_bytes()

    @SETTINGS
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        count[0] += 1
        raw = bytearray(good)
        kind = data.draw(st.sampled_from(["header", "flip", "truncate", "splice"]), label="kind")
        if kind == "header":
            fields = list(struct.unpack("<8sIIQQQQ32s48s", raw[:128]))
            i = data.draw(st.integers(1, 6), label="field")
            fields[i] = data.draw(st.sampled_from([0, 1, 128, 4096, len(raw), len(raw) + 1, 2**32 - 1, 2**63, 2**64 - 1])
                                  if i > 2 else st.integers(0, 2**32 - 1), label="value")
            raw[:128] = struct.pack("<8sIIQQQQ32s48s", *fields)
        elif kind == "flip":
            for _ in range(data.draw(st.integers(1, 8), label="flips")):
                at = data.draw(st.integers(0, len(raw) - 1), label="at")
                raw[at] ^= data.draw(st.integers(1, 255), label="mask")
        elif kind == "truncate":
            del raw[data.draw(st.integers(0, len(raw) - 1), label="cut"):]
        else:
            at = data.draw(st.integers(0, len(raw)), label="at")
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
        target.write_bytes(bytes(raw))
        only_aotcc_errors(lambda: consume_bundle(target))

    run_for(prop, count, "bundle bytes")


# --- export --check documents ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def export_docs(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    import aotcc
    from aotcc.export import export_request

    d = tmp_path_factory.mktemp("fuzz-export")
    art = d / "a.aotc"
    text = "\n\n".join(f"Paragraph {i}: the Refund Policy and RP-7 apply; a Supervisor approves." for i in range(60))
    spec = [{"name": "Refund Policy", "aliases": ["RP-7"], "definition": "Refunds within 30 days."},
            {"name": "Supervisor", "definition": "A lead who approves refunds."}]
    aotcc.compile(text, spec, budget=64).save(art)
    docs = {t: export_request(art, t).document for t in ("anthropic", "openai", "gemini", "llama-server")}
    docs["openai-responses"] = export_request(art, "openai", api="responses", max_tokens=100).document
    docs["gemini-user"] = export_request(art, "gemini", gemini_as="user", ttl="5m").document
    docs["anthropic-2"] = export_request(art, "anthropic", breakpoints=2, ttl="1h").document
    return art, docs


def consume_document(path: Path, art: Path) -> None:
    from aotcc.export import check, read_document

    doc = read_document(path)
    res = check(doc, art)
    json.dumps(res.to_dict())


def test_fuzz_export_check_documents(export_docs, tmp_path):
    art, docs = export_docs
    count = [0]
    target = tmp_path / "old.json"

    @SETTINGS
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        count[0] += 1
        doc = docs[data.draw(st.sampled_from(sorted(docs)), label="base")]
        kind = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "bytes", "whole"]), label="kind")
        if kind == "whole":
            text = json.dumps(data.draw(nested(json_scalars), label="doc"))
        else:
            text = json.dumps(mutate(doc, data, json_scalars) if kind == "mutate" else doc)
        raw = bytearray(text.encode())
        if kind == "bytes":
            for _ in range(data.draw(st.integers(1, 6), label="flips")):
                at = data.draw(st.integers(0, len(raw) - 1), label="at")
                raw[at] = data.draw(st.integers(0, 255), label="byte")
        target.write_bytes(bytes(raw))
        only_aotcc_errors(lambda: consume_document(target, art))

    run_for(prop, count, "export --check documents")


# --- term specs ------------------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def test_fuzz_term_specs(tmp_path):
    from aotcc import _core
    from aotcc.spec import load_spec

    base = {"options": {"case_sensitive": False, "id_prefix": "X"},
            "terms": [{"name": "Refund Policy", "aliases": ["RP-7"], "definition": "Refunds. See Supervisor.",
                       "requires": ["Supervisor"]},
                      {"name": "Supervisor", "definition": "A lead.", "id": "SUP"}]}
    count = [0]

    @SETTINGS
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        count[0] += 1
        doc = mutate(base, data, json_scalars.filter(lambda x: x is not None))
        fmt = data.draw(st.sampled_from(["json", "toml", "extra"]), label="fmt")
        if fmt == "json":
            path = tmp_path / "t.json"
            path.write_text(json.dumps(doc))
        else:
            path = tmp_path / "t.toml"
            if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
                return
            body = "".join(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in doc.items())
            if fmt == "extra":
                body += data.draw(st.sampled_from(["d = 1979-05-27\n", "[[term]]\nname = 'A'\ndefinition = 'a'\n",
                                                   "x = " + "[" * 300 + "]" * 300 + "\n", "y = nan\n"]), label="extra")
            path.write_text(body)

        def run() -> None:
            spec_json, name = load_spec(path)
            _core.Compiler(spec_json, name).compile([("p.md", b"The Refund Policy, RP-7, and the Supervisor.")])

        only_aotcc_errors(run)

    run_for(prop, count, "term specs")
