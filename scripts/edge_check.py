"""A bundle made on this x86-64 machine, loaded by an aarch64 build of the same llama.cpp
(cross-built with Debian's gcc-aarch64-linux-gnu, run under qemu-user-static): the
exported slot file is restored into the aarch64 `llama-server` and asked the same
question; its greedy tokens are compared with `aotcc run` on x86-64 (`make edge-check`).

    .venv/bin/python scripts/edge_check.py --server-x86 PATH --server-arm PATH [-o result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERY = "\n\nQuestion: Who may approve an advance replacement?\nAnswer:"
N_PREDICT = 12


def aotcc(*args: object) -> subprocess.CompletedProcess:
    env = dict(os.environ, AOTCC_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"aotcc {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r


def main(argv: list[str] | None = None) -> int:
    from aotcc import _core
    from aotcc.llama.bundle import Bundle
    from aotcc.llama.server import LlamaServer, launch_flags
    from aotcc.models import default_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server-arm", required=True, help="the aarch64 llama-server")
    p.add_argument("--qemu", default="qemu-aarch64-static")
    p.add_argument("--sysroot", default="/usr/aarch64-linux-gnu")
    p.add_argument("--modes", default="compact,exact")
    p.add_argument("-o", "--output")
    a = p.parse_args(argv)
    model = default_model()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        excerpt = work / "excerpt.md"
        excerpt.write_text("\n\n".join((ROOT / "examples" / "support_agent.md").read_text().split("\n\n")[:12]) + "\n")
        aotcc("compile", excerpt, "-t", ROOT / "examples" / "support_terms.toml", "-o", work / "p.aotc", "-q")
        query = [int(t) for t in _core.GgufTokenizer(str(model)).tokenize(QUERY)]
        for mode in a.modes.split(","):
            bundle = work / f"{mode}.aotkv"
            aotcc("prefill", work / "p.aotc", "-o", bundle, "--ctx", 2048, "-q", *(["--exact"] if mode == "exact" else []))
            slot = work / f"{mode}.slot.bin"
            printed = aotcc("export", "--llama-server", bundle, "-o", slot).stderr
            x86 = json.loads(aotcc("run", bundle, "--prompt", QUERY, "--max-tokens", N_PREDICT, "--no-stop",
                                   "--json").stdout)
            b = Bundle.open(bundle)
            t0 = time.perf_counter()
            srv = LlamaServer(launch_flags(printed, model), binary=a.server_arm, log=work / f"arm-{mode}.log",
                              prefix=[a.qemu, "-L", a.sysroot], timeout=1800)
            try:
                start_s = srv.wait()
                t1 = time.perf_counter()
                restored = srv.restore(0, slot.name)
                t2 = time.perf_counter()
                done = srv.complete([int(t) for t in b.tokens] + query, N_PREDICT)
                t3 = time.perf_counter()
            finally:
                srv.stop()
            same = sum(1 for x, y in zip(done["tokens"], x86["tokens"]) if x == y)
            first_diff = next((i for i, (x, y) in enumerate(zip(done["tokens"], x86["tokens"])) if x != y), None)
            row = {
                "mode": mode, "bundle_tokens": b.n_tokens, "restored": restored.get("n_restored"),
                "query_tokens_processed": done["timings"]["prompt_n"], "arm_tokens": done["tokens"],
                "x86_tokens": x86["tokens"], "identical": done["tokens"] == x86["tokens"],
                "agreeing_positions": same, "first_difference": first_diff,
                "arm_text": done["content"], "x86_text": x86["raw_text"],
                "server_start_s": round(start_s, 1), "restore_s": round(t2 - t1, 2), "complete_s": round(t3 - t2, 1),
                "total_s": round(time.perf_counter() - t0, 1),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    if a.output:
        Path(a.output).write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["restored"] == r["bundle_tokens"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
