"""`aotcc build`: many prompts × models from one manifest, rebuilt only where an input
changed, locally or on a Ray cluster.

    [make]
    bundle = true                     # a KV bundle per (prompt, model)
    export = ["anthropic", "openai"]  # request bodies per prompt (hosted caches)
    analyze = false                   # model-assisted boundaries and first appearances

    [[model]]                         # optional; default: the default model
    name = "gemma"
    path = "gemma3-270m"              # a .gguf path (relative to the manifest) or a model name

    [[prompt]]
    name = "support"
    source = ["support_agent.md"]     # one file or a list, relative to the manifest
    terms = "support_terms.toml"
    budget = 512                      # optional compile options (see aotcc.options)

Outputs land under OUTDIR with stable names:

    OUTDIR/<prompt>/<prompt>.aotc                  the compiled prompt (per model with analyze)
    OUTDIR/<prompt>/<model>.aotkv                  the bundle (compact for sliding-window models)
    OUTDIR/<prompt>/<target>.json                  an export per hosted cache
    OUTDIR/build.lock.json                         every output's input key and content hash
    OUTDIR/.cache/<prompt>/<model>.exact.aotkv     the exact bundle an edit is rebuilt from

A job runs when the key of its inputs (file hashes, options, model hash, versions)
differs from the lock's. A bundle whose prompt changed is prefilled from its exact
cache: only the tokens after the first changed batch are decoded. Every output is
written atomically and the lock is rewritten after each finished job, so an
interrupted build leaves complete outputs and a consistent lock, and a rerun resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aotcc import _core, _io
from aotcc.errors import AotccError, InputError
from aotcc.options import CompileOptions

LOCK = "build.lock.json"
LOCK_FORMAT = 1
_PROMPT_KEYS = {"name", "source", "terms", "budget", "placement", "references", "tag_ids", "tag_style", "tokenizer",
                "chat_template"}
_MODEL_KEYS = {"name", "path"}
_MAKE_KEYS = {"bundle", "export", "analyze", "kv_type", "exact"}
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Prompt:
    name: str
    sources: tuple[Path, ...]
    terms: Path
    options: dict[str, Any]
    chat_template: str | None = None


@dataclass(frozen=True)
class Model:
    name: str
    path: Path


@dataclass(frozen=True)
class Manifest:
    path: Path
    prompts: tuple[Prompt, ...]
    models: tuple[Model, ...]
    bundle: bool
    exports: tuple[str, ...]
    analyze: bool
    kv_type: str = "f16"
    exact: bool = False


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v or not set(v) <= _NAME_OK or v.startswith("."):
        raise InputError(f"{where}: name {v!r} must be letters, digits, '-', '_' or '.' (not first)")
    return v


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest; every error names the entry, before any work."""
    from aotcc.export import TARGETS
    from aotcc.models import resolve_model

    p = Path(path)
    doc = _io.parse_document(_io.read_input(p), str(p), "toml")
    if not isinstance(doc, dict):
        raise InputError(f"{p}: expected a TOML table")
    extra = sorted(set(doc) - {"make", "model", "prompt"})
    if extra:
        raise InputError(f"{p}: unknown key {extra[0]!r} (known: make, model, prompt)")
    base = p.parent
    make = doc.get("make", {})
    if not isinstance(make, dict):
        raise InputError(f"{p}: [make] must be a table")
    bad = sorted(set(make) - _MAKE_KEYS)
    if bad:
        raise InputError(f"{p}: make.{bad[0]}: unknown key (known: {', '.join(sorted(_MAKE_KEYS))})")
    exports = make.get("export", [])
    if not isinstance(exports, list) or not all(isinstance(x, str) for x in exports):
        raise InputError(f"{p}: make.export must be a list of target names")
    for t in exports:
        if t not in TARGETS or t == "llama-server":
            raise InputError(f"{p}: make.export: unknown target {t!r} (one of anthropic, openai, gemini)")
    for k in ("bundle", "analyze", "exact"):
        if k in make and not isinstance(make[k], bool):
            raise InputError(f"{p}: make.{k} must be true or false")
    kv = make.get("kv_type", "f16")
    if kv not in ("f16", "q8_0", "q4_0"):
        raise InputError(f"{p}: make.kv_type {kv!r}: expected f16, q8_0 or q4_0")

    models = []
    raw_models = doc.get("model", [])
    if not isinstance(raw_models, list):
        raise InputError(f"{p}: [[model]] entries expected")
    for i, m in enumerate(raw_models):
        where = f"{p}: model[{i}]"
        if not isinstance(m, dict):
            raise InputError(f"{where}: expected a table")
        bad = sorted(set(m) - _MODEL_KEYS)
        if bad:
            raise InputError(f"{where}: unknown key {bad[0]!r} (known: name, path)")
        name = _name(m.get("name"), where)
        raw = m.get("path")
        if not isinstance(raw, str) or not raw:
            raise InputError(f"{where} ({name}): path missing")
        cand = base / raw
        try:
            mp = cand if cand.is_file() else resolve_model(raw)
        except AotccError as e:
            raise InputError(f"{where} ({name}): {e}") from None
        models.append(Model(name, mp))
    if not models and (make.get("bundle", True) or make.get("analyze", False)):
        from aotcc.models import default_model

        models = [Model("default", default_model())]
    if len({m.name for m in models}) != len(models):
        raise InputError(f"{p}: two models have the same name")

    prompts = []
    raw_prompts = doc.get("prompt", [])
    if not isinstance(raw_prompts, list) or not raw_prompts:
        raise InputError(f"{p}: no [[prompt]] entries")
    for i, entry in enumerate(raw_prompts):
        where = f"{p}: prompt[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected a table")
        bad = sorted(set(entry) - _PROMPT_KEYS)
        if bad:
            raise InputError(f"{where}: unknown key {bad[0]!r} (known: {', '.join(sorted(_PROMPT_KEYS))})")
        name = _name(entry.get("name"), where)
        where = f"{p}: prompt {name!r}"
        src = entry.get("source")
        srcs = [src] if isinstance(src, str) else src
        if not isinstance(srcs, list) or not srcs or not all(isinstance(s, str) and s for s in srcs):
            raise InputError(f"{where}: source must be a file or a list of files")
        paths = tuple(base / s for s in srcs)
        for sp in paths:
            if not sp.is_file():
                raise InputError(f"{where}: source {sp}: no such file")
        terms = entry.get("terms")
        if not isinstance(terms, str) or not (base / terms).is_file():
            raise InputError(f"{where}: terms {base / str(terms)}: no such file")
        opts = {k: entry[k] for k in ("budget", "placement", "references", "tag_ids", "tag_style", "tokenizer") if k in entry}
        if isinstance(opts.get("tokenizer"), str) and opts["tokenizer"] != "model":
            opts["tokenizer"] = str(base / opts["tokenizer"])
        try:
            CompileOptions(**{k: v for k, v in opts.items() if k != "tokenizer"})
        except AotccError as e2:
            raise InputError(f"{where}: {e2}") from None
        tmpl = entry.get("chat_template")
        if tmpl is not None and not isinstance(tmpl, str):
            raise InputError(f"{where}: chat_template must be a string (\"auto\" or a template name)")
        prompts.append(Prompt(name, paths, base / terms, opts, tmpl))
    if len({x.name for x in prompts}) != len(prompts):
        dup = next(x.name for x in prompts if sum(y.name == x.name for y in prompts) > 1)
        raise InputError(f"{p}: two prompts are named {dup!r}")
    return Manifest(p, tuple(prompts), tuple(models), bool(make.get("bundle", True)), tuple(exports),
                    bool(make.get("analyze", False)), kv, bool(make.get("exact", False)))


