"""Micro-batching: requests that reach the model at about the same time share one model pass.

Why: under load the requests queue for the CPU anyway, and one forward pass over 4 images costs
less CPU than 4 passes over one (fewer Python-level layer calls, better use of each conv kernel);
Grad-CAM batches the same way, with one target class per image. Each network replica is owned
by one model thread, so CAM hooks never see two requests at once, and a request never waits for
a free replica: it joins the next batch.

A request thread calls `ModelRunner.submit(x, method, target)` (or `run`, which waits) and gets a
future for its own rows of the batch result. The model thread takes the first waiting job, then gathers what else arrives
within `wait_ms` (up to `max_batch` images), runs the batch and hands each job its own rows back.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

# Methods whose explainer makes exactly one forward pass over the images it explains (Method.one_pass
# in the registry): its logits are the prediction, so no separate inference pass is needed (checked
# per call: if the count of captured outputs is not one per image, the runner falls back to a
# separate pass).
from tumorlens.explain.methods import ONE_PASS_METHODS
from tumorlens.models.checkpoint import TumorModel
from tumorlens.models.softmax import temperature_softmax

log = logging.getLogger("tumorlens.serve")


@dataclass
class Replica:
    """One network for one model thread; `logits` is its prediction pass (see frozen.py)."""

    model: TumorModel
    logits: Callable[[torch.Tensor], torch.Tensor]

    def probabilities(self, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """As TumorModel.probabilities: temperature-scaled softmax, in chunks of batch_size."""
        out = torch.cat([self.logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return temperature_softmax(out, self.model.temperature)


@dataclass
class ModelOutput:
    probabilities: np.ndarray  # (n, C) calibrated
    heatmaps: np.ndarray | None = None  # (n, S, S), method's raw heatmaps, for explain jobs
    targets: np.ndarray | None = None  # (n,) class explained per image


@dataclass
class Job:
    """One request's share of a batch."""

    x: torch.Tensor  # (n, 1, S, S) preprocessed
    method: str | None  # None: probabilities only
    target: int | None  # class to explain; None: the top class
    future: Future = field(default_factory=Future)
    # filled in by the model thread
    probabilities: np.ndarray | None = None
    heatmaps: np.ndarray | None = None
    targets: np.ndarray | None = None

    @property
    def group(self) -> tuple:
        return (self.method, self.target is None)


