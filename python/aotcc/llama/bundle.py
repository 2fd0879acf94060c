"""The `.aotkv` KV bundle format: a compiled prompt's prefilled llama.cpp state plus
the fingerprint it needs to be loaded safely.

This module owns the bytes on disk — header, msgpack fingerprint, checksummed and
optionally zstd-compressed payload — and every check that can be made without
llama.cpp: structure, truncation, checksums, and comparing a fingerprint with what a
runtime expects. It never imports llama.cpp; `aotcc.llama.runtime` does that.

Layout (all integers little-endian; see docs/bundles.md):

    0    8  magic  b"\\x89AOTKV\\r\\n"
    8    4  u32 format version (1)
    12   4  u32 flags (0; reserved)
    16   8  u64 fingerprint offset (128)
    24   8  u64 fingerprint length
    32   8  u64 payload offset (a multiple of 4096)
    40   8  u64 payload length (stored bytes)
    48  32  BLAKE3 of the fingerprint bytes
    80  48  zero
    128     fingerprint (msgpack map), zero padding, payload
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np

from aotcc import _core
from aotcc._io import atomic_write, cache_dir, check_plain, note_input, show, write_atomic
from aotcc.errors import AotccError, BundleError, BundleFormatError, BundleMismatch
from aotcc.limits import MAX_CTX

MAGIC = b"\x89AOTKV\r\n"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQQQQ32s48s")
HEADER_SIZE = HEADER.size  # 128
PAYLOAD_ALIGN = 4096
#: The payload checksum: CRC-32 (zlib) of each block, so blocks verify in parallel.
CHECKSUM_ALGO = "crc32"
CHECKSUM_BLOCK = 4 << 20

#: Magic and version of llama.cpp's sequence-state file (`llama_state_seq_save_file`).
GGSQ_MAGIC = 0x67677371
#: Prefix `llama_state_seq_get_data` writes before the state: a magic and the seq id.
STATE_IO_MAGIC = 0xAF143CD8

CODECS = ("none", "zstd")
#: KV cache types a bundle may name (aotcc.llama.backend.KV_TYPES, without importing llama.cpp).
KV_TYPE_NAMES = ("f32", "f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0")
TEMPLATE_FIELDS = ("name", "source_blake3", "system_prefix", "user_prefix", "assistant_prefix", "turn_separator")

# Bounds on what a fingerprint may say, checked before anything is allocated for it. The
# fingerprint's hash is an integrity check, not a signature: a forged one is valid.
#: The fingerprint is msgpack: the token ids (4 bytes each) and a few KiB of fields.
MAX_FINGERPRINT_BYTES = 4 * MAX_CTX + (16 << 20)
#: Checksum block sizes accepted (the writer uses 4 MiB): the CRC table stays small.
MIN_BLOCK, MAX_BLOCK = 64 << 10, 1 << 30
#: A zstd payload may expand at most this much (real KV states shrink by less than 2x).
MAX_ZSTD_RATIO = 64


# --- model file hashes ---------------------------------------------------------------


def model_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a model file, cached by real path, size and mtime (hashing 250 MB
    costs ~50 ms; a lookup costs a stat)."""
    p = Path(path)
    try:
        real = os.path.realpath(p)
        st = os.stat(real)
    except OSError as e:
        raise BundleError(f"model {str(p)!r}: {e.strerror or e}") from None
    key = real
    cache_file = cache_dir() / "model-hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
        h = hit.get("blake3")
        if isinstance(h, str) and len(h) == 64:
            return h
    h = _core.hash_file(real)
    cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "blake3": h}
    try:  # the cache is an optimisation: a read-only home must not fail the run
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache_file, json.dumps(cache, indent=0, sort_keys=True).encode("utf-8"))
    except (OSError, AotccError):
        pass
    return h


# --- checksums -----------------------------------------------------------------------