# --- jobs ----------------------------------------------------------------------------


@dataclass
class Job:
    """One output: what it depends on and how to make it."""

    id: str  # "support/gemma.aotkv"
    kind: str  # compile | bundle | export
    prompt: Prompt
    model: Model | None
    target: str | None
    out: Path
    key: str = ""
    needs: list[str] = field(default_factory=list)  # job ids whose outputs it reads


def _hash_files(paths: Sequence[Path]) -> list[str]:
    return [_core.hash_file(str(p)) for p in paths]


def plan(m: Manifest, outdir: Path) -> list[Job]:
    """Every job of the manifest, in an order where a job comes after those it needs,
    each with the key of its inputs."""
    from aotcc import __version__
    from aotcc.llama.bundle import model_hash

    jobs: list[Job] = []
    model_keys = {mo.name: model_hash(mo.path) for mo in m.models}
    for pr in m.prompts:
        src = _hash_files(pr.sources) + _hash_files([pr.terms])
        base = {"aotcc": __version__, "sources": src, "names": [s.name for s in pr.sources], "options": pr.options,
                "analyze": m.analyze}
        per_model = m.analyze or pr.options.get("tokenizer") == "model"
        compiles: dict[str | None, Job] = {}
        for mo in (m.models if per_model else (None,)):
            name = f"{pr.name}.{mo.name}.aotc" if mo is not None else f"{pr.name}.aotc"
            j = Job(f"{pr.name}/{name}", "compile", pr, mo, None, outdir / pr.name / name)
            j.key = _key(base | {"model": model_keys[mo.name] if mo else None})
            compiles[mo.name if mo else None] = j
            jobs.append(j)
        if m.bundle:
            for mo in m.models:
                c = compiles.get(mo.name) or compiles[None]
                j = Job(f"{pr.name}/{mo.name}.aotkv", "bundle", pr, mo, None, outdir / pr.name / f"{mo.name}.aotkv",
                        needs=[c.id])
                j.key = _key({"compiled": c.key, "model": model_keys[mo.name], "kv": m.kv_type, "exact": m.exact,
                              "template": pr.chat_template, "llama": _llama_version()})
                jobs.append(j)
        for t in m.exports:
            c = next(iter(compiles.values()))
            j = Job(f"{pr.name}/{t}.json", "export", pr, None, t, outdir / pr.name / f"{t}.json", needs=[c.id])
            j.key = _key({"compiled": c.key, "target": t})
            jobs.append(j)
    return jobs


