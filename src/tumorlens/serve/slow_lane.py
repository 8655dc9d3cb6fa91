"""Slow explainers (Score-CAM, Integrated Gradients, GradientSHAP: tens of model passes per image)
run in their own lane, so that they never hold up predictions (issue 19: one Score-CAM request,
60-67 s on this machine, held every /v1/predict sent meanwhile for ~58 s behind it).

The lane: its own copy of the network and its own thread, at the lowest CPU priority (the kernel
schedules each Linux thread by its own nice value), so predictions and fast explanations take the
CPU first; at most `slow_concurrency` requests admitted (running or waiting), more get 503 with
Retry-After; and a time budget per request, counted from admission, enforced by a forward
pre-hook on the lane's network that stops the explainer at its next model pass once the budget is
spent (503 "explain_timeout"). Which methods are slow is derived from the explainer registry
(`is_slow`): more than about one forward and backward pass per image.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future

import torch

from tumorlens.explain.methods import DEFAULT_METHOD
from tumorlens.models.checkpoint import TumorModel
from tumorlens.serve.batching import Job, ModelOutput, Replica, run_batch
from tumorlens.serve.errors import ServiceError
from tumorlens.serve.frozen import eager_logits

log = logging.getLogger("tumorlens.serve")

# Cost in forward-pass equivalents (a backward pass costs about two forwards). Grad-CAM is 3; a
# method above this does not fit in a shared batch without delaying every prediction in it.
QUICK_COST = 3.0
# Score-CAM's passes grow with the target layer's channels; every served architecture's last stage
# has at least this many, so the cost is never underestimated.
NOMINAL_CHANNELS = 64
LOW_PRIORITY = 19  # nice value of the lane's thread


def method_cost(method: str, size: int) -> float:
    """Forward-pass equivalents per image, from the explainer registry's pass counts."""
    from tumorlens.explain import methods as registry

    spec = registry.method_spec(method)
    if hasattr(spec, "passes_per_image"):  # the registry of one object per method
        passes = spec.passes_per_image({}, size, size, NOMINAL_CHANNELS)
    else:
        passes = registry.passes_per_image(spec.name, {}, size, size, NOMINAL_CHANNELS)
    return float(passes.forward + 3 * passes.forward_backward)


def is_slow(method: str, size: int) -> bool:
    return method_cost(method, size) > QUICK_COST


class BudgetExceeded(Exception):
    """Raised inside the lane's network when a request's time budget is spent."""


class SlowLane:
    def __init__(self, model: TumorModel, budget_s: float, concurrency: int, low_priority: bool = True):
        self.model = copy.deepcopy(model)  # its own network: CAM hooks never meet the fast lane's
        self.replica = Replica(self.model, eager_logits(self.model.net))
        self.budget_s = budget_s
        self.concurrency = concurrency
        self.low_priority = low_priority
        self.timeouts = 0
        self._admitted = threading.BoundedSemaphore(concurrency)
        self._deadline: float | None = None  # of the job running now
        self._jobs: queue.Queue[tuple[Job, float] | None] = queue.Queue()
        self.model.net.register_forward_pre_hook(self._check_budget)
        self._thread = threading.Thread(target=self._serve, name="tumorlens-slow-explain", daemon=True)
        self._thread.start()

    def _check_budget(self, _module, _inputs) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise BudgetExceeded

    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, x: torch.Tensor, method: str, target: int | None) -> tuple[Future, float]:
        """(future, deadline); 503 at once when the lane already holds `concurrency` requests."""
        if not self._admitted.acquire(blocking=False):
            raise ServiceError(503, "slow_method_busy",
                               f"{method} is slow (many model passes per image) and the service runs at most "
                               f"{self.concurrency} such request(s) at a time; try again later or use a fast "
                               f"method such as {DEFAULT_METHOD}", headers={"Retry-After": str(int(self.budget_s))})
        if not self._thread.is_alive():
            log.error("the slow-explainer thread had died; restarted it")
            self._thread = threading.Thread(target=self._serve, name="tumorlens-slow-explain", daemon=True)
            self._thread.start()
        job = Job(x, method, target)
        deadline = time.monotonic() + self.budget_s
        job.future.add_done_callback(lambda _f: self._admitted.release())
        self._jobs.put((job, deadline))
        return job.future, deadline

    def run(self, x: torch.Tensor, method: str, target: int | None) -> ModelOutput:
        future, deadline = self.submit(x, method, target)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
        except BudgetExceeded:
            pass
        except TimeoutError:
            future.cancel()  # still queued: never started
        self.timeouts += 1
        raise ServiceError(503, "explain_timeout",
                           f"{method} did not finish within the service's time budget of {self.budget_s:g} s "
                           "(the machine is busy: predictions go first); try again later or use a fast "
                           f"method such as {DEFAULT_METHOD}", headers={"Retry-After": str(int(self.budget_s))})

    def close(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        if self.low_priority and hasattr(os, "setpriority"):
            try:  # Linux: a thread id is a valid "process" for setpriority
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY)
            except OSError:
                pass
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, deadline = item
            if not job.future.set_running_or_notify_cancel():
                continue
            if time.monotonic() > deadline:
                job.future.set_exception(BudgetExceeded())
                continue
            self._deadline = deadline
            try:
                run_batch(self.replica, [job])
            except Exception as exc:  # noqa: BLE001 - the job's failure is its own
                if not job.future.done():
                    job.future.set_exception(exc)
            finally:
                self._deadline = None
                torch.set_grad_enabled(True)