_pool: ThreadPoolExecutor | None = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
        _pool = ThreadPoolExecutor(max_workers=max(1, n), thread_name_prefix="aotkv-crc")
    return _pool


def block_checksums(data: memoryview | bytes | bytearray, block: int = CHECKSUM_BLOCK) -> list[int]:
    """CRC-32 (zlib's) of each `block`-byte block of `data`. zlib releases the GIL, so
    the blocks are spread over a thread per core (one block at a time: the thread that
    runs ahead takes more)."""
    mv = memoryview(data).cast("B")
    crc32 = getattr(_core, "crc32", None) or zlib.crc32  # a hardware CRC in the core, when it has one: same values
    if len(mv) <= block:
        return [crc32(mv)]
    return list(_threads().map(lambda i: crc32(mv[i : i + block]), range(0, len(mv), block)))


# --- reading -------------------------------------------------------------------------


_MISSING = object()


def _need(fp: dict, path: str, kind: type | tuple[type, ...], lo: int | None = None, hi: int | None = None,
          *, optional: bool = False) -> Any:
    """The fingerprint field at dotted `path`, of type `kind` (and for an int, in [lo, hi]);
    an optional field may be absent (None)."""
    node: Any = fp
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if optional and isinstance(node, dict):
                return None
            raise BundleFormatError(f"fingerprint has no field {path}")
        node = node[part]
    if optional and node is None:
        return None
    if not isinstance(node, kind) or (isinstance(node, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        raise BundleFormatError(f"fingerprint field {path} has the wrong type ({type(node).__name__})")
    if isinstance(node, int) and not isinstance(node, bool) and ((lo is not None and node < lo) or (hi is not None and node > hi)):
        raise BundleFormatError(f"fingerprint field {path} is {node}, outside {lo}..{hi}")
    return node


def state_size_bound(n_tokens: int, n_layer: int, n_embd_k: int, n_embd_v: int) -> int:
    """The most bytes `llama_state_seq_get_data` can write for `n_tokens` cells: per cell
    and layer a K row and a V row of at most 4 bytes a value, plus per-cell and per-layer
    headers, all doubled for headroom (a real f16 state is about a fifth of this)."""
    per_token = 2 * (n_layer * (n_embd_k + n_embd_v) * 4 + 64)
    return n_tokens * per_token + 2 * n_layer * 64 + 4096


@dataclass(frozen=True)
class Header:
    version: int
    flags: int
    fingerprint_offset: int
    fingerprint_length: int
    payload_offset: int
    payload_length: int
    fingerprint_blake3: bytes


class Bundle:
    """An `.aotkv` file: header and fingerprint read and checked on open, payload
    checked (checksums, then decompression) only when asked for.

    `Bundle.open(path)` refuses a file that is not a bundle, is of another format
    version, is truncated or has a corrupt fingerprint, with a `BundleFormatError`.
    """

    def __init__(self, path: Path, header: Header, fingerprint: dict[str, Any], file_size: int) -> None:
        self.path = path
        self.header = header
        self.fingerprint = fingerprint
        self.file_size = file_size
        self._validate()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Bundle:
        p = Path(path)
        try:
            with open(p, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(HEADER_SIZE)
                if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
                    raise BundleFormatError(f"{show(p)}: not a KV bundle (no .aotkv magic at the start of the file)")
                if len(head) < HEADER_SIZE:
                    raise BundleFormatError(f"{show(p)}: truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
                header = cls._parse_header(p, head, size)
                f.seek(header.fingerprint_offset)
                fp_bytes = f.read(header.fingerprint_length)
        except FileNotFoundError:
            raise BundleError(f"{show(p)}: no such file") from None
        except IsADirectoryError:
            raise BundleError(f"{show(p)}: is a directory, not a bundle") from None
        except OSError as e:
            raise BundleError(f"{show(p)}: cannot read: {e.strerror or e}") from None
        if len(fp_bytes) != header.fingerprint_length:
            raise BundleFormatError(f"{show(p)}: truncated inside the fingerprint")
        digest = bytes.fromhex(_core.blake3_hex(fp_bytes))
        if digest != header.fingerprint_blake3:
            raise BundleFormatError(
                f"{show(p)}: fingerprint checksum mismatch: header says blake3 {header.fingerprint_blake3.hex()[:16]}…, "
                f"contents hash to {digest.hex()[:16]}… (the file is corrupt)"
            )
        try:
            fingerprint = msgpack.unpackb(fp_bytes, raw=False, strict_map_key=True)
        except Exception as e:
            raise BundleFormatError(f"{show(p)}: fingerprint is not valid msgpack: {e}") from None
        if not isinstance(fingerprint, dict):
            raise BundleFormatError(f"{show(p)}: fingerprint is not a map")
        check_plain(fingerprint, f"{show(p)}: fingerprint", "msgpack", error=BundleFormatError, allow_bytes=True)
        note_input(p)
        return cls(p, header, fingerprint, size)

    @staticmethod
    def _parse_header(p: Path, head: bytes, size: int) -> Header:
        magic, version, flags, fp_off, fp_len, pl_off, pl_len, fp_hash, reserved = HEADER.unpack(head)
        if version != FORMAT_VERSION:
            raise BundleFormatError(f"{show(p)}: bundle format version {version}, this aotcc reads version {FORMAT_VERSION}")
        if flags != 0 or reserved.strip(b"\0"):
            raise BundleFormatError(f"{show(p)}: header has unknown flags or non-zero reserved bytes (the file is corrupt or newer)")
        if fp_off != HEADER_SIZE or pl_off < fp_off + fp_len or pl_off % PAYLOAD_ALIGN:
            raise BundleFormatError(
                f"{show(p)}: header offsets are inconsistent (fingerprint {fp_off}+{fp_len}, payload at {pl_off}; the file is corrupt)"
            )
        if fp_len > MAX_FINGERPRINT_BYTES:
            raise BundleFormatError(f"{show(p)}: header says the fingerprint has {fp_len:,} bytes; at most {MAX_FINGERPRINT_BYTES:,} are accepted")
        expected = pl_off + pl_len
        if size < expected:
            raise BundleFormatError(f"{show(p)}: truncated: file has {size} bytes, header says {expected}")
        if size > expected:
            raise BundleFormatError(f"{show(p)}: {size - expected} unexpected bytes after the payload (file has {size}, header says {expected})")
        return Header(version, flags, fp_off, fp_len, pl_off, pl_len, fp_hash)

    def _validate(self) -> None:
        """Every field used later, with its type and bounds: what passes here cannot make
        a later step crash or allocate more than the file and the format allow."""
        fp = self.fingerprint
        try:
            if _need(fp, "format", int) != FORMAT_VERSION:
                raise BundleFormatError(f"fingerprint format {fp['format']} != {FORMAT_VERSION}")
            _need(fp, "created_by", str, optional=True)
            _need(fp, "model.blake3", str)
            _need(fp, "model.file", str, optional=True)
            _need(fp, "model.arch", str)
            _need(fp, "model.n_layer", int, 1, 1 << 16)
            _need(fp, "model.n_vocab", int, 1, 1 << 31)
            for k in ("size", "n_embd", "n_head_kv", "n_swa"):
                _need(fp, f"model.{k}", int, 0, 1 << 62, optional=True)
            _need(fp, "llama.llama_cpp_python", str)
            _need(fp, "llama.llama_cpp", str)
            _need(fp, "llama.state_seq_version", int, 0, 2**32 - 1)
            n_ctx = _need(fp, "context.n_ctx", int, 1, MAX_CTX)
            for k in ("type_k", "type_v"):
                if _need(fp, f"context.{k}", str) not in KV_TYPE_NAMES:
                    raise BundleFormatError(f"fingerprint field context.{k} is {fp['context'][k]!r}, not a KV type "
                                            f"({', '.join(KV_TYPE_NAMES)})")
            if not _need(fp, "context.flash_attn", bool) and fp["context"]["type_v"] not in ("f16", "f32"):
                raise BundleFormatError(f"fingerprint says a quantized V cache ({fp['context']['type_v']}) without "
                                        "flash attention, which llama.cpp cannot make")
            _need(fp, "context.swa_full", bool)
            mode = fp["context"].get("mode", "exact")  # bundles before modes were exact
            if mode not in ("compact", "exact"):
                raise BundleFormatError(f"fingerprint field context.mode is {mode!r}, expected compact or exact")
            for k in ("n_batch", "n_ubatch"):
                _need(fp, f"context.{k}", int, 1, 1 << 31, optional=True)
            n_tokens = _need(fp, "prompt.n_tokens", int, 1, MAX_CTX)
            if n_tokens >= n_ctx:
                raise BundleFormatError(f"{n_tokens} prompt tokens do not fit n_ctx {n_ctx}")
            toks = _need(fp, "prompt.tokens", bytes)
            _need(fp, "prompt.aotc_hash", str)
            _need(fp, "prompt.aotc_file", str, optional=True)
            _need(fp, "prompt.text_blake3", str, optional=True)
            _need(fp, "prompt.add_bos", bool, optional=True)
            tmpl = _need(fp, "prompt.template", dict, optional=True)
            if tmpl is not None:
                for k in TEMPLATE_FIELDS:
                    _need(fp, f"prompt.template.{k}", str)
            codec = _need(fp, "payload.codec", str)
            raw_size = _need(fp, "payload.raw_size", int, 8, 1 << 62)
            algo = _need(fp, "payload.checksum", str)
            block = _need(fp, "payload.block", int, MIN_BLOCK, MAX_BLOCK)
            crcs = _need(fp, "payload.crc32", list)
        except BundleFormatError as e:
            raise BundleFormatError(f"{show(self.path)}: {e}") from None
        where = show(self.path)
        if len(toks) != 4 * n_tokens:
            raise BundleFormatError(f"{where}: fingerprint token list has {len(toks) // 4} ids, n_tokens says {n_tokens}")
        if codec not in CODECS:
            raise BundleFormatError(f"{where}: unknown payload codec {codec!r} (expected one of {', '.join(CODECS)})")
        if algo != CHECKSUM_ALGO:
            raise BundleFormatError(f"{where}: unknown payload checksum {algo!r}")
        stored = self.header.payload_length
        if len(crcs) != max(1, -(-stored // block)):
            raise BundleFormatError(f"{where}: payload checksum table does not match the payload length")
        if not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 2**32 for c in crcs):
            raise BundleFormatError(f"{where}: payload checksum table holds a value that is not a CRC-32")
        if codec == "none" and raw_size != stored:
            raise BundleFormatError(f"{where}: payload has {stored:,} bytes, fingerprint says {raw_size:,}")
        if codec == "zstd" and raw_size > MAX_ZSTD_RATIO * stored:
            raise BundleFormatError(f"{where}: payload of {stored:,} zstd bytes claims to expand to {raw_size:,} "
                                    f"(more than {MAX_ZSTD_RATIO}x; the file is corrupt or forged)")
        m = fp["model"]
        if isinstance(m.get("n_embd"), int):  # a state of n_tokens cannot be larger than this
            width = 4 * max(1, m["n_embd"])
            bound = state_size_bound(n_tokens, m["n_layer"], width, width)
            if raw_size > bound:
                raise BundleFormatError(f"{where}: payload.raw_size {raw_size:,} is more than a state of {n_tokens:,} "
                                        f"tokens can be ({bound:,} bytes for this model shape)")

    def check_state_size(self, n_layer: int, n_embd_k: int, n_embd_v: int) -> None:
        """Refuses a payload larger than a state of this bundle's tokens can be for a model
        of this shape (called with the runtime's real model, before decompressing)."""
        bound = state_size_bound(self.n_tokens, n_layer, n_embd_k, n_embd_v)
        if self.raw_size > bound:
            raise BundleFormatError(f"{show(self.path)}: payload.raw_size {self.raw_size:,} is more than a state of "
                                    f"{self.n_tokens:,} tokens can be for this model ({bound:,} bytes)")

    # fingerprint views

    @property
    def n_tokens(self) -> int:
        return int(self.fingerprint["prompt"]["n_tokens"])

    @property
    def tokens(self) -> np.ndarray:
        return np.frombuffer(self.fingerprint["prompt"]["tokens"], dtype="<i4")

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.fingerprint["context"])

    @property
    def template(self) -> dict[str, Any] | None:
        return self.fingerprint["prompt"].get("template")

    @property
    def mode(self) -> str:
        """`compact` or `exact` (bundles made before modes existed were exact)."""
        return str(self.fingerprint["context"].get("mode", "exact"))

    @property
    def codec(self) -> str:
        return str(self.fingerprint["payload"]["codec"])

    @property
    def raw_size(self) -> int:
        return int(self.fingerprint["payload"]["raw_size"])

    @property
    def payload_size(self) -> int:
        return self.header.payload_length

    def summary(self) -> dict[str, Any]:
        """The fingerprint in JSON-friendly form (token ids as a count, not a list)."""
        fp = self.fingerprint
        prompt = {k: v for k, v in fp["prompt"].items() if k != "tokens"}
        return {
            "path": str(self.path),
            "format": fp["format"],
            "created_by": fp.get("created_by"),
            "model": fp["model"],
            "llama": fp["llama"],
            "context": fp["context"],
            "prompt": prompt,
            "payload": {k: v for k, v in fp["payload"].items() if k != "crc32"} | {"stored_size": self.payload_size},
            "file_size": self.file_size,
        }

    # checks against a runtime

    def check(self, expected: dict[str, object], *, labels: dict[str, str] | None = None) -> None:
        """Compare fingerprint fields (dotted paths) with `expected`; raise `BundleMismatch` on the first difference."""
        for field, want in expected.items():
            have: Any = self.fingerprint
            for part in field.split("."):
                have = have.get(part) if isinstance(have, dict) else None
            if have != want:
                detail = (labels or {}).get(field, "")
                raise BundleMismatch(field, have, want, detail)

    # payload

    def _map_payload(self) -> tuple[mmap.mmap | None, memoryview]:
        off, n = self.header.payload_offset, self.header.payload_length
        if n == 0:
            return None, memoryview(b"")
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size != self.file_size:
                    raise BundleFormatError(f"{show(self.path)}: file changed size while being read")
                # no MAP_POPULATE: the checksum threads fault the pages in, in parallel
                mm = mmap.mmap(f.fileno(), off + n, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        except OSError as e:
            raise BundleError(f"{show(self.path)}: cannot map the payload: {e.strerror or e}") from None
        return mm, memoryview(mm)[off : off + n]

    def verify_payload(self) -> None:
        """Check the payload's checksums (and, for zstd, that it decompresses)."""
        with self.payload() as _:
            pass

    def payload(self) -> Payload:
        """The verified, decompressed payload (the `llama_state_seq_get_data` bytes), as
        a context manager holding a read-only buffer. Raises `BundleFormatError` on a
        checksum mismatch before anyone reads the state."""
        mm, stored = self._map_payload()
        try:
            pl = self.fingerprint["payload"]
            block = int(pl["block"])
            crcs = block_checksums(stored, block) if len(stored) else [0]
            for i, (got, want) in enumerate(zip(crcs, pl["crc32"])):
                if got != want:
                    lo = self.header.payload_offset + i * block
                    hi = min(lo + block, self.file_size)
                    raise BundleFormatError(
                        f"{show(self.path)}: payload checksum mismatch in block {i} (file bytes {lo}-{hi}): "
                        f"crc32 {got:08x}, fingerprint says {want:08x} (the file is corrupt)"
                    )
            if self.codec == "zstd":
                data: Any = _zstd_decompress(show(self.path), stored, self.raw_size)
                stored.release()
                if mm is not None:
                    mm.close()
                mm, view = None, memoryview(data)
            else:
                view = stored
            if len(view) != self.raw_size:
                raise BundleFormatError(f"{show(self.path)}: payload has {len(view)} bytes, fingerprint says {self.raw_size}")
            _check_state_prefix(self.path, view)
            return Payload(view, mm)
        except BaseException:
            try:
                stored.release()
            except Exception:
                pass
            if mm is not None:
                mm.close()
            raise

    def llama_server_state(self, out: BinaryIO) -> int:
        """Write the raw sequence-state file (`ggsq`) a llama-server of the same llama.cpp
        version restores into a slot; returns the number of bytes written."""
        toks = self.fingerprint["prompt"]["tokens"]
        head = struct.pack("<III", GGSQ_MAGIC, int(self.fingerprint["llama"]["state_seq_version"]), self.n_tokens)
        with self.payload() as view:
            body = view[8:]  # drop get_data's (magic, seq id) prefix: the file format has none
            out.write(head)
            out.write(toks)
            out.write(body)
            return len(head) + len(toks) + len(body)


class Payload:
    """A verified payload buffer; closing releases the file mapping."""

    def __init__(self, view: memoryview, mm: mmap.mmap | None) -> None:
        self.view = view
        self._mm = mm

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.view.release()
        except Exception:
            pass
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # someone still holds a view; the GC will close it
                pass
            self._mm = None


def _check_state_prefix(path: Path, view: memoryview) -> None:
    if len(view) < 8:
        raise BundleFormatError(f"{show(path)}: payload of {len(view)} bytes is too short to be a llama.cpp sequence state")
    magic, seq = struct.unpack_from("<Ii", view, 0)
    if magic != STATE_IO_MAGIC or seq not in (-1, 0):  # -1: every cell (exact); 0: sequence 0 (compact)
        raise BundleFormatError(
            f"{show(path)}: payload does not start with a llama.cpp sequence state "
            f"(magic {magic:08x} seq {seq}, expected {STATE_IO_MAGIC:08x} seq -1 or 0)"
        )


def _zstd_frame_size(data: memoryview) -> int:
    """The length of the zstd frame at the start of `data`, from its header and block
    headers (RFC 8878), without decompressing anything."""
    import zstandard

    pos = zstandard.frame_header_size(data)
    has_checksum = bool(data[4] & 0x04)  # Frame_Header_Descriptor: Content_Checksum_flag
    while True:
        if pos + 3 > len(data):
            raise ValueError("the frame is cut short inside its blocks")
        head = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        last, kind, size = head & 1, (head >> 1) & 3, head >> 3
        if kind == 3:
            raise ValueError("a block of the reserved type")
        pos += 3 + (1 if kind == 1 else size)
        if last:
            return pos + (4 if has_checksum else 0)


def _zstd_decompress(where: str, data: memoryview, raw_size: int) -> bytearray:
    """The one zstd frame in `data`, decompressed into exactly `raw_size` bytes: a frame that
    declares another size, would write more, ends sooner, fails its checksum or is
    followed by other bytes is refused. Memory: `raw_size` (bounded before this)."""
    try:
        import zstandard
    except ImportError:
        raise BundleError(f"{where}: the payload is zstd-compressed; install zstandard (pip install 'aotcc[llama]')") from None
    try:
        params = zstandard.get_frame_parameters(data)
        if params.content_size != raw_size:
            declared = "no size" if params.content_size == zstandard.CONTENTSIZE_UNKNOWN else f"{params.content_size:,} bytes"
            raise BundleFormatError(f"{where}: zstd frame declares {declared}, fingerprint says payload.raw_size {raw_size:,}")
        frame = _zstd_frame_size(data)
        if frame != len(data):
            raise BundleFormatError(f"{where}: zstd payload has {len(data) - frame:,} bytes after its frame" if frame < len(data)
                                    else f"{where}: zstd frame is cut short")
        out = bytearray(raw_size)
        view = memoryview(out)
        pos = 0
        with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False) as reader:
            while pos < raw_size:
                n = reader.readinto(view[pos:])
                if not n:
                    break
                pos += n
            if pos < raw_size:
                raise BundleFormatError(f"{where}: zstd payload ends after {pos:,} bytes, fingerprint says {raw_size:,}")
            if reader.read(1):  # also where zstd checks the frame's content checksum
                raise BundleFormatError(f"{where}: zstd payload expands beyond payload.raw_size {raw_size:,}")
        view.release()
        return out
    except (zstandard.ZstdError, ValueError, IndexError) as e:
        raise BundleFormatError(f"{where}: zstd payload does not decompress: {e}") from None


# --- writing -------------------------------------------------------------------------


def compress_zstd(data: memoryview | bytes | bytearray, level: int = 3) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise BundleError("--compress zstd needs zstandard (pip install 'aotcc[llama]')") from None
    c = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True, threads=-1)
    return c.compress(data)


def build(fingerprint: dict[str, Any], state: memoryview | bytes | bytearray, *, codec: str = "none", level: int = 3) -> tuple[bytes, Sequence[Any]]:
    """Header + fingerprint (+ padding) and the payload pieces for `write`."""
    if codec not in CODECS:
        raise BundleError(f"unknown compression {codec!r}; expected one of {', '.join(CODECS)}")
    _check_state_prefix(Path("<state>"), memoryview(state))
    raw_size = len(state)
    stored: Any = compress_zstd(state, level) if codec == "zstd" else state
    fp = dict(fingerprint)
    fp["payload"] = {
        "codec": codec,
        "raw_size": raw_size,
        "checksum": CHECKSUM_ALGO,
        "block": CHECKSUM_BLOCK,
        "crc32": block_checksums(stored) if len(stored) else [0],
    }
    fp_bytes = msgpack.packb(fp, use_bin_type=True)
    fp_off = HEADER_SIZE
    pl_off = -(-(fp_off + len(fp_bytes)) // PAYLOAD_ALIGN) * PAYLOAD_ALIGN
    header = HEADER.pack(
        MAGIC, FORMAT_VERSION, 0, fp_off, len(fp_bytes), pl_off, len(stored),
        bytes.fromhex(_core.blake3_hex(fp_bytes)), b"\0" * 48,
    )
    head = header + fp_bytes + b"\0" * (pl_off - fp_off - len(fp_bytes))
    return head, [stored]


def write(path: str | os.PathLike[str], fingerprint: dict[str, Any], state: memoryview | bytes | bytearray, *, codec: str = "none", level: int = 3) -> Path:
    """Write a bundle atomically; returns its path."""
    head, pieces = build(fingerprint, state, codec=codec, level=level)

    def fill(f: BinaryIO) -> None:
        f.write(head)
        for piece in pieces:
            f.write(piece)

    return write_atomic(path, fill)


def export_llama_server(bundle: str | os.PathLike[str] | Bundle, out: str | os.PathLike[str]) -> Path:
    """Write the raw sequence-state file of `bundle` to `out` (atomically)."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    return write_atomic(out, b.llama_server_state)


__all__ = [
    "Bundle", "BundleError", "BundleFormatError", "BundleMismatch", "FORMAT_VERSION", "MAGIC",
    "block_checksums", "build", "export_llama_server", "model_hash", "write",
]