def _key(doc: dict[str, Any]) -> str:
    return _core.blake3_hex(json.dumps(doc, sort_keys=True, default=str).encode("utf-8"))


def _llama_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama-cpp-python")
    except Exception:
        return "none"


# --- running a job (in this process, a worker process or a Ray actor) ------------------


def run_job(job: Job, manifest: Manifest, outdir: Path, runtimes: dict[str, Any]) -> dict[str, Any]:
    """Make one output; returns its status row. `runtimes` caches a loaded model per
    model name (a worker keeps its models between jobs)."""
    t0 = time.perf_counter()
    status = "built"
    extra: dict[str, Any] = {}
    job.out.parent.mkdir(parents=True, exist_ok=True)
    # a job's reads (sources, the exact cache it rebuilds) protect its own writes only:
    # the build rewrites its cache and lock, which a command-wide guard would refuse
    with _io.protect_inputs():
        if job.kind == "compile":
            _compile(job, manifest, outdir, runtimes)
        elif job.kind == "export":
            from aotcc.compiled import load
            from aotcc.export import export_request

            c = load(outdir / job.needs[0])
            export_request(c, str(job.target)).save(job.out)
        else:
            status, extra = _bundle(job, manifest, outdir, runtimes)
    return {"id": job.id, "kind": job.kind, "status": status, "key": job.key,
            "blake3": _core.hash_file(str(job.out)), "seconds": round(time.perf_counter() - t0, 3), **extra}


def _compile(job: Job, manifest: Manifest, outdir: Path, runtimes: dict[str, Any]) -> None:
    import aotcc

    pr = job.prompt
    opts = dict(pr.options)
    if opts.get("tokenizer") == "model":
        opts["tokenizer"] = str(job.model.path) if job.model else None
    options = CompileOptions(**opts)
    sources = [(str(s.name), _io.read_input(s)) for s in pr.sources]
    if manifest.analyze and job.model is not None:
        from aotcc.analyze import Engine, analyze

        eng = runtimes.get(f"engine:{job.model.name}")
        if eng is None:
            eng = runtimes[f"engine:{job.model.name}"] = Engine(job.model.path)
        c = analyze(sources, str(pr.terms), engine=eng, options=options,
                    cache_dir=outdir / ".cache" / "analyze").compiled
    else:
        c = aotcc.compile(sources, str(pr.terms), options=options, progress=False)
    c.save(job.out)


