"""`aotcc build --ray`: the same jobs as a local build, run by Ray actors.

Ray is the existing engine for fanning Python batch work over a cluster
(`pip install 'aotcc[ray]'`). Each model gets one actor per node, holding its loaded
GGUF between jobs; compile and export jobs go to model-less actors. A job is submitted
when the outputs it needs are finished, exactly as in a local build, and each actor
runs the same `run_job`, so the outputs are byte-identical to a local build's.

Workers write their outputs under OUTDIR themselves, so OUTDIR must be on a
filesystem every node sees (a local cluster always does; a remote one needs a shared
mount). The address is `local` (a cluster started for this build), `auto` (the one
`ray start` runs on this machine) or `ray://host:port`; one that cannot be reached is
an error within 30 seconds.
"""

from __future__ import annotations

import fcntl
import math
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aotcc.build import Job, Manifest, _close, _guarded
from aotcc.errors import InputError

CONNECT_TIMEOUT_S = 30.0


def _connect(address: str) -> tuple[Any, bool]:
    """Ray, connected; and whether this build started the cluster (and so stops it)."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'aotcc[ray]'") from None
    if ray.is_initialized():
        return ray, False
    if address in ("", "local"):
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        return ray, True
    if address.startswith("ray://"):
        # the client connect retries for minutes: see that someone answers first
        host, _, port = address[len("ray://"):].rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except (OSError, ValueError) as err:
            raise InputError(f"--ray {address}: no Ray cluster answers there ({err})") from None
    box: dict[str, Any] = {}

    def init() -> None:
        try:
            ray.init(address=address, log_to_driver=False)
        except BaseException as e:
            box["error"] = e

    t = threading.Thread(target=init, daemon=True)
    t.start()
    t.join(CONNECT_TIMEOUT_S)
    if t.is_alive():
        raise InputError(f"--ray {address}: no Ray cluster answered within {CONNECT_TIMEOUT_S:.0f} s")
    if "error" in box:
        e = box["error"]
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"--ray {address}: cannot connect: {type(e).__name__}: {first}")
    return ray, False


#: the lock file through which the actors on one node take turns at model work
NODE_LOCK = Path(tempfile.gettempdir()) / "aotcc-model-work.lock"


@contextmanager
def one_model_job_per_node() -> Iterator[None]:
    """Holds the node's model-work lock while the block runs. llama.cpp decodes a batch
    on every core of the node, so two actors decoding at once there (two models'
    prefills, or an analysis beside a prefill) only slow each other down: on a 2-core
    node, a Ray build of a Gemma and a SmolLM2 bundle took 86 s with the two prefills
    side by side, 76 s taking turns (a local build, 68 s). A lock file (not a Ray resource) works on any cluster as it is, and
    the kernel drops it with a process that dies."""
    with open(NODE_LOCK, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def uses_model(job: Job, manifest: Manifest) -> bool:
    """Whether a job decodes with a model: a bundle, or a compile with analysis."""
    return job.model is not None and (job.kind == "bundle" or (job.kind == "compile" and manifest.analyze))


def run_on_ray(todo: list[Job], manifest: Manifest, out: Path, address: str,
               finish: Callable[[dict[str, Any]], None], rows: dict[str, dict[str, Any]]) -> None:
    ray, started = _connect(address)

    @ray.remote(num_cpus=1)
    class Worker:
        """Runs build jobs; keeps the models it loaded."""

        def __init__(self) -> None:
            self.runtimes: dict[str, Any] = {}

        def run(self, job: Job, manifest: Manifest, out: str, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
            if uses_model(job, manifest):
                with one_model_job_per_node():
                    return _guarded(job, manifest, Path(out), self.runtimes, rows)
            return _guarded(job, manifest, Path(out), self.runtimes, rows)

        def close(self) -> None:
            _close(self.runtimes)

    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = max(1, sum(1 for n in alive if float(n.get("Resources", {}).get("CPU", 0.0)) > 0))
    names = ["", *[m.name for m in manifest.models]]
    # One actor per pool (compile/export, then each model) per node. Each reserves a
    # share of the smallest node's CPUs, so every actor fits on every node: with whole
    # CPUs, two models on a 2-CPU node (three actors) left one unscheduled and the build waiting.
    cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in alive]
    least = min((c for c in cpus if c > 0), default=1.0)  # a head node without CPUs runs no actor
    share = max(0.01, math.floor(min(1.0, least / len(names)) * 100) / 100)  # rounded down: the shares must fit
    pools: dict[str, list[Any]] = {}
    for name in names:
        pools[name] = [Worker.options(num_cpus=share, scheduling_strategy="SPREAD").remote()  # type: ignore[attr-defined]
                       for _ in range(nodes)]
    turn: dict[str, int] = {k: 0 for k in pools}
    pending = list(todo)
    running: dict[Any, Job] = {}
    try:
        while pending or running:
            for j in [j for j in pending if all(n in rows for n in j.needs)]:
                pending.remove(j)
                pool = pools[j.model.name if j.model is not None and j.kind == "bundle" else ""]
                k = turn[j.model.name if j.model is not None and j.kind == "bundle" else ""]
                turn[j.model.name if j.model is not None and j.kind == "bundle" else ""] = k + 1
                running[pool[k % len(pool)].run.remote(j, manifest, str(out), dict(rows))] = j
            if not running:
                raise InputError("build: jobs wait on outputs no job makes")
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                j = running.pop(ref)
                try:
                    finish(ray.get(ref))
                except Exception as e:
                    finish({"id": j.id, "kind": j.kind, "status": "failed", "error": f"ray worker failed: {e}"})
    finally:
        _release(ray, [w for pool in pools.values() for w in pool])


def _release(ray: Any, actors: list[Any]) -> None:
    """Closes each actor (its models freed) and kills it; an actor that fails or does not
    answer in 30 s is left to Ray, and none stops the others."""
    for a in actors:
        try:
            ray.get(a.close.remote(), timeout=30)
            ray.kill(a)
        except Exception:
            pass


def window_scatter(address: str, model: str | os.PathLike[str]) -> tuple[Any, Callable[[], None]]:
    """A `scatter` for `aotcc.analyze.analyze`: surprisal windows computed by Ray actors
    (one per CPU of the cluster, each with the model loaded and decoding on one thread,
    so the actors of a node do not fight over its cores), returned in order; and a
    function that stops them (and a cluster this call started)."""
    from aotcc.analyze.boundaries import Window, window_passes
    from aotcc.units import Unit

    ray, started = _connect(address)

    @ray.remote(num_cpus=1)
    class Analyst:
        def __init__(self, model: str) -> None:
            from aotcc.analyze.engine import Engine

            self.engine = Engine(model, n_threads=1)  # one actor per CPU

        def windows(self, text: str, units: list[Unit], ws: list[Window]) -> list[list[float | None]]:
            return window_passes(self.engine, text, units, ws)

        def close(self) -> None:
            self.engine.close()

    nodes = max(1, sum(1 for n in ray.nodes() if n.get("Alive")))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = [Analyst.options(scheduling_strategy="SPREAD").remote(str(model))  # type: ignore[attr-defined]
              for _ in range(max(nodes, cpus))]

    def scatter(text: str, units: list[Unit], ws: list[Window]) -> list[list[float | None]]:
        share = [ws[i::len(actors)] for i in range(len(actors))]
        parts = ray.get([a.windows.remote(text, units, part) for a, part in zip(actors, share) if part])
        out: list[list[float | None]] = [[] for _ in ws]
        for i, part in enumerate(parts):
            for j, vals in enumerate(part):
                out[i + j * len(actors)] = vals
        return out

    def stop() -> None:
        _release(ray, actors)
        if started:
            ray.shutdown()

    return scatter, stop


__all__ = ["run_on_ray", "window_scatter"]
