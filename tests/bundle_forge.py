"""Making KV bundles without llama.cpp, and forging them: a fingerprint rewritten with a
valid BLAKE3 (the hash is an integrity check, not a signature), payloads replaced with
checksums that match. Shared by the hardening tests and the fuzz tests."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from aotcc import _core
from aotcc.llama import bundle as aotkv

STATE_PREFIX = struct.pack("<Ii", aotkv.STATE_IO_MAGIC, -1)


def fingerprint(n_tokens: int = 40, n_ctx: int = 256, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fingerprint of the shape `Runtime.prefill` writes (values made up)."""
    return {
        "format": aotkv.FORMAT_VERSION,
        "created_by": "aotcc test",
        "model": {"file": "m.gguf", "size": 1000, "blake3": "0" * 64, "arch": "gemma3", "n_layer": 2, "n_embd": 64,
                  "n_head_kv": 1, "n_vocab": 1000, "n_swa": 0},
        "llama": {"llama_cpp_python": "0", "llama_cpp": "0", "state_seq_version": 3},
        "context": {"n_ctx": n_ctx, "type_k": "f16", "type_v": "f16", "flash_attn": True, "swa_full": True,
                    "kv_unified": True, "n_batch": 512, "n_ubatch": 512},
        "prompt": {"aotc_hash": "1" * 64, "aotc_file": "p.aotc", "text_blake3": "2" * 64, "n_tokens": n_tokens,
                   "tokens": np.arange(n_tokens, dtype="<i4").tobytes(), "add_bos": True, "template": template},
    }


def state(n_bytes: int = 20_000, seed: int = 0) -> bytes:
    """Bytes that start like a llama.cpp sequence state (then noise)."""
    rng = np.random.default_rng(seed)
    return STATE_PREFIX + rng.integers(0, 256, n_bytes - 8, dtype=np.uint8).tobytes()


def make(path: Path, *, codec: str = "none", fp: dict[str, Any] | None = None, payload: bytes | None = None) -> Path:
    head, pieces = aotkv.build(fp or fingerprint(), payload if payload is not None else state(), codec=codec)
    path.write_bytes(head + b"".join(bytes(p) for p in pieces))
    return path


def read(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    h = aotkv.HEADER.unpack(data[: aotkv.HEADER_SIZE])
    fp = msgpack.unpackb(data[h[3]: h[3] + h[4]], raw=False)
    return fp, data[h[5]: h[5] + h[6]]


def write_raw(path: Path, fp_bytes: bytes, payload: bytes) -> Path:
    """A file with these fingerprint bytes and payload, under a header that matches them."""
    off = -(-(aotkv.HEADER_SIZE + len(fp_bytes)) // aotkv.PAYLOAD_ALIGN) * aotkv.PAYLOAD_ALIGN
    head = aotkv.HEADER.pack(aotkv.MAGIC, aotkv.FORMAT_VERSION, 0, aotkv.HEADER_SIZE, len(fp_bytes), off, len(payload),
                         bytes.fromhex(_core.blake3_hex(fp_bytes)), b"\0" * 48)
    path.write_bytes(head + fp_bytes + b"\0" * (off - aotkv.HEADER_SIZE - len(fp_bytes)) + payload)
    return path


def forge(src: Path, dst: Path, edit: Callable[[dict[str, Any]], object] | None = None, *,
          payload: bytes | None = None, recrc: bool = False) -> Path:
    """`src` with its fingerprint edited (and hashed again), or its payload replaced (with
    CRCs that match, over 4 MiB blocks)."""
    fp, pl = read(src)
    if payload is not None:
        pl = payload
        recrc = True
    if edit is not None:
        edit(fp)
    if recrc:
        fp["payload"]["crc32"] = aotkv.block_checksums(pl) if pl else [0]
        fp["payload"]["block"] = aotkv.CHECKSUM_BLOCK
    return write_raw(dst, msgpack.packb(fp, use_bin_type=True), pl)


def zstd_bomb(raw_size: int, *, content_size: bool = True) -> bytes:
    """One zstd frame of a state prefix and zeros, `raw_size` bytes once expanded."""
    import zstandard

    c = zstandard.ZstdCompressor(level=19, write_content_size=content_size, write_checksum=True)
    w = c.compressobj(size=raw_size if content_size else -1)
    out = [w.compress(STATE_PREFIX)]
    zeros = b"\0" * (16 << 20)
    left = raw_size - len(STATE_PREFIX)
    while left:
        n = min(left, len(zeros))
        out.append(w.compress(zeros[:n]))
        left -= n
    out.append(w.flush())
    return b"".join(out)


def zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(write_content_size=True, write_checksum=True).compress(data)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