def _bundle(job: Job, manifest: Manifest, outdir: Path, runtimes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    from aotcc.compiled import load
    from aotcc.llama.runtime import Runtime

    assert job.model is not None
    rt_key = f"runtime:{job.model.name}:{manifest.kv_type}:{manifest.exact}"
    rt = runtimes.get(rt_key)
    if rt is None:
        rt = runtimes[rt_key] = Runtime(job.model.path, kv_type=manifest.kv_type, max_sessions=1,
                                        mode="exact" if manifest.exact else None)
    c = load(outdir / job.needs[0])
    cache = outdir / ".cache" / job.prompt.name / f"{job.model.name}.exact.aotkv"
    cache.parent.mkdir(parents=True, exist_ok=True)
    source = cache if cache.is_file() else None
    # the cache is read (the source) and rewritten: the new one goes beside it, then over it
    nxt = cache.with_name(cache.name + ".next")
    res = rt.prefill(c, job.out, chat_template=job.prompt.chat_template, source=source, exact_out=nxt)
    os.replace(nxt, cache)
    status = "incremental" if res.reused else "built"
    return status, {"tokens": res.n_tokens, "reused_tokens": res.reused, "prefill_s": round(res.prefill_s, 3),
                    "note": res.note}


# --- the lock --------------------------------------------------------------------------


def read_lock(outdir: Path) -> dict[str, Any]:
    p = outdir / LOCK
    if not p.is_file():
        return {"format": LOCK_FORMAT, "outputs": {}}
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": LOCK_FORMAT, "outputs": {}}  # a damaged lock costs a rebuild, nothing else
    if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT or not isinstance(doc.get("outputs"), dict):
        return {"format": LOCK_FORMAT, "outputs": {}}
    return doc


def write_lock(outdir: Path, lock: dict[str, Any]) -> None:
    _io.atomic_write(outdir / LOCK, (json.dumps(lock, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def up_to_date(job: Job, lock: dict[str, Any]) -> bool:
    entry = lock["outputs"].get(job.id)
    if not isinstance(entry, dict) or entry.get("key") != job.key or not job.out.is_file():
        return False
    try:
        return bool(_core.hash_file(str(job.out)) == entry.get("blake3"))
    except AotccError:
        return False


# --- the build ---------------------------------------------------------------------------


Report = Callable[[dict[str, Any]], None]


def build(manifest: Manifest, outdir: str | os.PathLike[str], *, jobs: int = 1, ray: str | None = None,
          report: Report | None = None) -> list[dict[str, Any]]:
    """Run every out-of-date job; returns one status row per output (`built`,
    `incremental`, `reused` or `failed` with the error). Jobs of a failed prompt that
    need its output are `skipped`; other prompts go on."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    all_jobs = plan(manifest, out)
    lock = read_lock(out)
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Job] = []
    for j in all_jobs:
        if up_to_date(j, lock) and all(n in rows and rows[n]["status"] == "reused" for n in j.needs):
            rows[j.id] = {"id": j.id, "kind": j.kind, "status": "reused", "key": j.key,
                          "blake3": lock["outputs"][j.id]["blake3"], "seconds": 0.0}
            if report:
                report(rows[j.id])
        else:
            todo.append(j)

    def finish(row: dict[str, Any]) -> None:
        rows[row["id"]] = row
        if row["status"] in ("built", "incremental"):
            lock["outputs"][row["id"]] = {"key": row["key"], "blake3": row["blake3"]}
        else:
            lock["outputs"].pop(row["id"], None)
        write_lock(out, lock)  # after every job: an interrupted build leaves a consistent lock
        if report:
            report(row)

    if ray is not None:
        from aotcc.build_ray import run_on_ray

        run_on_ray(todo, manifest, out, ray, finish, rows)
    elif jobs <= 1:
        runtimes: dict[str, Any] = {}
        try:
            for j in todo:
                finish(_guarded(j, manifest, out, runtimes, rows))
        finally:
            _close(runtimes)
    else:
        _run_pool(todo, manifest, out, jobs, finish, rows)
    return [rows[j.id] for j in all_jobs]


def _guarded(job: Job, manifest: Manifest, out: Path, runtimes: dict[str, Any],
             rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    failed = [n for n in job.needs if rows.get(n, {}).get("status") in ("failed", "skipped")]
    if failed:
        return {"id": job.id, "kind": job.kind, "status": "skipped", "error": f"needs {failed[0]}, which failed"}
    try:
        return run_job(job, manifest, out, runtimes)
    except AotccError as e:
        return {"id": job.id, "kind": job.kind, "status": "failed", "error": str(e)}
    except Exception as e:
        return {"id": job.id, "kind": job.kind, "status": "failed", "error": f"internal error: {type(e).__name__}: {e}"}


def _close(runtimes: dict[str, Any]) -> None:
    for r in runtimes.values():
        try:
            r.close()
        except Exception:
            pass


_WORKER_RUNTIMES: dict[str, Any] = {}


def _pool_job(job: Job, manifest: Manifest, out: Path, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return _guarded(job, manifest, out, _WORKER_RUNTIMES, rows)


def _run_pool(todo: list[Job], manifest: Manifest, out: Path, jobs: int, finish: Callable[[dict[str, Any]], None],
              rows: dict[str, dict[str, Any]]) -> None:
    """Jobs in `jobs` worker processes, each keeping its loaded models; a job starts when
    the outputs it needs are finished."""
    pending = list(todo)
    running: dict[Future[dict[str, Any]], Job] = {}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            ready = [j for j in pending if all(n in rows for n in j.needs)]
            for j in ready:
                pending.remove(j)
                running[pool.submit(_pool_job, j, manifest, out, dict(rows))] = j
            if not running:
                raise AotccError("build: jobs wait on outputs no job makes")  # a planning bug
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in done:
                j = running.pop(f)
                try:
                    finish(f.result())
                except Exception as e:
                    finish({"id": j.id, "kind": j.kind, "status": "failed", "error": f"worker failed: {e}"})


__all__ = ["Job", "Manifest", "build", "load_manifest", "plan", "read_lock", "run_job"]
