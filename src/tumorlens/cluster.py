"""Ray, for the audit and the data check on more than one machine: connecting, and one ordered map.

The per-image work goes to Ray Data (`map_batches` over an actor pool): each actor builds its worker
once (the audit's loads the model), then maps items (chunks of sample references) to small results
that come back to this process in order. Scheduling, retries of a task whose worker died, and
moving objects between machines are Ray's; this module only packs items and results.

Ray is an optional extra (`pip install 'tumorlens[ray]'`) and is imported only by these functions.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tqdm.auto import tqdm

from tumorlens.errors import TumorlensError


class RayUnavailable(TumorlensError):
    """--ray was asked for and Ray is not installed, or no cluster could be reached."""


def require_ray():
    """The ray module, or a clear message naming the extra that installs it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise RayUnavailable("--ray needs the optional package 'ray[data]': pip install 'tumorlens[ray]'") from None


def connect(address: str | None) -> Any:
    """Join the Ray cluster at `address` ('auto': the one this machine belongs to (`ray start`,
    RAY_ADDRESS), else a new local one; 'ray://host:10001' or 'host:6379': that cluster). A process
    already connected (ray.init called by the caller, as the tests do) keeps its connection."""
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=None if address in (None, "", "auto") else address, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise RayUnavailable(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    return ray


def cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _map_items(batch: dict, make_worker: Callable[[], Callable[[Any], Any]], cwd: str | None = None) -> dict:
    """Each item of a batch through a worker built for it (the task-pool form of _Actor)."""
    return _Actor(make_worker, cwd)(batch)


def worker_env() -> dict[str, str]:
    """The process settings of the command line (runtime.py) for the workers, set when Ray starts
    their processes, before they load torch; measured in benchmarks/RESULTS.md (bench_ray.py --chunk):

    - OMP_WAIT_POLICY: OpenMP threads wait passively, as here.
    - MALLOC_ARENA_MAX=1 (unless TUMORLENS_MALLOC=system, or the caller sets its own): Ray Data runs
      the map function on a thread of the actor, not its main thread, so its allocations went to a
      per-thread glibc arena; an arena's heap holds at most 64 MB, so a larger block (a model pass's
      activations on a chunk) was mapped afresh and unmapped on every pass whatever mallopt says:
      7.6 million page faults and 24 CPU-s of kernel time on a 64-image chunk (in process: 0.15
      million, 1.4 s). One arena serves every thread from the main heap, which keeps freed memory
      for reuse (memory.py) as the in-process audit's main thread does.
    - RAY_worker_niceness=0 (unless the caller sets it): Ray starts its workers at niceness 15, so
      on a node with other work a worker got a small share of the cores where the in-process
      audit runs at 0; Ray's own job supervisor sets this variable the same way.
    """
    env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0")}
    if "TUMORLENS_MALLOC" in os.environ:
        env["TUMORLENS_MALLOC"] = os.environ["TUMORLENS_MALLOC"]
    if "MALLOC_ARENA_MAX" in os.environ:
        env["MALLOC_ARENA_MAX"] = os.environ["MALLOC_ARENA_MAX"]
    elif os.environ.get("TUMORLENS_MALLOC", "").lower() != "system":
        env["MALLOC_ARENA_MAX"] = "1"
    return env


class _Actor:
    """One actor of the pool: builds the worker once, then maps each item of a batch through it.
    Items and results cross as cloudpickle bytes, so any picklable object travels as it is."""

    def __init__(self, make_worker: Callable[[], Callable[[Any], Any]], cwd: str | None = None):
        from ray import cloudpickle

        from tumorlens.memory import reuse_freed_memory

        if cwd and os.path.isdir(cwd):  # relative paths (--data runs/x) mean what they mean to the caller
            os.chdir(cwd)
        reuse_freed_memory()  # as the command line does (runtime.py); OMP_WAIT_POLICY comes from worker_env()
        self._pickle = cloudpickle
        self.work = make_worker()

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        out = [self._pickle.dumps(self.work(self._pickle.loads(b))) for b in batch["item"]]
        return {"result": np.array(out, dtype=object)}


def ordered_map(make_worker: Callable[[], Callable[[Any], Any]], items: Sequence[Any], *, address: str | None,
                workers: int | None = None, actors: bool = True, progress: bool = False, desc: str = "on Ray",
                unit_sizes: Sequence[int] | None = None) -> Iterator[Any]:
    """make_worker()(item) for every item, computed on the Ray cluster at `address` and yielded in
    the order of `items` (Ray Data's preserve_order) as they arrive.

    make_worker: a picklable function returning the per-item function. actors=True: an actor pool,
    each actor calls make_worker once (load a model there, not per item); a dead actor is restarted
    and its task retried (Ray Data's actor pool defaults: max_restarts=-1, max_task_retries=-1).
    actors=False: tasks, which build the worker per item and run in Ray's reused worker processes
    (no start-up per call: for cheap workers such as a reader). workers: at most this many at once
    (default: one per CPU of the cluster); each gets an equal share of the CPUs, so one worker may
    use every core as the in-process run does. Every item's result comes back exactly once, or the
    run fails. unit_sizes: what each item counts on the progress bar (images per chunk).
    """
    ray = connect(address)
    from ray import cloudpickle

    cpus = cluster_cpus(ray)
    workers = min(max(1, workers or cpus), max(1, len(items)))
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the checks consume chunks in audited order
    ctx.enable_progress_bars = False  # our own bar counts images
    ds = ray.data.from_items([{"item": cloudpickle.dumps(it)} for it in items],
                             override_num_blocks=max(1, len(items)))
    common = dict(batch_size=1, batch_format="numpy", num_cpus=max(1, cpus // workers),
                  runtime_env={"env_vars": worker_env()})
    if actors:
        mapped = ds.map_batches(_Actor, fn_constructor_args=(make_worker, os.getcwd()),
                                compute=ray.data.ActorPoolStrategy(size=workers), **common)
    else:
        mapped = ds.map_batches(_map_items, fn_args=(make_worker, os.getcwd()),
                                compute=ray.data.TaskPoolStrategy(size=workers), **common)
    sizes = list(unit_sizes) if unit_sizes is not None else [1] * len(items)
    bar = tqdm(total=sum(sizes), desc=desc, unit="img", disable=not progress, mininterval=0.5)
    n = 0
    for row in mapped.iter_rows():
        result = row["result"]
        yield cloudpickle.loads(result if isinstance(result, (bytes, bytearray)) else bytes(result))
        bar.update(sizes[n] if n < len(sizes) else 0)
        n += 1
    bar.close()
    if n != len(items):  # Ray retries a dead worker's task; a result lost or doubled all the same is an error
        raise TumorlensError(f"Ray returned {n} results for {len(items)} items")
