"""Everything the service can be told, in one frozen object handed to `create_app`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumorlens.errors import TumorlensError

# Explainers fast enough to answer a web request on a CPU (Method.fast in the registry); LIME,
# KernelSHAP and occlusion need hundreds of forward passes per image and would let one request
# occupy the model for seconds.
from tumorlens.explain.methods import DEFAULT_METHOD, FAST_METHODS


@dataclass(frozen=True)
class ServeSettings:
    model_path: Path | None = None  # None: the model that ships with the package
    auth: bool = True
    api_keys: tuple[str, ...] | None = None  # None: read TUMORLENS_API_KEYS and api_keys_file
    api_keys_file: Path | None = None
    db_url: str = "sqlite:///tumorlens-audit.sqlite"
    max_upload_mb: float = 20.0
    max_pixels: int = 4096 * 4096  # per 2-D image, checked from the header before decoding
    max_side: int = 8192
    max_slices: int = 512  # NIfTI slices / DICOM frames per upload
    max_voxels: int = 64 * 1024 * 1024  # a decoded volume as float32 is 4 bytes per voxel
    explain_methods: tuple[str, ...] = FAST_METHODS
    default_method: str = DEFAULT_METHOD  # /v1/explain without ?method= (fit_to_model: one the model can serve)
    # a foreign model's load_model keywords (spec, trust_code, spec keys: models/loading.py)
    model_options: Mapping[str, Any] | None = None
    low_confidence: float = 0.5  # below this top probability the answer is flagged "uncertain"
    # model threads, each with its own network replica, each running one batch at a time; one thread
    # batching every request uses 2 cores best: it runs the model while the other core does the HTTP,
    # decoding and PNG work (benchmarks/RESULTS.md, bench_service.py)
    workers: int = 1
    max_batch: int = 16  # images per model pass when requests arrive together
    batch_wait_ms: float = 2.0  # how long a model thread waits for more requests to join a batch
    # the learned input check (tumorlens.inputcheck) besides the rules; off only to measure its cost
    learned_input_check: bool = True
    frozen_inference: bool = True  # predictions through a TorchScript-frozen copy (serve/frozen.py)
    # torch intra-op threads, process-wide: `tumorlens serve` sets 1 (it owns its process); None leaves
    # torch's setting alone, for an app embedded in a process that has its own.
    inference_threads: int | None = None
    model_timeout_s: float = 30.0  # a request waits this long for the shared model threads, then 503
    # slow explainers (slow_lane.py): their own thread; requests admitted at once (running or
    # waiting) and the time budget of each, from admission to answer
    slow_concurrency: int = 1
    slow_budget_s: float = 120.0
    request_timeout_s: float = 30.0  # a request must arrive in full within this (http.py)
    max_connections: int = 64  # open connections; uvicorn answers 503 beyond
    # decoding (decode_budget.py): what decoded pixels may hold at once across requests, and how long
    # a request waits for its share before 503
    decode_memory_mb: float = 768.0
    decode_wait_s: float = 60.0
    samples_dir: Path | None = None  # None: the package's bundled samples
    model_card_path: Path | None = None  # None: MODEL_CARD.md beside the checkpoint, else the bundled card
    # tumor outlines (segmenter.py): loaded in their own thread after start-up; a file that fails to
    # load leaves predictions without outlines and /health degraded
    segmenter: bool = True
    segmenter_path: Path | None = None  # None: the segmenter bundled with the package
    # monitoring (tumorlens.monitoring): each audit row keeps a few numbers about the input and the answer
    monitoring: bool = True
    reference_data: Path | None = None  # a dataset to profile at start-up when the checkpoint has no reference

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise TumorlensError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if not 0 < self.low_confidence < 1:
            raise TumorlensError(f"low_confidence must lie in (0, 1), got {self.low_confidence}")
        if self.workers < 1:
            raise TumorlensError(f"workers must be at least 1, got {self.workers}")
        if self.max_batch < 1:
            raise TumorlensError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.batch_wait_ms < 0:
            raise TumorlensError(f"batch_wait_ms must not be negative, got {self.batch_wait_ms}")
        for name in ("model_timeout_s", "slow_budget_s", "request_timeout_s", "decode_memory_mb", "decode_wait_s"):
            if not getattr(self, name) > 0:
                raise TumorlensError(f"{name} must be positive, got {getattr(self, name)}")
        if self.slow_concurrency < 1 or self.max_connections < 1:
            raise TumorlensError("slow_concurrency and max_connections must be at least 1")
        if not self.explain_methods:
            raise TumorlensError("explain_methods must name at least one method")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def decode_memory_bytes(self) -> int:
        return int(self.decode_memory_mb * 1024 * 1024)


def fit_to_model(settings: ServeSettings, model) -> ServeSettings:
    """The settings with only the explainers this model can serve (a model without CAM layers or
    gradients gets occlusion, which needs forward passes only), and a default method among them."""
    from tumorlens.explain.methods import GRADIENT_FREE_PRIMARY, method_unavailable

    methods = tuple(m for m in settings.explain_methods if not method_unavailable(model, m))
    if not model.capabilities["cam"] and GRADIENT_FREE_PRIMARY not in methods:
        methods += (GRADIENT_FREE_PRIMARY,)
    if methods == settings.explain_methods:
        return settings
    default = settings.default_method if settings.default_method in methods else methods[0]
    return dataclasses.replace(settings, explain_methods=methods, default_method=default)