class ModelRunner:
    """One model thread per replica, all fed from one queue of jobs.

    A job whose caller stopped waiting (its future was cancelled on a timeout) is skipped. A model
    thread that dies anyway (a bug that escapes run_batch) is restarted on the next submit, logged,
    and counted in `restarts`, which /health reports."""

    def __init__(self, replicas: list[Replica], max_batch: int = 16, wait_ms: float = 2.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.replicas = replicas
        self.max_batch = max_batch
        self.wait_s = max(0.0, wait_ms) / 1000
        self.batch_sizes: list[int] = []  # images per model pass, for tests and diagnostics
        self.restarts = 0
        self._closed = False
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._threads = [self._thread(i) for i in range(len(replicas))]
        for t in self._threads:
            t.start()

    def _thread(self, i: int) -> threading.Thread:
        return threading.Thread(target=self._serve, args=(self.replicas[i],), name=f"tumorlens-model-{i}", daemon=True)

    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def ensure_alive(self) -> None:
        """Restart any model thread that has died (and say so in the log)."""
        with self._lock:
            if self._closed:
                return
            for i, t in enumerate(self._threads):
                if not t.is_alive():
                    self.restarts += 1
                    log.error("model thread %s had died; restarted it (restart %d)", t.name, self.restarts)
                    self._threads[i] = self._thread(i)
                    self._threads[i].start()

    def submit(self, x: torch.Tensor, method: str | None = None, target: int | None = None) -> Future:
        """Queue x for the next batch; the future's result is a ModelOutput with x's rows."""
        self.ensure_alive()
        job = Job(x, method, target)
        self._jobs.put(job)
        return job.future

    def run(self, x: torch.Tensor, method: str | None = None, target: int | None = None,
            timeout: float | None = None) -> ModelOutput:
        """Blocks until the model has processed x (in a batch with whatever else came in)."""
        return self.submit(x, method, target).result(timeout)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    # -- model thread ---------------------------------------------------------------------------
    def _take(self, job: Job) -> bool:
        """Claim a job for this thread; False if its caller gave up waiting (future cancelled)."""
        return job.future.set_running_or_notify_cancel()

    def _serve(self, replica: Replica) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if not self._take(job):
                continue
            batch = [job]
            n = len(job.x)
            deadline = time.monotonic() + self.wait_s
            while n < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:  # closing: let this thread finish the batch, then stop
                    self._jobs.put(None)
                    break
                if not self._take(nxt):
                    continue
                batch.append(nxt)
                n += len(nxt.x)
            self.batch_sizes.append(n)
            del self.batch_sizes[:-1000]
            try:
                run_batch(replica, batch)
            except Exception as exc:  # noqa: BLE001 - never leave a request thread waiting forever
                log.exception("a model batch failed outside its jobs' own error handling")
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
            except BaseException as exc:  # the thread must end (interpreter exit): fail the batch first
                for j in batch:
                    if not j.future.done():
                        j.future.set_exception(exc)
                raise


def run_batch(replica: Replica, batch: list[Job]) -> None:
    """Run jobs as one batch on one network; every job's future gets its own result or its own error."""
    groups: dict[tuple, list[Job]] = {}
    for job in batch:
        groups.setdefault(job.group, []).append(job)
    plain = [j for j in batch if j.method is None or j.method not in ONE_PASS_METHODS]
    try:
        if plain:  # one inference pass for every job that needs probabilities from it
            _split(plain, replica.probabilities(torch.cat([j.x for j in plain])), "probabilities")
    except Exception as exc:  # noqa: BLE001 - a job's failure belongs to the job, not the thread
        if len(batch) > 1:
            return _one_by_one(replica, batch)
        return batch[0].future.set_exception(exc)
    for (method, by_top), jobs in groups.items():
        if method is None:
            continue
        try:
            _explain(replica.model, method, by_top, jobs)
        except Exception as exc:  # noqa: BLE001
            if len(jobs) > 1:  # find the job that fails; the others still get their answers
                _one_by_one(replica, jobs)
            else:
                jobs[0].future.set_exception(exc)
    for job in batch:
        if not job.future.done():
            job.future.set_result(ModelOutput(job.probabilities, job.heatmaps, job.targets))


def _one_by_one(replica: Replica, jobs: list[Job]) -> None:
    for job in jobs:
        if not job.future.done():
            run_batch(replica, [job])


def _explain(model: TumorModel, method: str, by_top: bool, jobs: list[Job]) -> None:
    from tumorlens.explain import explain

    x = torch.cat([j.x for j in jobs])
    one_pass = method in ONE_PASS_METHODS
    if by_top and not one_pass:
        targets = np.concatenate([j.probabilities.argmax(axis=1) for j in jobs])
    elif by_top:
        targets = None  # the explainer explains each image's top class of its own forward pass
    else:
        targets = np.concatenate([np.full(len(j.x), j.target) for j in jobs])
    captured: list[torch.Tensor] = []
    hook = model.net.register_forward_hook(lambda _m, _i, out: captured.append(out.detach())) if one_pass else None
    try:
        ex = explain(model, x, method=method, targets=targets, batch_size=len(x))
    finally:
        if hook is not None:
            hook.remove()
    if one_pass:
        logits = torch.cat(captured) if captured else torch.empty(0)
        if logits.shape[:1] == (len(x),):
            probs = temperature_softmax(logits, model.temperature)
        else:  # the explainer did not make exactly one pass: ask the model directly
            probs = model.probabilities(x)
        _split(jobs, probs, "probabilities")
    _split(jobs, ex.heatmaps, "heatmaps")
    _split(jobs, ex.targets, "targets")


def _split(jobs: list[Job], rows, name: str) -> None:
    """Hand each job its own rows of a batch result, in submission order."""
    start = 0
    for j in jobs:
        setattr(j, name, rows[start : start + len(j.x)])
        start += len(j.x)
