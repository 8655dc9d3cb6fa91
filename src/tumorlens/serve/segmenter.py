"""The tumor segmenter behind the service: loaded in its own thread, then run there in micro-batches.

Why its own thread rather than the classifier's batches: the segmenter is another network with
its own input recipe, and on two cores it runs beside the classifier's pass instead of after it,
so a request pays about max(classifier, segmenter) rather than the sum. Loading takes seconds
(importing segmentation-models-pytorch and timm), so it happens in that thread too: start-up is
not held up, and a file that fails to load leaves the service predicting without outlines while
/health says why (never a 500).

Request threads call `submit(image)` and get a future for the bool mask at the image's own size;
`None` when the segmenter is off or unavailable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("tumorlens.serve")

OFF, LOADING, READY, UNAVAILABLE = "off", "loading", "ready", "unavailable"


@dataclass
class _Job:
    image: np.ndarray
    future: Future = field(default_factory=Future)


class SegmenterLane:
    """One thread: load the segmenter (`loader()`), warm it up, then serve masks in batches of
    up to max_batch images gathered within wait_ms (Segmenter.predict handles mixed sizes)."""

    def __init__(self, loader: Callable[[], Any] | None, max_batch: int = 8, wait_ms: float = 2.0):
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, wait_ms) / 1000
        self.segmenter: Any = None
        self.error: str | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._state = OFF if loader is None else LOADING
        self._lock = threading.Lock()
        self._stopping = False  # close() has queued the stop signal
        self._thread: threading.Thread | None = None
        if loader is not None:
            self._thread = threading.Thread(target=self._run, args=(loader,), name="tumorlens-segmenter", daemon=True)
            self._thread.start()

    @property
    def state(self) -> str:
        return self._state

    @property
    def version(self) -> str | None:
        return getattr(self.segmenter, "version", None)

    def problems(self) -> list[str]:
        """What /health reports as degraded."""
        if self.state == UNAVAILABLE:
            return [f"the tumor segmenter is unavailable ({self.error}); predictions carry no outline"]
        return []

    def wait_ready(self, timeout: float | None = None) -> str:
        """Block until loading has finished (for tests and scripts); the state then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state == LOADING and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.02)
        return self.state

    def submit(self, image: np.ndarray) -> Future | None:
        """Queue one raw 2-D slice; the future's result is its bool mask. None when off/unavailable.
        While loading, the job waits in the queue for the loaded segmenter."""
        if self.state in (OFF, UNAVAILABLE):
            return None
        job = _Job(np.asarray(image, dtype=np.float32))
        self._ensure_thread()
        self._jobs.put(job)
        if self._state == UNAVAILABLE:  # loading failed between the check and the put
            self._fail_waiting()
        return job.future

    def close(self) -> None:
        """Stop the thread (after its current batch); a later submit starts it again, as the
        classifier's model threads do when an app is started twice."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stopping:
                self._stopping = True
                self._jobs.put(None)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._state == READY and (self._stopping or not self._thread.is_alive()):
                self._thread.join()  # a closed thread ends at the None ahead of any new job
                self._stopping = False
                self._thread = threading.Thread(target=self._serve, args=(self.segmenter,),
                                                name="tumorlens-segmenter", daemon=True)
                self._thread.start()

    # -- the segmenter thread --------------------------------------------------------------------
    def _run(self, loader: Callable[[], Any]) -> None:
        try:
            seg = loader()
            # the first pass at a new shape is slow: pay it now, not in the first user's request
            seg.predict([np.zeros((seg.recipe.size, seg.recipe.size), np.float32)])
        except Exception as exc:  # noqa: BLE001 - any failure to load means "no outlines", not a dead service
            self.error = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            log.error("tumor segmenter unavailable, serving without outlines: %s", self.error)
            self._state = UNAVAILABLE
            self._fail_waiting()
            return
        self.segmenter = seg
        self._state = READY
        log.info("tumor segmenter %s ready", seg.version)
        self._serve(seg)

    def _serve(self, seg: Any) -> None:
        stop = False
        while not stop:
            batch, stop = self._gather()
            if not batch:
                continue
            try:
                masks = seg.predict([j.image for j in batch], batch_size=len(batch))
            except Exception as exc:  # noqa: BLE001 - one bad batch fails its requests' outlines only
                log.exception("a segmenter batch failed")
                for j in batch:
                    j.future.set_exception(exc)
                continue
            for j, m in zip(batch, masks):
                j.future.set_result(m)

    def _gather(self) -> tuple[list[_Job], bool]:
        """The next batch (the first waiting job plus what arrives within wait_s) and whether the
        stop signal came. Jobs whose caller gave up (future cancelled) are skipped."""
        job = self._jobs.get()
        if job is None:
            return [], True
        batch = [job] if job.future.set_running_or_notify_cancel() else []
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                nxt = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if nxt is None:  # closing: finish this batch, then stop
                return batch, True
            if nxt.future.set_running_or_notify_cancel():
                batch.append(nxt)
        return batch, False

    def _fail_waiting(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError(f"the tumor segmenter is unavailable: {self.error}"))


def segmenter_loader(enabled: bool, path: Path | None) -> Callable[[], Any] | None:
    """What the lane loads: the bundled segmenter (path None) or the named file; None when off."""
    if not enabled:
        return None

    def load():
        from tumorlens.segment.model import load_segmenter

        return load_segmenter(path)

    return load
